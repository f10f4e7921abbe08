"""Supervisor: ordered start, strategies, restart types, intensity, nesting, honest shutdown.

Every test runs on the virtual clock (``run_virtual``): sleeps and restart windows take no
real time, and a task left running at the end fails the test.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any

import pytest

import underway
from tests.unit.tasks.test_clock import run_virtual
from underway.errors import ChildStartError, ConfigError, TooManyRestarts
from underway.tasks import ChildSpec, Ready, Registry, Supervisor
from underway.tasks._policy import Restart

Events = list[tuple[str, dict[str, Any]]]


@pytest.fixture
def events() -> Iterator[Events]:
    seen: Events = []

    def record(event: str, measurements: Mapping[str, Any], metadata: Mapping[str, Any]) -> None:
        seen.append((event, dict(metadata)))

    token = underway.attach(record, prefix="tasks.")
    yield seen
    underway.detach(token)


class Log:
    """What children did, with the virtual time."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, str, float]] = []

    def add(self, what: str, who: str) -> None:
        self.entries.append((what, who, asyncio.get_running_loop().time()))

    def seq(self, *whats: str) -> list[tuple[str, str]]:
        return [(w, who) for w, who, _ in self.entries if not whats or w in whats]

    def count(self, what: str, who: str) -> int:
        return sum(1 for w, c, _ in self.entries if (w, c) == (what, who))


def sleeper(log: Log, name: str) -> Callable[[], Awaitable[None]]:
    """A child that runs until cancelled, logging start and stop."""

    async def child() -> None:
        log.add("start", name)
        try:
            await asyncio.sleep(10_000)
        finally:
            log.add("stop", name)

    return child


def crasher(log: Log, name: str, after: float, *, times: int | None = None) -> Callable[..., Any]:
    """A child that raises ``after`` seconds (only its first ``times`` runs, if given)."""

    async def child() -> None:
        log.add("start", name)
        if times is None or log.count("start", name) <= times:
            await asyncio.sleep(after)
            log.add("crash", name)
            raise RuntimeError(f"{name} crashed")
        await asyncio.sleep(10_000)

    return child


def spec(child_id: str, start: Callable[..., Any], **options: Any) -> ChildSpec:
    return ChildSpec(child_id, start, **options)


# -- ordered start, reverse stop ------------------------------------------------------------


def test_children_start_in_order_each_ready_first_and_stop_in_reverse() -> None:
    log = Log()

    async def slow_ready(*, ready: Ready) -> None:
        log.add("start", "db")
        await asyncio.sleep(2.0)  # connecting
        log.add("ready", "db")
        ready()
        try:
            await asyncio.sleep(10_000)
        finally:
            await asyncio.sleep(0.5)  # cleanup is awaited before the next child stops
            log.add("stop", "db")

    async def main() -> None:
        sup = Supervisor(
            [
                spec("db", slow_ready, ready=True),
                spec("cache", sleeper(log, "cache")),
                spec("web", sleeper(log, "web")),
            ]
        )
        async with sup:
            assert [c.status for c in sup.which_children()] == ["running"] * 3
            await asyncio.sleep(1)
        assert sup.which_children() == []

    run_virtual(main())
    assert log.seq() == [
        ("start", "db"),
        ("ready", "db"),
        ("start", "cache"),
        ("start", "web"),
        ("stop", "web"),
        ("stop", "cache"),
        ("stop", "db"),
    ]
    times = {(w, c): t for w, c, t in log.entries}
    assert times[("start", "cache")] == 2.0, "cache started before db was ready"
    assert times[("stop", "db")] == pytest.approx(3.5)


def test_a_child_failing_before_ready_fails_the_start_and_stops_the_others() -> None:
    log = Log()

    async def broken(*, ready: Ready) -> None:
        log.add("start", "broken")
        raise OSError("cannot bind")

    async def main() -> None:
        sup = Supervisor(
            [
                spec("a", sleeper(log, "a")),
                spec("b", sleeper(log, "b")),
                spec("x", broken, ready=True),
                spec("never", sleeper(log, "never")),
            ]
        )
        with pytest.raises(ChildStartError, match="'x' failed to start") as info:
            await sup.start()
        assert isinstance(info.value.__cause__, OSError)
        assert not sup.running

    run_virtual(main())
    assert log.seq() == [
        ("start", "a"),
        ("start", "b"),
        ("start", "broken"),
        ("stop", "b"),
        ("stop", "a"),
    ]


