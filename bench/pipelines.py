"""underway.pipelines vs FastStream and hand-written driver loops, broker by broker, in one run.

Usage::

    python -m bench.pipelines            # every configuration, 3 runs each
    python -m bench.pipelines --quick    # fewer messages, one configuration each, 1 run
    python -m bench.pipelines --only kafka,nats

Rows (each left out, and said so, when its broker cannot be reached or started):

- RabbitMQ (``UNDERWAY_RABBITMQ_ADDR``): underway vs FastStream vs an aio-pika loop;
- Kafka (Tansu, started here): underway vs FastStream's batch subscriber vs an aiokafka loop;
- NATS JetStream (``UNDERWAY_NATS_ADDR``): underway vs FastStream's pull subscriber vs a
  nats-py pull loop;
- SQS (moto, started here): underway vs an aiobotocore loop;
- in memory: the pipeline alone, fed by ``DummyProducer``.

Every measurement runs in a fresh subprocess on a fresh queue, topic or stream: the
subprocess fills it (untimed), then times its consumer from just before it starts until the
no-op handler has run N times and the consumer has stopped (every acknowledgement, commit or
delete sent), and checks at the broker that nothing is left. The systems of a row consume the
same messages with the same prefetch. FastStream runs in its own venv
(``bench/.venvs/faststream``, created with pip on first use); underway and the hand-written
loops run with the interpreter that started the bench. Every configuration gets the same
number of runs; figures are medians, ratios are ratios of medians. The output is one readable
line per measurement, a table, and, as the last line, one JSON object with the figures
(messages per second) and the ratios underway / peer. ``bench/README.md`` says what each
figure means.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import FrameType

from bench._harness import Spread, best_median, server_reachable, spreads
from bench._harness import ratios as shared_ratios
from bench._pipelines_rows import (
    ROWS,
    ChildFailed,
    NotAvailable,
    Row,
    Servers,
    run_child,
)
from bench._pipelines_rows import System as BrokerSystem

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
# The address the test suite uses too (host:port), with RabbitMQ's default user.
URL = f"amqp://guest:guest@{os.environ.get('UNDERWAY_RABBITMQ_ADDR', '127.0.0.1:5672')}/"
# One FastStream for every row; its extras bring aio-pika, aiokafka and nats-py.
FASTSTREAM_PACKAGES = ("faststream[rabbit,kafka,nats]==0.7.8",)
BODY_SIZE = 16
FASTSTREAM_PROBE = (
    "import faststream.rabbit, faststream.kafka, faststream.nats, importlib.metadata as m; "
    "assert m.version('faststream') == '0.7.8'"
)
PARTS = ("rabbitmq", "kafka", "nats", "sqs", "memory")


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
# Kafka's figures start after the consumer group was joined (see ``Bench.broker``); the
# ``_e2e`` figures count the join too.
KAFKA_E2E = ("kafka_underway_e2e", "kafka_faststream_e2e", "kafka_aiokafka_loop_e2e")


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
    kafka_messages: int = 200_000
    kafka_partitions: int = 4
    nats_messages: int = 50_000
    sqs_messages: int = 1_000
    sqs_receivers: int = 4
    broker_prefetch: int = 500
    parts: tuple[str, ...] = PARTS


FULL = Plan(
    10_000,
    repeat=3,
    prefetch=(100, 500),
    variants={
        "faststream": ("plain", "typed"),
        "aiopika_loop": ("callback", "iterator"),
        "nats_faststream": ("pull", "batch"),
    },
)
QUICK = Plan(
    5_000,
    repeat=1,
    prefetch=(500,),
    variants={
        "faststream": ("plain",),
        "aiopika_loop": ("callback",),
        "nats_faststream": ("batch",),
    },
    memory_messages=100_000,
    memory_batch_messages=20_000,
    kafka_messages=50_000,
    nats_messages=20_000,
    sqs_messages=500,
)


# -- results --------------------------------------------------------------------------------------


@dataclass
class Results:
    """Every rate measured, the median per figure, and what could not run."""

    runs: dict[str, list[float]] = field(default_factory=dict)
    cpu: dict[str, list[float]] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)
    best: dict[str, str] = field(default_factory=dict)
    spread: dict[str, Spread] = field(default_factory=dict)

    def add(self, name: str, rate: float, cpu_us: float | None = None) -> None:
        """Record one rate (and the CPU microseconds per message) under figure ``name``."""
        self.runs.setdefault(name, []).append(rate)
        if cpu_us is not None:
            self.cpu.setdefault(name, []).append(cpu_us)

    def keys(self) -> list[str]:
        """Every system key (and memory kind) whose best configuration is reported."""
        row_keys = [system.key for row in ROWS for system in row.systems]
        return [*(s.key for s in SYSTEMS), *row_keys, *KAFKA_E2E, *MEMORY_KINDS]

    def figures(self) -> dict[str, float]:
        """The median rate of each figure, and of each system's best configuration.

        A system measured in several configurations is given the configuration whose
        median is the highest (``best`` names it); its CPU figure is that configuration's
        median too.
        """
        self.spread = spreads(self.runs)
        out = {name: s.median for name, s in self.spread.items()}
        for key in self.keys():
            prefix = f"{key}_msgs_per_s_"
            found = best_median(self.runs, prefix)
            if found is None:
                continue
            name, spread = found
            out[f"{key}_msgs_per_s"] = spread.median
            self.spread[f"{key}_msgs_per_s"] = spread
            self.best[key] = name[len(prefix) :]
            if name in self.cpu:
                out[f"{key}_cpu_us_per_msg"] = spreads({name: self.cpu[name]})[name].median
        return out


def ratios(figures: dict[str, float]) -> dict[str, float]:
    """Throughput of underway over each peer (higher is better for underway)."""
    pairs = {
        "rabbitmq_vs_faststream": ("underway_msgs_per_s", "faststream_msgs_per_s"),
        "rabbitmq_vs_aiopika_loop": ("underway_msgs_per_s", "aiopika_loop_msgs_per_s"),
    }
    for row in ROWS:
        ours = f"{row.systems[0].key}_msgs_per_s"
        for name, peer in row.ratios.items():
            pairs[name] = (ours, f"{peer}_msgs_per_s")
    pairs["kafka_e2e_vs_faststream"] = (
        "kafka_underway_e2e_msgs_per_s",
        "kafka_faststream_e2e_msgs_per_s",
    )
    pairs["kafka_e2e_vs_aiokafka_loop"] = (
        "kafka_underway_e2e_msgs_per_s",
        "kafka_aiokafka_loop_e2e_msgs_per_s",
    )
    return shared_ratios(figures, pairs)


# -- the parent -----------------------------------------------------------------------------------


def _broker_reachable(url: str) -> str | None:
    """``None`` if something listens at the URL's host and port, else why not."""
    return server_reachable(url, 5672, "RabbitMQ broker")


