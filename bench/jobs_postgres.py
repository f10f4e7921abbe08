"""underway.jobs against oban-py, PgQueuer, awa and Procrastinate on PostgreSQL, in one run.

Usage::

    python -m bench.jobs_postgres            # 10,000 jobs, every configuration, best of 2
    python -m bench.jobs_postgres --quick    # 2,000 jobs, one configuration each (~1 min)

Every measurement runs in a fresh subprocess against a database of its own, created and
dropped by that subprocess (``bench_<system>_<pid>_<n>`` on the server of ``--dsn``). Each peer
runs in its own venv under ``bench/.venvs`` with pinned versions (created with pip on first
use; oban-py needs Python >= 3.12, found on PATH or through pyenv). underway runs with the
interpreter that started the bench and needs its ``postgres`` extra. The output is one
readable line per measurement and, as the last line, one JSON object with the figures (jobs
per second, latencies in ms) and the ratios underway / peer. ``bench/README.md`` says what
each figure means.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bench._harness import ratios as shared_ratios
from bench._harness import server_reachable

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
CHILD_TIMEOUT = 420.0
UNAVAILABLE = 3


@dataclass(frozen=True)
class System:
    """One job system under test and how to run its side of the bench."""

    key: str
    label: str
    script: str
    knob: str = "concurrency"
    packages: tuple[str, ...] = ()
    probe: str = ""
    min_python: tuple[int, int] | None = None
    history: str = ""

    def config_name(self, value: int) -> str:
        """Suffix of a per-configuration figure, e.g. ``c100`` or ``b100``."""
        return f"{self.knob[0]}{value}"


UNDERWAY = System(
    "underway",
    "underway",
    "_underway_pg.py",
    history="keeps every finished job's row (state 'completed') until its pruner removes it",
)
PEERS = (
    System(
        "obanpy",
        "oban-py",
        "_peer_obanpy.py",
        packages=("oban==0.7.0",),
        probe="import oban, importlib.metadata as m; assert m.version('oban') == '0.7.0'",
        min_python=(3, 12),
        history="keeps every finished job's row (state 'completed') until its pruner removes it",
    ),
    System(
        "pgqueuer",
        "PgQueuer",
        "_peer_pgqueuer.py",
        knob="batch_size",
        packages=("pgqueuer==1.6.0", "asyncpg"),
        probe="import pgqueuer, asyncpg, importlib.metadata as m; "
        "assert m.version('pgqueuer') == '1.6.0'",
        history="deletes the job's row on completion; appends a slim log row (id, status, "
        "entrypoint; no args)",
    ),
    System(
        "awa",
        "awa",
        "_peer_awa.py",
        packages=("awa-pg==0.6.9", "psycopg[binary]"),
        probe="import awa, psycopg, importlib.metadata as m; assert m.version('awa-pg') == '0.6.9'",
        history="records completions as batched receipts (one row per batch), not per-job "
        "states; finished segments are truncated later, their counts kept as rollups",
    ),
    System(
        "procrastinate",
        "Procrastinate",
        "_peer_procrastinate.py",
        packages=("procrastinate==3.10.0", "psycopg[binary]"),
        probe="import procrastinate, psycopg, importlib.metadata as m; "
        "assert m.version('procrastinate') == '3.10.0'",
        history="keeps every finished job's row (status 'succeeded'; delete_jobs='never')",
    ),
)
SYSTEMS = (UNDERWAY, *PEERS)


@dataclass(frozen=True)
class Plan:
    """What one bench run measures."""

    jobs: int
    repeat: int
    samples: int
    configs: dict[str, tuple[int, ...]] = field(default_factory=dict)
    analyze: dict[str, tuple[bool, ...]] = field(default_factory=dict)


FULL = Plan(
    10_000,
    repeat=2,
    samples=200,
    configs={
        "underway": (50, 100, 200),
        "obanpy": (50, 100, 200),
        "pgqueuer": (100,),
        "awa": (200,),
        "procrastinate": (10,),
    },
    # Planner statistics help some systems and hurt others: try both where it is cheap.
    # Procrastinate without them scans its whole table per fetch (~80 s for 10,000 jobs).
    analyze={
        "underway": (False, True),
        "obanpy": (False, True),
        "pgqueuer": (False, True),
        "awa": (False, True),
        "procrastinate": (True,),
    },
)
QUICK = Plan(
    2_000,
    repeat=1,
    samples=50,
    configs={
        "underway": (100,),
        "obanpy": (100,),
        "pgqueuer": (100,),
        "awa": (200,),
        "procrastinate": (10,),
    },
    analyze={
        "underway": (False,),
        "obanpy": (False,),
        "pgqueuer": (True,),
        "awa": (True,),
        "procrastinate": (True,),
    },
)


class ChildFailed(RuntimeError):
    """A measurement subprocess failed."""


class NotAvailable(RuntimeError):
    """The system cannot run here (for underway: no PostgreSQL engine or driver)."""


# -- running one measurement ---------------------------------------------------------------------


@dataclass
class Runner:
    """Starts measurement subprocesses, each on a database name of its own."""

    dsn: str
    seq: int = 0

    def db_name(self, system: System) -> str:
        """A fresh database name for one run of ``system``."""
        self.seq += 1
        return f"bench_{system.key}_{os.getpid()}_{self.seq}"

    def run(self, system: System, python: Path, phase: str, **opts: int) -> dict[str, Any]:
        """Run one measurement of ``system`` and return the JSON its subprocess printed."""
        db = self.db_name(system)
        argv = [str(python), str(HERE / system.script), "--admin-dsn", self.dsn, "--db", db]
        argv += ["--phase", phase]
        for name, value in opts.items():
            argv += [f"--{name.replace('_', '-')}", str(value)]
        try:
            done = subprocess.run(
                argv, cwd=ROOT, capture_output=True, text=True, timeout=CHILD_TIMEOUT, check=False
            )
        except subprocess.TimeoutExpired as exc:
            self._drop(python, system, db)
            raise ChildFailed(f"{phase} timed out after {CHILD_TIMEOUT:.0f} s") from exc
        lines = done.stdout.strip().splitlines()
        last: dict[str, Any] = {}
        if lines:
            try:
                last = json.loads(lines[-1])
            except json.JSONDecodeError:
                last = {}
        if done.returncode == UNAVAILABLE and "unavailable" in last:
            raise NotAvailable(str(last["unavailable"]))
        if done.returncode != 0 or not last:
            self._drop(python, system, db)
            tail = "\n    ".join((done.stderr or done.stdout).strip().splitlines()[-6:])
            raise ChildFailed(f"{phase} failed (exit {done.returncode}):\n    {tail}")
        return last

    def _drop(self, python: Path, system: System, db: str) -> None:
        argv = [str(python), str(HERE / system.script), "--admin-dsn", self.dsn, "--db", db]
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            subprocess.run(
                [*argv, "--drop"], cwd=ROOT, capture_output=True, timeout=60, check=False
            )


# -- results --------------------------------------------------------------------------------------


@dataclass
class Results:
    """Best figures over repeats, and what each system could not do."""

    figures: dict[str, float] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)
    best: dict[str, str] = field(default_factory=dict)

    def keep_max(self, name: str, value: float) -> None:
        """Record ``value`` under ``name`` unless a higher one is there."""
        self.figures[name] = max(value, self.figures.get(name, 0.0))

    def throughput(
        self, system: System, value: int, analyze: bool, n: int, r: dict[str, Any]
    ) -> None:
        """Record one throughput run and print its line."""
        self.versions[system.key] = f"{r['version']} (Python {r['python']}, {r['loop']})"
        ins = n / r["insert_s"]
        proc = n / r["process_s"]
        config = f"{system.key}_processed_per_s_{system.config_name(value)}"
        self.keep_max(f"{system.key}_inserted_per_s", ins)
        self.keep_max(config, proc)
        self.keep_max(f"{config}_{'analyzed' if analyze else 'unanalyzed'}", proc)
        setting = f"{system.knob}={value}"
        stats = "ANALYZE" if analyze else "no ANALYZE"
        print(
            f"{system.label:<14} {r['version']:<7} {setting:<16} {stats:<10} "
            f"insert {ins:>9,.0f}/s   process {proc:>8,.0f}/s until all completed in DB  "
            f"({r['process_s']:.2f} s; Python {r['python']}, {r['loop']})",
            flush=True,
        )

    def latency(self, system: System, r: dict[str, Any], samples: int) -> None:
        """Record one latency run and print its line."""
        self.versions.setdefault(system.key, f"{r['version']} (Python {r['python']}, {r['loop']})")
        parts = []
        for way, prefix, said in (
            ("client", "latency", "through the DB"),
            ("same", "latency_same", "same instance"),
        ):
            if way in r:
                s = r[way]
                self.figures[f"{system.key}_{prefix}_p50_ms"] = s["p50_ms"]
                self.figures[f"{system.key}_{prefix}_p95_ms"] = s["p95_ms"]
                parts.append(f"{said}: p50 {s['p50_ms']:6.2f} ms  p95 {s['p95_ms']:6.2f} ms")
        print(
            f"{system.label:<14} latency, {samples} single enqueues  " + "   ".join(parts),
            flush=True,
        )

    def settle_best(self) -> None:
        """Add each system's best processing figure over its configurations."""
        for system in SYSTEMS:
            prefix = f"{system.key}_processed_per_s_"
            found = [
                (v, k)
                for k, v in self.figures.items()
                if k.startswith(prefix) and k.endswith("analyzed")
            ]
            if found:
                value, name = max(found)
                config, stats = name[len(prefix) :].split("_")
                said = "ANALYZE" if stats == "analyzed" else "no ANALYZE"
                self.figures[f"{system.key}_processed_per_s"] = value
                self.best[system.key] = f"{system.knob}={config[1:]}, {said}"


