"""Server (GenServer) and Registry: calls, casts, info, deferred replies, timeouts, stops."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Mapping
from typing import Any, cast

import pytest

import underway
from tests.unit.tasks.test_clock import run_virtual
from underway.errors import (
    AlreadyRegistered,
    CallTimeout,
    ConfigError,
    MailboxFull,
    ServerExited,
)
from underway.tasks import Caller, ChildSpec, Registry, Server, Supervisor

Events = list[tuple[str, dict[str, Any]]]


@pytest.fixture
def events() -> Iterator[Events]:
    seen: Events = []

    def record(event: str, measurements: Mapping[str, Any], metadata: Mapping[str, Any]) -> None:
        seen.append((event, dict(metadata)))

    token = underway.attach(record, prefix="tasks.server.")
    yield seen
    underway.detach(token)


class Counter(Server):
    """Counts; ``("slow", s)`` takes ``s`` seconds; ``"wait"`` replies on the next ``"add"``."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.log: list[Any] = []
        self.inits = 0

    async def init(self) -> None:
        self.inits += 1
        self.count = 0
        self.waiting: list[Caller] = []

    async def handle_call(self, request: Any, caller: Caller) -> Any:
        match request:
            case "get":
                return self.count
            case ("slow", seconds):
                await asyncio.sleep(seconds)
                self.count += 1
                self.log.append(("slow done", asyncio.get_running_loop().time()))
                return self.count
            case "wait":
                self.waiting.append(caller)
                caller.defer()
                return None
            case "crash":
                raise ValueError("bad request")
            case "stop":
                self.request_stop("normal")
                return "stopping"
        raise AssertionError(request)

    async def handle_cast(self, message: Any) -> None:
        match message:
            case ("add", n):
                self.count += n
                for caller in self.waiting:
                    caller.reply(self.count)
                self.waiting.clear()
            case ("sleep", seconds):
                await asyncio.sleep(seconds)

    async def handle_info(self, message: Any) -> None:
        self.log.append(("info", message))

    async def terminate(self, reason: Any) -> None:
        self.log.append(("terminate", reason))


def test_calls_casts_and_info_are_handled_in_order() -> None:
    async def main() -> Counter:
        async with Counter() as server:
            await server.cast(("add", 2))
            server.send("hello")
            await server.cast(("add", 3))
            assert await server.call("get") == 5
            assert server.log == [("info", "hello")]
        return server

    server = run_virtual(main())
    assert server.log[-1] == ("terminate", "normal")
    assert not server.running


def test_a_call_timeout_does_not_cancel_the_work_and_the_late_reply_is_dropped(
    events: Events,
) -> None:
    async def main() -> Counter:
        async with Counter() as server:
            with pytest.raises(CallTimeout, match=r"within 1\.0s"):
                await server.call(("slow", 3.0), timeout=1.0)
            assert asyncio.get_running_loop().time() == pytest.approx(1.0)
            # the server is still handling the slow call; the next call waits its turn
            assert await server.call("get", timeout=5.0) == 1
            assert server.log == [("slow done", 3.0)]
        return server

    run_virtual(main())
    assert [e for e, _ in events if e == "tasks.server.timeout"] == ["tasks.server.timeout"]


def test_cancelling_the_caller_leaves_the_server_working() -> None:
    async def main() -> None:
        async with Counter() as server:
            caller = asyncio.get_running_loop().create_task(server.call(("slow", 2.0)))
            await asyncio.sleep(1)
            caller.cancel()
            with pytest.raises(asyncio.CancelledError):
                await caller
            assert await server.call("get") == 1

    run_virtual(main())


def test_deferred_replies_arrive_later_from_another_message() -> None:
    async def main() -> None:
        async with Counter() as server:
            loop = asyncio.get_running_loop()
            waiter = loop.create_task(server.call("wait", timeout=None))
            await asyncio.sleep(1)
            assert not waiter.done()
            assert await server.call("get") == 0  # the server is not blocked meanwhile
            await server.cast(("add", 7))
            assert await waiter == 7

    run_virtual(main())


