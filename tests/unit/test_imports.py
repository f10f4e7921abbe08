"""The import graph of ``src/underway``: no circle anywhere, and no driver in the core.

The graph is read from the source, not from a running interpreter: every ``import`` and
``from ... import`` statement of every module counts, wherever it stands (top level,
``if TYPE_CHECKING:`` blocks, function bodies), because each is a dependency that a
maintainer has to follow, and a deferred one only hides a circle.

The driver check imports each package in a fresh, isolated interpreter (``python -I``)
in which every driver and every optional extra of ``pyproject.toml`` is blocked, as if
they were not installed.
"""

from __future__ import annotations

import ast
import importlib.metadata
import itertools
import json
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"
PACKAGE = "underway"

# A module's imports: the module it reaches, with the line of the first statement that does.
Graph = dict[str, dict[str, int]]


def module_name(path: Path, src: Path = SRC) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def module_files(src: Path = SRC) -> dict[str, Path]:
    """Every module under ``src/underway``, by dotted name."""
    return {module_name(p, src): p for p in sorted((src / PACKAGE).rglob("*.py"))}


def imported(name: str, path: Path, modules: Iterable[str]) -> dict[str, int]:
    """The modules of ``underway`` that ``name`` (the file ``path``) imports, with lines."""
    known = set(modules)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: dict[str, int] = {}

    def add(target: str, line: int) -> None:
        while target and target not in known:  # ``underway.x.attr`` counts as ``underway.x``
            target = target.rpartition(".")[0]
        if target and target != name:
            found.setdefault(target, line)

    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == PACKAGE:
                    add(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                source = ".".join([*base, node.module] if node.module else base)
            else:
                source = node.module or ""
            if source.split(".")[0] != PACKAGE:
                continue
            for alias in node.names:
                child = f"{source}.{alias.name}"
                add(child if child in known else source, node.lineno)
    return found


def import_graph(src: Path = SRC) -> Graph:
    files = module_files(src)
    return {name: imported(name, path, files) for name, path in files.items()}


def strongly_connected(graph: Graph) -> list[list[str]]:
    """Tarjan's components of ``graph`` that hold a circle (two modules or more), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(start: str) -> None:
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            for target in edges:
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(sorted(graph[target]))))
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def one_circle(graph: Graph, component: list[str]) -> list[str]:
    """A shortest circle through the first module of ``component`` (start repeated at the end)."""
    members = set(component)
    start = component[0]
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for target in sorted(graph[node]):
                if target == start:
                    return [*paths[node], start]
                if target in members and target not in paths:
                    paths[target] = [*paths[node], target]
                    following.append(target)
        frontier = following
    raise AssertionError(f"no circle through {start} in {component}")


def describe(graph: Graph, circle: list[str]) -> str:
    steps = [f"{a} (line {graph[a][b]}) -> {b}" for a, b in itertools.pairwise(circle)]
    return "\n    ".join(steps)


def circles_report(graph: Graph) -> str:
    parts = []
    for component in strongly_connected(graph):
        parts.append(
            f"{len(component)} modules in a circle: {', '.join(component)}\n"
            f"  for example:\n    {describe(graph, one_circle(graph, component))}"
        )
    return "\n".join(parts)


def test_the_graph_sees_every_kind_of_import(tmp_path: Path) -> None:
    pkg = tmp_path / PACKAGE
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from underway.a import thing\n")
    (pkg / "a.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from underway.sub import b\n"
        "def f():\n"
        "    import underway.sub.c\n"
    )
    (pkg / "sub" / "__init__.py").write_text("from . import b\nfrom .b import name\n")
    (pkg / "sub" / "b.py").write_text("from ..a import thing\nimport os\n")
    (pkg / "sub" / "c.py").write_text("from underway import a\nfrom underway import sub\n")
    assert import_graph(tmp_path) == {
        "underway": {"underway.a": 1},
        "underway.a": {"underway.sub.b": 3, "underway.sub.c": 5},
        "underway.sub": {"underway.sub.b": 1},
        "underway.sub.b": {"underway.a": 1},
        "underway.sub.c": {"underway.a": 1, "underway.sub": 2},
    }


def test_circles_are_found_and_described() -> None:
    graph: Graph = {
        "u.a": {"u.b": 3},
        "u.b": {"u.c": 4},
        "u.c": {"u.a": 5, "u.d": 6},
        "u.d": {},
        "u.e": {"u.f": 1},
        "u.f": {"u.e": 2},
    }
    assert strongly_connected(graph) == [["u.a", "u.b", "u.c"], ["u.e", "u.f"]]
    assert one_circle(graph, ["u.a", "u.b", "u.c"]) == ["u.a", "u.b", "u.c", "u.a"]
    report = circles_report(graph)
    assert "u.a (line 3) -> u.b" in report
    assert "u.f (line 2) -> u.e" in report
    assert strongly_connected({"u.a": {"u.b": 1}, "u.b": {}}) == []


def test_no_import_circle_under_src() -> None:
    graph = import_graph()
    assert len(graph) > 50, "the walk found too few modules"
    report = circles_report(graph)
    assert report == "", f"import circles under src/underway:\n{report}"


# -- no driver in the core ----------------------------------------------------------------

CORE_PACKAGES = [
    "underway",
    "underway.jobs",
    "underway.pipelines",
    "underway.tasks",
    "underway.cli",
    "underway.jobs.engines",
    "underway.jobs.testing",
    "underway.pipelines.producers",
]
DRIVERS = {
    "psycopg",
    "psycopg_pool",
    "asyncpg",
    "sqlalchemy",
    "django",
    "aio_pika",
    "aiormq",
    "redis",
    "pydantic",
    "aiokafka",
    "aiobotocore",
    "botocore",
    "google",
    "grpc",
    "nats",
    "prometheus_client",
}


def _distribution(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert match, requirement
    return match.group(0)


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def blocked_modules() -> set[str]:
    """Top-level modules of every optional extra (installed or not), and the known drivers."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = {
        _normalized(_distribution(req))
        for reqs in project["optional-dependencies"].values()
        for req in reqs
    }
    by_distribution: dict[str, set[str]] = {}
    for module, dists in importlib.metadata.packages_distributions().items():
        for dist in dists:
            by_distribution.setdefault(_normalized(dist), set()).add(module)
    blocked = set(DRIVERS)
    for dist in extras:
        blocked |= by_distribution.get(dist, set())
        blocked.add(dist.replace("-", "_"))
    return blocked


