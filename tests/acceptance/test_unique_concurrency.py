"""Unique jobs inserted at the same moment by several processes: one row, one winner.

Eight processes open the database, wait on one barrier file, then each inserts the same
unique jobs: a single insert, a bulk insert holding the job twice plus a plain job, and the
same again for a worker unique by the ``account`` key only (with args that differ in
``nonce``). The race runs once per module; each test checks one part of its outcome.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.acceptance._procs import Processes, query, settings_for
from tests.acceptance.nodeapp import RECORD, UNIQUE, UNIQUE_BY_ACCOUNT

pytestmark = pytest.mark.acceptance

RACERS = 8
Result = dict[str, Any]


@pytest.fixture(scope="module")
def race(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, list[Result]]]:
    tmp_path = tmp_path_factory.mktemp("unique-race")
    with Processes(settings_for(tmp_path), tmp_path) as procs:
        barrier = tmp_path / "go"
        racers = [
            procs.spawn(f"racer-{i}", ["race", str(barrier), str(i)], procs.base)
            for i in range(RACERS)
        ]
        procs.wait_for(
            lambda: (
                all(Path(f"{barrier}.ready.{i}").exists() for i in range(RACERS))
                or any(r.poll() is not None for r in racers)
            ),
            timeout=30,
            what="every racer to be ready",
        )
        barrier.touch()
        codes = [r.wait(timeout=30) for r in racers]
        assert codes == [0] * RACERS, procs.output()
        results = [json.loads((tmp_path / f"racer-{i}.out").read_text()) for i in range(RACERS)]
        yield procs.db, results


def _winners(pairs: list[list[Any]]) -> list[int]:
    """Indexes of the racers whose insert was not a conflict."""
    return [i for i, (_, conflict) in enumerate(pairs) if not conflict]


def _rows(db: Path, worker: str) -> list[tuple[int, dict[str, Any]]]:
    rows = query(db, "SELECT id, args FROM underway_jobs WHERE worker = ? ORDER BY id", (worker,))
    return [(job_id, json.loads(args)) for job_id, args in rows]


def test_one_single_insert_wins_and_every_other_gets_its_id(
    race: tuple[Path, list[Result]],
) -> None:
    db, results = race
    singles = [r["single"] for r in results]
    assert len(_winners(singles)) == 1, singles
    ((row_id, args),) = [r for r in _rows(db, UNIQUE) if r[1] == {"report": "daily"}]
    assert args == {"report": "daily"}
    assert {job_id for job_id, _ in singles} == {row_id}


def test_bulk_inserts_with_a_duplicate_inside_resolve_to_one_row(
    race: tuple[Path, list[Result]],
) -> None:
    db, results = race
    firsts = [r["bulk"][0] for r in results]
    assert len(_winners(firsts)) == 1, firsts
    ((row_id, _),) = [r for r in _rows(db, UNIQUE) if r[1] == {"report": "weekly"}]
    for r in results:
        first, plain, duplicate = r["bulk"]
        assert first[0] == duplicate[0] == row_id
        assert duplicate[1] is True, "the second copy in one bulk insert must be a conflict"
        assert plain[1] is False
    plain_ids = {r["bulk"][1][0] for r in results}
    assert len(plain_ids) == RACERS
    assert {job_id for job_id, _ in _rows(db, RECORD)} == plain_ids
    assert len(_rows(db, UNIQUE)) == 2


def test_unique_by_keys_ignores_the_other_args(race: tuple[Path, list[Result]]) -> None:
    db, results = race
    rows = {args["account"]: (job_id, args) for job_id, args in _rows(db, UNIQUE_BY_ACCOUNT)}
    assert sorted(rows) == [7, 8]
    assert len(_rows(db, UNIQUE_BY_ACCOUNT)) == 2

    singles = [r["keyed_single"] for r in results]
    (winner,) = _winners(singles)
    assert {job_id for job_id, _ in singles} == {rows[7][0]}
    assert rows[7][1] == {"account": 7, "nonce": winner}, "the winner's args are stored"

    firsts = [r["keyed_bulk"][0] for r in results]
    (winner,) = _winners(firsts)
    assert rows[8][1] == {"account": 8, "nonce": winner}
    for r in results:
        first, second = r["keyed_bulk"]
        assert first[0] == second[0] == rows[8][0]
        assert second[1] is True
