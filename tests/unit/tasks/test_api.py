"""The public surface of underway.tasks: listed, importable, documented."""

from __future__ import annotations

import importlib
import inspect

import pytest

import underway.tasks

NAMES = underway.tasks.__all__


def test_all_lists_exactly_the_public_names() -> None:
    public = {
        name
        for name, value in vars(underway.tasks).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    }
    assert len(NAMES) == len(set(NAMES))
    assert public == set(NAMES)


def test_star_import_gives_the_listed_objects() -> None:
    fresh = importlib.import_module("underway.tasks")
    namespace: dict[str, object] = {}
    exec("from underway.tasks import *", namespace)
    assert {k for k in namespace if k != "__builtins__"} == set(fresh.__all__)


def test_the_package_has_a_docstring() -> None:
    assert (underway.tasks.__doc__ or "").strip()


@pytest.mark.parametrize("name", NAMES)
def test_every_public_name_has_a_docstring(name: str) -> None:
    obj = getattr(underway.tasks, name)
    assert inspect.isclass(obj) or inspect.isfunction(obj)
    doc = vars(obj).get("__doc__") if inspect.isclass(obj) else obj.__doc__
    assert (doc or "").strip(), f"underway.tasks.{name} has no docstring"
    assert not (doc or "").startswith(f"{name}("), f"{name} has only a generated docstring"


@pytest.mark.parametrize(
    "cls",
    [getattr(underway.tasks, n) for n in NAMES if inspect.isclass(getattr(underway.tasks, n))],
)
def test_public_methods_are_documented(cls: type) -> None:
    missing = []
    for name, value in vars(cls).items():
        if name.startswith("_"):
            continue
        func = value.__func__ if isinstance(value, staticmethod | classmethod) else value
        if (inspect.isfunction(func) or isinstance(func, property)) and not (
            func.__doc__ or ""
        ).strip():
            missing.append(name)
    assert missing == [], f"{cls.__name__}: {missing}"
