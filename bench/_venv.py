"""Create or reuse a virtual environment for a peer library under ``bench/.venvs/<peer>``."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

__all__ = ["VENVS", "NoInterpreter", "find_python", "peer_python"]

VENVS = Path(__file__).resolve().parent / ".venvs"


class NoInterpreter(RuntimeError):
    """No Python interpreter of the required version was found on this machine."""


def _python_in(root: Path) -> Path:
    if sys.platform == "win32":
        return root / "Scripts" / "python.exe"
    return root / "bin" / "python"


def _works(python: Path, probe: str) -> bool:
    if not python.exists():
        return False
    done = subprocess.run([str(python), "-c", probe], capture_output=True, check=False)
    return done.returncode == 0


def _version_of(python: str) -> tuple[int, int] | None:
    """``(major, minor)`` of an interpreter that can also create venvs, else ``None``."""
    probe = "import sys, venv, ensurepip; print(*sys.version_info[:2])"
    try:
        done = subprocess.run(
            [python, "-c", probe], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    parts = done.stdout.split()
    if done.returncode != 0 or len(parts) != 2:
        return None
    return int(parts[0]), int(parts[1])


def _pyenv_pythons() -> Iterator[str]:
    """Interpreters installed by pyenv, newest first."""
    roots = [os.environ.get("PYENV_ROOT", ""), str(Path.home() / ".pyenv")]
    pyenv = shutil.which("pyenv")
    if pyenv:
        done = subprocess.run([pyenv, "root"], capture_output=True, text=True, check=False)
        roots.insert(0, done.stdout.strip())
    seen: set[Path] = set()
    for root in filter(None, roots):
        versions = Path(root) / "versions"
        if not versions.is_dir() or versions in seen:
            continue
        seen.add(versions)
        found = [p for p in versions.iterdir() if re.fullmatch(r"\d+\.\d+\.\d+", p.name)]
        found.sort(key=lambda p: tuple(int(x) for x in p.name.split(".")), reverse=True)
        for version in found:
            yield str(version / "bin" / "python")


def _candidates(minimum: tuple[int, int]) -> Iterator[str]:
    yield sys.executable
    for minor in range(minimum[1] + 4, minimum[1] - 1, -1):
        found = shutil.which(f"python{minimum[0]}.{minor}")
        if found:
            yield found
    yield from _pyenv_pythons()
    for name in ("python3", "python"):
        found = shutil.which(name)
        if found:
            yield found


def find_python(minimum: tuple[int, int]) -> Path:
    """An interpreter of at least version ``minimum``: this one, then PATH, then pyenv.

    Raises:
        NoInterpreter: None of them is recent enough (or can create a venv).
    """
    tried: list[str] = []
    for candidate in _candidates(minimum):
        if candidate in tried:
            continue
        tried.append(candidate)
        version = _version_of(candidate)
        if version is not None and version >= minimum:
            return Path(candidate)
    wanted = ".".join(map(str, minimum))
    raise NoInterpreter(
        f"no Python >= {wanted} found (tried this interpreter, python{wanted}+ on PATH and "
        f"pyenv versions); install one, e.g. `pyenv install {wanted}`"
    )


def peer_python(
    peer: str, packages: Sequence[str], *, probe: str, python: Path | str | None = None
) -> Path:
    """The interpreter of ``peer``'s own venv, created and filled with pip on first use.

    Args:
        peer: Folder name under ``bench/.venvs``.
        packages: Requirements handed to ``pip install``.
        probe: Python code that exits 0 when the venv is ready (e.g. ``"import huey"``).
        python: Interpreter that creates the venv (default: the one running this code).

    Returns:
        The path of the venv's ``python``.
    """
    root = VENVS / peer
    venv_python = _python_in(root)
    if _works(venv_python, probe):
        return venv_python
    print(f"creating {root} and installing {' '.join(packages)} ...", flush=True)
    creator = str(python) if python is not None else sys.executable
    clear = ["--clear"] if root.exists() else []
    subprocess.run([creator, "-m", "venv", *clear, str(root)], check=True)
    pip = [str(venv_python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, *packages], check=True)
    if not _works(venv_python, probe):
        raise RuntimeError(f"the venv {root} does not pass its probe {probe!r}")
    return venv_python
