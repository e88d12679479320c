"""Door-open -> command-centre latency of the dispatch service, idle and under backlog.

Everything runs on this machine, each part in its own process as in production:
Mosquitto (holding the backlog), ``aedfleet dispatch`` and ``aedfleet ingest``
(subprocesses, from their TOML files), influxd with its nginx shim (``aedfleet_testing/influx.py``),
and this script, which plays the cabinets and the command centre: it publishes door
events (QoS 1, each from a cabinet of its own, so each is an incident's alert) at a
steady rate and runs the HTTP receiver (aiohttp, verifying each HMAC signature). The
latency of an event is from just before its publication to its arrival at the receiver,
both read from this process's monotonic clock.

Two measurements in one run:

1. idle: nothing else happens;
2. backlog: the broker first holds a backlog of heartbeats for the ingest's persistent
   session (a region's cabinets reconnecting after an outage, replaying hours of
   telemetry); the ingest starts draining it and the door events are published at the
   same rate meanwhile. The ingest's progress is read from its /metrics, so the script
   knows which door events were published while the drain was under way.

The figures: p50, p99 and max of each, the ratio of the two p99s (goal: p99 < 250 ms in
both, backlog no more than 2x idle), the drain's rate, and each process's CPU share.

    PYTHONPATH=. .venv/bin/python benchmarks/dispatch_latency.py --events 1000 --backlog 200000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Final
from urllib.parse import unquote

import psutil

from aedfleet.contract import (
    Channel,
    Event,
    EventType,
    Heartbeat,
    dispatch_event_id,
    encode,
    topic,
)
from aedfleet.mqtt import KeepAliveTicker, MqttConnection, MqttSettings
from aedfleet_testing.brokers import free_port
from aedfleet_testing.commands import AEDFLEET, REPO, command_env
from aedfleet_testing.dispatch_support import HMAC_SECRET, DispatchReceiver, seed, write_toml
from aedfleet_testing.influx import InfluxServer
from aedfleet_testing.ingest_support import seed_registry, write_ingest_config
from benchmarks.ingest_throughput import (
    SESSION_EXPIRY_S,
    BacklogBroker,
    cabinet_ids,
    create_session,
    fleet_messages,
    publish_backlog,
)
from dispatch.metrics import LATENCY_BUCKETS
from ingest.config import IngestSettings
from ingest.service import FLEET_FILTER

BOOT: Final = "0" * 31 + "1"
WAIT_S: Final = 900.0
GOAL_P99_MS: Final = 250.0
GOAL_RATIO: Final = 2.0
PRIORITY_NICE: Final = -10
BATCH_NICE: Final = 10


class BenchmarkError(Exception):
    """A stage did not finish, or did not see what it was owed."""


# -- processes -----------------------------------------------------------------------------


class Service:
    """An ``aedfleet`` subprocess, logging to a file; killed at exit if still running."""

    def __init__(self, name: str, args: list[str], log: Path, nice: int | None = None) -> None:
        self.name = name
        self._log = log.with_suffix(".log").open("ab")
        # nice(1) sets it before the service starts a thread, so every thread inherits it;
        # its increment is relative to this script's own, which may have been changed.
        prefix = (
            [] if nice is None else ["nice", "-n", str(nice - os.getpriority(os.PRIO_PROCESS, 0))]
        )
        self.process = subprocess.Popen(
            [*prefix, AEDFLEET, *args],
            cwd=REPO,
            env=command_env(),
            stdout=self._log,
            stderr=self._log,
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._log.close()


def renice(process: psutil.Process, nice: int) -> None:
    """Every thread of a running process: Linux keeps a nice value per thread.

    ``setpriority`` on a pid reaches only its first thread; influxd's Go runtime already
    runs a dozen more by the time it answers.
    """
    for thread in process.threads():
        os.setpriority(os.PRIO_PROCESS, thread.id, nice)


def _get(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback
            return str(response.read().decode())
    except (urllib.error.URLError, OSError):
        return None


async def wait_until(check: object, what: str, timeout_s: float = 60, every_s: float = 0.1) -> None:
    """Poll ``check()`` (a blocking callable) in a thread until it returns true."""
    assert callable(check)
    deadline = time.monotonic() + timeout_s
    while not await asyncio.to_thread(check):
        if time.monotonic() > deadline:
            raise BenchmarkError(f"{what} within {timeout_s:g} s")
        await asyncio.sleep(every_s)


class CpuMeter:
    """CPU seconds of named processes, to print each one's share of a core per stage."""

    def __init__(self) -> None:
        self.processes: dict[str, psutil.Process] = {"bench (this)": psutil.Process()}

    def add(self, name: str, pid: int) -> None:
        self.processes[name] = psutil.Process(pid)

    def add_children(self) -> None:
        for child in psutil.Process().children(recursive=True):
            with contextlib.suppress(psutil.NoSuchProcess):
                name = child.name()
                if name.startswith(("mosquitto", "influxd", "nginx")):
                    self.processes.setdefault(name.split(":")[0], child)

    def sample(self) -> dict[str, float]:
        seconds = {}
        for name, process in self.processes.items():
            with contextlib.suppress(psutil.NoSuchProcess):
                times = process.cpu_times()
                seconds[name] = times.user + times.system
        return seconds


