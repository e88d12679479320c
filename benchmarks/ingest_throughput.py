"""How fast the ingest drains a broker backlog, against the limits around it (a benchmark).

The broker is pre-loaded with M valid contract messages (heartbeats, with a door event
every 50th message, from N registered cabinets) queued at QoS 1 for persistent sessions
that are offline while the publisher runs. Each consumer then drains the same backlog
from a session of its own, and the run prints:

- baseline 1, the MQTT limit: a bare subscriber on the ingest's own adapter
  (:class:`aedfleet.mqtt.consumer.ConsumerConnection`, manual acknowledgement, the same
  receive maximum as the ingest) that acknowledges each delivery and does nothing else;
  for comparison the same with the general paho-mqtt adapter
  (:class:`aedfleet.mqtt.MqttConnection`), which the ingest used before;
- baseline 2, the InfluxDB limit: the same messages as pre-built lines
  (:func:`ingest.telemetry.to_line`) written through :class:`aedfleet.influx.writer.InfluxWriter`
  in batches of the ingest's batch size, one request after the other;
- the system: :class:`ingest.service.IngestService` in process, from start until every
  message is in InfluxDB and the SQLite state store and acknowledged;
- ``system / min(baseline 1, baseline 2)``: the figure that stays comparable when other
  work shares the machine, since the baselines are measured in the same run;
- the CPU time per message of each process in the system stage, and the rate those
  allow on this machine's cores (other work lowers a rate far more than it raises the
  CPU time per message);
- a cProfile of the system stage on a smaller backlog: where the event loop's time goes,
  and what the state store's thread spends.

Everything runs on this machine: Mosquitto, influxd with its nginx shim (see
``aedfleet_testing/influx.py``), and the consumer; the CPU share of each process per stage is
printed too, so a saturated process shows itself.

    PYTHONPATH=. .venv/bin/python benchmarks/ingest_throughput.py --messages 200000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import dataclasses
import io
import os
import pstats
import random
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any, Final

import psutil

from aedfleet.contract import (
    CabinetMessage,
    Channel,
    DoorState,
    Event,
    EventType,
    Heartbeat,
    PowerSource,
    encode,
    topic,
)
from aedfleet.db.state import StateStore
from aedfleet.influx.lines import CabinetTags
from aedfleet.influx.writer import InfluxSettings, InfluxWriter
from aedfleet.mqtt import InboundMessage, KeepAliveTicker, MqttConnection, MqttSettings
from aedfleet.mqtt.consumer import ConsumerConnection
from aedfleet_testing.brokers import MosquittoBroker
from aedfleet_testing.influx import InfluxServer
from aedfleet_testing.ingest_support import seed_registry
from ingest.config import IngestSettings
from ingest.service import BATCHES_IN_FLIGHT, FLEET_FILTER, IngestService
from ingest.telemetry import to_line

STAGE_TIMEOUT_S: Final = 900.0
SESSION_EXPIRY_S: Final = 3_600
EVENT_EVERY: Final = 50
PUBLISH_WINDOW: Final = 2_000


class BenchmarkError(Exception):
    """A stage did not finish, or did not see what it was owed."""


class BacklogBroker(MosquittoBroker):
    """Mosquitto that holds a whole backlog for an offline persistent session.

    ``max_queued_messages 0`` lifts the per-session queue limit (the test broker keeps
    100,000); ``max_inflight_messages 0`` leaves the number of deliveries in flight to the
    receive maximum each MQTT 5 client announces.
    """

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        kept = [
            line
            for line in self.config.read_text().splitlines()
            if not line.startswith(("max_queued_messages", "max_inflight_messages"))
        ]
        kept += ["max_queued_messages 0", "max_queued_bytes 0", "max_inflight_messages 0"]
        self.config.write_text("\n".join(kept) + "\n")


# -- measurements -------------------------------------------------------------------------


@dataclass(frozen=True)
class Rate:
    count: int
    seconds: float
    cpu: dict[str, float] = field(default_factory=dict)
    """Share of one core per process name, over the stage."""
    detail: str = ""

    @property
    def per_second(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else 0.0

    def cpu_text(self) -> str:
        return ", ".join(f"{name} {share:.0%}" for name, share in sorted(self.cpu.items()))


def _process_name(process: psutil.Process) -> str:
    if process.pid == os.getpid():
        return "python (this)"
    name = process.name()
    return "nginx" if name.startswith("nginx") else name


def _cpu_seconds() -> dict[str, float]:
    """CPU seconds so far of this process and its children (broker, influxd, nginx)."""
    me = psutil.Process()
    totals: dict[str, float] = {}
    for process in [me, *me.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            times = process.cpu_times()
            name = _process_name(process)
            totals[name] = totals.get(name, 0.0) + times.user + times.system
    return totals


@contextlib.contextmanager
def _measured(count: int, result: list[Rate]) -> Iterator[None]:
    """Time the block; append its :class:`Rate` for ``count`` items to ``result``."""
    cpu_before, started = _cpu_seconds(), time.perf_counter()
    yield
    elapsed = time.perf_counter() - started
    cpu_after = _cpu_seconds()
    shares = {
        name: (spent - cpu_before.get(name, 0.0)) / elapsed for name, spent in cpu_after.items()
    }
    result.append(Rate(count, elapsed, shares))


# -- the backlog ----------------------------------------------------------------------------


def cabinet_ids(cabinets: int) -> list[str]:
    return [f"bench-{index:05d}" for index in range(cabinets)]


def fleet_messages(count: int, cabinets: int, seed: int = 7) -> Iterator[CabinetMessage]:
    """``count`` valid messages, round robin over the cabinets, one a minute each.

    Deterministic for a seed, so the publisher and the InfluxDB baseline see the same
    messages without holding them all in memory.
    """
    rng = random.Random(seed)
    ids = cabinet_ids(cabinets)
    boots = [f"{rng.getrandbits(128):032x}" for _ in ids]
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=count // cabinets + 2)
    for index in range(count):
        cabinet = index % cabinets
        seq = index // cabinets + 1
        ts = start + timedelta(minutes=seq, milliseconds=cabinet)
        if index % EVENT_EVERY == EVENT_EVERY - 1:
            yield Event(
                v=1,
                cabinet_id=ids[cabinet],
                boot_id=boots[cabinet],
                seq=seq,
                ts=ts,
                event=EventType.DOOR_OPENED,
            )
            continue
        yield Heartbeat(
            v=1,
            cabinet_id=ids[cabinet],
            boot_id=boots[cabinet],
            seq=seq,
            ts=ts,
            aed_ready=True,
            battery_pct=round(rng.uniform(60, 100), 1),
            temperature_c=round(rng.uniform(5, 35), 2),
            humidity_pct=round(rng.uniform(20, 90), 1),
            door=DoorState.CLOSED,
            aed_present=True,
            power=PowerSource.MAINS,
            heater_on=False,
            rssi_dbm=rng.randint(-110, -50),
            outbox_pending=0,
            outbox_shed=0,
        )


def _channel(message: CabinetMessage) -> Channel:
    return Channel.EVENT if isinstance(message, Event) else Channel.HEARTBEAT


async def _wait(awaitable: Any, what: str, timeout_s: float = STAGE_TIMEOUT_S) -> None:
    try:
        await asyncio.wait_for(awaitable, timeout_s)
    except TimeoutError:
        raise BenchmarkError(f"{what} did not finish within {timeout_s:g} s") from None


async def create_session(
    settings: MqttSettings, ticker: KeepAliveTicker, client_id: str, topic_filter: str
) -> None:
    """A persistent session subscribed to ``topic_filter``, left offline to collect."""
    async with MqttConnection(
        settings,
        client_id,
        ticker,
        clean_start=False,
        session_expiry_s=SESSION_EXPIRY_S,
        manual_ack=True,
    ) as connection:
        await connection.subscribe(topic_filter, qos=1)


async def discard_session(settings: MqttSettings, ticker: KeepAliveTicker, client_id: str) -> None:
    """Drop a session and whatever it still holds (a clean start replaces it)."""
    async with MqttConnection(settings, client_id, ticker, clean_start=True, session_expiry_s=0):
        pass


async def publish_backlog(
    settings: MqttSettings, ticker: KeepAliveTicker, messages: Iterator[CabinetMessage]
) -> int:
    """Publish at QoS 1 as fast as the broker acknowledges; returns how many."""
    acknowledged = 0
    target = 0
    caught_up = asyncio.Event()

    def on_published(mid: int) -> None:
        nonlocal acknowledged
        acknowledged += 1
        if acknowledged >= target:
            caught_up.set()

    async def wait_for(count: int) -> None:
        nonlocal target
        target = count
        if acknowledged < count:
            caught_up.clear()
            await _wait(caught_up.wait(), "publishing the backlog", 120)

    sent = 0
    async with MqttConnection(
        settings, "bench-publisher", ticker, max_inflight=1_000, on_published=on_published
    ) as publisher:
        for message in messages:
            publisher.publish(topic(message.cabinet_id, _channel(message)), encode(message))
            sent += 1
            if sent % PUBLISH_WINDOW == 0:
                # Keep at most two windows queued inside paho.
                await wait_for(sent - PUBLISH_WINDOW)
        await wait_for(sent)
    return sent


# -- baseline 1: the MQTT limit -------------------------------------------------------------


class BareConsumer:
    """Acknowledges every delivery at once and counts them."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.received = 0
        self.done = asyncio.Event()
        self.connection: MqttConnection | None = None

    def on_message(self, message: InboundMessage) -> None:
        if self.connection is not None:
            self.connection.ack(message)
        self.received += 1
        if self.received >= self.expected:
            self.done.set()


