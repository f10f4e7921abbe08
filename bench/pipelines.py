"""underway.pipelines against FastStream and a hand-written aio-pika loop on RabbitMQ, in one run.

Usage::

    python -m bench.pipelines            # every configuration, best of 2
    python -m bench.pipelines --quick    # 5,000 messages, one configuration each

Every RabbitMQ measurement runs in a fresh subprocess on a fresh queue: the subprocess
fills the queue with N transient messages (untimed), then times its consumer from just
before it starts until the no-op handler has run N times and the consumer has stopped
(every acknowledgement sent, its connection closed), and checks at the broker that the
queue is empty. All systems consume with the same prefetch; each is measured with every
prefetch of the plan and its best is kept. FastStream runs in its own venv
(``bench/.venvs/faststream``, created with pip on first use); underway and the aio-pika loop
run with the interpreter that started the bench. A last part measures the pipeline alone,
fed by ``DummyProducer``. The output is one readable line per measurement, a table, and,
as the last line, one JSON object with the figures (messages per second) and the ratios
underway / peer. ``bench/README.md`` says what each figure means.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bench._harness import ratios as shared_ratios
from bench._harness import server_reachable

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
# The address the test suite uses too (host:port), with RabbitMQ's default user.
URL = f"amqp://guest:guest@{os.environ.get('UNDERWAY_RABBITMQ_ADDR', '127.0.0.1:5672')}/"
CHILD_TIMEOUT = 600.0
UNAVAILABLE = 3
FASTSTREAM_PACKAGES = ("faststream[rabbit]==0.7.8",)
BODY_SIZE = 16
FASTSTREAM_PROBE = (
    "import faststream.rabbit, importlib.metadata as m; assert m.version('faststream') == '0.7.8'"
)


@dataclass(frozen=True)
class System:
    """One consumer under test and how to run it."""

    key: str
    label: str
    script: str
    option: str = ""  # the child's option that picks a variant, e.g. "--style"


UNDERWAY = System("underway", "underway Pipeline", "_underway_rabbit.py")
UNDERWAY_BATCH = System("underway_batch", "underway + batcher", "_underway_rabbit.py")
FASTSTREAM_SYSTEM = System("faststream", "FastStream", "_peer_faststream.py", "--variant")
AIOPIKA = System("aiopika_loop", "aio-pika loop", "_peer_aiopika.py", "--style")
SYSTEMS = (UNDERWAY, UNDERWAY_BATCH, FASTSTREAM_SYSTEM, AIOPIKA)
MEMORY_KINDS = ("memory", "memory_sync_handler", "memory_batch")


@dataclass(frozen=True)
class Plan:
    """What one bench run measures."""

    messages: int
    repeat: int
    prefetch: tuple[int, ...]
    variants: dict[str, tuple[str, ...]]
    batch_size: int = 100
    concurrency: int = 10
    memory_messages: int = 200_000
    memory_batch_messages: int = 50_000
    memory_shape: tuple[int, int] = (10, 100)


FULL = Plan(
    10_000,
    repeat=2,
    prefetch=(100, 500),
    variants={"faststream": ("plain", "typed"), "aiopika_loop": ("callback", "iterator")},
)
QUICK = Plan(
    5_000,
    repeat=1,
    prefetch=(500,),
    variants={"faststream": ("plain",), "aiopika_loop": ("callback",)},
    memory_messages=100_000,
    memory_batch_messages=20_000,
)


class ChildFailed(RuntimeError):
    """A measurement subprocess failed."""


class NotAvailable(RuntimeError):
    """The system cannot run here (for underway: no RabbitMQ producer)."""


def run_child(python: Path, script: str, opts: Sequence[str]) -> dict[str, Any]:
    """Run one measurement subprocess and return the JSON object it printed last."""
    argv = [str(python), str(HERE / script), *opts]
    try:
        done = subprocess.run(
            argv, cwd=ROOT, capture_output=True, text=True, timeout=CHILD_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise ChildFailed(f"timed out after {CHILD_TIMEOUT:.0f} s") from exc
    lines = done.stdout.strip().splitlines()
    last: dict[str, Any] = {}
    if lines:
        try:
            last = json.loads(lines[-1])
        except json.JSONDecodeError:
            last = {}
    if done.returncode == UNAVAILABLE and "unavailable" in last:
        raise NotAvailable(str(last["unavailable"]))
    if done.returncode != 0 or not last:
        tail = "\n    ".join((done.stderr or done.stdout).strip().splitlines()[-6:])
        raise ChildFailed(f"failed (exit {done.returncode}):\n    {tail}")
    return last


# -- results --------------------------------------------------------------------------------------


@dataclass
class Results:
    """Every rate measured, the best per figure, and what could not run."""

    runs: dict[str, list[float]] = field(default_factory=dict)
    cpu: dict[str, list[float]] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)
    best: dict[str, str] = field(default_factory=dict)

    def add(self, name: str, rate: float, cpu_us: float | None = None) -> None:
        """Record one rate (and the CPU microseconds per message) under figure ``name``."""
        self.runs.setdefault(name, []).append(rate)
        if cpu_us is not None:
            self.cpu.setdefault(name, []).append(cpu_us)

    def figures(self) -> dict[str, float]:
        """The best rate of each figure, and of each system over its configurations."""
        out = {name: max(rates) for name, rates in self.runs.items()}
        for key in (*(s.key for s in SYSTEMS), *MEMORY_KINDS):
            prefix = f"{key}_msgs_per_s_"
            found = [(v, k) for k, v in out.items() if k.startswith(prefix)]
            if found:
                value, name = max(found)
                out[f"{key}_msgs_per_s"] = value
                self.best[key] = name[len(prefix) :]
            cpu = [min(v) for k, v in self.cpu.items() if k.startswith(prefix)]
            if cpu:
                out[f"{key}_cpu_us_per_msg"] = min(cpu)
        return out


def ratios(figures: dict[str, float]) -> dict[str, float]:
    """Throughput of underway over each peer (higher is better for underway)."""
    pairs = {
        "rabbitmq_vs_faststream": ("underway_msgs_per_s", "faststream_msgs_per_s"),
        "rabbitmq_vs_aiopika_loop": ("underway_msgs_per_s", "aiopika_loop_msgs_per_s"),
    }
    return shared_ratios(figures, pairs)


# -- the parent -----------------------------------------------------------------------------------


def _broker_reachable(url: str) -> str | None:
    """``None`` if something listens at the URL's host and port, else why not."""
    return server_reachable(url, 5672, "RabbitMQ broker")


