"""Args schemas: validate a job's args at enqueue and hand them to the worker typed.

A schema is a dataclass or a pydantic model (v2). Args are always stored as a JSON
object; the schema checks them at enqueue and rebuilds the typed value for the worker.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any

from underway.errors import ConfigError

__all__ = ["check_schema", "dump_args", "load_args"]


def check_schema(schema: Any) -> None:
    """Raise :class:`ConfigError` unless ``schema`` is a dataclass type or pydantic model."""
    if isinstance(schema, type) and (
        dataclasses.is_dataclass(schema) or hasattr(schema, "model_validate")
    ):
        return
    raise ConfigError(f"args schema must be a dataclass or a pydantic model class, got {schema!r}")


def dump_args(schema: Any | None, args: Any) -> dict[str, Any]:
    """Validate ``args`` (a mapping or a schema instance) and return the JSON object to store.

    Raises:
        ValueError: The args do not fit the schema (the message says which field).
        TypeError: The args are not a mapping.
    """
    if schema is None:
        if args is None:
            return {}
        if not isinstance(args, Mapping):
            raise TypeError(f"args must be a dict, got {type(args).__name__}")
        return dict(args)
    if hasattr(schema, "model_validate"):
        model = args if isinstance(args, schema) else schema.model_validate(args or {})
        dumped: dict[str, Any] = model.model_dump(mode="json")
        return dumped
    if isinstance(args, schema):
        return dataclasses.asdict(args)
    if args is None:
        args = {}
    if not isinstance(args, Mapping):
        raise TypeError(f"args must be a dict or {schema.__name__}, got {type(args).__name__}")
    _check_dataclass(schema, args)
    return dict(args)


def load_args(schema: Any | None, args: dict[str, Any]) -> Any:
    """The value a worker receives as ``job.args``: the typed instance, or the dict."""
    if schema is None:
        return args
    if hasattr(schema, "model_validate"):
        return schema.model_validate(args)
    return schema(**args)


def _check_dataclass(schema: Any, args: Mapping[str, Any]) -> None:
    fields = {f.name: f for f in dataclasses.fields(schema) if f.init}
    unknown = sorted(set(args) - set(fields))
    if unknown:
        raise ValueError(f"unknown field(s) for {schema.__name__}: {', '.join(unknown)}")
    hints = typing.get_type_hints(schema)
    for name, fld in fields.items():
        if name not in args:
            no_default = fld.default is dataclasses.MISSING
            if no_default and fld.default_factory is dataclasses.MISSING:
                raise ValueError(f"missing field {name!r} for {schema.__name__}")
            continue
        expected = _runtime_types(hints.get(name, Any))
        value = args[name]
        if expected is not None and not isinstance(value, expected):
            wanted = " | ".join(t.__name__ for t in expected)
            raise ValueError(
                f"field {name!r} of {schema.__name__} must be {wanted}, "
                f"got {type(value).__name__} {value!r}"
            )


def _runtime_types(hint: Any) -> tuple[type, ...] | None:
    """The classes an annotation allows, or ``None`` when it cannot be checked simply."""
    if hint is Any:
        return None
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        out: list[type] = []
        for arg in typing.get_args(hint):
            sub = _runtime_types(arg)
            if sub is None:
                return None
            out.extend(sub)
        return tuple(out)
    if hint is None or hint is type(None):
        return (type(None),)
    cls = origin or hint
    if not isinstance(cls, type):
        return None
    if cls is float:
        return (float, int)
    return (cls,)
