"""underway on PostgreSQL with a long history: the hot path and housekeeping, side by side.

Usage::

    python -m bench.history                         # 10,000,000 finished jobs, 3 runs each
    python -m bench.history --history 1000000 --repeat 2 --jobs 10000

Two databases are measured in one run: one empty, one seeded with ``--history`` completed
jobs (finish times spread over the past 20 hours, as a day's retention leaves them; seeded
with ``INSERT ... SELECT FROM generate_series`` in chunks, then ``ANALYZE``). On each,
``--repeat`` times: ``enqueue_many`` of ``--jobs`` no-op jobs, then a node with queue limit
100 runs until every one is completed. Measured:

- ``processed_per_s``: jobs over the time until none is waiting or running (counted in the
  live partition, which holds only those);
- ``claim_ms``: the duration of every claim in the running node (``fetch.stop`` telemetry
  events: the statement, decoding its rows, and waiting for the busy event loop);
- ``claim_alone_ms``: the claim alone, 100 claims of 100 jobs each from a queue no node
  runs, one after the other on an idle engine (the statement's own cost);
- ``prune_ms``: 50 prune batches with nothing due (the normal state with a day's retention),
  each timed around the engine call;
- the live partition's dead rows at the end of the run;
- with the history, once the runs are done: the retention cut to half the history, and the
  pruner's batches (``BATCH`` rows each, as it makes them) timed until the older half is
  gone (``purge``: rows deleted per second, batch p50/p95/max).

Figures are medians over the runs (p50/p95 of the statement durations pooled over the runs).
The last line is JSON with ``ratios.history_vs_empty`` (processing throughput with the
history over that without) and the p95s. Databases are created on ``--dsn`` and dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Mapping
from typing import Any

import psycopg

from underway import _telemetry as telemetry
from underway.jobs import Jobs, JobState
from underway.jobs._runtime.pruner import BATCH

DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
QUEUE = "bench"
PROBE = "probe"  # a queue no node runs: the claims of the probe
PROBES = 100
LIMIT = 100
CHUNK = 1_000_000
HOURS = 20.0
SEED = """
INSERT INTO underway_jobs (state, queue, worker, args, attempt, inserted_at, scheduled_at,
                           attempted_at, attempted_by, completed_at)
SELECT 'completed', 'bench', 'bench.noop', jsonb_build_object('t', g), 1,
       f - interval '120 ms', f - interval '120 ms', f - interval '4 ms', 'history-node', f
  FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS g,
       LATERAL (SELECT now() - (%(hours)s * interval '1 hour') * (1 - g::float8 / %(n)s))
       AS t(f)
"""


def _p(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _database(dsn: str, name: str) -> str:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return dsn.rsplit("/", 1)[0] + "/" + name


def _drop(dsn: str, name: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _seed(url: str, n: int) -> None:
    t0 = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        for first in range(1, n + 1, CHUNK):
            last = min(n, first + CHUNK - 1)
            conn.execute(SEED, {"first": first, "last": last, "n": n, "hours": HOURS})
            print(f"  seeded {last:,} of {n:,} ({time.perf_counter() - t0:.0f} s)", flush=True)
        conn.execute("SELECT setval('underway_jobs_id_seq', %s)", (n + 1,))
        conn.execute("ANALYZE")


def _live(url: str) -> tuple[int, int]:
    """(waiting or running jobs, dead rows) of the live partition."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM underway_jobs WHERE state IN "
            "('available', 'executing') AND queue = 'bench'), "
            "(SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'underway_jobs_live')"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1] or 0)


async def _probe(jobs: Jobs) -> list[float]:
    """The claim statement alone: 100 claims of 100 jobs each, on an otherwise idle engine."""
    probe = jobs.worker(queue=PROBE, name="bench.probe")(_nothing)
    await jobs.enqueue_many([probe.new({}) for _ in range(PROBES * 100)])
    durations = []
    for _ in range(PROBES):
        t0 = time.perf_counter()
        claimed = await jobs.engine.fetch(PROBE, 100, "probe-node", time.time())
        durations.append((time.perf_counter() - t0) * 1000)
        assert len(claimed) == 100, len(claimed)
    await jobs.engine.close()
    return durations


async def _nothing(job: Any) -> None:
    return None


