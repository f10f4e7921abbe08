"""Where trace context travels: under a reserved key of a job's meta, or in the headers
of a broker message (each broker puts them somewhere else in ``Message.metadata``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["META_KEY", "job_carrier", "message_headers"]

#: The key of ``job.meta`` that holds the trace context of the job's enqueue (a dict of
#: the propagator's fields, such as ``traceparent`` and ``tracestate``).
META_KEY = "otel"

# Where producers put what a message was sent with: Pub/Sub ``attributes``, SQS
# ``message_attributes`` (each a dict with a ``StringValue``), and ``headers`` (RabbitMQ and
# NATS: a dict; Kafka: a list of ``(name, bytes)``). A later place wins over an earlier one.
_PLACES = ("attributes", "message_attributes", "headers")
# Google's Pub/Sub client libraries, traced, put each field under this prefix
# (``googclient_traceparent``).
_GOOGLE = "googclient_"


def job_carrier(meta: Any) -> dict[str, str]:
    """The trace context stored in a job's ``meta`` (empty when there is none, or when
    what is there is not a dict of text)."""
    if not isinstance(meta, Mapping):
        return {}
    stored = meta.get(META_KEY)
    if not isinstance(stored, Mapping):
        return {}
    return {k: v for k, v in stored.items() if isinstance(k, str) and isinstance(v, str)}


def message_headers(metadata: Any) -> dict[str, str]:
    """A message's headers as text, by lower-case name, whatever its broker.

    Reads ``headers`` (a dict, or a list of ``(name, value)`` pairs), ``attributes`` and
    ``message_attributes`` (SQS: each value a dict with a ``StringValue``) of
    ``metadata``. Values that are bytes are decoded as UTF-8; a value that is not text
    (a number, binary data, a nested table) is left out. A name prefixed ``googclient_``
    (where Google's Pub/Sub client libraries put the trace context) is also given without
    the prefix, unless that name is there already.
    """
    found: dict[str, str] = {}
    if not isinstance(metadata, Mapping):
        return found
    for place in _PLACES:
        value = metadata.get(place)
        if value:
            _add(found, value)
    for name in [n for n in found if n.startswith(_GOOGLE)]:
        found.setdefault(name[len(_GOOGLE) :], found[name])
    return found


def _add(found: dict[str, str], value: Any) -> None:
    if isinstance(value, Mapping):
        items: Any = value.items()
    elif isinstance(value, list | tuple):
        items = value
    else:
        return
    for item in items:
        if not isinstance(item, tuple | list) or len(item) != 2:
            continue
        name, raw = item
        text = _text(raw)
        if isinstance(name, str) and text is not None:
            found[name.lower()] = text


def _text(raw: Any) -> str | None:
    if isinstance(raw, str):
        return raw
    if isinstance(raw, bytes | bytearray):
        try:
            return bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            return None
    if isinstance(raw, Mapping):  # an SQS message attribute
        text = raw.get("StringValue")
        return text if isinstance(text, str) else None
    return None