def test_a_child_returning_before_ready_is_ignored_not_restarted() -> None:
    async def disabled(*, ready: Ready) -> None:
        return None  # e.g. a feature turned off

    async def main() -> None:
        log = Log()
        async with Supervisor(
            [spec("off", disabled, ready=True), spec("on", sleeper(log, "on"))]
        ) as sup:
            await asyncio.sleep(1)
            info = {c.id: (c.status, c.restarts) for c in sup.which_children()}
            assert info == {"off": ("stopped", 0), "on": ("running", 0)}

    run_virtual(main())


# -- strategies ------------------------------------------------------------------------------


def _three(log: Log, strategy: str) -> Supervisor:
    return Supervisor(
        [
            spec("a", sleeper(log, "a")),
            spec("b", crasher(log, "b", after=1.0, times=1)),
            spec("c", sleeper(log, "c")),
        ],
        strategy=strategy,  # type: ignore[arg-type]
    )


def _run_three(strategy: str) -> tuple[Log, dict[str, int]]:
    log = Log()

    async def main() -> dict[str, int]:
        async with _three(log, strategy) as sup:
            await asyncio.sleep(5)
            return {c.id: c.restarts for c in sup.which_children()}

    return log, run_virtual(main())


def test_one_for_one_restarts_only_the_crashed_child() -> None:
    log, restarts = _run_three("one_for_one")
    assert log.seq("start", "stop", "crash")[:5] == [
        ("start", "a"),
        ("start", "b"),
        ("start", "c"),
        ("crash", "b"),
        ("start", "b"),
    ]
    assert log.count("start", "a") == 1
    assert log.count("start", "c") == 1
    assert restarts == {"a": 0, "b": 1, "c": 0}


def test_one_for_all_stops_the_others_in_reverse_and_starts_all_in_order() -> None:
    log, restarts = _run_three("one_for_all")
    assert log.seq()[:10] == [
        ("start", "a"),
        ("start", "b"),
        ("start", "c"),
        ("crash", "b"),
        ("stop", "c"),
        ("stop", "a"),
        ("start", "a"),
        ("start", "b"),
        ("start", "c"),
        ("stop", "c"),  # the final shutdown, in reverse
    ]
    assert restarts == {"a": 1, "b": 1, "c": 1}


def test_rest_for_one_restarts_the_crashed_child_and_those_after_it() -> None:
    log, restarts = _run_three("rest_for_one")
    assert log.seq()[:7] == [
        ("start", "a"),
        ("start", "b"),
        ("start", "c"),
        ("crash", "b"),
        ("stop", "c"),
        ("start", "b"),
        ("start", "c"),
    ]
    assert log.count("start", "a") == 1
    assert restarts == {"a": 0, "b": 1, "c": 1}


def test_one_for_all_drops_temporary_children_it_stopped() -> None:
    log = Log()

    async def main() -> list[str]:
        sup = Supervisor(
            [
                spec("t", sleeper(log, "t"), restart="temporary"),
                spec("b", crasher(log, "b", after=1.0, times=1)),
            ],
            strategy="one_for_all",
        )
        async with sup:
            await asyncio.sleep(3)
            return [c.id for c in sup.which_children()]

    assert run_virtual(main()) == ["b"]
    assert log.count("start", "t") == 1


# -- restart types ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("restart", "how", "restarted", "listed"),
    [
        ("permanent", "return", True, True),
        ("permanent", "raise", True, True),
        ("transient", "return", False, True),
        ("transient", "raise", True, True),
        ("transient", "cancelled", True, True),
        ("temporary", "raise", False, False),
        ("temporary", "return", False, False),
    ],
)
def test_restart_types(restart: Restart, how: str, restarted: bool, listed: bool) -> None:
    runs: list[float] = []

    async def child() -> None:
        runs.append(asyncio.get_running_loop().time())
        if len(runs) > 1:
            await asyncio.sleep(10_000)
        await asyncio.sleep(1)
        if how == "raise":
            raise ValueError("boom")
        if how == "cancelled":  # cancelled by something other than the supervisor
            asyncio.current_task().cancel()  # type: ignore[union-attr]
            await asyncio.sleep(0)

    async def main() -> list[str]:
        async with Supervisor([spec("x", child, restart=restart)]) as sup:
            await asyncio.sleep(2)
            return [f"{c.id}:{c.status}" for c in sup.which_children()]

    children = run_virtual(main())
    assert len(runs) == (2 if restarted else 1)
    if listed:
        assert children == [f"x:{'running' if restarted else 'stopped'}"]
    else:
        assert children == []


