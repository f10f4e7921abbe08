"""Jobs moving between the live and the done partition while other statements wait for them.

PostgreSQL fails a statement that waited for a row another transaction moved to another
partition (``tuple to be locked was already moved``, a serialization failure) instead of
following it. The engine runs such a statement again: by then the job is where the move
left it, and the statement sees it there.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from underway.jobs.engines.postgres import PostgresEngine
from underway.jobs.job import JobSpec, JobState

from ..pg import Schemas, schemas

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg() -> Iterator[Schemas]:
    """Fresh schemas in the test database, dropped after the test."""
    with schemas() as made:
        yield made


def _waiting_for_lock(pg: Schemas) -> bool:
    with pg.connect() as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND query LIKE '%underway_jobs%' AND datname = current_database()"
        ).fetchone()
    return bool(row and row[0])


def test_a_cancel_that_waited_for_a_job_finishing_meanwhile_sees_it_finished(
    pg: Schemas,
) -> None:
    engine = PostgresEngine(pg.url())
    try:
        [job] = engine.insert_sync([JobSpec(worker="w", queue="q", args={}, args_json="{}")])
        with pg.connect(autocommit=False) as mover:
            mover.execute(f'SET search_path TO "{engine.schema}"')
            # an ack in flight: the job moves to the done partition, not yet committed
            mover.execute(
                "UPDATE underway_jobs SET state = 'completed', completed_at = now() WHERE id = %s",
                (job.id,),
            )
            result: dict[str, Any] = {}

            def cancel() -> None:
                try:
                    result["job"] = engine.cancel_job(job.id, time.time())
                except Exception as exc:  # reported by the assertion below
                    result["error"] = exc

            canceller = threading.Thread(target=cancel)
            canceller.start()
            deadline = time.monotonic() + 30
            while not _waiting_for_lock(pg):
                assert time.monotonic() < deadline, "the cancel never waited for the move"
                time.sleep(0.02)
            mover.commit()
            canceller.join(30)
            assert not canceller.is_alive()
        assert "error" not in result, result
        assert result["job"].state is JobState.COMPLETED  # finished first: nothing to cancel
    finally:
        engine.close_sync()


def test_a_unique_enqueue_in_the_apps_transaction_while_the_keys_old_holder_finishes(
    pg: Schemas,
) -> None:
    """The key's period is over; its job is being acked into the done partition meanwhile.

    Freeing the key writes only the key's row, never the job's: the application's own
    transaction (which the engine cannot run again) does not fail.
    """
    engine = PostgresEngine(pg.url())
    try:
        old = JobSpec(
            worker="w",
            queue="q",
            args={},
            args_json="{}",
            unique_key="k",
            unique_period=0.001,
            unique_states=0b111111,
        )
        [holder] = engine.insert_sync([old])
        time.sleep(0.01)  # the period is over
        with pg.connect(autocommit=False) as mover, pg.connect(autocommit=False) as app:
            mover.execute(f'SET search_path TO "{engine.schema}"')
            mover.execute(
                "UPDATE underway_jobs SET state = 'completed', completed_at = now() WHERE id = %s",
                (holder.id,),
            )
            result: dict[str, Any] = {}

            def enqueue() -> None:
                try:
                    result["jobs"] = engine.insert_sync([old], conn=app)
                    app.commit()
                except Exception as exc:  # reported by the assertion below
                    result["error"] = exc

            enqueuer = threading.Thread(target=enqueue)
            enqueuer.start()
            enqueuer.join(2)  # it may wait for the mover, or not need to
            mover.commit()
            enqueuer.join(30)
            assert not enqueuer.is_alive()
        assert "error" not in result, result
        [job] = result["jobs"]
        assert not job.conflict
        assert job.id != holder.id
    finally:
        engine.close_sync()