def test_a_crash_fails_every_waiting_caller_calls_terminate_and_raises() -> None:
    async def main() -> Counter:
        server = Counter()
        await server.start()
        loop = asyncio.get_running_loop()
        deferred = loop.create_task(server.call("wait", timeout=None))
        await asyncio.sleep(0)
        queued = loop.create_task(server.call("get"))
        with pytest.raises(ServerExited) as info:
            await server.call("crash")
        assert isinstance(info.value.__cause__, ValueError)
        for task in (deferred, queued):
            with pytest.raises(ServerExited):
                await task
        assert not server.running
        with pytest.raises(ServerExited, match="not running") as info:
            await server.call("get")
        assert info.value.reason == "noproc"
        await server.cast(("add", 1))  # dropped, as a cast to a dead process
        server.send("x")
        return server

    server = run_virtual(main())
    kind, reason = server.log[-1]
    assert kind == "terminate"
    assert isinstance(reason, ValueError)


def test_stop_from_a_callback_drops_the_queue_stop_from_outside_drains_it() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = Counter()
        await server.start()
        await server.cast(("sleep", 1.0))
        stopping = loop.create_task(server.call("stop"))
        late = loop.create_task(server.call("get"))
        assert await stopping == "stopping"
        with pytest.raises(ServerExited):
            await late
        assert server.log == [("terminate", "normal")]

        other = Counter()
        await other.start()
        await other.cast(("sleep", 1.0))
        queued = loop.create_task(other.call("get"))
        await asyncio.sleep(0)
        await other.stop()
        assert await queued == 0  # handled before the stop, as GenServer.stop does
        assert other.log == [("terminate", "normal")]

    run_virtual(main())


def test_a_bounded_mailbox_applies_back_pressure() -> None:
    async def main() -> None:
        async with Counter(mailbox_size=2) as server:
            await server.cast(("sleep", 10.0))  # taken at once: the server is busy
            await asyncio.sleep(0)
            await server.cast(("add", 1))
            await server.cast(("add", 1))
            with pytest.raises(MailboxFull):
                server.send("overflow")
            loop = asyncio.get_running_loop()
            began = loop.time()
            await server.cast(("add", 1))  # waits for room
            assert loop.time() - began == pytest.approx(10.0)
            with pytest.raises(CallTimeout):
                await server.call("get", timeout=0)
            assert await server.call("get") == 3

    run_virtual(main())


def test_send_after_delivers_an_info_message_later() -> None:
    async def main() -> Counter:
        async with Counter() as server:
            server.send_after(5.0, "tick")
            cancelled = server.send_after(6.0, "never")
            cancelled.cancel()
            await asyncio.sleep(4)
            assert server.log == []
            await asyncio.sleep(3)
        return server

    assert run_virtual(main()).log[:1] == [("info", "tick")]


def test_a_server_cannot_call_itself() -> None:
    class Selfish(Server):
        async def handle_call(self, request: Any, caller: Caller) -> Any:
            return await self.call("again")

    async def main() -> None:
        async with Selfish() as server:
            with pytest.raises(ServerExited) as info:
                await server.call("go")
            assert "cannot call itself" in str(info.value.__cause__)

    run_virtual(main())


def test_a_server_casting_to_itself_with_a_full_mailbox_crashes_instead_of_deadlocking() -> None:
    class FanOut(Server):
        async def handle_cast(self, message: Any) -> None:
            if message == "fan":
                for n in range(5):
                    await self.cast(n)  # only this task could make room: it must not wait

    async def main() -> None:
        server = FanOut(mailbox_size=2)
        await server.start()
        task = server._task
        assert task is not None
        await server.cast("fan")
        await asyncio.wait([task], timeout=60)
        assert task.done(), "the server waits for room only it could make"
        assert isinstance(task.exception(), MailboxFull)
        assert not server.running

    run_virtual(main())


def test_init_failure_fails_the_start() -> None:
    class Broken(Server):
        async def init(self) -> None:
            raise OSError("no config")

    async def main() -> None:
        server = Broken()
        with pytest.raises(OSError, match="no config"):
            await server.start()
        assert not server.running

    run_virtual(main())