def ratios(figures: dict[str, float]) -> dict[str, float]:
    """underway over each peer (throughput), underway over oban-py (latency p50)."""
    pairs = {
        "processed_vs_pgqueuer": ("underway_processed_per_s", "pgqueuer_processed_per_s"),
        "processed_vs_obanpy": ("underway_processed_per_s", "obanpy_processed_per_s"),
        "processed_vs_awa": ("underway_processed_per_s", "awa_processed_per_s"),
        "processed_vs_procrastinate": (
            "underway_processed_per_s",
            "procrastinate_processed_per_s",
        ),
        "inserted_vs_pgqueuer": ("underway_inserted_per_s", "pgqueuer_inserted_per_s"),
        "inserted_vs_awa": ("underway_inserted_per_s", "awa_inserted_per_s"),
        "inserted_vs_obanpy": ("underway_inserted_per_s", "obanpy_inserted_per_s"),
        "latency_p50_vs_obanpy": ("underway_latency_p50_ms", "obanpy_latency_p50_ms"),
    }
    return shared_ratios(figures, pairs)


# -- the parent -----------------------------------------------------------------------------------


def _server_reachable(dsn: str) -> str | None:
    """``None`` if something listens at the DSN's host and port, else why not."""
    return server_reachable(dsn, 5432, "PostgreSQL server")