def cpu_text(before: dict[str, float], after: dict[str, float], elapsed_s: float) -> str:
    shares = {
        name: (after[name] - before.get(name, 0.0)) / elapsed_s for name in after if elapsed_s > 0
    }
    return ", ".join(f"{name} {share:.0%}" for name, share in sorted(shares.items()))


# -- the ingest's progress -------------------------------------------------------------------

_WRITTEN = re.compile(r"^aedfleet_ingest_written_total (\S+)$", re.MULTILINE)


class DrainWatch:
    """Reads the ingest's written-messages counter every ``every_s`` in a thread."""

    def __init__(self, metrics_url: str, target: int, every_s: float = 0.1) -> None:
        self._url = metrics_url
        self.target = target
        self._every_s = every_s
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.written = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="drain-watch", daemon=True)

    def __enter__(self) -> DrainWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    @property
    def draining(self) -> bool:
        return self.finished_at is None

    def _run(self) -> None:
        while not self._stop.wait(self._every_s):
            text = _get(self._url)
            match = _WRITTEN.search(text or "")
            if match is None:
                continue
            self.written = int(float(match.group(1)))
            now = time.monotonic()
            if self.written > 0 and self.started_at is None:
                self.started_at = now
            if self.written >= self.target and self.finished_at is None:
                self.finished_at = now


# -- where the time goes, from the dispatch service's own metrics ----------------------------

SLOW_S: Final = 0.025
"""Events slower than this at a stage are counted apart: they make the p99."""
# Counted from the histograms' cumulative buckets, so it must be one of their bounds.
assert SLOW_S in LATENCY_BUCKETS
_SAMPLE = re.compile(r"^(aedfleet_dispatch_\w+?)(\{[^}]*\})? (\S+)$", re.MULTILINE)
STAGES: Final = {
    "cabinet to dispatch (device time to arrival, through the broker)": (
        "aedfleet_dispatch_event_age_seconds"
    ),
    "in dispatch, arrival to outbox": "aedfleet_dispatch_handling_seconds",
    "outbox write (with the twin read)": "aedfleet_dispatch_record_seconds",
    "twin read": "aedfleet_dispatch_readiness_seconds",
    "outbox to receiver": 'aedfleet_dispatch_delivery_seconds{endpoint="cc"}',
}


def dispatch_samples(api_port: int) -> dict[str, float]:
    samples: dict[str, float] = {}
    for match in _SAMPLE.finditer(_get(f"http://127.0.0.1:{api_port}/metrics") or ""):
        samples[match.group(1) + (match.group(2) or "")] = float(match.group(3))
    return samples