def _pythons(results: Results) -> dict[str, Path]:
    """Each venv's interpreter; FastStream's is made on first use (or left out).

    ``underway`` is this interpreter (underway and the hand-written loops run with it).
    """
    from bench._venv import peer_python

    out = {"underway": Path(sys.executable)}
    try:
        out["faststream"] = peer_python("faststream", FASTSTREAM_PACKAGES, probe=FASTSTREAM_PROBE)
    except (subprocess.CalledProcessError, RuntimeError) as exc:
        results.missing["faststream"] = f"skipped: {exc}"
        print(f"FastStream: skipped: {exc}", flush=True)
    return out


def _python_of(system: System) -> str:
    return "faststream" if system is FASTSTREAM_SYSTEM else "underway"


@dataclass
class Bench:
    """Runs the plan's measurements and records them."""

    plan: Plan
    url: str
    pythons: dict[str, Path]
    results: Results = field(default_factory=Results)
    servers: Servers = field(default_factory=Servers)

    def rabbit(self, system: System, prefetch: int, variant: str = "") -> None:
        """Measure ``system`` once on RabbitMQ with this prefetch (and variant)."""
        venv = _python_of(system)
        if system.key in self.results.missing or venv not in self.pythons:
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
            r = run_child(self.pythons[venv], system.script, opts)
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

    def _row_opts(self, row: Row, system: BrokerSystem) -> tuple[int, list[str]]:
        plan = self.plan
        n = {"kafka": plan.kafka_messages, "nats": plan.nats_messages}.get(
            row.name, plan.sqs_messages
        )
        opts = [*self.servers.options[row.name], "--messages", str(n)]
        opts += ["--prefetch", str(plan.broker_prefetch), "--body-size", str(BODY_SIZE)]
        if row.name == "kafka":
            opts += ["--partitions", str(plan.kafka_partitions)]
        if row.name == "sqs":
            opts += ["--receivers", str(plan.sqs_receivers)]
        if system is row.systems[0]:
            opts += ["--concurrency", str(plan.concurrency)]
        return n, opts

    def broker(self, row: Row, system: BrokerSystem, variant: str = "") -> None:
        """Measure ``system`` of ``row`` once (with ``variant``).

        The rate is N over the time from just before the consumer started until it stopped
        with everything acknowledged. For Kafka that time starts when the first message was
        handled instead: joining the consumer group costs a fixed wait on the broker's side
        (Tansu waits half the session timeout for other members, 5 s with the clients'
        default 10 s), the same for every system and larger than consuming 50,000 messages;
        the ``_e2e`` figures keep it.
        """
        key = system.key
        if key in self.results.missing or system.venv not in self.pythons:
            return
        if row.name not in self.servers.options:
            return
        n, opts = self._row_opts(row, system)
        if variant:
            opts += [system.option, variant]
        config = f"p{self.plan.broker_prefetch}" + (f"_{variant}" if variant else "")
        try:
            r = run_child(self.pythons[system.venv], system.script, opts)
        except NotAvailable as exc:
            self.results.missing[key] = f"not available: {exc}"
            print(f"{row.title} {system.label}: not available: {exc}", flush=True)
            return
        except ChildFailed as exc:
            print(f"{row.title} {system.label} {config}: {exc}", flush=True)
            return
        cpu_us = 1e6 * r["cpu_s"] / n
        e2e = n / r["acked_s"]
        if row.name == "kafka":
            rate = n / (r["acked_s"] - r["first_s"])
            self.results.add(f"{key}_e2e_msgs_per_s_{config}", e2e)
        else:
            rate = e2e
        self.results.add(f"{key}_msgs_per_s_{config}", rate, cpu_us)
        self.results.versions[key] = f"{r['version']} ({r['driver']}, Python {r['python']})"
        said = variant or ""
        if "processors" in r:
            said = f"processors {r['processors']['concurrency']}x{r['processors']['max_demand']}"
        joined = f", {e2e:,.0f} msgs/s with the join" if row.name == "kafka" else ""
        print(
            f"{row.title:<15} {system.label:<18} {said:<22} {rate:>8,.0f} msgs/s{joined}  "
            f"(first handled at {r['first_s']:.2f} s, all at {r['handled_s']:.2f} s, stopped "
            f"at {r['acked_s']:.2f} s; CPU {cpu_us:.0f} us/msg; fill {r['fill_s']:.2f} s)",
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
            r = run_child(self.pythons["underway"], UNDERWAY.script, opts)
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

    def _rabbit_round(self) -> None:
        plan = self.plan
        for prefetch in plan.prefetch:
            self.rabbit(UNDERWAY, prefetch)
            for variant in plan.variants.get(FASTSTREAM_SYSTEM.key, ()):
                self.rabbit(FASTSTREAM_SYSTEM, prefetch, variant)
            for style in plan.variants.get(AIOPIKA.key, ()):
                self.rabbit(AIOPIKA, prefetch, style)
            self.rabbit(UNDERWAY_BATCH, prefetch)

    def _row_round(self, row: Row) -> None:
        for system in row.systems:
            for variant in self.plan.variants.get(system.key, system.variants):
                self.broker(row, system, variant)

    def run(self) -> None:
        """Each row's configurations ``repeat`` times, systems interleaved; then memory."""
        plan = self.plan
        if "rabbitmq" in plan.parts and "rabbitmq" not in self.results.missing:
            for _ in range(plan.repeat):
                self._rabbit_round()
        for row in ROWS:
            if row.name in plan.parts:
                for _ in range(plan.repeat):
                    self._row_round(row)
        if "memory" in plan.parts:
            for _ in range(plan.repeat):
                self.memory(batch=False, handler="async")
                self.memory(batch=False, handler="sync")
                self.memory(batch=True, handler="async")


def _table(results: Results, figures: dict[str, float]) -> None:
    print(
        "\nmessages/s, median of the runs (every run in brackets, to show the noise); CPU "
        "microseconds the consumer process used per message, median:",
        flush=True,
    )
    print(f"  {'figure':<50} {'median':>9}  {'CPU us':>6}   runs", flush=True)
    for name in sorted(results.runs):
        runs = " ".join(f"{v:,.0f}" for v in results.runs[name])
        cpu = (
            f"{spreads({name: results.cpu[name]})[name].median:.0f}" if name in results.cpu else "-"
        )
        print(f"  {name:<50} {figures[name]:>9,.0f}  {cpu:>6}   [{runs}]", flush=True)
    print("best configuration per system (by median):", flush=True)
    for key, config in results.best.items():
        cpu_us = figures.get(f"{key}_cpu_us_per_msg")
        cpu = f"{cpu_us:.0f}" if cpu_us is not None else "-"
        rate = figures[f"{key}_msgs_per_s"]
        print(f"  {key:<50} {rate:>9,.0f}  {cpu:>6}   ({config})", flush=True)


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
    for name in ("kafka_messages", "nats_messages", "sqs_messages"):
        if getattr(args, name) is not None:
            plan = replace(plan, **{name: getattr(args, name)})
    if args.only is not None:
        parts = tuple(p.strip() for p in args.only.split(",") if p.strip())
        unknown = set(parts) - set(PARTS)
        if unknown:
            raise SystemExit(f"--only: unknown part(s) {sorted(unknown)}; known: {PARTS}")
        plan = replace(plan, parts=parts)
    return plan


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    """A SIGTERM ends the bench through ``finally`` blocks, so its servers are stopped."""
    raise SystemExit(128 + signum)


def _parent(args: argparse.Namespace) -> None:
    plan = _plan(args)
    results = Results()
    if "rabbitmq" in plan.parts:
        problem = _broker_reachable(args.url)
        if problem:
            results.missing["rabbitmq"] = problem
            print(f"RabbitMQ: left out: {problem}", flush=True)
    pythons = _pythons(results)
    rows = [row for row in ROWS if row.name in plan.parts]
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    servers = Servers()
    try:
        servers.start(rows)
        for row, why in servers.missing.items():
            results.missing[row] = why
            print(f"{row}: left out: {why}", flush=True)
        print(
            f"underway pipelines vs FastStream and hand-written loops: {', '.join(plan.parts)}; "
            f"RabbitMQ {plan.messages:,} messages (prefetch {', '.join(map(str, plan.prefetch))}),"
            f" Kafka {plan.kafka_messages:,} ({plan.kafka_partitions} partitions), NATS "
            f"{plan.nats_messages:,}, SQS {plan.sqs_messages:,} ({plan.sqs_receivers} receive "
            f"loops), prefetch {plan.broker_prefetch}, {BODY_SIZE}-byte bodies; in memory "
            f"{plan.memory_messages:,} ({plan.memory_batch_messages:,} with the batcher); "
            f"{plan.repeat} run(s) per configuration, medians",
            flush=True,
        )
        bench = Bench(plan, args.url, pythons, results, servers)
        bench.run()
    finally:
        servers.stop()
    figures = results.figures()
    _table(results, figures)
    found = ratios(figures)
    for name, value in found.items():
        print(
            f"ratio {name}: {value} (underway over the peer, medians, best configuration of each)"
        )
    summary = {
        "figures": {k: round(v, 1) for k, v in sorted(figures.items())},
        "ratios": found,
        "spread": {k: s.as_dict(1) for k, s in sorted(results.spread.items())},
        "best": results.best,
        "versions": results.versions,
        "missing": results.missing,
        "messages": plan.messages,
        "kafka_messages": plan.kafka_messages,
        "nats_messages": plan.nats_messages,
        "sqs_messages": plan.sqs_messages,
        "broker_prefetch": plan.broker_prefetch,
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
    p.add_argument("--only", default=None, help=f"comma-separated parts of {','.join(PARTS)}")
    p.add_argument("--messages", type=int, default=None, help="messages per RabbitMQ run")
    p.add_argument("--kafka-messages", type=int, default=None, help="messages per Kafka run")
    p.add_argument("--nats-messages", type=int, default=None, help="messages per NATS run")
    p.add_argument("--sqs-messages", type=int, default=None, help="messages per SQS run")
    p.add_argument("--repeat", type=int, default=None, help="runs per configuration (medians)")
    p.add_argument("--prefetch", default=None, help="comma-separated RabbitMQ prefetch values")
    p.add_argument("--memory-messages", type=int, default=None, help="messages per memory run")
    p.add_argument(
        "--url", default=URL, help="the RabbitMQ broker (default from UNDERWAY_RABBITMQ_ADDR)"
    )
    _parent(p.parse_args(argv))


if __name__ == "__main__":
    main()