def test_a_cancellation_the_supervisor_caused_is_never_a_crash(events: Events) -> None:
    log = Log()

    async def main() -> None:
        sup = Supervisor(
            [
                spec("t", sleeper(log, "t"), restart="transient"),
                spec("b", crasher(log, "b", 1.0, times=1)),
            ],
            strategy="one_for_all",
        )
        async with sup:
            await asyncio.sleep(2)  # b crashed: t was cancelled by the supervisor, restarted
            await sup.terminate_child("t")  # cancelled by the supervisor again
            await asyncio.sleep(1)
            assert [(c.id, c.status) for c in sup.which_children()] == [
                ("t", "stopped"),
                ("b", "running"),
            ]

    run_virtual(main())
    crashes = [meta["child"] for event, meta in events if event == "tasks.child.crash"]
    assert crashes == ["b"]
    stops = [(m["child"], m["reason"]) for e, m in events if e == "tasks.child.stop"]
    assert stops == [("t", "shutdown"), ("t", "shutdown"), ("b", "shutdown")]


# -- restart intensity -----------------------------------------------------------------------


def test_crashes_spaced_beyond_the_window_never_give_up() -> None:
    log = Log()

    async def main() -> float:
        async with Supervisor([spec("c", crasher(log, "c", after=2.0))]) as sup:
            await asyncio.sleep(60)
            assert sup.running
            return asyncio.get_running_loop().time()

    assert run_virtual(main()) == 60
    assert log.count("crash", "c") == 30


def test_more_than_three_restarts_in_five_seconds_gives_up_stopping_the_others_in_reverse(
    events: Events,
) -> None:
    log = Log()

    async def main() -> float:
        sup = Supervisor(
            [
                spec("a", sleeper(log, "a")),
                spec("c", crasher(log, "c", after=1.0)),
                spec("z", sleeper(log, "z")),
            ]
        )
        await sup.start()
        with pytest.raises(TooManyRestarts, match=r"more than 3 restarts in 5\.0s") as info:
            await sup.wait()
        assert isinstance(info.value.__cause__, RuntimeError)
        assert not sup.running
        await sup.stop()  # already stopped: nothing to raise twice
        return asyncio.get_running_loop().time()

    assert run_virtual(main()) == 4.0
    assert log.count("crash", "c") == 4
    assert log.seq()[-2:] == [("stop", "z"), ("stop", "a")]
    assert [m for e, m in events if e == "tasks.supervisor.give_up"] == [
        {"supervisor": "supervisor", "child": "c", "max_restarts": 3}
    ]
    assert [e for e, _ in events].count("tasks.child.restart") == 3


def test_max_restarts_zero_gives_up_on_the_first_exit() -> None:
    log = Log()

    async def main() -> None:
        sup = Supervisor([spec("c", crasher(log, "c", 1.0))], max_restarts=0)
        await sup.start()
        with pytest.raises(TooManyRestarts):
            await sup.wait()

    run_virtual(main())
    assert log.count("start", "c") == 1


def test_escalation_through_two_nested_supervisors() -> None:
    log = Log()

    async def main() -> float:
        inner = Supervisor(
            [spec("sibling", sleeper(log, "sibling")), spec("c", crasher(log, "c", after=0.1))],
            max_restarts=2,
            name="inner",
        )
        outer = Supervisor(
            [
                spec("first", sleeper(log, "first")),
                inner.child_spec(),
                spec("last", sleeper(log, "last")),
            ],
            max_restarts=1,
            name="outer",
        )
        await outer.start()
        with pytest.raises(TooManyRestarts, match="outer") as info:
            await outer.wait()
        cause = info.value.__cause__
        assert isinstance(cause, TooManyRestarts)
        assert "inner" in str(cause)
        return asyncio.get_running_loop().time()

    now = run_virtual(main())
    # inner runs its crasher 3 times (initial + 2 restarts) before giving up; outer restarts
    # inner once, and gives up when inner gives up a second time.
    assert log.count("start", "c") == 6
    assert log.count("start", "sibling") == 2
    assert log.count("start", "first") == 1
    assert log.count("start", "last") == 1
    assert now == pytest.approx(0.6)
    # every give-up stopped the inner sibling; the final one stopped outer's children in reverse
    assert log.seq("stop") == [
        ("stop", "sibling"),
        ("stop", "sibling"),
        ("stop", "last"),
        ("stop", "first"),
    ]