def _pythons(results: Results) -> dict[str, Path]:
    """Each system's interpreter; FastStream's venv is made on first use (or left out)."""
    from bench._venv import peer_python

    here = Path(sys.executable)
    out = {UNDERWAY.key: here, UNDERWAY_BATCH.key: here, AIOPIKA.key: here}
    try:
        out[FASTSTREAM_SYSTEM.key] = peer_python(
            "faststream", FASTSTREAM_PACKAGES, probe=FASTSTREAM_PROBE
        )
    except (subprocess.CalledProcessError, RuntimeError) as exc:
        results.missing[FASTSTREAM_SYSTEM.key] = f"skipped: {exc}"
        print(f"FastStream: skipped: {exc}", flush=True)
    return out


@dataclass
class Bench:
    """Runs the plan's measurements and records them."""

    plan: Plan
    url: str
    pythons: dict[str, Path]
    results: Results = field(default_factory=Results)

    def rabbit(self, system: System, prefetch: int, variant: str = "") -> None:
        """Measure ``system`` once with this prefetch (and variant)."""
        if system.key in self.results.missing or system.key not in self.pythons:
            return
        plan = self.plan
        opts = ["--url", self.url, "--messages", str(plan.messages), "--prefetch", str(prefetch)]
        opts += ["--body-size", str(BODY_SIZE)]
        if variant:
            opts += [system.option, variant]
        if system.key.startswith("underway"):
            opts += ["--concurrency", str(plan.concurrency)]
        if system is UNDERWAY_BATCH:
            opts += ["--batch-size", str(plan.batch_size)]
        config = f"p{prefetch}" + (f"_{variant}" if variant else "")
        try:
            r = run_child(self.pythons[system.key], system.script, opts)
        except NotAvailable as exc:
            self.results.missing[system.key] = f"not available: {exc}"
            print(f"{system.label}: not available: {exc}", flush=True)
            return
        except ChildFailed as exc:
            print(f"{system.label} {config}: {exc}", flush=True)
            return
        rate = plan.messages / r["acked_s"]
        cpu_us = 1e6 * r["cpu_s"] / plan.messages
        self.results.add(f"{system.key}_msgs_per_s_{config}", rate, cpu_us)
        self.results.versions[system.key] = (
            f"{r['version']} (aio-pika {r['aio_pika']}, Python {r['python']}, {r['loop']})"
        )
        shape = r.get("processors")
        said = f"processors {shape['concurrency']}x{shape['max_demand']}" if shape else variant
        print(
            f"{system.label:<19} prefetch {prefetch:<4} {said:<22} {rate:>8,.0f} msgs/s until "
            f"stopped, all acked  (handled all in {r['handled_s']:.2f} s, stopped at "
            f"{r['acked_s']:.2f} s; CPU {cpu_us:.0f} us/msg; fill {r['fill_s']:.2f} s)",
            flush=True,
        )

    def memory(self, batch: bool, handler: str) -> None:
        """Measure the pipeline alone, fed by DummyProducer."""
        concurrency, max_demand = self.plan.memory_shape
        n = self.plan.memory_batch_messages if batch else self.plan.memory_messages
        opts = ["--phase", "memory", "--messages", str(n), "--handler", handler]
        opts += ["--concurrency", str(concurrency), "--max-demand", str(max_demand)]
        if batch:
            opts += ["--batch-size", str(self.plan.batch_size)]
        try:
            r = run_child(self.pythons[UNDERWAY.key], UNDERWAY.script, opts)
        except (ChildFailed, NotAvailable) as exc:
            print(f"memory c{concurrency}x{max_demand}: {exc}", flush=True)
            return
        rate = n / r["acked_s"]
        kind = "memory_batch" if batch else "memory"
        suffix = "" if handler == "async" else "_sync_handler"
        self.results.add(f"{kind}{suffix}_msgs_per_s_c{concurrency}x{max_demand}", rate)
        what = f"batch_size {self.plan.batch_size}" if batch else f"{handler} handler"
        print(
            f"{'underway in memory':<19} processors {concurrency}x{max_demand:<5} "
            f"{what:<17} {rate:>8,.0f} msgs/s  ({n:,} messages in {r['acked_s']:.2f} s)",
            flush=True,
        )

    def run(self) -> None:
        """Every RabbitMQ configuration ``repeat`` times, systems interleaved; then memory."""
        plan = self.plan
        for _ in range(plan.repeat):
            for prefetch in plan.prefetch:
                self.rabbit(UNDERWAY, prefetch)
                for variant in plan.variants.get(FASTSTREAM_SYSTEM.key, ()):
                    self.rabbit(FASTSTREAM_SYSTEM, prefetch, variant)
                for style in plan.variants.get(AIOPIKA.key, ()):
                    self.rabbit(AIOPIKA, prefetch, style)
                self.rabbit(UNDERWAY_BATCH, prefetch)
        for _ in range(plan.repeat):
            self.memory(batch=False, handler="async")
            self.memory(batch=False, handler="sync")
            self.memory(batch=True, handler="async")