async def drain_bare(
    settings: MqttSettings, client_id: str, expected: int, receive_maximum: int
) -> Rate:
    """The ingest's adapter: acknowledges each read's deliveries at once, in one write."""
    received = 0
    done = asyncio.Event()

    def on_messages(messages: list[InboundMessage]) -> None:
        nonlocal received
        connection.ack_many(messages)
        received += len(messages)
        if received >= expected:
            done.set()

    rates: list[Rate] = []
    with _measured(expected, rates):
        connection = ConsumerConnection(
            settings,
            client_id,
            clean_start=False,
            session_expiry_s=SESSION_EXPIRY_S,
            manual_ack=True,
            receive_maximum=receive_maximum,
            on_messages=on_messages,
        )
        async with connection:
            await _wait(done.wait(), f"the bare subscriber ({received} so far)")
    return rates[0]


async def drain_bare_paho(
    settings: MqttSettings,
    ticker: KeepAliveTicker,
    client_id: str,
    expected: int,
    receive_maximum: int,
) -> Rate:
    consumer = BareConsumer(expected)
    rates: list[Rate] = []
    with _measured(expected, rates):
        connection = MqttConnection(
            settings,
            client_id,
            ticker,
            clean_start=False,
            session_expiry_s=SESSION_EXPIRY_S,
            manual_ack=True,
            receive_maximum=receive_maximum,
            on_message=consumer.on_message,
        )
        consumer.connection = connection
        async with connection:
            await _wait(consumer.done.wait(), f"the bare subscriber ({consumer.received} so far)")
    return rates[0]