def test_a_failed_restart_counts_against_the_intensity() -> None:
    attempts: list[float] = []

    async def flaky(*, ready: Ready) -> None:
        attempts.append(asyncio.get_running_loop().time())
        if len(attempts) > 1:
            raise ConnectionError("still down")
        ready()
        await asyncio.sleep(1)
        raise ConnectionError("lost")

    async def main() -> None:
        sup = Supervisor([spec("db", flaky, ready=True)])
        await sup.start()
        with pytest.raises(TooManyRestarts):
            await sup.wait()

    run_virtual(main())
    assert len(attempts) == 4  # the first run, then 3 failed restarts; the 4th is refused


# -- honest shutdown -------------------------------------------------------------------------


def test_a_child_ignoring_cancellation_is_reported_and_left_running(
    events: Events, caplog: pytest.LogCaptureFixture
) -> None:
    log = Log()
    release = asyncio.Event()

    async def stubborn() -> None:
        log.add("start", "stubborn")
        while not release.is_set():
            try:
                await asyncio.sleep(10_000)
            except asyncio.CancelledError:
                log.add("ignored", "stubborn")
        log.add("stop", "stubborn")

    async def main() -> None:
        sup = Supervisor(
            [spec("first", sleeper(log, "first")), spec("stubborn", stubborn, shutdown=2.0)],
            cancel_timeout=1.0,
        )
        await sup.start()
        loop = asyncio.get_running_loop()
        began = loop.time()
        with caplog.at_level(logging.WARNING, logger="underway.tasks"):
            await sup.stop()
        assert loop.time() - began == pytest.approx(3.0)  # shutdown 2 s + cancel_timeout 1 s
        assert sup.left_running == ["stubborn"]
        release.set()
        await asyncio.sleep(10_001)

    run_virtual(main())
    assert log.seq() == [
        ("start", "first"),
        ("start", "stubborn"),
        ("ignored", "stubborn"),
        ("ignored", "stubborn"),
        ("stop", "first"),  # the next child is stopped even though stubborn would not stop
        ("stop", "stubborn"),  # only once released, long after
    ]
    phases = [m["phase"] for e, m in events if e == "tasks.child.timeout"]
    assert phases == ["shutdown", "cancel"]
    assert "would not stop even when cancelled" in caplog.text
    assert "a coroutine cannot be killed" in caplog.text


def test_a_cooperative_child_is_asked_through_its_hook_not_cancelled() -> None:
    log = Log()

    async def polite(*, ready: Ready) -> None:
        done = asyncio.Event()
        ready.on_shutdown(done.set)
        ready()
        log.add("start", "polite")
        await done.wait()
        await asyncio.sleep(1)  # finishing current work, not interrupted
        log.add("stop", "polite")

    async def main() -> None:
        async with Supervisor([spec("p", polite, ready=True, shutdown=5)]):
            await asyncio.sleep(1)

    run_virtual(main())
    assert log.seq() == [("start", "polite"), ("stop", "polite")]


def test_a_shutdown_hook_that_raises_is_reported_and_the_child_cancelled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = Log()

    async def broken_hook(*, ready: Ready) -> None:
        def hook() -> None:
            raise OSError("hook failed")

        ready.on_shutdown(hook)
        ready()
        log.add("start", "broken")
        try:
            await asyncio.sleep(10_000)
        finally:
            log.add("stop", "broken")

    async def main() -> None:
        sup = Supervisor(
            [spec("first", sleeper(log, "first")), spec("broken", broken_hook, ready=True)]
        )
        async with sup:
            await asyncio.sleep(1)

    with caplog.at_level(logging.ERROR, logger="underway.tasks"):
        run_virtual(main())
    # the other children still stop, in reverse order
    assert log.seq("stop") == [("stop", "broken"), ("stop", "first")]
    assert "shutdown hook of child 'broken' failed" in caplog.text