def _table(results: Results, figures: dict[str, float]) -> None:
    print(
        "\nmessages/s, best of the runs (every run in brackets, to show the noise); CPU "
        "microseconds the consumer process used per message, lowest run:",
        flush=True,
    )
    print(f"  {'figure':<46} {'best':>9}  {'CPU us':>6}   runs", flush=True)
    for name in sorted(results.runs):
        runs = " ".join(f"{v:,.0f}" for v in results.runs[name])
        cpu = f"{min(results.cpu[name]):.0f}" if name in results.cpu else "-"
        print(f"  {name:<46} {figures[name]:>9,.0f}  {cpu:>6}   [{runs}]", flush=True)
    print("best per system:", flush=True)
    for key, config in results.best.items():
        cpu_us = figures.get(f"{key}_cpu_us_per_msg")
        cpu = f"{cpu_us:.0f}" if cpu_us is not None else "-"
        rate = figures[f"{key}_msgs_per_s"]
        print(f"  {key:<46} {rate:>9,.0f}  {cpu:>6}   ({config})", flush=True)


def _plan(args: argparse.Namespace) -> Plan:
    plan = QUICK if args.quick else FULL
    if args.messages is not None:
        plan = replace(plan, messages=args.messages)
    if args.repeat is not None:
        plan = replace(plan, repeat=args.repeat)
    if args.prefetch is not None:
        plan = replace(plan, prefetch=tuple(int(p) for p in args.prefetch.split(",")))
    if args.memory_messages is not None:
        plan = replace(plan, memory_messages=args.memory_messages)
    return plan


def _parent(args: argparse.Namespace) -> None:
    plan = _plan(args)
    problem = _broker_reachable(args.url)
    if problem:
        raise SystemExit(problem)
    results = Results()
    pythons = _pythons(results)
    prefetch = ", ".join(map(str, plan.prefetch))
    print(
        f"underway pipelines vs FastStream and an aio-pika loop on RabbitMQ: {plan.messages:,} "
        f"transient {BODY_SIZE}-byte messages per run, prefetch {prefetch}, "
        f"best of {plan.repeat}; then {plan.memory_messages:,} messages in memory "
        f"({plan.memory_batch_messages:,} with the batcher)",
        flush=True,
    )
    bench = Bench(plan, args.url, pythons, results)
    bench.run()
    figures = results.figures()
    _table(results, figures)
    found = ratios(figures)
    for name, value in found.items():
        print(f"ratio {name}: {value} (underway over the peer, best configuration of each)")
    summary = {
        "figures": {k: round(v, 1) for k, v in sorted(figures.items())},
        "ratios": found,
        "best": results.best,
        "versions": results.versions,
        "missing": results.missing,
        "messages": plan.messages,
        "memory_messages": plan.memory_messages,
        "memory_batch_messages": plan.memory_batch_messages,
        "repeat": plan.repeat,
    }
    print(json.dumps(summary), flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``python -m bench.pipelines``."""
    p = argparse.ArgumentParser(
        prog="python -m bench.pipelines", description=__doc__.split("\n")[0]
    )
    p.add_argument("--quick", action="store_true", help="fewer messages and configurations")
    p.add_argument("--messages", type=int, default=None, help="messages per RabbitMQ run")
    p.add_argument("--repeat", type=int, default=None, help="runs per configuration (best kept)")
    p.add_argument("--prefetch", default=None, help="comma-separated prefetch values")
    p.add_argument("--memory-messages", type=int, default=None, help="messages per memory run")
    p.add_argument(
        "--url", default=URL, help="the RabbitMQ broker (default from UNDERWAY_RABBITMQ_ADDR)"
    )
    _parent(p.parse_args(argv))


if __name__ == "__main__":
    main()
