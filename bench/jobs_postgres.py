"""underway.jobs against oban-py, PgQueuer, awa and Procrastinate on PostgreSQL, in one run.

Usage::

    python -m bench.jobs_postgres            # 10,000 jobs, 6 configurations x 3 runs each
    python -m bench.jobs_postgres --quick    # 5,000 jobs, 3 configurations x 3 runs each
    python -m bench.jobs_postgres --sustained --minutes 5    # underway and PgQueuer, 1 ms jobs
    python -m bench.jobs_postgres --quick --history 10000000 # on 10M finished jobs

Every measurement runs in a fresh subprocess against a database of its own, created and
dropped by that subprocess (``bench_<system>_<pid>_<n>`` on the server of ``--dsn``). Each peer
runs in its own venv under ``bench/.venvs`` with pinned versions (created with pip on first
use; oban-py needs Python >= 3.12, found on PATH or through pyenv). underway runs with the
interpreter that started the bench and needs its ``postgres`` extra. Every system gets the
same number of runs; figures are medians (with min and max), and each system is reported in
its configuration with the best median. The output is one readable line per measurement and,
as the last line, one JSON object with the figures (jobs per second, latencies in ms) and the
ratios of medians underway / peer. ``--sustained`` runs underway and PgQueuer one after the
other under a producer that keeps 4,000 jobs waiting, sampling every 10 s. ``bench/README.md``
says what each figure means.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bench._harness import best_median, server_reachable, spread, spreads
from bench._harness import ratios as shared_ratios
from bench._pgcommon import JOB_SLEEP, SAMPLE_EVERY, WAITING_TARGET, db_url

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
CHILD_TIMEOUT = 420.0
# Seeding history: rows per second assumed when allowing a measurement more time.
HISTORY_ROWS_PER_S = 20_000
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
        history="deletes the job's row on completion; its log keeps three slim rows per job "
        "(queued, picked, successful: id, status, entrypoint; no args)",
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


Config = tuple[int, bool]
"""One configuration: the system's knob (concurrency or batch size), ANALYZE after insert."""


def _grid(values: Sequence[int], states: Sequence[bool]) -> tuple[Config, ...]:
    return tuple((v, a) for v in values for a in states)