def _pythons(systems: Sequence[System], results: Results) -> dict[str, Path]:
    """Each system's interpreter; a peer whose venv cannot be made is left out and said so."""
    from bench._venv import NoInterpreter, find_python, peer_python

    out: dict[str, Path] = {}
    for system in systems:
        if system is UNDERWAY:
            out[system.key] = Path(sys.executable)
            continue
        try:
            creator = find_python(system.min_python) if system.min_python else None
            out[system.key] = peer_python(
                system.key, system.packages, probe=system.probe, python=creator
            )
        except (NoInterpreter, subprocess.CalledProcessError, RuntimeError) as exc:
            results.missing[system.key] = f"skipped: {exc}"
            print(f"{system.label}: skipped: {exc}", flush=True)
    return out


def _measure(
    plan: Plan, systems: Sequence[System], pythons: dict[str, Path], runner: Runner, res: Results
) -> None:
    def attempt(system: System, phase: str, **opts: int) -> dict[str, Any] | None:
        if system.key in res.missing:
            return None
        try:
            return runner.run(system, pythons[system.key], phase, **opts)
        except NotAvailable as exc:
            res.missing[system.key] = f"postgres engine not available: {exc}"
            print(f"{system.label}: postgres engine not available: {exc}", flush=True)
            if "psycopg" in str(exc):
                print("  (install the postgres extra: pip install -e '.[postgres]')", flush=True)
        except ChildFailed as exc:
            print(f"{system.label}: {exc}", flush=True)
        return None

    for _ in range(plan.repeat):
        for system in systems:
            for value in plan.configs.get(system.key, ()):
                for analyze in plan.analyze.get(system.key, (True,)):
                    opts = {"jobs": plan.jobs, system.knob: value, "analyze": int(analyze)}
                    r = attempt(system, "throughput", **opts)
                    if r is not None:
                        res.throughput(system, value, analyze, plan.jobs, r)
    for system in systems:
        r = attempt(system, "latency", samples=plan.samples)
        if r is not None:
            res.latency(system, r, plan.samples)