def core_dependencies() -> set[str]:
    """Top-level modules of the core's declared dependencies (``project.dependencies``)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {_distribution(req).replace("-", "_").lower() for req in project["dependencies"]}


# Runs in ``python -I``: blocks the given modules, imports one package, then prints what
# was attempted and every third-party top-level module that got imported.
_PROBE = """
import importlib, importlib.abc, json, sys

blocked = set(json.loads(sys.argv[2]))
attempts = []

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname.partition(".")[0] in blocked:
            attempts.append(fullname)
            raise ModuleNotFoundError(f"blocked in this test: {fullname}", name=fullname)
        return None

sys.meta_path.insert(0, Block())
before = set(sys.modules)
error = None
try:
    importlib.import_module(sys.argv[1])
except BaseException as exc:
    error = f"{type(exc).__name__}: {exc}"
new = {m.partition(".")[0] for m in set(sys.modules) - before}
stdlib = sys.stdlib_module_names
third_party = sorted(
    m for m in new if m not in stdlib and not m.startswith("_sysconfigdata") and m != "underway"
)
print(json.dumps({"error": error, "attempts": attempts, "imported": third_party}))
"""


def probe(package: str, blocked: set[str]) -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, "-I", "-c", _PROBE, package, json.dumps(sorted(blocked))],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    out: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return out


def test_the_blocked_list_covers_the_drivers_and_every_extra() -> None:
    blocked = blocked_modules()
    assert blocked >= DRIVERS
    assert {"pytest", "huey", "uvloop"} <= blocked  # from the extras' own names
    assert core_dependencies() == {"click", "cronsim"}
    assert not blocked & core_dependencies()


def test_the_probe_sees_a_driver_import() -> None:
    blocked = blocked_modules()
    assert probe("aio_pika", blocked)["attempts"] == ["aio_pika"]
    assert "ModuleNotFoundError" in str(probe("psycopg_pool", blocked)["error"])
    assert probe("click", set())["imported"] == ["click"]


@pytest.mark.parametrize("package", CORE_PACKAGES)
def test_the_core_imports_no_driver(package: str) -> None:
    result = probe(package, blocked_modules())
    assert result["error"] is None, f"{package} needs an optional package: {result['error']}"
    assert result["attempts"] == [], f"{package} tried to import {result['attempts']}"
    imported = result["imported"]
    assert isinstance(imported, list)
    assert set(imported) <= core_dependencies(), f"{package} imported {imported}"


def test_the_prometheus_extra_is_named_when_it_is_missing() -> None:
    result = probe("underway.prometheus", blocked_modules())
    assert result["attempts"] == ["prometheus_client"]
    assert "pip install 'underway[prometheus]'" in str(result["error"])
