"""Where the RabbitMQ tests find the broker, and its ``rabbitmqctl`` when it is local."""

from __future__ import annotations

import shutil

import pytest

from tests.conftest import SERVICES

__all__ = ["HOST", "PORT", "RABBITMQCTL", "URL", "needs_rabbitmqctl"]

HOST, PORT = SERVICES["rabbitmq"].address
URL = f"amqp://guest:guest@{HOST}:{PORT}/"
RABBITMQCTL = shutil.which("rabbitmqctl") if HOST in ("127.0.0.1", "localhost", "::1") else None
needs_rabbitmqctl = pytest.mark.skipif(
    RABBITMQCTL is None, reason="rabbitmqctl is not installed beside a local broker"
)
