"""Huey (SqliteHuey) side of ``bench.jobs_sqlite``; runs in Huey's own venv.

Usage:
    python _peer_huey.py --jobs 10000 --workers 1 --db /tmp/x/huey.db

Phase 1 enqueues N no-op tasks by calling the task (Huey has no bulk enqueue: one INSERT
per call, autocommit, WAL: Huey's defaults). Phase 2 starts a consumer in this process
(``Consumer.start()``: worker threads plus the scheduler thread) and times until the
``SIGNAL_COMPLETE`` handler has fired N times. The database file must not exist yet.
Prints readable lines, then one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time

import huey
from huey import SqliteHuey
from huey.signals import SIGNAL_COMPLETE


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--jobs", type=int, default=10_000)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--worker-type", default="thread", choices=["thread", "greenlet", "process"])
    p.add_argument("--db", required=True)
    p.add_argument("--timeout", type=float, default=600.0)
    return p.parse_args()


def main() -> None:
    args = _args()
    if os.path.exists(args.db):
        raise SystemExit(f"{args.db} exists; every run needs a fresh database file")
    h = SqliteHuey("bench", filename=args.db)
    done = 0
    done_lock = threading.Lock()
    all_done = threading.Event()

    @h.signal(SIGNAL_COMPLETE)
    def on_complete(signal: object, task: object, *a: object, **kw: object) -> None:
        nonlocal done
        with done_lock:
            done += 1
            if done >= args.jobs:
                all_done.set()

    @h.task()
    def noop() -> None:
        return None

    t0 = time.perf_counter()
    for _ in range(args.jobs):
        noop()
    t_enq = time.perf_counter() - t0
    pending = h.pending_count()
    if pending != args.jobs:
        raise SystemExit(f"expected {args.jobs} pending tasks, found {pending}")

    consumer = h.create_consumer(workers=args.workers, worker_type=args.worker_type, periodic=False)
    t1 = time.perf_counter()
    consumer.start()
    finished = all_done.wait(timeout=args.timeout)
    t_proc = time.perf_counter() - t1
    consumer.stop(graceful=True)

    print(f"huey {huey.__version__} jobs={args.jobs} workers={args.workers} {args.worker_type}")
    print(f"enqueue: {t_enq:.3f}s {args.jobs / t_enq:,.0f}/s")
    print(f"process: {t_proc:.3f}s {args.jobs / t_proc:,.0f}/s (completed={done})")
    out = {
        "version": huey.__version__,
        "jobs": args.jobs,
        "workers": args.workers,
        "enqueue_s": t_enq,
        "process_s": t_proc,
        "completed": done,
        "finished": finished,
    }
    print(json.dumps(out), flush=True)
    os._exit(0 if finished else 1)


if __name__ == "__main__":
    main()
