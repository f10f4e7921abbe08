"""Shared test configuration: service groups, and the summary of what was skipped.

Tests that need a server carry its marker (``@pytest.mark.postgres``...). When the
server does not answer, those tests are skipped and the run ends with a plain line per
group saying why; under ``CI=true`` a missing server fails the run instead.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

import pytest


@dataclass(frozen=True)
class Service:
    marker: str
    env: str
    default: str

    @property
    def address(self) -> tuple[str, int]:
        host, _, port = os.environ.get(self.env, self.default).rpartition(":")
        return host or "127.0.0.1", int(port)


SERVICES = {
    s.marker: s
    for s in (
        Service("postgres", "UNDERWAY_POSTGRES_ADDR", "127.0.0.1:5432"),
        Service("redis", "UNDERWAY_REDIS_ADDR", "127.0.0.1:6379"),
        Service("rabbitmq", "UNDERWAY_RABBITMQ_ADDR", "127.0.0.1:5672"),
        Service("nats", "UNDERWAY_NATS_ADDR", "127.0.0.1:4222"),
    )
}
_reachable: dict[str, bool] = {}
_skipped: dict[str, int] = {}


def service_up(name: str) -> bool:
    """Whether the service's TCP port accepts a connection (checked once per run)."""
    if name not in _reachable:
        try:
            with socket.create_connection(SERVICES[name].address, timeout=1.0):
                _reachable[name] = True
        except OSError:
            _reachable[name] = False
    return _reachable[name]


def pytest_configure(config: pytest.Config) -> None:
    for name, service in SERVICES.items():
        config.addinivalue_line(
            "markers", f"{name}: needs {name} at ${service.env} (default {service.default})"
        )


def pytest_runtest_setup(item: pytest.Item) -> None:
    for name in SERVICES:
        if item.get_closest_marker(name) is None or service_up(name):
            continue
        host, port = SERVICES[name].address
        reason = f"{name} is not reachable at {host}:{port}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (CI=true: a missing server is a failure)", pytrace=False)
        _skipped[name] = _skipped.get(name, 0) + 1
        pytest.skip(reason)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for name, count in sorted(_skipped.items()):
        host, port = SERVICES[name].address
        terminalreporter.write_line(
            f"SKIPPED GROUP {name}: {count} test(s), no server at {host}:{port} "
            f"(set {SERVICES[name].env}, or CI=true to make this a failure)",
            yellow=True,
        )