def test_a_bound_on_stop_cancels_what_is_left_at_once(events: Events) -> None:
    log = Log()

    async def cleanup_for(name: str, seconds: float) -> None:
        log.add("start", name)
        try:
            await asyncio.sleep(10_000)
        finally:
            await asyncio.sleep(seconds)  # interrupted only by a second cancellation
            log.add("cleaned", name)

    async def main() -> float:
        sup = Supervisor(
            [
                spec("a", cleanup_for, args=("a", 0.5), shutdown=60),
                spec("b", cleanup_for, args=("b", 30.0), shutdown=60),
            ]
        )
        await sup.start()
        loop = asyncio.get_running_loop()
        began = loop.time()
        await sup.stop(timeout=5)  # b's cleanup runs past the bound
        assert log.seq("cleaned") == [("cleaned", "a")]
        return loop.time() - began

    # b was asked first (reverse order) and interrupted at the bound (t=5); a, not asked
    # yet, was cancelled then and given cancel_timeout (1 s): its 0.5 s cleanup ran.
    assert run_virtual(main()) == pytest.approx(5.5)
    assert [m["child"] for e, m in events if e == "tasks.child.timeout"] == []


def test_a_child_failing_after_the_bound_on_stop_is_reported_not_left_to_the_loop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def fails_when_cancelled() -> None:
        try:
            await asyncio.sleep(10_000)
        except asyncio.CancelledError:
            raise OSError("cleanup failed") from None

    async def slow_cleanup() -> None:
        try:
            await asyncio.sleep(10_000)
        finally:
            await asyncio.sleep(30)

    async def crashes_meanwhile() -> None:
        await asyncio.sleep(2)
        raise ValueError("crashed while b was stopping")

    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        unhandled: list[str] = []
        loop.set_exception_handler(lambda _, context: unhandled.append(context["message"]))
        sup = Supervisor(
            [
                spec("a", fails_when_cancelled, shutdown=60),
                spec("c", crashes_meanwhile),
                spec("b", slow_cleanup, shutdown=60),
            ]
        )
        await sup.start()
        # b is asked first; c crashes at 2 (its exit is no longer handled); past the bound
        # at 5, a is cancelled at once and fails
        await sup.stop(timeout=5)
        gc.collect()
        await asyncio.sleep(0)
        return unhandled

    with caplog.at_level(logging.ERROR, logger="underway.tasks"):
        assert run_virtual(main()) == []
    assert "child 'a' failed while stopping" in caplog.text
    assert "child 'c' failed while stopping" in caplog.text


def test_shutdown_zero_cancels_without_an_ask_period() -> None:
    log = Log()

    async def main() -> float:
        sup = Supervisor([spec("a", sleeper(log, "a"), shutdown=0)])
        await sup.start()
        loop = asyncio.get_running_loop()
        began = loop.time()
        await sup.stop()
        return loop.time() - began

    assert run_virtual(main()) == 0
    assert log.seq() == [("start", "a"), ("stop", "a")]


def test_cancelling_the_caller_of_stop_propagates_and_leaves_nothing_running() -> None:
    log = Log()

    async def main() -> None:
        sup = Supervisor([spec("a", sleeper(log, "a")), spec("b", sleeper(log, "b"))])
        await sup.start()
        stopper = asyncio.get_running_loop().create_task(sup.stop())
        await asyncio.sleep(0)
        stopper.cancel()
        with pytest.raises(asyncio.CancelledError):
            await stopper
        await asyncio.sleep(0.1)

    run_virtual(main())
    assert sorted(log.seq("stop")) == [("stop", "a"), ("stop", "b")]


# -- dynamic children, registry, reports ------------------------------------------------------


def test_start_terminate_restart_delete_child() -> None:
    log = Log()

    async def main() -> None:
        async with Supervisor([spec("a", sleeper(log, "a"))]) as sup:
            await sup.start_child(spec("b", sleeper(log, "b")))
            with pytest.raises(ConfigError, match="two children have the id 'b'"):
                await sup.start_child(spec("b", sleeper(log, "b")))
            assert [c.id for c in sup.which_children()] == ["a", "b"]
            await sup.terminate_child("b")
            assert sup.count_children() == {"specs": 2, "active": 1, "supervisors": 0, "workers": 2}
            with pytest.raises(RuntimeError, match="is running"):
                await sup.delete_child("a")
            await sup.restart_child("b")
            with pytest.raises(RuntimeError, match="is running"):
                await sup.restart_child("b")
            await sup.terminate_child("b")
            await sup.delete_child("b")
            with pytest.raises(LookupError, match="no child 'b'"):
                await sup.terminate_child("b")

            async def broken() -> None:
                raise ValueError("nope")

            with pytest.raises(ChildStartError):
                await sup.start_child(spec("x", broken, ready=True))
            assert [c.id for c in sup.which_children()] == ["a"]
        with pytest.raises(RuntimeError, match="not running"):
            await sup.start_child(spec("c", sleeper(log, "c")))

    run_virtual(main())
    assert log.seq() == [
        ("start", "a"),
        ("start", "b"),
        ("stop", "b"),
        ("start", "b"),
        ("stop", "b"),
        ("stop", "a"),
    ]


