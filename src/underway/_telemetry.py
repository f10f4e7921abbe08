"""The event bus every part of underway emits into.

Events are dotted names such as ``"job.start"``, ``"job.stop"``, ``"job.exception"``,
``"fetch.stop"`` or ``"rescue.stop"``. A handler receives ``(event, measurements,
metadata)``: ``measurements`` holds numbers (``duration`` in seconds on ``*.stop`` and
``*.exception``, counts), ``metadata`` the context (queue, job, node, error).

Spans emit ``<name>.start`` when entered, then ``<name>.stop`` or ``<name>.exception``.
A handler that raises is logged and detached from nothing: the error never reaches the
code that emitted the event.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import Any

__all__ = [
    "Handler",
    "attach",
    "attach_logging",
    "attached",
    "detach",
    "emit",
    "span",
    "wants",
]

Handler = Callable[[str, Mapping[str, Any], Mapping[str, Any]], None]

_log = logging.getLogger("underway.telemetry")
_handlers: dict[object, tuple[str, Handler]] = {}

#: The attached handlers by token: truthy while any is attached. A loop that runs for every
#: message tests it instead of calling :func:`enabled`. Read it; never change it.
attached: Mapping[object, tuple[str, Handler]] = _handlers


def attach(handler: Handler, *, prefix: str = "") -> object:
    """Attach ``handler`` to every event whose name starts with ``prefix``.

    Args:
        handler: Called as ``handler(event, measurements, metadata)``.
        prefix: Only events starting with this string reach the handler (``""``: all).

    Returns:
        A token to pass to :func:`detach`.
    """
    token = object()
    _handlers[token] = (prefix, handler)
    return token


def detach(token: object) -> None:
    """Detach the handler that :func:`attach` returned ``token`` for. Unknown tokens are ignored."""
    _handlers.pop(token, None)


def enabled() -> bool:
    """Whether any handler is attached (emitters skip building metadata when not)."""
    return bool(_handlers)


def wants(name: str) -> bool:
    """Whether a handler is attached to any event of the span or event family ``name``.

    ``name`` matches a handler whose prefix starts ``name + "."`` or is started by it
    (``"pipeline."`` and ``"pipeline.message.stop"`` both want ``"pipeline.message"``).
    """
    family = name + "."
    return any(family.startswith(p) or p.startswith(family) for p, _ in _handlers.values())


def emit(event: str, measurements: Mapping[str, Any], metadata: Mapping[str, Any]) -> None:
    """Send one event to every matching handler."""
    for prefix, handler in list(_handlers.values()):
        if event.startswith(prefix):
            try:
                handler(event, measurements, metadata)
            except Exception:
                _log.exception("telemetry handler %r failed on %s", handler, event)


class _Quiet:
    """The span used while no handler is attached: it yields a dict and emits nothing."""

    __slots__ = ()

    def __enter__(self) -> dict[str, Any]:
        return {}

    def __exit__(self, *exc: object) -> None:
        return None


_QUIET = _Quiet()


def span(name: str, metadata: dict[str, Any]) -> AbstractContextManager[dict[str, Any]]:
    """Emit ``name.start`` then ``name.stop`` (or ``name.exception``) around a block.

    The block may add entries to the yielded dict; they are sent as measurements with the
    stop and exception events (for example ``count``). With no handler attached to its
    events it costs next to nothing.
    """
    return _span(name, metadata) if _handlers and wants(name) else _QUIET


@contextmanager
def _span(name: str, metadata: dict[str, Any]) -> Iterator[dict[str, Any]]:
    extra: dict[str, Any] = {}
    start = time.perf_counter()
    emit(f"{name}.start", {"system_time": time.time()}, metadata)
    try:
        yield extra
    except BaseException as exc:
        duration = time.perf_counter() - start
        measurements = {"duration": duration, **extra}
        emit(f"{name}.exception", measurements, {**metadata, "error": exc})
        raise
    emit(f"{name}.stop", {"duration": time.perf_counter() - start, **extra}, metadata)


def attach_logging(
    logger: logging.Logger | None = None,
    *,
    level: int = logging.INFO,
    prefix: str = "",
) -> object:
    """Log every event as one structured line.

    Stop events log at ``level``, exception events at ``ERROR``, start events at ``DEBUG``.
    The measurements and metadata go into the record's ``extra`` under ``underway`` so a
    JSON formatter can pick them up.

    Returns:
        A token to pass to :func:`detach`.
    """
    target = logger or logging.getLogger("underway")

    def handler(event: str, measurements: Mapping[str, Any], metadata: Mapping[str, Any]) -> None:
        if event.endswith(".exception"):
            lvl = logging.ERROR
        elif event.endswith(".start"):
            lvl = logging.DEBUG
        else:
            lvl = level
        if not target.isEnabledFor(lvl):
            return
        fields = {k: _plain(v) for k, v in {**metadata, **measurements}.items()}
        text = " ".join(f"{k}={v}" for k, v in fields.items())
        target.log(lvl, "%s %s", event, text, extra={"underway": {"event": event, **fields}})

    return attach(handler, prefix=prefix)


def _plain(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, str | int | bool) or value is None:
        return value
    if isinstance(value, BaseException):
        return f"{type(value).__name__}: {value}"
    job_id = getattr(value, "id", None)
    if job_id is not None and hasattr(value, "worker"):
        return f"job#{job_id}"
    return repr(value)