def breakdown(before: dict[str, float], after: dict[str, float]) -> str:
    """Mean time of each stage over a phase, from the histograms' sums and counts."""
    parts = []
    for label, name in STAGES.items():
        family, _, labels = name.partition("{")
        labels = "{" + labels if labels else ""
        total = after.get(f"{family}_sum{labels}", 0.0) - before.get(f"{family}_sum{labels}", 0.0)
        count = after.get(f"{family}_count{labels}", 0.0) - before.get(
            f"{family}_count{labels}", 0.0
        )
        if count:
            slow = count - _bucket_delta(before, after, family, labels, SLOW_S)
            parts.append(
                f"{label} {total / count * 1000:.1f} ms ({slow:.0f} over {SLOW_S * 1000:.0f} ms)"
            )
    return "; ".join(parts)


def _bucket_delta(
    before: dict[str, float], after: dict[str, float], family: str, labels: str, le_s: float
) -> float:
    """How many observations of a phase fell at or under ``le_s``, from the buckets."""
    bound = f'le="{le_s}"'
    inner = labels[1:-1]
    key = f"{family}_bucket{{{inner + ',' if inner else ''}{bound}}}"
    return after.get(key, 0.0) - before.get(key, 0.0)


# -- door events and latency -----------------------------------------------------------------


@dataclass
class Phase:
    name: str
    published: dict[str, float] = field(default_factory=dict)
    """Event id -> monotonic time just before its publication."""
    during_drain: set[str] = field(default_factory=set)
    latency_ms: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    cpu: str = ""
    stages: str = ""

    @property
    def latencies_ms(self) -> list[float]:
        return list(self.latency_ms.values())

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.latencies_ms)
        if not ordered:
            return float("nan")
        index = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
        return ordered[index]

    def line(self) -> str:
        values = self.latencies_ms
        return (
            f"{self.name:<8} {len(values):>5,} events  p50 {self.percentile(0.50):6.1f} ms  "
            f"p99 {self.percentile(0.99):6.1f} ms  max {max(values):6.1f} ms  "
            f"mean {statistics.fmean(values):6.1f} ms"
        )


async def publish_doors(
    mqtt: MqttSettings,
    ticker: KeepAliveTicker,
    cabinets: list[str],
    rate: float,
    phase: Phase,
    watch: DrainWatch | None,
) -> None:
    """One door_opened per cabinet, at ``rate`` per second, each timed at publication.

    Returns once the broker has acknowledged every one (a disconnection before that
    would drop what paho still holds).
    """
    acknowledged = 0
    all_acknowledged = asyncio.Event()

    def on_published(mid: int) -> None:
        nonlocal acknowledged
        acknowledged += 1
        if acknowledged >= len(cabinets):
            all_acknowledged.set()

    async with MqttConnection(
        mqtt, f"bench-doors-{phase.name}", ticker, max_inflight=1_000, on_published=on_published
    ) as pub:
        started = time.monotonic()
        for index, cabinet_id in enumerate(cabinets):
            delay = started + index / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            event = Event(
                v=1,
                cabinet_id=cabinet_id,
                boot_id=BOOT,
                seq=1,
                ts=datetime.now(UTC),
                event=EventType.DOOR_OPENED,
            )
            key = dispatch_event_id(cabinet_id, BOOT, 1)
            payload = encode(event)
            name = topic(cabinet_id, Channel.EVENT)
            phase.published[key] = time.monotonic()
            if watch is not None and watch.draining and watch.started_at is not None:
                phase.during_drain.add(key)
            pub.publish(name, payload)
        try:
            await asyncio.wait_for(all_acknowledged.wait(), 60)
        except TimeoutError:
            raise BenchmarkError(
                f"{phase.name}: the broker acknowledged {acknowledged} of {len(cabinets)} "
                "door events within 60 s"
            ) from None