def test_a_registered_child_name_follows_each_incarnation() -> None:
    registry = Registry("names")
    log = Log()

    async def main() -> None:
        sup = Supervisor([spec("w", crasher(log, "w", 1.0, times=1), name=registry.via("worker"))])
        async with sup:
            await asyncio.sleep(0)
            first = registry.lookup("worker")
            assert first is sup.which_children()[0].task
            await asyncio.sleep(1.5)  # crashed and restarted
            second = registry.lookup("worker")
            assert second is not None
            assert second is not first
            assert second is sup.which_children()[0].task
        assert "worker" not in registry
        assert registry.lookup("worker") is None

    run_virtual(main())


def test_telemetry_reports_start_crash_restart_and_stop(events: Events) -> None:
    log = Log()

    async def main() -> None:
        async with Supervisor([spec("c", crasher(log, "c", 1.0, times=1))], name="app"):
            await asyncio.sleep(2)

    run_virtual(main())
    assert [(e, m.get("child")) for e, m in events] == [
        ("tasks.child.start", "c"),
        ("tasks.supervisor.start", None),
        ("tasks.child.crash", "c"),
        ("tasks.child.restart", "c"),
        ("tasks.child.start", "c"),
        ("tasks.child.stop", "c"),
        ("tasks.supervisor.stop", None),
    ]
    assert all(m["supervisor"] == "app" for _, m in events)
    crash = next(m for e, m in events if e == "tasks.child.crash")
    assert isinstance(crash["error"], RuntimeError)


def test_async_with_raises_a_give_up_that_was_not_waited_for() -> None:
    log = Log()

    async def main() -> None:
        with pytest.raises(TooManyRestarts):
            async with Supervisor([spec("c", crasher(log, "c", 0.1))]):
                await asyncio.sleep(10)

    run_virtual(main())


def test_a_supervisor_runs_once_at_a_time_and_restarts_fresh() -> None:
    log = Log()

    async def main() -> None:
        sup = Supervisor([spec("a", sleeper(log, "a"))])
        async with sup:
            with pytest.raises(RuntimeError, match="already"):
                await sup.start()
        async with sup:
            pass

    run_virtual(main())
    assert log.seq() == [("start", "a"), ("stop", "a")] * 2


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: Supervisor([], strategy="all_for_one"), "strategy must be one of"),  # type: ignore[arg-type]
        (lambda: Supervisor([], max_restarts=-1), "max_restarts must be an int >= 0"),
        (lambda: Supervisor([], max_seconds=0), "max_seconds must be > 0"),
        (lambda: Supervisor([], cancel_timeout=-1), "cancel_timeout must be a number"),
        (lambda: Supervisor([ChildSpec("a", asyncio.sleep)] * 2), "two children have the id 'a'"),
        (lambda: Supervisor(["a"]), "children must be ChildSpec"),  # type: ignore[list-item]
        (lambda: ChildSpec("", asyncio.sleep), "non-empty string"),
        (lambda: ChildSpec("a", "nope"), "start must be an async function"),  # type: ignore[arg-type]
        (lambda: ChildSpec("a", asyncio.sleep, restart="always"), "restart must be one of"),  # type: ignore[arg-type]
        (lambda: ChildSpec("a", asyncio.sleep, shutdown=-1), "shutdown must be a number"),
        (lambda: ChildSpec("a", asyncio.sleep, args=[1]), "args must be a tuple"),  # type: ignore[arg-type]
        (lambda: ChildSpec("a", asyncio.sleep, name="x"), "registry.via"),  # type: ignore[arg-type]
    ],
)
def test_bad_options_raise_config_error(build: Callable[[], object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        build()