# -- baseline 2: the InfluxDB limit ---------------------------------------------------------


def load_tags(store_url: str) -> dict[str, CabinetTags]:
    store = StateStore.open(store_url)
    try:
        registry = store.load_registry()
    finally:
        store.close()
    return {cabinet.cabinet_id: CabinetTags.from_cabinet(cabinet) for cabinet in registry.cabinets}


async def write_raw(influx: InfluxSettings, lines: Sequence[str], batch: int) -> Rate:
    rates: list[Rate] = []
    async with InfluxWriter(influx) as writer:
        with _measured(len(lines), rates):
            for start in range(0, len(lines), batch):
                await writer.write(lines[start : start + batch])
    return rates[0]


# -- the system -----------------------------------------------------------------------------


class CountingSink:
    """A :class:`ingest.service.MessageSink` that says when everything has been stored."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.accepted = 0
        self.done = asyncio.Event()

    async def accept(self, messages: Sequence[CabinetMessage]) -> None:
        self.accepted += len(messages)
        if self.accepted >= self.expected:
            self.done.set()


@contextlib.asynccontextmanager
async def running(service: IngestService) -> AsyncIterator[None]:
    task = asyncio.create_task(service.run(), name="bench-ingest")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def drain_ingest(settings: IngestSettings, expected: int) -> Rate:
    sink = CountingSink(expected)
    service = IngestService(settings, sinks=[sink])
    rates: list[Rate] = []
    with _measured(expected, rates):
        async with running(service):
            await _wait(sink.done.wait(), f"the ingest ({sink.accepted} stored so far)")
    registry = service.metrics.registry
    written = registry.get_sample_value("aedfleet_ingest_written_total")
    if written != expected:
        raise BenchmarkError(f"the ingest wrote {written} messages, expected {expected}")
    batches = registry.get_sample_value("aedfleet_ingest_batch_size_count") or 0.0
    write_s = registry.get_sample_value("aedfleet_ingest_write_seconds_sum") or 0.0
    rate = rates[0]
    detail = (
        f"{batches:.0f} batches of {expected / max(batches, 1):,.0f} on average; "
        f"InfluxDB write requests took {write_s:.1f} s in all (up to {BATCHES_IN_FLIGHT} "
        f"at once) of {rate.seconds:.1f} s"
    )
    return dataclasses.replace(rate, detail=detail)


class ThreadProfiles:
    """cProfile for the threads started while active (the ingest's state store thread).

    cProfile follows one thread; ``threading.setprofile`` installs a hook in every new
    thread whose first call swaps itself for a profiler of that thread.
    """

    def __init__(self) -> None:
        self.profiles: list[cProfile.Profile] = []

    def _start(self, frame: FrameType, event: str, arg: object) -> None:
        profile = cProfile.Profile()
        self.profiles.append(profile)
        sys.setprofile(None)
        profile.enable()

    def __enter__(self) -> ThreadProfiles:
        threading.setprofile(self._start)
        return self

    def __exit__(self, *exc_info: object) -> None:
        threading.setprofile(None)


async def profile_ingest(
    settings: IngestSettings, expected: int
) -> tuple[Rate, cProfile.Profile, list[cProfile.Profile]]:
    main = cProfile.Profile()
    with ThreadProfiles() as threads:
        main.enable()
        try:
            rate = await drain_ingest(settings, expected)
        finally:
            main.disable()
    # The service's executor has shut down: its thread's profile is complete.
    return rate, main, threads.profiles


def print_profile(title: str, profiles: Sequence[cProfile.Profile], top: int) -> None:
    used = [profile for profile in profiles if profile.getstats()]
    if not used:
        print(f"\n{title}: nothing recorded")
        return
    for order in ("cumulative", "tottime"):
        stream = io.StringIO()
        stats = pstats.Stats(used[0], stream=stream)
        for profile in used[1:]:
            stats.add(profile)
        stats.strip_dirs().sort_stats(order).print_stats(top)
        body = stream.getvalue()
        # pstats starts with the totals line; keep it and the table.
        text = body[body.find(" function calls") - 12 :].rstrip()
        print(f"\n== {title}, top {top} by {order} ==\n{text.strip()}")


# -- the run -----------------------------------------------------------------------------


def ingest_settings(
    args: argparse.Namespace,
    mqtt: MqttSettings,
    client_id: str,
    share_group: str,
    influx_url: str,
    bucket: str,
    store_url: str,
) -> IngestSettings:
    return IngestSettings(
        mqtt=mqtt,
        client_id=client_id,
        share_group=share_group,
        session_expiry_s=SESSION_EXPIRY_S,
        receive_maximum=args.receive_maximum,
        batch_max_messages=args.batch,
        batch_max_delay_s=args.batch_delay,
        influx=InfluxSettings(url=influx_url, bucket=bucket, gzip=args.influx_gzip),
        store_url=store_url,
    )


def _line(label: str, rate: Rate, unit: str) -> str:
    own_us = rate.cpu.get("python (this)", 0.0) * rate.seconds / rate.count * 1e6
    return (
        f"{label:<34} {rate.per_second:>9,.0f} {unit}  ({rate.count:,} in {rate.seconds:.1f} s; "
        f"CPU: {rate.cpu_text()}; this process {own_us:.0f} µs each)"
    )


@dataclass(frozen=True)
class Results:
    preload: Rate
    bare: Rate
    paho: Rate
    raw: Rate
    ingest: Rate
    profiled: Rate
    main_profile: cProfile.Profile
    thread_profiles: list[cProfile.Profile]


async def measure(args: argparse.Namespace, scratch: Path) -> Results:
    messages, cabinets = args.messages, args.cabinets
    profile_messages = min(args.profile_messages, messages)
    broker = BacklogBroker(scratch / "broker")
    influx = InfluxServer(scratch / "influx")
    stores = {name: f"sqlite:///{scratch / name}.sqlite3" for name in ("system", "profile")}
    for url in stores.values():
        seed_registry(url, cabinet_ids(cabinets))
    tags = load_tags(stores["system"])
    broker.start()
    try:
        influx.start()
        for database in ("bench_raw", "bench_system", "bench_profile"):
            influx.create_database(database)
        mqtt = MqttSettings(port=broker.port, keepalive_s=60, connect_timeout_s=30)
        system = ingest_settings(
            args, mqtt, "bench-ingest", "ingest", influx.url, "bench_system", stores["system"]
        )
        profiled = ingest_settings(
            args, mqtt, "bench-profile", "profile", influx.url, "bench_profile", stores["profile"]
        )
        async with KeepAliveTicker() as ticker:
            # Every session exists before the first message, so each collects the backlog.
            for name in ("bare", "paho", "ingest"):
                await create_session(mqtt, ticker, f"bench-{name}", f"$share/{name}/{FLEET_FILTER}")
            preload: list[Rate] = []
            with _measured(messages, preload):
                await publish_backlog(mqtt, ticker, fleet_messages(messages, cabinets))

            bare = await drain_bare(mqtt, "bench-bare", messages, args.receive_maximum)
            await discard_session(mqtt, ticker, "bench-bare")
            paho = await drain_bare_paho(mqtt, ticker, "bench-paho", messages, args.receive_maximum)
            await discard_session(mqtt, ticker, "bench-paho")

            lines = [
                line
                for message in fleet_messages(messages, cabinets)
                if (line := to_line(message, tags[message.cabinet_id])) is not None
            ]
            raw = await write_raw(
                InfluxSettings(url=influx.url, bucket="bench_raw", gzip=args.influx_gzip),
                lines,
                args.batch,
            )
            del lines

            ingest = await drain_ingest(system, messages)
            await discard_session(mqtt, ticker, "bench-ingest")

            await create_session(mqtt, ticker, "bench-profile", f"$share/profile/{FLEET_FILTER}")
            await publish_backlog(mqtt, ticker, fleet_messages(profile_messages, cabinets))
            profiled_rate, main_profile, thread_profiles = await profile_ingest(
                profiled, profile_messages
            )
            await discard_session(mqtt, ticker, "bench-profile")
    finally:
        influx.stop()
        broker.stop()
    return Results(
        preload[0], bare, paho, raw, ingest, profiled_rate, main_profile, thread_profiles
    )


def cpu_budget(rate: Rate) -> str:
    """CPU time per message of each process, and the rate that allows on this machine alone.

    Other work on the machine lowers a stage's rate but hardly its CPU time per message,
    so this bound stays comparable between runs: the Python process cannot use more than
    one core (one GIL), and all of them together no more than the machine's cores.
    """
    per_message = {
        name: share * rate.seconds / rate.count * 1e6 for name, share in rate.cpu.items()
    }
    total = sum(per_message.values())
    cores = os.cpu_count() or 1
    own = per_message.get("python (this)", 0.0)
    bound = min(1e6 / own if own else float("inf"), cores * 1e6 / total if total else 0.0)
    spent = ", ".join(f"{name} {us:.0f}" for name, us in sorted(per_message.items()))
    return (
        f"{'':<34} CPU per message (µs): {spent}; total {total:.0f}: with these "
        f"{cores} cores to itself the system could take at most {bound:,.0f} msg/s"
    )


def report(args: argparse.Namespace, results: Results) -> None:
    bare, raw, ingest = results.bare, results.raw, results.ingest
    limit = min(bare.per_second, raw.per_second)
    limiter = "MQTT" if bare.per_second <= raw.per_second else "InfluxDB"
    ratio = ingest.per_second / limit if limit else 0.0
    print(
        f"machine: {os.cpu_count()} cores; {args.messages:,} messages from {args.cabinets:,} "
        f"cabinets (1 in {EVENT_EVERY} a door event, the rest heartbeats)"
    )
    print(
        f"ingest settings: batch_max_messages={args.batch}, "
        f"receive_maximum={args.receive_maximum}, batch_max_delay_s={args.batch_delay}, "
        f"influx.gzip={args.influx_gzip}"
    )
    print(_line("preload (publisher, QoS 1)", results.preload, "msg/s"))
    print(_line("baseline 1, bare MQTT subscriber", bare, "msg/s"))
    print(_line("  (the same with paho-mqtt)", results.paho, "msg/s"))
    print(_line("baseline 2, raw InfluxDB writes", raw, "points/s"))
    print(_line("system, IngestService", ingest, "msg/s"))
    print(f"{'':<34} {ingest.detail}")
    print(cpu_budget(ingest))
    print(f"smaller limit: {limit:,.0f}/s ({limiter})")
    print(
        f"system / min(baselines) = {ratio:.2f}  "
        f"(goal: >= 15,000 msg/s {'met' if ingest.per_second >= 15_000 else 'NOT met'}; "
        f">= 0.5 of the smaller limit {'met' if ratio >= 0.5 else 'NOT met'})"
    )
    print(
        f"\nprofiled run: {results.profiled.count:,} messages, "
        f"{results.profiled.per_second:,.0f} msg/s under cProfile "
        f"({results.profiled.seconds:.1f} s); {results.profiled.detail}"
    )
    print_profile("event-loop thread", [results.main_profile], args.top)
    print_profile("other threads (state store, connect)", results.thread_profiles, args.top)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000, help="backlog size M")
    parser.add_argument("--cabinets", type=int, default=1_000, help="registered cabinets N")
    defaults = IngestSettings.model_fields
    parser.add_argument(
        "--batch",
        type=int,
        default=defaults["batch_max_messages"].default,
        help="ingest batch_max_messages",
    )
    parser.add_argument(
        "--receive-maximum",
        type=int,
        default=defaults["receive_maximum"].default,
        help="MQTT 5 window",
    )
    parser.add_argument("--batch-delay", type=float, default=0.05, help="batch_max_delay_s")
    parser.add_argument(
        "--influx-gzip",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="compress InfluxDB requests (the default; off suits an InfluxDB on the same host)",
    )
    parser.add_argument("--profile-messages", type=int, default=30_000)
    parser.add_argument("--top", type=int, default=15, help="functions per profile table")
    args = parser.parse_args()
    if args.messages < args.cabinets:
        parser.error("--messages must be at least --cabinets")
    with tempfile.TemporaryDirectory(prefix="aedfleet-ingest-bench-") as scratch:
        report(args, asyncio.run(measure(args, Path(scratch))))


if __name__ == "__main__":
    main()
