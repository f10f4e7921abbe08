"""underway.jobs against Huey (SqliteHuey), both on a SQLite file, side by side in one run.

Usage::

    python -m bench.jobs_sqlite            # 10,000 jobs, 3 configurations each, 3 runs each
    python -m bench.jobs_sqlite --quick    # 5,000 jobs, each side's best configuration, 3 runs

Every measurement runs in a fresh subprocess on a fresh database file in a temporary
folder; Huey runs in its own venv (``bench/.venvs/huey``, created with pip on first use).
Every figure gets the same number of runs on both sides and is the median of its runs (min
and max are reported too); each side is reported in its configuration with the best median.
The output is one readable line per measurement and, as the last line, one JSON object
with the figures (jobs per second) and the ratios of medians underway / Huey.
``bench/README.md`` says what each figure means.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench._harness import Spread, best_median, spreads

if TYPE_CHECKING:
    from underway.jobs import Jobs

ROOT = Path(__file__).resolve().parent.parent
HUEY_SCRIPT = Path(__file__).resolve().parent / "_peer_huey.py"
POLL_EVERY = 0.02
CHILD_TIMEOUT = 600.0


@dataclass(frozen=True)
class Plan:
    """What one bench run measures.

    underway's async and sync workers and Huey each get the same number of configurations,
    and every configuration (and every underway insert kind) ``repeat`` runs per
    configuration slot, so each figure has as many runs as its Huey counterpart.
    """

    jobs: int
    concurrency: tuple[int, ...]
    sync_concurrency: tuple[int, ...]
    huey_workers: tuple[int, ...]
    repeat: int

    def __post_init__(self) -> None:
        sizes = {len(self.concurrency), len(self.sync_concurrency), len(self.huey_workers)}
        if len(sizes) != 1:
            raise ValueError(f"unequal numbers of configurations: {self}")


FULL = Plan(10_000, (10, 50, 100), (10, 50, 100), (1, 2, 4), repeat=3)
# One configuration per side: the one each side's median is best at in the full run here
# (underway concurrency 100 for async and sync workers, Huey one worker thread).
QUICK = Plan(5_000, (100,), (100,), (1,), repeat=3)


# -- children: each runs alone in a fresh process ----------------------------------------------


def _jobs_app(db: str, concurrency: int = 10) -> Jobs:
    from underway.jobs import Jobs

    return Jobs(f"sqlite:///{db}", queues={"default": concurrency})


def _noop_worker(jobs: Jobs, *, sync: bool, expected: int) -> dict[str, float]:
    """Register a no-op worker; the returned dict gets ``ran_at`` when the last job ran."""
    seen = itertools.count(1)
    marks: dict[str, float] = {}

    def note() -> None:
        if next(seen) == expected:
            marks["ran_at"] = time.perf_counter()

    if sync:

        @jobs.worker(name="bench.noop")
        def noop_sync(job: Any) -> None:
            note()

    else:

        @jobs.worker(name="bench.noop")
        async def noop(job: Any) -> None:
            note()

    return marks


async def _insert_bulk(db: str, n: int) -> dict[str, Any]:
    jobs = _jobs_app(db)
    _noop_worker(jobs, sync=False, expected=n)
    worker = jobs.workers["bench.noop"]
    jobs.migrate_sync()
    t0 = time.perf_counter()
    specs = [worker.new() for _ in range(n)]
    t_specs = time.perf_counter() - t0
    inserted = await jobs.enqueue_many(specs)
    elapsed = time.perf_counter() - t0
    await jobs.engine.close()
    assert len(inserted) == n
    return {"seconds": elapsed, "specs_seconds": t_specs, "available": _count(db, "available")}


async def _insert_one(db: str, n: int) -> dict[str, Any]:
    jobs = _jobs_app(db)
    _noop_worker(jobs, sync=False, expected=n)
    worker = jobs.workers["bench.noop"]
    jobs.migrate_sync()
    t0 = time.perf_counter()
    for _ in range(n):
        await worker.enqueue()
    elapsed = time.perf_counter() - t0
    await jobs.engine.close()
    return {"seconds": elapsed, "available": _count(db, "available")}


def _insert_one_sync(db: str, n: int) -> dict[str, Any]:
    jobs = _jobs_app(db)
    _noop_worker(jobs, sync=False, expected=n)
    worker = jobs.workers["bench.noop"]
    jobs.migrate_sync()
    t0 = time.perf_counter()
    for _ in range(n):
        worker.enqueue_sync()
    elapsed = time.perf_counter() - t0
    asyncio.run(jobs.engine.close())
    return {"seconds": elapsed, "available": _count(db, "available")}


class CompletedWatcher(threading.Thread):
    """Counts ``completed`` rows on its own connection every ``every`` seconds.

    The time recorded is that of the first poll that saw ``expected`` completed jobs, so
    a figure never counts a job whose ack is still buffered in memory.
    """

    def __init__(self, db: str, expected: int, every: float = POLL_EVERY) -> None:
        super().__init__(name="completed-watcher", daemon=True)
        self.db = db
        self.expected = expected
        self.every = every
        self.done = threading.Event()
        self.done_at = 0.0
        self.polls = 0
        self._halt = threading.Event()

    def run(self) -> None:
        conn = sqlite3.connect(self.db, timeout=30, isolation_level=None)
        try:
            while not self._halt.wait(self.every):
                self.polls += 1
                (n,) = conn.execute(
                    "SELECT COUNT(*) FROM underway_jobs WHERE state = 'completed'"
                ).fetchone()
                if n >= self.expected:
                    self.done_at = time.perf_counter()
                    self.done.set()
                    return
        finally:
            conn.close()

    def cancel(self) -> None:
        """Stop polling."""
        self._halt.set()


async def _process(db: str, n: int, concurrency: int, *, sync: bool) -> dict[str, Any]:
    jobs = _jobs_app(db, concurrency)
    marks = _noop_worker(jobs, sync=sync, expected=n)
    worker = jobs.workers["bench.noop"]
    await jobs.enqueue_many([worker.new() for _ in range(n)])
    assert _count(db, "available") == n
    watcher = CompletedWatcher(db, n)
    watcher.start()
    t0 = time.perf_counter()
    async with jobs:
        finished = await asyncio.to_thread(watcher.done.wait, CHILD_TIMEOUT - 60)
    watcher.cancel()
    if not finished:
        raise SystemExit(f"only {_count(db, 'completed')} of {n} jobs completed in time")
    return {
        "seconds": watcher.done_at - t0,
        "ran_seconds": marks.get("ran_at", float("nan")) - t0,
        "polls": watcher.polls,
        "completed": _count(db, "completed"),
    }


def _count(db: str, state: str) -> int:
    conn = sqlite3.connect(db, timeout=30)
    try:
        sql = "SELECT COUNT(*) FROM underway_jobs WHERE state = ?"
        return int(conn.execute(sql, (state,)).fetchone()[0])
    finally:
        conn.close()


def _child(args: argparse.Namespace) -> None:
    db, n = args.db, args.jobs
    kind = args.child
    if kind == "insert":
        out = asyncio.run(_insert_bulk(db, n))
    elif kind == "insert-one":
        out = asyncio.run(_insert_one(db, n))
    elif kind == "insert-one-sync":
        out = _insert_one_sync(db, n)
    else:
        out = asyncio.run(_process(db, n, args.concurrency, sync=kind == "process-sync"))
    print(json.dumps(out), flush=True)


# -- the parent: runs every configuration and reports ------------------------------------------


@dataclass
class Runs:
    """Every run's jobs/s per figure name."""

    rates: dict[str, list[float]]

    def add(self, name: str, jobs: int, seconds: float) -> float:
        """Record one run of figure ``name`` and return its rate."""
        rate = jobs / seconds
        self.rates.setdefault(name, []).append(rate)
        return rate


