"""Args schemas: validated at enqueue, stored as JSON, handed to the worker typed."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pydantic
import pytest

from underway.errors import ConfigError, EnqueueError
from underway.jobs import Job, Jobs, Worker
from underway.jobs.schema import check_schema, dump_args, load_args
from underway.jobs.testing import perform_job


@dataclass
class Resize:
    image_id: int
    width: int = 800
    scale: float = 1.0
    note: str | None = None
    formats: list[str] = field(default_factory=list)


class Invoice(pydantic.BaseModel):
    invoice_id: int
    email: str
    due: datetime
    lines: list[int] = []


DUE = datetime(2030, 1, 31, 9, 30, tzinfo=UTC)


@pytest.fixture
def inline(tmp_path: Path) -> Jobs:
    return Jobs(f"sqlite:///{tmp_path / 'jobs.db'}", testing="inline")


# -- the pure functions ---------------------------------------------------------------


def test_check_schema_accepts_dataclasses_and_models_only() -> None:
    check_schema(Resize)
    check_schema(Invoice)
    for bad in (dict, Resize(1), "Resize", 5):
        with pytest.raises(ConfigError):
            check_schema(bad)


def test_no_schema_takes_a_dict_or_nothing() -> None:
    assert dump_args(None, None) == {}
    assert dump_args(None, {"a": 1}) == {"a": 1}
    assert load_args(None, {"a": 1}) == {"a": 1}
    with pytest.raises(TypeError):
        dump_args(None, [("a", 1)])


def test_dataclass_dict_is_checked_and_stored_as_given() -> None:
    stored = dump_args(Resize, {"image_id": 3, "scale": 2, "note": None})
    assert stored == {"image_id": 3, "scale": 2, "note": None}
    loaded = load_args(Resize, stored)
    assert loaded == Resize(image_id=3, scale=2, note=None)
    assert loaded.width == 800


def test_dataclass_instance_is_stored_with_every_field() -> None:
    stored = dump_args(Resize, Resize(5, formats=["png"]))
    assert stored == {"image_id": 5, "width": 800, "scale": 1.0, "note": None, "formats": ["png"]}
    assert load_args(Resize, stored) == Resize(5, formats=["png"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"image_id": 1, "note": 5}, "'note'"),
        ({"image_id": 1, "formats": "png"}, "'formats'"),
        ({"image_id": 1, "scale": "2"}, "'scale'"),
        ({"image_id": None}, "'image_id'"),
    ],
)
def test_dataclass_field_types_are_checked(args: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        dump_args(Resize, args)


def test_pydantic_model_is_stored_as_json_and_loaded_typed() -> None:
    stored = dump_args(Invoice, {"invoice_id": "12", "email": "a@b.c", "due": DUE})
    assert stored == {
        "invoice_id": 12,
        "email": "a@b.c",
        "due": "2030-01-31T09:30:00Z",
        "lines": [],
    }
    json.dumps(stored)
    loaded = load_args(Invoice, stored)
    assert isinstance(loaded, Invoice)
    assert loaded.due == DUE


def test_pydantic_instance_is_dumped() -> None:
    model = Invoice(invoice_id=1, email="x@y.z", due=DUE, lines=[1, 2])
    assert dump_args(Invoice, model)["lines"] == [1, 2]


# -- through a worker -------------------------------------------------------------------


async def test_dataclass_worker_receives_typed_args(inline: Jobs) -> None:
    seen: list[Resize] = []

    @inline.worker(args=Resize, record_result=True)
    async def resize(job: Job[Resize]) -> int:
        seen.append(job.args)
        return job.args.image_id * job.args.width

    done = await resize.enqueue({"image_id": 2})
    assert done.result == 1600
    assert seen == [Resize(image_id=2)]
    assert isinstance(seen[0], Resize)


async def test_enqueue_with_a_dataclass_instance(inline: Jobs) -> None:
    seen: list[Resize] = []

    @inline.worker(args=Resize)
    def resize(job: Job[Resize]) -> None:
        seen.append(job.args)

    await resize.enqueue(Resize(9, formats=["webp"]))
    resize.enqueue_sync(Resize(10))
    assert seen == [Resize(9, formats=["webp"]), Resize(10)]


async def test_pydantic_worker_receives_typed_args(inline: Jobs) -> None:
    @inline.worker(args=Invoice, record_result=True)
    async def send_invoice(job: Job[Invoice]) -> str:
        assert isinstance(job.args.due, datetime)
        return f"{job.args.email}:{job.args.due.year}:{sum(job.args.lines)}"

    by_dict = await send_invoice.enqueue({"invoice_id": 1, "email": "a@b.c", "due": DUE})
    assert by_dict.result == "a@b.c:2030:0"
    instance = Invoice(invoice_id=2, email="d@e.f", due=DUE, lines=[3, 4])
    by_model = await send_invoice.enqueue(instance)
    assert by_model.result == "d@e.f:2030:7"
    assert by_model.args["due"] == "2030-01-31T09:30:00Z"


async def test_class_worker_receives_typed_args(inline: Jobs) -> None:
    @inline.worker(args=Resize, record_result=True)
    class Resizer:
        async def perform(self, job: Job[Resize]) -> list[str]:
            return job.args.formats

    resizer = cast(Worker, Resizer)  # mypy keeps the type of a decorated class
    assert (await resizer.enqueue({"image_id": 1, "formats": ["a"]})).result == ["a"]


async def test_schema_failure_raises_at_enqueue_even_inline(inline: Jobs) -> None:
    ran: list[object] = []

    @inline.worker(args=Invoice)
    async def send_invoice(job: Job[Invoice]) -> None:
        ran.append(job)

    with pytest.raises(EnqueueError, match="due"):
        await send_invoice.enqueue({"invoice_id": 1, "email": "a@b.c"})
    assert ran == []


async def test_perform_job_hands_typed_args(inline: Jobs) -> None:
    @inline.worker(args=Resize)
    async def resize(job: Job[Resize]) -> Resize:
        return job.args

    assert await perform_job(resize, Resize(4, note="n")) == Resize(4, note="n")
    assert await perform_job(resize, {"image_id": 4}) == Resize(4)


@dataclass
class Size:
    width: int
    height: int = 600


@dataclass
class Thumbnails:
    image_id: int
    main: Size
    extra: list[Size] = field(default_factory=list)
    crop: Size | None = None


def test_nested_dataclasses_are_checked_stored_and_rebuilt() -> None:
    given = Thumbnails(1, Size(800), [Size(100, 100), Size(200)])
    stored = dump_args(Thumbnails, given)
    assert json.loads(json.dumps(stored)) == {
        "image_id": 1,
        "main": {"width": 800, "height": 600},
        "extra": [{"width": 100, "height": 100}, {"width": 200, "height": 600}],
        "crop": None,
    }
    assert load_args(Thumbnails, stored) == given

    from_dict = {"image_id": 2, "main": {"width": 5}, "crop": {"width": 1, "height": 2}}
    assert dump_args(Thumbnails, from_dict) == from_dict
    loaded = load_args(Thumbnails, from_dict)
    assert loaded == Thumbnails(2, Size(5), [], Size(1, 2))
    assert isinstance(loaded.main, Size)
    mixed = dump_args(Thumbnails, {"image_id": 3, "main": Size(7), "extra": [{"width": 8}]})
    assert mixed["main"] == {"width": 7, "height": 600}
    assert load_args(Thumbnails, mixed).extra == [Size(8)]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"image_id": 1, "main": 5}, "field 'main' of Thumbnails must be Size or a dict, got int"),
        (
            {"image_id": 1, "main": {"width": "wide"}},
            "field 'main' of Thumbnails: field 'width' of Size must be int",
        ),
        ({"image_id": 1, "main": {}}, "field 'main' of Thumbnails: missing field 'width'"),
        (
            {"image_id": 1, "main": {"width": 1}, "extra": {"width": 1}},
            "field 'extra' of Thumbnails must be a list of Size, got dict",
        ),
        (
            {"image_id": 1, "main": {"width": 1}, "extra": [{"w": 1}]},
            "field 'extra' of Thumbnails: unknown field",
        ),
    ],
)
def test_nested_dataclass_errors_name_the_field(args: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        dump_args(Thumbnails, args)