async def measure(
    receiver: DispatchReceiver,
    mqtt: MqttSettings,
    ticker: KeepAliveTicker,
    cabinets: list[str],
    rate: float,
    phase: Phase,
    meter: CpuMeter,
    watch: DrainWatch | None = None,
    api_port: int | None = None,
) -> None:
    before, started = meter.sample(), time.monotonic()
    stages_before = await asyncio.to_thread(dispatch_samples, api_port) if api_port else {}
    arrived_before = len(receiver.arrivals)
    await publish_doors(mqtt, ticker, cabinets, rate, phase, watch)
    deadline = time.monotonic() + 120
    while len(receiver.arrivals) - arrived_before < len(cabinets):
        if time.monotonic() > deadline:
            raise BenchmarkError(
                f"{phase.name}: {len(receiver.arrivals) - arrived_before} of {len(cabinets)} "
                "door events arrived within 120 s of the last"
            )
        await asyncio.sleep(0.05)
    phase.seconds = time.monotonic() - started
    phase.cpu = cpu_text(before, meter.sample(), phase.seconds)
    if api_port:
        stages_after = await asyncio.to_thread(dispatch_samples, api_port)
        phase.stages = breakdown(stages_before, stages_after)
    for arrival in receiver.arrivals[arrived_before:]:
        key = unquote(arrival.key)
        sent = phase.published.get(key)
        if sent is None:
            raise BenchmarkError(f"{phase.name}: unexpected message {key}")
        phase.latency_ms[key] = (arrival.at - sent) * 1000


# -- the run ---------------------------------------------------------------------------------


def heartbeats(count: int, cabinets: int) -> Iterator[Heartbeat]:
    """``count`` heartbeats from the ingest benchmark's fleet (its door events left out:
    the backlog is telemetry, and the door events are the ones this script times)."""
    produced = 0
    for message in fleet_messages(count * 2, cabinets):
        if isinstance(message, Heartbeat):
            yield message
            produced += 1
            if produced >= count:
                return


@dataclass
class Results:
    warm: Phase
    idle: Phase
    busy: Phase
    backlog: int
    preload_s: float
    drain_s: float


