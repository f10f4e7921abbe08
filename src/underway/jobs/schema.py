"""Args schemas: validate a job's args at enqueue and hand them to the worker typed.

A schema is a dataclass or a pydantic model (v2). Args are always stored as a JSON
object; the schema checks them at enqueue and rebuilds the typed value for the worker.
A dataclass field may itself be a dataclass (or an optional one, or a list of them): it is
stored as a nested object and rebuilt as an instance.
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
    return {name: _plain(value) for name, value in args.items()}


def load_args(schema: Any | None, args: dict[str, Any]) -> Any:
    """The value a worker receives as ``job.args``: the typed instance, or the dict."""
    if schema is None:
        return args
    if hasattr(schema, "model_validate"):
        return schema.model_validate(args)
    return _build(schema, args)


def _plain(value: Any) -> Any:
    """``value`` with dataclass instances (at any depth of lists) turned into dicts."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _nested(hint: Any) -> tuple[type, bool] | None:
    """``(dataclass, is_list)`` when ``hint`` is a dataclass, an optional one or a list."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        found = [a for a in typing.get_args(hint) if a is not type(None)]
        return _nested(found[0]) if len(found) == 1 else None
    if origin is list:
        (item,) = typing.get_args(hint) or (Any,)
        inner = _nested(item)
        return (inner[0], True) if inner is not None and not inner[1] else None
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return hint, False
    return None


def _build(schema: Any, args: Mapping[str, Any]) -> Any:
    hints = typing.get_type_hints(schema)
    values = dict(args)
    for name, value in args.items():
        nested = _nested(hints.get(name, Any))
        if nested is None or value is None:
            continue
        cls, many = nested
        if many and isinstance(value, list):
            values[name] = [_build(cls, v) if isinstance(v, Mapping) else v for v in value]
        elif isinstance(value, Mapping):
            values[name] = _build(cls, value)
    return schema(**values)


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
        value = args[name]
        nested = _nested(hints.get(name, Any))
        if nested is not None and value is not None:
            _check_nested(schema, name, nested, value)
            continue
        expected = _runtime_types(hints.get(name, Any))
        if expected is not None and not isinstance(value, expected):
            wanted = " | ".join(t.__name__ for t in expected)
            raise ValueError(
                f"field {name!r} of {schema.__name__} must be {wanted}, "
                f"got {type(value).__name__} {value!r}"
            )


def _check_nested(schema: Any, name: str, nested: tuple[type, bool], value: Any) -> None:
    cls, many = nested
    where = f"field {name!r} of {schema.__name__}"
    items = value if many else [value]
    if many and not isinstance(value, list | tuple):
        raise ValueError(f"{where} must be a list of {cls.__name__}, got {type(value).__name__}")
    for item in items:
        if isinstance(item, cls):
            continue
        if not isinstance(item, Mapping):
            raise ValueError(
                f"{where} must be {cls.__name__} or a dict, got {type(item).__name__} {item!r}"
            )
        try:
            _check_dataclass(cls, item)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None


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