def _notes(systems: Sequence[System]) -> None:
    print("what stays in the database once a job has completed:", flush=True)
    for system in systems:
        print(f"  {system.label:<14} {system.history}", flush=True)


def _plan(args: argparse.Namespace) -> Plan:
    plan = QUICK if args.quick else FULL
    if args.jobs is not None:
        plan = replace(plan, jobs=args.jobs)
    if args.repeat is not None:
        plan = replace(plan, repeat=args.repeat)
    if args.samples is not None:
        plan = replace(plan, samples=args.samples)
    return plan


def _parent(args: argparse.Namespace) -> None:
    plan = _plan(args)
    wanted = set(args.systems.split(",")) if args.systems else {s.key for s in SYSTEMS}
    systems = [s for s in SYSTEMS if s.key in wanted]
    problem = _server_reachable(args.dsn)
    if problem:
        raise SystemExit(problem)
    results = Results()
    pythons = _pythons(systems, results)
    print(
        f"underway vs oban-py, PgQueuer, awa, Procrastinate on PostgreSQL ({args.dsn}): "
        f"{plan.jobs:,} no-op jobs, best of {plan.repeat}, latency over {plan.samples} "
        f"single enqueues",
        flush=True,
    )
    _measure(plan, systems, pythons, Runner(args.dsn), results)
    results.settle_best()
    _notes(systems)
    summary = {
        "figures": {k: round(v, 2) for k, v in sorted(results.figures.items())},
        "ratios": ratios(results.figures),
        "best": results.best,
        "versions": results.versions,
        "missing": results.missing,
        "jobs": plan.jobs,
        "repeat": plan.repeat,
        "latency_samples": plan.samples,
    }
    print(json.dumps(summary), flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``python -m bench.jobs_postgres``."""
    p = argparse.ArgumentParser(
        prog="python -m bench.jobs_postgres", description=__doc__.split("\n")[0]
    )
    p.add_argument("--quick", action="store_true", help="fewer jobs and configurations")
    p.add_argument("--jobs", type=int, default=None, help="jobs per measurement")
    p.add_argument("--repeat", type=int, default=None, help="runs per configuration (best kept)")
    p.add_argument("--samples", type=int, default=None, help="single enqueues timed for latency")
    p.add_argument("--dsn", default=ADMIN_DSN, help="server to create the databases on")
    p.add_argument(
        "--systems",
        default=None,
        help="comma-separated subset of: " + ",".join(s.key for s in SYSTEMS),
    )
    _parent(p.parse_args(argv))


if __name__ == "__main__":
    main()