class Bench:
    """The processes and the receiver of one run, and its two measurements."""

    def __init__(self, args: argparse.Namespace, scratch: Path) -> None:
        self.args = args
        self.scratch = scratch
        self.broker = BacklogBroker(scratch / "broker")
        self.influx = InfluxServer(scratch / "influx")
        self.store_url = f"sqlite:///{scratch / 'state.sqlite3'}"
        self.meter = CpuMeter()
        self.services: list[Service] = []
        self.idle_doors = [f"door-idle-{index:05d}" for index in range(args.events)]
        self.busy_doors = [f"door-busy-{index:05d}" for index in range(args.events)]
        self.api_port: int | None = None

    @contextlib.contextmanager
    def servers(self) -> Iterator[MqttSettings]:
        seed(self.store_url, [*self.idle_doors, *self.busy_doors, "door-warm-up"])
        seed_registry(self.store_url, cabinet_ids(self.args.cabinets))
        self.broker.start()
        try:
            self.influx.start()
            self.influx.create_database("bench_dispatch")
            self.meter.add_children()
            if self.args.prioritise:
                for child in psutil.Process().children(recursive=True):
                    if child.name().startswith("mosquitto"):
                        renice(child, PRIORITY_NICE)
                    elif child.name().startswith(("influxd", "nginx")):
                        renice(child, BATCH_NICE)  # telemetry storage: the ingest's side
                renice(psutil.Process(), PRIORITY_NICE)
            yield MqttSettings(port=self.broker.port, keepalive_s=60, connect_timeout_s=30)
        finally:
            for service in reversed(self.services):
                service.stop()
            self.influx.stop()
            self.broker.stop()

    def start(self, name: str, config: Path, nice: int) -> Service:
        service = Service(
            name,
            [name, "--config", str(config)],
            self.scratch / name,
            nice if self.args.prioritise else None,
        )
        self.services.append(service)
        self.meter.add(f"aedfleet {name}", service.process.pid)
        return service

    async def start_dispatch(self, receiver_url: str) -> None:
        api_port = free_port()
        document: dict[str, object] = {
            "client_id": "bench-dispatch",
            "store_url": self.store_url,
            "api_port": api_port,
            "outbox_durability": self.args.durability,
            "mqtt": {"port": self.broker.port, "keepalive_s": 30, "connect_timeout_s": 30},
            "endpoints": [
                {"name": "cc", "url": receiver_url, "auth": {"kind": "hmac", "secret": HMAC_SECRET}}
            ],
        }
        if self.args.outbox == "separate":
            document["outbox_url"] = f"sqlite:///{self.scratch / 'outbox.sqlite3'}"
        self.start(
            "dispatch",
            write_toml(self.scratch / "dispatch.toml", document),
            PRIORITY_NICE if self.args.prioritise else 0,
        )
        self.api_port = api_port
        health = f"http://127.0.0.1:{api_port}/api/health"
        await wait_until(
            lambda: '"subscribed": true' in (_get(health) or ""), "dispatch did not subscribe"
        )

    def ingest_config(self, metrics_port: int) -> Path:
        values: dict[str, object] = {
            "client_id": "bench-ingest",
            "share_group": "ingest",
            "session_expiry_s": SESSION_EXPIRY_S,
            "store_url": self.store_url,
            "metrics_port": metrics_port,
            "mqtt.port": self.broker.port,
            "mqtt.keepalive_s": 60,
            "mqtt.connect_timeout_s": 30,
            "influx.url": self.influx.url,
            "influx.bucket": "bench_dispatch",
            "receive_maximum": self.args.ingest_receive_maximum,
            "batch_max_messages": self.args.ingest_batch,
        }
        return write_ingest_config(self.scratch / "ingest.toml", **values)

    async def run(self) -> Results:
        args = self.args
        with self.servers() as mqtt:
            async with KeepAliveTicker() as ticker, DispatchReceiver() as receiver:
                await self.start_dispatch(receiver.url())
                # Warm the connections (broker, HTTP keep-alive, SQLite) with one event.
                warm, idle, busy = Phase("warm-up"), Phase("idle"), Phase("backlog")
                await measure(receiver, mqtt, ticker, ["door-warm-up"], args.rate, warm, self.meter)
                await measure(
                    *(receiver, mqtt, ticker, self.idle_doors, args.rate, idle, self.meter),
                    api_port=self.api_port,
                )
                # The backlog, queued for the ingest's session while the ingest is not running.
                await create_session(mqtt, ticker, "bench-ingest", f"$share/ingest/{FLEET_FILTER}")
                preload_started = time.monotonic()
                backlog = await publish_backlog(
                    mqtt, ticker, heartbeats(args.backlog, args.cabinets)
                )
                preload_s = time.monotonic() - preload_started
                metrics_port = free_port()
                metrics = f"http://127.0.0.1:{metrics_port}/metrics"
                with DrainWatch(metrics, backlog) as watch:
                    self.start(
                        "ingest",
                        self.ingest_config(metrics_port),
                        BATCH_NICE if args.prioritise else 0,
                    )
                    await wait_until(
                        lambda: watch.started_at is not None, "the ingest did not start draining"
                    )
                    await measure(
                        *(receiver, mqtt, ticker, self.busy_doors, args.rate, busy, self.meter),
                        watch=watch,
                        api_port=self.api_port,
                    )
                    target = backlog + args.events
                    await wait_until(
                        lambda: watch.written >= target,
                        f"the ingest did not drain {target:,} messages",
                        timeout_s=WAIT_S,
                        every_s=0.5,
                    )
                keys = receiver.keys()
                if len(keys) != len(set(keys)):
                    raise BenchmarkError("the receiver got a message twice")
        if watch.started_at is None or watch.finished_at is None:
            raise BenchmarkError("the drain's start or end was not seen")
        return Results(warm, idle, busy, backlog, preload_s, watch.finished_at - watch.started_at)