async def _run(url: str, n: int) -> dict[str, Any]:
    claims: list[float] = []

    def on_event(event: str, measurements: Mapping[str, Any], _: Mapping[str, Any]) -> None:
        if event == "fetch.stop":
            claims.append(measurements["duration"] * 1000)

    jobs = Jobs(url, queues={QUEUE: LIMIT})

    @jobs.worker(queue=QUEUE, name="bench.noop")
    async def noop(job: Any) -> None:
        return None

    await jobs.enqueue_many([noop.new({}) for _ in range(n)])
    token = telemetry.attach(on_event, prefix="fetch.")
    try:
        t0 = time.perf_counter()
        async with jobs:
            while (await asyncio.to_thread(_live, url))[0]:
                await asyncio.sleep(0.02)
            elapsed = time.perf_counter() - t0
            prunes = []
            for _ in range(50):
                p0 = time.perf_counter()
                deleted = await jobs.engine.prune({JobState.COMPLETED: 86_400.0}, time.time(), 1000)
                prunes.append((time.perf_counter() - p0) * 1000)
                assert deleted == 0, deleted
    finally:
        telemetry.detach(token)
    return {
        "processed_per_s": n / elapsed,
        "claims_ms": claims,
        "probes_ms": await _probe(jobs),
        "prunes_ms": prunes,
        "dead_rows": (await asyncio.to_thread(_live, url))[1],
    }


async def _purge(url: str) -> dict[str, Any]:
    """Retention cut to half the history: the pruner deletes the older half, batch by batch.

    Each batch is timed around the engine call, as the pruner makes it; nothing else runs.
    """
    jobs = Jobs(url, queues={QUEUE: LIMIT})
    age = HOURS / 2 * 3600
    batches: list[float] = []
    deleted = 0
    t0 = time.perf_counter()
    while True:
        b0 = time.perf_counter()
        n = await jobs.engine.prune({JobState.COMPLETED: age}, time.time(), BATCH)
        batches.append((time.perf_counter() - b0) * 1000)
        deleted += n
        if n < BATCH:
            break
    elapsed = time.perf_counter() - t0
    await jobs.engine.close()
    return {
        "deleted": deleted,
        "per_s": round(deleted / elapsed),
        "batch_p50_ms": round(_p(batches, 0.5), 2),
        "batch_p95_ms": round(_p(batches, 0.95), 2),
        "batch_max_ms": round(max(batches), 2),
    }


def main(argv: list[str] | None = None) -> int:
    """Measure both databases and print the report; the last line is JSON."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--history", type=int, default=10_000_000)
    ap.add_argument("--jobs", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dsn", default=DSN)
    args = ap.parse_args(argv)
    out: dict[str, dict[str, Any]] = {}
    for label, history in (("empty", 0), ("history", args.history)):
        name = f"bench_history_{label}"
        url = _database(args.dsn, name)
        try:
            Jobs(url, queues={QUEUE: LIMIT}).migrate_sync()
            if history:
                _seed(url, history)
            runs = [asyncio.run(_run(url, args.jobs)) for _ in range(args.repeat)]
            purge = asyncio.run(_purge(url)) if history else None
        finally:
            _drop(args.dsn, name)
        claims = [c for r in runs for c in r["claims_ms"]]
        prunes = [p for r in runs for p in r["prunes_ms"]]
        probes = [p for r in runs for p in r["probes_ms"]]
        rates = [r["processed_per_s"] for r in runs]
        out[label] = {
            "history": history,
            "processed_per_s": round(statistics.median(rates)),
            "processed_min_max": [round(min(rates)), round(max(rates))],
            "claim_p50_ms": round(_p(claims, 0.5), 2),
            "claim_p95_ms": round(_p(claims, 0.95), 2),
            "claim_alone_p50_ms": round(_p(probes, 0.5), 2),
            "claim_alone_p95_ms": round(_p(probes, 0.95), 2),
            "prune_p50_ms": round(_p(prunes, 0.5), 3),
            "prune_p95_ms": round(_p(prunes, 0.95), 3),
            "dead_rows_at_end": [r["dead_rows"] for r in runs],
        }
        if purge is not None:
            out[label]["purge"] = purge
        print(f"{label:>8} ({history:,} finished): {out[label]}", flush=True)
    ratio = out["history"]["processed_per_s"] / out["empty"]["processed_per_s"]
    print(
        json.dumps(
            {
                "ratios": {"history_vs_empty": round(ratio, 3)},
                "figures": out,
                "jobs": args.jobs,
                "repeat": args.repeat,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