def test_a_supervised_server_restarts_with_fresh_state_and_keeps_its_name(
    events: Events, caplog: pytest.LogCaptureFixture
) -> None:
    registry = Registry()

    async def main() -> Counter:
        server = Counter(name=registry.via("counter"))
        async with Supervisor([server.child_spec(id="counter")]):
            found = registry.lookup("counter")
            assert found is server
            await server.cast(("add", 5))
            with caplog.at_level(logging.ERROR), pytest.raises(ServerExited):
                await found.call("crash")
            await asyncio.sleep(0.1)
            assert registry.lookup("counter") is server
            assert await server.call("get") == 0  # fresh state after the restart
        assert registry.lookup("counter") is None
        return cast(Counter, server)  # the identity asserts with lookup's Any made it Any

    server = run_virtual(main())
    assert server.inits == 2
    assert server.log[-1] == ("terminate", "shutdown")
    assert [e for e, _ in events] == [
        "tasks.server.start",
        "tasks.server.crash",
        "tasks.server.start",
        "tasks.server.stop",
    ]


def test_a_server_slow_to_stop_is_cancelled_after_its_shutdown() -> None:
    async def main() -> Counter:
        server = Counter()
        async with Supervisor([server.child_spec(shutdown=2.0)]):
            loop = asyncio.get_running_loop()
            caller = loop.create_task(server.call(("slow", 100.0), timeout=None))
            await asyncio.sleep(1)
            began = loop.time()
        assert loop.time() - began == pytest.approx(2.0)
        with pytest.raises(ServerExited) as info:
            await caller
        assert info.value.reason == "cancelled"
        return server

    server = run_virtual(main())
    assert server.log == []  # cancelled while handling: terminate does not run


def test_registry_names_are_unique_and_removed_when_the_owner_ends() -> None:
    registry = Registry("r")

    async def main() -> None:
        gate = asyncio.Event()

        async def owner(key: str) -> None:
            registry.register(key, f"value of {key}")
            await gate.wait()

        loop = asyncio.get_running_loop()
        task = loop.create_task(owner("a"))
        await asyncio.sleep(0)
        assert registry.lookup("a") == "value of a"
        assert registry.owner("a") is task
        assert registry.keys() == ["a"]
        assert len(registry) == 1
        with pytest.raises(AlreadyRegistered, match="'a' is already registered"):
            registry.register("a", "mine")
        assert registry.unregister("a") is False  # not the owner
        gate.set()
        await task
        assert "a" not in registry
        assert registry.lookup("a", "gone") == "gone"
        registry.register("a", "now mine")
        assert registry.unregister("a") is True

    run_virtual(main())
    with pytest.raises(RuntimeError, match="from a task"):
        registry.register("x", 1)


def test_bad_options() -> None:
    with pytest.raises(ConfigError, match="mailbox_size must be an int >= 1"):
        Counter(mailbox_size=0)
    with pytest.raises(ConfigError, match="name must be a string"):
        Counter(name=3)
    assert isinstance(Counter().child_spec(), ChildSpec)


@pytest.mark.parametrize("hurried", [False, True])
def test_a_hurried_supervisor_cancels_its_server_without_terminate(hurried: bool) -> None:
    terminated: list[tuple[Any, float]] = []

    class Slow(Server):
        async def terminate(self, reason: Any) -> None:
            await asyncio.sleep(2)  # a cleanup that takes its time
            terminated.append((reason, asyncio.get_running_loop().time()))

    async def main() -> float:
        loop = asyncio.get_running_loop()
        sup = Supervisor([Slow().child_spec(id="slow", shutdown=60)], name="app")
        await sup.start()
        if hurried:
            sup.hurry()
        await sup.stop()
        return loop.time()

    ended = run_virtual(main())
    if hurried:
        assert (ended, terminated) == (0.0, [])  # killed: terminate does not run
    else:
        assert (ended, terminated) == (2.0, [("shutdown", 2.0)])