def _run(argv: Sequence[str]) -> dict[str, Any]:
    done = subprocess.run(
        list(argv), cwd=ROOT, capture_output=True, text=True, timeout=CHILD_TIMEOUT, check=False
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def _underway(kind: str, db: Path, jobs: int, concurrency: int = 10) -> dict[str, Any]:
    argv = [sys.executable, "-m", "bench.jobs_sqlite", "--child", kind, "--db", str(db)]
    return _run([*argv, "--jobs", str(jobs), "--concurrency", str(concurrency)])


def _measurements(plan: Plan, huey_python: Path) -> list[Callable[[Path, Runs], None]]:
    """One callable per configuration; each takes a fresh folder and records its figures."""
    n = plan.jobs

    def huey(workers: int) -> Callable[[Path, Runs], None]:
        def measure(tmp: Path, best: Runs) -> None:
            argv = [str(huey_python), str(HUEY_SCRIPT), "--db", str(tmp / "huey.db")]
            r = _run([*argv, "--jobs", str(n), "--workers", str(workers)])
            ins = best.add("huey_inserted_per_s", n, r["enqueue_s"])
            proc = best.add(f"huey_processed_per_s_w{workers}", n, r["process_s"])
            print(
                f"huey {r['version']:<8} workers={workers} thread    enqueue one by one "
                f"{ins:>9,.0f}/s   process {proc:>9,.0f}/s",
                flush=True,
            )

        return measure

    def process(concurrency: int, *, sync: bool) -> Callable[[Path, Runs], None]:
        kind, label = ("process-sync", "sync") if sync else ("process", "async")
        name = f"underway_processed_{'sync_' if sync else ''}per_s_c{concurrency}"

        def measure(tmp: Path, best: Runs) -> None:
            r = _underway(kind, tmp / "underway.db", n, concurrency)
            rate = best.add(name, n, r["seconds"])
            print(
                f"underway process {label:<5} concurrency={concurrency:<4} {rate:>9,.0f}/s "
                f"completed in DB  (worker ran all after {r['ran_seconds']:.3f}s, "
                f"completed after {r['seconds']:.3f}s)",
                flush=True,
            )

        return measure

    def insert(kind: str, name: str, label: str) -> Callable[[Path, Runs], None]:
        def measure(tmp: Path, best: Runs) -> None:
            r = _underway(kind, tmp / "underway.db", n)
            if r["available"] != n:
                raise RuntimeError(f"{kind}: {r['available']} of {n} jobs in the table")
            rate = best.add(name, n, r["seconds"])
            print(f"underway {label:<40} {rate:>9,.0f}/s", flush=True)

        return measure

    # Huey's insert figure comes from every Huey run (one per configuration), so each
    # underway insert kind runs once per configuration too: as many runs on both sides.
    out = [
        insert("insert", "underway_inserted_per_s", "insert enqueue_many (one call)"),
        insert(
            "insert-one", "underway_inserted_one_by_one_per_s", "insert await enqueue, one by one"
        ),
        insert(
            "insert-one-sync",
            "underway_inserted_one_by_one_sync_per_s",
            "insert enqueue_sync, one by one",
        ),
    ] * len(plan.huey_workers)
    out += [huey(w) for w in plan.huey_workers]
    out += [process(c, sync=False) for c in plan.concurrency]
    out += [process(c, sync=True) for c in plan.sync_concurrency]
    return out


def _summary(plan: Plan, rates: dict[str, list[float]]) -> dict[str, Any]:
    """Medians (min, max) of every figure, each side's best configuration by median, and the
    ratios of medians."""
    spread_of: dict[str, Spread] = spreads(rates)
    best: dict[str, str | None] = {}
    for key, head, prefix in (
        ("underway", "underway_processed_per_s", "underway_processed_per_s_c"),
        ("underway_sync", "underway_processed_sync_per_s", "underway_processed_sync_per_s_c"),
        ("huey", "huey_processed_per_s", "huey_processed_per_s_w"),
    ):
        found = best_median(rates, prefix)
        best[key] = None if found is None else found[0].rsplit("_", 1)[-1]
        if found is not None:
            spread_of[head] = found[1]
    figures = {k: round(s.median, 1) for k, s in sorted(spread_of.items())}
    for head in (
        "underway_processed_per_s",
        "underway_processed_sync_per_s",
        "huey_processed_per_s",
        "underway_inserted_per_s",
        "huey_inserted_per_s",
    ):
        if head in spread_of:
            figures[f"{head}_min"] = round(spread_of[head].low, 1)
            figures[f"{head}_max"] = round(spread_of[head].high, 1)

    def ratio(a: str, b: str) -> float | None:
        x, y = figures.get(a), figures.get(b)
        return None if not x or not y else round(x / y, 2)

    print(f"{'figure':<46} {'median':>10} {'min':>10} {'max':>10} {'runs':>5}", flush=True)
    for name, s in sorted(spread_of.items()):
        print(
            f"{name:<46} {s.median:>10,.0f} {s.low:>10,.0f} {s.high:>10,.0f} {s.runs:>5}",
            flush=True,
        )
    return {
        "figures": dict(sorted(figures.items())),
        "ratios": {
            "processed_vs_huey": ratio("underway_processed_per_s", "huey_processed_per_s"),
            "inserted_vs_huey": ratio("underway_inserted_per_s", "huey_inserted_per_s"),
            "inserted_one_by_one_vs_huey": ratio(
                "underway_inserted_one_by_one_per_s", "huey_inserted_per_s"
            ),
            "processed_sync_vs_huey": ratio(
                "underway_processed_sync_per_s", "huey_processed_per_s"
            ),
        },
        "best": best,
        "spread": {k: s.as_dict(1) for k, s in sorted(spread_of.items())},
        "jobs": plan.jobs,
        "repeat": plan.repeat,
    }


def _parent(args: argparse.Namespace) -> None:
    from bench._venv import peer_python

    plan = QUICK if args.quick else FULL
    if args.jobs is not None:
        plan = Plan(
            args.jobs,
            plan.concurrency,
            plan.sync_concurrency,
            plan.huey_workers,
            args.repeat or plan.repeat,
        )
    elif args.repeat is not None:
        plan = Plan(
            plan.jobs, plan.concurrency, plan.sync_concurrency, plan.huey_workers, args.repeat
        )
    huey_python = peer_python("huey", ["huey"], probe="import huey")
    print(
        f"underway vs Huey on SQLite: {plan.jobs:,} no-op jobs, "
        f"{plan.repeat * len(plan.huey_workers)} runs per figure ({plan.repeat} per "
        f"configuration; figures are medians), Python {sys.version.split()[0]}",
        flush=True,
    )
    best = Runs({})
    for _ in range(plan.repeat):
        for measure in _measurements(plan, huey_python):
            with tempfile.TemporaryDirectory(prefix="underway-bench-") as tmp:
                measure(Path(tmp), best)
    print(json.dumps(_summary(plan, best.rates)), flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``python -m bench.jobs_sqlite``."""
    p = argparse.ArgumentParser(
        prog="python -m bench.jobs_sqlite", description=__doc__.split("\n")[0]
    )
    p.add_argument("--quick", action="store_true", help="fewer jobs and configurations")
    p.add_argument("--jobs", type=int, default=None, help="jobs per measurement")
    p.add_argument("--repeat", type=int, default=None, help="runs per configuration (median kept)")
    p.add_argument(
        "--child",
        help=argparse.SUPPRESS,
        choices=["insert", "insert-one", "insert-one-sync", "process", "process-sync"],
    )
    p.add_argument("--db", help=argparse.SUPPRESS)
    p.add_argument("--concurrency", type=int, default=10, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        _child(args)
    else:
        _parent(args)


if __name__ == "__main__":
    main()
