"""Logging a lost Kafka broker once when the outage starts, once when it ends."""

from __future__ import annotations

import logging
import time

__all__ = ["Outage"]

_log = logging.getLogger("underway.pipelines.kafka")


class Outage:
    """Logs a lost broker once, when it starts, and once more when it ends.

    aiokafka reconnects by itself; the producer sees an outage through the requests it
    makes (commits, dead letters) failing, and its end through one succeeding.

    Args:
        servers: The bootstrap servers, for the logs.
    """

    def __init__(self, servers: str) -> None:
        self.servers = servers
        self.since: float | None = None

    def failed(self, doing: str, exc: BaseException) -> None:
        """Note that ``doing`` failed with ``exc``."""
        if self.since is None:
            self.since = time.monotonic()
            _log.warning(
                "Kafka at %s is unreachable while %s (%s: %s); retrying",
                self.servers,
                doing,
                type(exc).__name__,
                exc,
            )
        else:
            _log.debug("Kafka at %s still unreachable while %s: %s", self.servers, doing, exc)

    def recovered(self) -> None:
        """Note that a request succeeded."""
        if self.since is not None:
            _log.info(
                "Kafka at %s is reachable again after %.1f s",
                self.servers,
                time.monotonic() - self.since,
            )
            self.since = None
