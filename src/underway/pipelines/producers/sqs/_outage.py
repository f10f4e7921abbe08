"""One log line when SQS stops answering, and one when it answers again."""

from __future__ import annotations

import logging
import time

_log = logging.getLogger("underway.pipelines.sqs")


class Outage:
    """Tracks whether calls to one queue fail, logging each change once.

    Args:
        queue_url: Names the queue in the log lines.
    """

    def __init__(self, queue_url: str) -> None:
        self.queue_url = queue_url
        self.since: float | None = None
        self.failures = 0

    def failed(self, what: str, exc: BaseException) -> None:
        """A call failed: log it if it is the first failure of an outage."""
        self.failures += 1
        if self.since is None:
            self.since = time.monotonic()
            _log.warning(
                "SQS queue %s: %s failed (%s: %s); retrying with backoff",
                self.queue_url,
                what,
                type(exc).__name__,
                exc,
            )

    def recovered(self) -> None:
        """A call succeeded: log the end of the outage, if there was one."""
        if self.since is not None:
            _log.warning(
                "SQS queue %s answers again after %.1f s (%d failed call(s))",
                self.queue_url,
                time.monotonic() - self.since,
                self.failures,
            )
            self.since = None
            self.failures = 0