@dataclass(frozen=True)
class Plan:
    """What one bench run measures: every system gets as many configurations as the others,
    and every configuration ``repeat`` runs, so every system gets the same number of runs."""

    jobs: int
    repeat: int
    samples: int
    configs: dict[str, tuple[Config, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        sizes = {len(c) for c in self.configs.values()}
        if len(sizes) > 1:
            raise ValueError(f"unequal numbers of configurations per system: {self.configs}")


# Planner statistics help some systems and hurt others: the full run tries both table states
# where it is cheap. Procrastinate without them scans its whole table per fetch (~80 s for
# 10,000 jobs, never its best), so it gets six concurrencies with ANALYZE instead.
FULL = Plan(
    10_000,
    repeat=3,
    samples=200,
    configs={
        "underway": _grid((50, 100, 200), (False, True)),
        "obanpy": _grid((50, 100, 200), (False, True)),
        "pgqueuer": _grid((100, 200, 500), (False, True)),
        "awa": _grid((50, 100, 200), (False, True)),
        "procrastinate": _grid((2, 5, 10, 20, 50, 100), (True,)),
    },
)
# Quick: three configurations each, in the table state that was the system's better one.
QUICK = Plan(
    5_000,
    repeat=3,
    samples=50,
    configs={
        "underway": _grid((50, 100, 200), (False,)),
        "obanpy": _grid((50, 100, 200), (False,)),
        "pgqueuer": _grid((100, 200, 500), (True,)),
        "awa": _grid((50, 100, 200), (True,)),
        "procrastinate": _grid((5, 10, 20), (True,)),
    },
)
# Sustained mode: the settings each system runs with (see bench/README.md for the choice).
SUSTAINED_CONFIG = {"underway": 1024, "pgqueuer": 100}
SUSTAINED_SYSTEMS = ("underway", "pgqueuer")
# Systems whose scripts can seed --history finished jobs.
HISTORY_SYSTEMS = ("underway", "pgqueuer", "obanpy", "procrastinate")


class ChildFailed(RuntimeError):
    """A measurement subprocess failed."""


class NotAvailable(RuntimeError):
    """The system cannot run here (for underway: no PostgreSQL engine or driver)."""


# -- running one measurement ---------------------------------------------------------------------


class Child:
    """A measurement subprocess whose stdout lines are read as they come (by a thread).

    JSON lines are results for the parent; other lines are progress, printed as they arrive.
    ``close`` always reaps the process (killing it when it does not exit in time).
    """

    def __init__(self, argv: Sequence[str], *, stdin: bool = False) -> None:
        self.stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed by close()
        self.proc = subprocess.Popen(
            list(argv),
            cwd=ROOT,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.last: dict[str, Any] = {}
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def next_json(self, timeout: float) -> dict[str, Any] | None:
        """The next JSON line (printing progress lines on the way); ``None`` at the end.

        Raises:
            ChildFailed: Nothing came for ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                line = self.lines.get(timeout=max(0.0, left))
            except queue.Empty:
                raise ChildFailed(f"no result in {timeout:.0f} s") from None
            if line is None:
                return None
            try:
                found = json.loads(line)
            except json.JSONDecodeError:
                found = None
            if isinstance(found, dict):
                self.last = found
                return found
            if line.strip():
                print(line, flush=True)

    def send(self, command: str) -> None:
        """Write one line to the child's stdin (ignored once it has exited)."""
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            with contextlib.suppress(OSError):
                self.proc.stdin.write(command + "\n")
                self.proc.stdin.flush()

    def finish(self, timeout: float) -> dict[str, Any]:
        """Read to the end and wait for the exit; the last JSON line (``{}`` if none)."""
        deadline = time.monotonic() + timeout
        while self.next_json(max(0.0, deadline - time.monotonic())) is not None:
            pass
        self.proc.wait(max(0.0, deadline - time.monotonic()))
        return self.last

    def tail(self) -> str:
        """The last lines of the child's stderr (or stdout), for a failure message."""
        self.stderr.seek(0)
        text = self.stderr.read().strip()
        return "\n    ".join(text.splitlines()[-6:])

    def close(self) -> None:
        """Close stdin, give the child a few seconds to exit, kill it otherwise; reap it."""
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(5)
        self.stderr.close()


@dataclass
class Runner:
    """Starts measurement subprocesses, each on a database name of its own."""

    dsn: str
    history: int = 0
    seq: int = 0

    def db_name(self, system: System) -> str:
        """A fresh database name for one run of ``system``."""
        self.seq += 1
        return f"bench_{system.key}_{os.getpid()}_{self.seq}"

    def argv(self, system: System, python: Path, db: str, phase: str, **opts: int) -> list[str]:
        """The command line of one phase of ``system`` on database ``db``."""
        argv = [str(python), str(HERE / system.script), "--admin-dsn", self.dsn, "--db", db]
        argv += ["--phase", phase]
        if self.history and system.key in HISTORY_SYSTEMS and phase != "producer":
            opts = {**opts, "history": self.history}
        for name, value in opts.items():
            argv += [f"--{name.replace('_', '-')}", str(value)]
        return argv

    def timeout(self) -> float:
        """How long one measurement may take: longer when it seeds history first."""
        return CHILD_TIMEOUT + self.history / HISTORY_ROWS_PER_S

    def run(self, system: System, python: Path, phase: str, **opts: int) -> dict[str, Any]:
        """Run one measurement of ``system`` and return the JSON its subprocess printed."""
        db = self.db_name(system)
        child = Child(self.argv(system, python, db, phase, **opts))
        try:
            try:
                last = child.finish(self.timeout())
            except (ChildFailed, subprocess.TimeoutExpired) as exc:
                raise ChildFailed(f"{phase} timed out after {self.timeout():.0f} s") from exc
            code = child.proc.returncode
            if code == UNAVAILABLE and "unavailable" in last:
                raise NotAvailable(str(last["unavailable"]))
            if code != 0 or not last:
                raise ChildFailed(f"{phase} failed (exit {code}):\n    {child.tail()}")
            return last
        except ChildFailed:
            self.drop(python, system, db)
            raise
        finally:
            child.close()

    def drop(self, python: Path, system: System, db: str) -> None:
        """Drop ``db`` through the system's script (after a failure or a time-out)."""
        argv = [str(python), str(HERE / system.script), "--admin-dsn", self.dsn, "--db", db]
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            subprocess.run(
                [*argv, "--drop"], cwd=ROOT, capture_output=True, timeout=60, check=False
            )


# -- results --------------------------------------------------------------------------------------


@dataclass
class Results:
    """Every run's figures, and what each system could not do."""

    runs: dict[str, list[float]] = field(default_factory=dict)
    latencies: dict[str, float] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)
    best: dict[str, str] = field(default_factory=dict)

    def add(self, name: str, value: float) -> None:
        """Record one run's ``value`` of figure ``name``."""
        self.runs.setdefault(name, []).append(value)

    def throughput(
        self, system: System, value: int, analyze: bool, n: int, r: dict[str, Any]
    ) -> None:
        """Record one throughput run and print its line."""
        self.versions[system.key] = f"{r['version']} (Python {r['python']}, {r['loop']})"
        ins = n / r["insert_s"]
        proc = n / r["process_s"]
        state = "analyzed" if analyze else "unanalyzed"
        self.add(f"{system.key}_inserted_per_s", ins)
        self.add(f"{system.key}_processed_per_s_{system.config_name(value)}_{state}", proc)
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
                self.latencies[f"{system.key}_{prefix}_p50_ms"] = s["p50_ms"]
                self.latencies[f"{system.key}_{prefix}_p95_ms"] = s["p95_ms"]
                parts.append(f"{said}: p50 {s['p50_ms']:6.2f} ms  p95 {s['p95_ms']:6.2f} ms")
        print(
            f"{system.label:<14} latency, {samples} single enqueues  " + "   ".join(parts),
            flush=True,
        )

    def settle(self) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
        """Figures (medians) and their spreads; each system's best configuration by median.

        ``<system>_processed_per_s`` is the median of the configuration whose median is the
        highest (its min and max are under ``..._min`` / ``..._max``), never a best run.
        """
        spread_of = spreads(self.runs)
        figures = {name: s.median for name, s in spread_of.items()}
        for system in SYSTEMS:
            found = best_median(self.runs, f"{system.key}_processed_per_s_")
            if found is None:
                continue
            name, best = found
            config, stats = name[len(f"{system.key}_processed_per_s_") :].split("_")
            said = "ANALYZE" if stats == "analyzed" else "no ANALYZE"
            head = f"{system.key}_processed_per_s"
            figures[head] = best.median
            figures[f"{head}_min"], figures[f"{head}_max"] = best.low, best.high
            spread_of[head] = best
            self.best[system.key] = f"{system.knob}={config[1:]}, {said}"
        for name in [n for n in figures if n.endswith("_inserted_per_s")]:
            figures[f"{name}_min"] = spread_of[name].low
            figures[f"{name}_max"] = spread_of[name].high
        figures.update(self.latencies)
        return figures, {name: s.as_dict() for name, s in sorted(spread_of.items())}


def ratios(figures: dict[str, float]) -> dict[str, float]:
    """underway over each peer (throughput medians), underway over oban-py (latency p50)."""
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


def _attempt(
    runner: Runner,
    res: Results,
    system: System,
    python: Path | None,
    phase: str,
    **opts: int,
) -> dict[str, Any] | None:
    """Run one measurement; record why a system cannot run, print why a run failed."""
    if system.key in res.missing or python is None:
        return None
    try:
        return runner.run(system, python, phase, **opts)
    except NotAvailable as exc:
        res.missing[system.key] = f"postgres engine not available: {exc}"
        print(f"{system.label}: postgres engine not available: {exc}", flush=True)
        if "psycopg" in str(exc):
            print("  (install the postgres extra: pip install -e '.[postgres]')", flush=True)
    except ChildFailed as exc:
        print(f"{system.label}: {exc}", flush=True)
    return None


def _measure(
    plan: Plan, systems: Sequence[System], pythons: dict[str, Path], runner: Runner, res: Results
) -> None:
    # Rounds interleave the systems, so drift on the machine hits every system alike.
    for _ in range(plan.repeat):
        for system in systems:
            for value, analyze in plan.configs.get(system.key, ()):
                opts = {"jobs": plan.jobs, system.knob: value, "analyze": int(analyze)}
                r = _attempt(runner, res, system, pythons.get(system.key), "throughput", **opts)
                if r is not None:
                    res.throughput(system, value, analyze, plan.jobs, r)
    for system in systems:
        r = _attempt(runner, res, system, pythons.get(system.key), "latency", samples=plan.samples)
        if r is not None:
            res.latency(system, r, plan.samples)


def _notes(systems: Sequence[System]) -> None:
    print("what stays in the database once a job has completed:", flush=True)
    for system in systems:
        print(f"  {system.label:<14} {system.history}", flush=True)


def _print_spreads(spread_of: dict[str, dict[str, float]]) -> None:
    print(f"{'figure':<52} {'median':>10} {'min':>10} {'max':>10} {'runs':>5}", flush=True)
    for name, s in spread_of.items():
        print(
            f"{name:<52} {s['median']:>10,.0f} {s['min']:>10,.0f} {s['max']:>10,.0f} "
            f"{s['runs']:>5.0f}",
            flush=True,
        )


def _plan(args: argparse.Namespace) -> Plan:
    plan = QUICK if args.quick else FULL
    if args.jobs is not None:
        plan = replace(plan, jobs=args.jobs)
    if args.repeat is not None:
        plan = replace(plan, repeat=args.repeat)
    if args.samples is not None:
        plan = replace(plan, samples=args.samples)
    return plan


def _history_note(systems: Sequence[System], history: int) -> dict[str, str]:
    """Which systems get ``history`` seeded finished jobs, said once; the JSON's note."""
    if not history:
        return {}
    note = {}
    for system in systems:
        if system.key in HISTORY_SYSTEMS:
            note[system.key] = f"{history} finished jobs seeded"
        else:
            note[system.key] = (
                "not seeded: awa keeps no row per finished job (batched receipts, then "
                "truncated segments counted in rollups), so there is no history to seed"
            )
        print(f"history: {system.label}: {note[system.key]}", flush=True)
    return note


def _parent(args: argparse.Namespace) -> None:
    wanted = set(args.systems.split(",")) if args.systems else {s.key for s in SYSTEMS}
    if args.sustained:
        wanted &= set(SUSTAINED_SYSTEMS)
    systems = [s for s in SYSTEMS if s.key in wanted]
    problem = _server_reachable(args.dsn)
    if problem:
        raise SystemExit(problem)
    results = Results()
    pythons = _pythons(systems, results)
    runner = Runner(args.dsn, history=args.history)
    if args.sustained:
        _sustained(args, systems, pythons, runner, results)
        return
    plan = _plan(args)
    runs = {len(plan.configs.get(s.key, ())) * plan.repeat for s in systems}
    print(
        f"underway vs oban-py, PgQueuer, awa, Procrastinate on PostgreSQL ({args.dsn}): "
        f"{plan.jobs:,} no-op jobs, {'/'.join(map(str, sorted(runs)))} runs per system "
        f"({plan.repeat} per configuration; figures are medians), latency over "
        f"{plan.samples} single enqueues",
        flush=True,
    )
    history = _history_note(systems, args.history)
    _measure(plan, systems, pythons, runner, results)
    figures, spread_of = results.settle()
    _print_spreads(spread_of)
    _notes(systems)
    summary = {
        "figures": {k: round(v, 2) for k, v in sorted(figures.items())},
        "ratios": ratios(figures),
        "best": results.best,
        "spread": spread_of,
        "versions": results.versions,
        "missing": results.missing,
        "jobs": plan.jobs,
        "repeat": plan.repeat,
        "history": history,
        "latency_samples": plan.samples,
    }
    print(json.dumps(summary), flush=True)


# -- sustained mode -------------------------------------------------------------------------------


DEAD_TUPLES = """
SELECT coalesce(sum(n_dead_tup), 0), coalesce(sum(n_live_tup), 0)
  FROM pg_stat_user_tables WHERE relname LIKE ANY(%s)
"""
WAITING_SQL = {
    "underway": "SELECT count(*) FROM (SELECT 1 FROM underway_jobs WHERE state = 'available' "
    "LIMIT 100000) AS w",
    "pgqueuer": "SELECT count(*) FROM (SELECT 1 FROM pgqueuer WHERE status = 'queued' "
    "LIMIT 100000) AS w",
}
# The jobs tables whose dead tuples are summed: every relation named underway_jobs* (the
# table, or its partitions if it is partitioned); PgQueuer's queue table and its log (a
# finished job's row is deleted from the first and three rows are appended to the second).
JOB_TABLES = {"underway": ["underway\\_jobs%"], "pgqueuer": ["pgqueuer", "pgqueuer\\_log"]}


@dataclass
class Stream:
    """The samples of one system's sustained run."""

    system: System
    setting: str
    samples: list[dict[str, float]] = field(default_factory=list)

    def minute(self, last: bool) -> dict[str, float]:
        """Medians of the first (or last) minute's samples."""
        per_minute = max(1, round(60 / SAMPLE_EVERY))
        chosen = self.samples[-per_minute:] if last else self.samples[:per_minute]
        out: dict[str, float] = {}
        for key in ("per_s", "claim_p50_ms", "claim_p95_ms", "dead_tup", "waiting"):
            values = [float(s[key]) for s in chosen if s.get(key) == s.get(key)]
            if values:
                out[key] = round(spread(values).median, 1)
        return out


def _stats(url: str, system: System) -> tuple[int, int, int]:
    """Dead and live tuples of the system's jobs tables, and its waiting jobs (bounded)."""
    import psycopg

    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        row = conn.execute(DEAD_TUPLES, (JOB_TABLES[system.key],)).fetchone()
        waiting = conn.execute(WAITING_SQL[system.key]).fetchone()
    dead, live = (int(row[0]), int(row[1])) if row else (0, 0)
    return dead, live, int(waiting[0]) if waiting else 0


def _sustain_one(
    system: System, python: Path, runner: Runner, minutes: float, value: int
) -> Stream:
    """Run one system for ``minutes`` under the producer; print and return its samples."""
    db = runner.db_name(system)
    url = db_url(runner.dsn, db)
    stream = Stream(system, f"{system.knob}={value}")
    wanted = max(1, round(minutes * 60 / SAMPLE_EVERY))
    worker = Child(runner.argv(system, python, db, "sustained", **{system.knob: value}), stdin=True)
    producer: Child | None = None
    try:
        ready = worker.next_json(runner.timeout())
        if ready is None or "ready" not in ready:
            raise ChildFailed(f"sustained setup failed:\n    {worker.tail()}")
        producer = Child(runner.argv(system, python, db, "producer"), stdin=True)
        filled = producer.next_json(120)
        if filled is None or "filled" not in filled:
            raise ChildFailed(f"the producer failed:\n    {producer.tail()}")
        worker.send("go")
        print(
            f"{system.label} ({stream.setting}): {minutes:g} min of 1 ms jobs, the producer "
            f"keeping {WAITING_TARGET:,} waiting",
            flush=True,
        )
        print(
            f"{'system':<10} {'t s':>6} {'done':>7} {'jobs/s':>8} {'claim p50':>10} "
            f"{'p95 ms':>8} {'waiting':>8} {'dead tup':>10} {'live tup':>11}",
            flush=True,
        )
        while len(stream.samples) < wanted:
            got = worker.next_json(SAMPLE_EVERY * 3)
            if got is None:
                raise ChildFailed(f"the worker exited:\n    {worker.tail()}")
            if "sample" not in got:
                continue
            if producer.proc.poll() is not None:
                raise ChildFailed(f"the producer exited:\n    {producer.tail()}")
            sample = dict(got["sample"])
            dead, live, waiting = _stats(url, system)
            sample.update(dead_tup=dead, live_tup=live, waiting=waiting)
            stream.samples.append(sample)
            print(
                f"{system.key:<10} {sample['t']:>6.0f} {sample['completed']:>7,} "
                f"{sample['per_s']:>8,.0f} {sample['claim_p50_ms']:>10,.1f} "
                f"{sample['claim_p95_ms']:>8,.1f} {waiting:>8,} {dead:>10,} {live:>11,}",
                flush=True,
            )
        producer.close()
        worker.send("stop")
        done = worker.finish(120)
        if "version" in done:
            stream.setting += f" ({done['version']}, Python {done['python']}, {done['loop']})"
        return stream
    finally:
        if producer is not None:
            producer.close()
        worker.close()
        runner.drop(python, system, db)


def _sustained(
    args: argparse.Namespace,
    systems: Sequence[System],
    pythons: dict[str, Path],
    runner: Runner,
    results: Results,
) -> None:
    """Each sustained system in turn, fresh database each, same producer and sampling."""
    print(
        f"sustained: underway vs PgQueuer on PostgreSQL ({args.dsn}), {args.minutes:g} min each, "
        f"one after the other, a sample every {SAMPLE_EVERY:.0f} s",
        flush=True,
    )
    history = _history_note(systems, args.history)
    streams: dict[str, Stream] = {}
    for system in systems:
        python = pythons.get(system.key)
        if python is None or system.key in results.missing:
            continue
        value = SUSTAINED_CONFIG[system.key]
        if system.key == "underway" and args.sustained_concurrency:
            value = args.sustained_concurrency
        if system.key == "pgqueuer" and args.sustained_batch_size:
            value = args.sustained_batch_size
        try:
            streams[system.key] = _sustain_one(system, python, runner, args.minutes, value)
        except (ChildFailed, subprocess.TimeoutExpired) as exc:
            results.missing[system.key] = f"sustained run failed: {exc}"
            print(f"{system.label}: sustained run failed: {exc}", flush=True)
    out: dict[str, Any] = {}
    for key, stream in streams.items():
        out[key] = {
            "setting": stream.setting,
            "first_minute": stream.minute(last=False),
            "last_minute": stream.minute(last=True),
            "samples": stream.samples,
        }
        print(
            f"{stream.system.label:<10} first minute {out[key]['first_minute']}   "
            f"last minute {out[key]['last_minute']}",
            flush=True,
        )
    figures = {
        f"{key}_{when}_per_s": out[key][f"{when}_minute"].get("per_s", 0.0)
        for key in out
        for when in ("first", "last")
    }
    pairs = {
        "sustained_hold": ("underway_last_per_s", "underway_first_per_s"),
        "sustained_vs_pgqueuer": ("underway_last_per_s", "pgqueuer_last_per_s"),
        "pgqueuer_sustained_hold": ("pgqueuer_last_per_s", "pgqueuer_first_per_s"),
    }
    summary = {
        "mode": "sustained",
        "ratios": shared_ratios(figures, pairs),
        "figures": figures,
        "systems": out,
        "missing": results.missing,
        "minutes": args.minutes,
        "history": history,
        "waiting_target": WAITING_TARGET,
        "job_sleep_s": JOB_SLEEP,
    }
    print(json.dumps(summary), flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``python -m bench.jobs_postgres``."""
    p = argparse.ArgumentParser(
        prog="python -m bench.jobs_postgres", description=__doc__.split("\n")[0]
    )
    p.add_argument("--quick", action="store_true", help="fewer jobs and configurations")
    p.add_argument("--jobs", type=int, default=None, help="jobs per measurement")
    p.add_argument("--repeat", type=int, default=None, help="runs per configuration (median kept)")
    p.add_argument("--samples", type=int, default=None, help="single enqueues timed for latency")
    p.add_argument("--dsn", default=ADMIN_DSN, help="server to create the databases on")
    p.add_argument(
        "--systems",
        default=None,
        help="comma-separated subset of: " + ",".join(s.key for s in SYSTEMS),
    )
    p.add_argument(
        "--history",
        type=int,
        default=0,
        help="seed this many finished jobs into each system's tables before measuring",
    )
    p.add_argument(
        "--sustained", action="store_true", help="underway and PgQueuer under a steady stream"
    )
    p.add_argument("--minutes", type=float, default=5.0, help="sustained: minutes per system")
    p.add_argument(
        "--sustained-concurrency",
        type=int,
        default=None,
        help=f"sustained: underway's queue limit (default {SUSTAINED_CONFIG['underway']})",
    )
    p.add_argument(
        "--sustained-batch-size",
        type=int,
        default=None,
        help=f"sustained: PgQueuer's batch_size (default {SUSTAINED_CONFIG['pgqueuer']})",
    )
    _parent(p.parse_args(argv))


if __name__ == "__main__":
    main()