def report(args: argparse.Namespace, results: Results) -> None:
    idle, busy = results.idle, results.busy
    print(
        f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; dispatch, "
        "ingest, Mosquitto, influxd+nginx and this script each in its own process"
    )
    outbox = "the state store" if args.outbox == "shared" else "an SQLite file of its own"
    nice = (
        f"; prioritised: dispatch, Mosquitto and this script at nice {PRIORITY_NICE}, "
        f"the ingest at nice {BATCH_NICE}"
        if args.prioritise
        else "; every process at the same priority"
    )
    print(f"outbox: {outbox}, durability {args.durability}{nice}")
    print(
        f"door events: {args.events:,} per phase at {args.rate:g}/s, each from its own cabinet "
        "(an alert); HMAC-signed JSON to an HTTP receiver on loopback, and the MQTT "
        "republication"
    )
    for phase in (idle, busy):
        print(phase.line() + f"   (CPU: {phase.cpu})")
        print(f"{'':<8} mean {phase.stages}")
    in_drain = Phase(
        "in-drain", latency_ms={key: busy.latency_ms[key] for key in busy.during_drain}
    )
    if in_drain.latency_ms:
        print(in_drain.line() + "   (the events published while the drain was under way)")
    print(
        f"backlog: {results.backlog:,} heartbeats preloaded in {results.preload_s:.1f} s; "
        f"the ingest drained them in {results.drain_s:.1f} s "
        f"({results.backlog / results.drain_s:,.0f} msg/s); {len(busy.during_drain):,} of "
        f"{args.events:,} door events were published during the drain"
    )
    idle_p99, busy_p99 = idle.percentile(0.99), busy.percentile(0.99)
    ratio = busy_p99 / idle_p99 if idle_p99 else float("inf")
    met = idle_p99 < GOAL_P99_MS and busy_p99 < GOAL_P99_MS
    print(
        f"p99 backlog / p99 idle = {ratio:.2f}  (goal <= {GOAL_RATIO:g}: "
        f"{'met' if ratio <= GOAL_RATIO else 'NOT met'}); p99 < {GOAL_P99_MS:g} ms in both: "
        f"{'met' if met else 'NOT met'}"
    )
    if len(busy.during_drain) < args.events:
        print(
            f"note: only {len(busy.during_drain):,} door events fell within the drain; "
            "raise --backlog or --rate to time them all under load",
            file=sys.stderr,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000, help="door events per phase")
    parser.add_argument("--rate", type=float, default=50.0, help="door events per second")
    parser.add_argument("--backlog", type=int, default=200_000, help="heartbeats to drain")
    parser.add_argument("--cabinets", type=int, default=1_000, help="cabinets of the backlog")
    parser.add_argument(
        "--outbox",
        choices=("separate", "shared"),
        default="separate",
        help="the outbox in an SQLite file of its own, or in the state store",
    )
    parser.add_argument(
        "--durability",
        choices=("written", "synced"),
        default="written",
        help="outbox_durability of the dispatch service",
    )
    parser.add_argument(
        "--prioritise",
        action="store_true",
        help=f"the deployment docs/dispatch.md recommends: dispatch and Mosquitto at nice "
        f"{PRIORITY_NICE}, the ingest at nice {BATCH_NICE}; this script, which stands for "
        f"the remote cabinets and command centre, at nice {PRIORITY_NICE} too (needs "
        "CAP_SYS_NICE)",
    )
    parser.add_argument(
        "--ingest-receive-maximum",
        type=int,
        default=IngestSettings.model_fields["receive_maximum"].default,
        help="the ingest's receive maximum: deliveries the broker may send it at once",
    )
    parser.add_argument(
        "--ingest-batch",
        type=int,
        default=IngestSettings.model_fields["batch_max_messages"].default,
        help="the ingest's batch_max_messages",
    )
    parser.add_argument(
        "--dump", type=Path, help="write each event's phase, publication time and latency (CSV)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="aedfleet-dispatch-bench-") as scratch:
        try:
            results = asyncio.run(Bench(args, Path(scratch)).run())
        except BenchmarkError:
            for log in sorted(Path(scratch).glob("*.log")):
                tail = log.read_text(errors="replace")[-3_000:]
                print(f"--- the end of {log.name} ---\n{tail}", file=sys.stderr)
            raise
    report(args, results)
    if args.dump:
        dump(args.dump, results)


def dump(path: Path, results: Results) -> None:
    origin = min(results.idle.published.values())
    lines = ["phase,published_s,latency_ms,during_drain"]
    for phase in (results.idle, results.busy):
        for key, latency in phase.latency_ms.items():
            lines.append(
                f"{phase.name},{phase.published[key] - origin:.4f},{latency:.2f},"
                f"{int(key in phase.during_drain)}"
            )
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
