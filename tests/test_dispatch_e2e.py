"""Dispatch end to end: cabinets -> real Mosquitto -> dispatch -> real HTTP receivers.

The simulated fleet (or a scripted publisher) opens doors; the service runs in process,
or as ``aedfleet dispatch`` in a subprocess that is killed with SIGKILL.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import signal
import subprocess
import time
import urllib.request
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Final

import pytest

from aedfleet.clock import ScaledClock
from aedfleet.contract import (
    Channel,
    Consumables,
    ConsumablesSource,
    DeadLetter,
    DispatchEvent,
    Event,
    EventType,
    Reason,
    Selftest,
    SelftestKind,
    SelftestResult,
    dead_letter_topic,
    decode_cabinet_message,
    dispatch_event_id,
    dispatch_subscription,
    encode,
    subscription,
    topic,
)
from aedfleet.db.state import StateStore
from aedfleet.mqtt import InboundMessage, KeepAliveTicker, MqttConnection, MqttSettings
from aedfleet_testing.brokers import MosquittoBroker, broker_settings, free_port
from aedfleet_testing.commands import AEDFLEET, REPO, command_env
from aedfleet_testing.dispatch_support import (
    BEARER_TOKEN,
    HMAC_SECRET,
    Arrival,
    DispatchReceiver,
    schema_problems,
    seed,
    write_toml,
)
from dispatch.config import DispatchSettings
from dispatch.formats import cap_identifier
from dispatch.outbox import DeliveryStatus, DispatchOutbox
from dispatch.service import DispatchService
from firmware_sim.fleet import FleetSettings, SimulatedFleet
from firmware_sim.scenario import FleetDefaults, Scenario
from tests.identity_support import claiming, door_opened
from tests.recorder import Recorder, eventually

OUTAGE_S: Final = float(os.environ.get("DISPATCH_TEST_OUTAGE_S", "0"))
"""How long the receiver is down at least; it is down anyway until every cabinet's head
message has been retried to the backoff ceiling. ``DISPATCH_TEST_OUTAGE_S=60`` runs the
issue's full minute."""
FAST_RETRY: Final = {"initial_s": 0.2, "max_s": 1.0}
ATTEMPTS_TO_THE_CEILING: Final = 4
"""0.2 s doubled three times passes 1 s: the fourth failure waits the longest delay."""
DISPATCHED = {
    EventType.DOOR_OPENED,
    EventType.DOOR_CLOSED,
    EventType.AED_REMOVED,
    EventType.AED_RETURNED,
}
SELFTEST_AT = datetime(2025, 5, 30, 3, 0, tzinfo=UTC)


def endpoint(name: str, url: str, **values: Any) -> dict[str, Any]:
    return {
        "name": name,
        "url": url,
        "auth": {"kind": "hmac", "secret": HMAC_SECRET},
        "retry": FAST_RETRY,
        "timeout_s": 3,
        **values,
    }


def service_settings(
    broker: MosquittoBroker, store_url: str, endpoints: list[dict[str, Any]], **values: Any
) -> DispatchSettings:
    return DispatchSettings.model_validate(
        {
            "mqtt": broker_settings(broker),
            "client_id": "dispatch-under-test",
            "store_url": store_url,
            "endpoints": endpoints,
            "republish": {"retry": FAST_RETRY},
            "api_port": 0,
            **values,
        }
    )


@contextlib.asynccontextmanager
async def running(service: DispatchService) -> AsyncIterator[DispatchService]:
    task = asyncio.create_task(service.run())
    try:
        async with asyncio.timeout(30):
            await service.ready.wait()
            await service.subscribed.wait()
        yield service
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def seed_readiness(store_url: str, cabinet_ids: Iterable[str]) -> None:
    """Twins with a known last self-test and consumables, as the ingest would leave them."""
    boot = "e" * 32
    messages: list[Selftest | Consumables] = []
    for cabinet_id in cabinet_ids:
        messages.append(
            Selftest(
                v=1,
                cabinet_id=cabinet_id,
                boot_id=boot,
                seq=1,
                ts=SELFTEST_AT,
                kind=SelftestKind.DAILY,
                result=SelftestResult.PASS,
                battery_pct=93.0,
            )
        )
        messages.append(
            Consumables(
                v=1,
                cabinet_id=cabinet_id,
                boot_id=boot,
                seq=2,
                ts=SELFTEST_AT,
                pads_present=True,
                pads_expiry=date(2029, 3, 31),
                battery_expiry=date(2030, 1, 31),
                source=ConsumablesSource.AED,
            )
        )
    with StateStore.open(store_url) as store:
        store.apply_messages(messages)


def reported(arrivals: Iterable[Arrival]) -> list[str]:
    return [e.event_id for arrival in arrivals for e in arrival.event().events]


def event_key(event: Event) -> str:
    return dispatch_event_id(event.cabinet_id, event.boot_id, event.seq)


def check_order(arrivals: Iterable[Arrival]) -> None:
    """Each cabinet's messages arrived in the order they were made."""
    by_cabinet: dict[str, list[DispatchEvent]] = defaultdict(list)
    for arrival in arrivals:
        event = arrival.event()
        by_cabinet[event.cabinet_id].append(event)
    for cabinet_id, events in by_cabinet.items():
        made = [(e.sent_at, e.idempotency_key.seq) for e in events]
        assert made == sorted(made), f"{cabinet_id} arrived out of order"


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback
        return json.loads(response.read())


def get_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback
        return str(response.read().decode())


# -- the simulated fleet -----------------------------------------------------------------------


@pytest.mark.timeout(240)
async def test_a_fleet_opening_doors_reaches_every_endpoint_once_with_the_right_fields(
    broker: MosquittoBroker, ticker: KeepAliveTicker, tmp_path: Path
) -> None:
    size = 8
    scenario = Scenario(
        seed=11,
        fleet=FleetDefaults(
            size=size, id_prefix="dsp-", door_openings_per_day=500, aed_taken_fraction=0.4
        ),
        fault_rates={},
    )
    ids = [scenario.cabinet_id(index) for index in range(size)]
    registered = ids[:-1]  # the last cabinet is not in the registry: refused by default
    stranger = ids[-1]
    store_url = f"sqlite:///{tmp_path / 'state.sqlite3'}"
    values = seed(store_url, registered)
    seed_readiness(store_url, registered)
    cabinets = {c.cabinet_id: c for c in values.cabinets}
    mqtt = broker_settings(broker)
    fleet = SimulatedFleet(
        FleetSettings(cabinets=size, broker=mqtt, work_dir=tmp_path / "sim", ramp_s=1, tick_s=5),
        scenario,
        ScaledClock(datetime.now(UTC), 30),
    )
    async with (
        DispatchReceiver() as json_receiver,
        DispatchReceiver(secret=None, token=BEARER_TOKEN) as cap_receiver,
    ):
        settings = service_settings(
            broker,
            store_url,
            [
                endpoint("cc-json", json_receiver.url()),
                endpoint(
                    "cc-cap",
                    cap_receiver.url(),
                    format="cap",
                    auth={"kind": "bearer", "token": BEARER_TOKEN},
                ),
            ],
            coalescing={"min_update_interval_s": 1},
            outbox_url=f"sqlite:///{tmp_path / 'outbox.sqlite3'}",
        )
        async with (
            Recorder(mqtt, ticker, subscription(Channel.EVENT), "witness") as witness,
            Recorder(mqtt, ticker, dispatch_subscription(), "bridge") as bridge,
            Recorder(mqtt, ticker, dead_letter_topic(Reason.UNKNOWN_CABINET), "parked") as parked,
            running(DispatchService(settings)) as service,
        ):
            await fleet.run(duration_s=20)
            sent: dict[str, Event] = {}
            refused: set[tuple[str, int]] = set()
            for message in witness.messages:
                decoded = decode_cabinet_message(message.topic, message.payload)
                if isinstance(decoded, Event) and decoded.cabinet_id == stranger:
                    refused.add((decoded.boot_id, decoded.seq))
                elif isinstance(decoded, Event) and decoded.event in DISPATCHED:
                    sent[event_key(decoded)] = decoded
            assert any(e.event is EventType.DOOR_OPENED for e in sent.values())
            assert any(e.event is EventType.AED_REMOVED for e in sent.values())
            assert refused, "the unregistered cabinet sent no event"
            await eventually(
                lambda: parked_events(parked.messages) == refused,
                60,
                "not every event of the unregistered cabinet was dead-lettered",
            )
            await eventually(
                lambda: set(reported(json_receiver.arrivals)) == set(sent),
                60,
                "not every door event reached the JSON endpoint",
            )
            await eventually(
                lambda: (
                    len(cap_receiver.arrivals) == len(json_receiver.arrivals)
                    and len(bridge.messages) >= len(json_receiver.arrivals)
                ),
                30,
                "the CAP endpoint or the MQTT bridge is behind",
            )
            health = await asyncio.to_thread(
                get_json, f"http://127.0.0.1:{service.api_port}/api/health"
            )

    assert health["subscribed"] is True
    assert health["pending"] == 0
    # Exactly once: no key twice, no event reported twice.
    keys = json_receiver.keys()
    assert len(keys) == len(set(keys))
    assert sorted(reported(json_receiver.arrivals)) == sorted(sent)
    check_order(json_receiver.arrivals)
    assert all(arrival.event().cabinet_id != stranger for arrival in json_receiver.arrivals)
    refusals = service.metrics.registry.get_sample_value(
        "aedfleet_dispatch_refused_events_total", {"reason": "unknown_cabinet"}
    )
    assert refusals is not None
    assert refusals >= len(refused)
    for arrival in json_receiver.arrivals:
        event = arrival.event()
        newest = sent[event.event_id]
        assert event.event_type is newest.event
        assert event.device_ts == newest.ts
        assert event.idempotency_key.boot_id == newest.boot_id
        assert event.idempotency_key.seq == newest.seq
        cabinet = cabinets[event.cabinet_id]
        assert event.registered
        assert event.location.latitude == cabinet.latitude
        assert event.location.longitude == cabinet.longitude
        assert event.location.address == cabinet.address
        assert event.location.floor == cabinet.floor
        assert event.location.indoor_description == cabinet.indoor_description
        assert event.location.site_name == cabinet.name
        assert event.access.mode == cabinet.access_mode.value
        assert event.access.availability_hours == cabinet.availability_hours
        assert event.aed_model == cabinet.aed_model
        assert event.captain is not None
        assert event.captain.role == "captain"
        assert event.captain.phone.startswith("+86")
        assert event.readiness.last_selftest_result is SelftestResult.PASS
        assert event.readiness.last_selftest_at == SELFTEST_AT
        assert event.readiness.pads_present is True
        assert event.readiness.pads_expiry == date(2029, 3, 31)
        assert event.readiness.battery_expiry == date(2030, 1, 31)
    # Incidents: each starts with an alert, its updates numbered in order.
    incidents: dict[str, list[int]] = defaultdict(list)
    for arrival in json_receiver.arrivals:
        event = arrival.event()
        incidents[event.incident_id].append(event.update_number)
    assert all(numbers == list(range(len(numbers))) for numbers in incidents.values())
    # CAP: one document per message, complete and valid.
    assert sorted(cap_receiver.keys()) == sorted(keys)
    json_ids = {cap_identifier(arrival.event().event_id) for arrival in json_receiver.arrivals}
    cap_ids = set()
    for arrival in cap_receiver.arrivals:
        document = arrival.cap()
        assert schema_problems(document) == []
        identifier = document.find("{urn:oasis:names:tc:emergency:cap:1.2}identifier")
        assert identifier is not None
        cap_ids.add(identifier.text)
    assert cap_ids == json_ids
    # The MQTT bridge carries the same messages.
    bridged = {DispatchEvent.model_validate_json(m.payload).event_id for m in bridge.messages}
    assert bridged == {arrival.event().event_id for arrival in json_receiver.arrivals}


# -- scripted cabinets ---------------------------------------------------------------------------


class Cabinets:
    """Scripted cabinets: door events published as a cabinet's edge agent would."""

    def __init__(self, settings: MqttSettings, ticker: KeepAliveTicker, ids: list[str]) -> None:
        self.settings = settings
        self.ticker = ticker
        self.ids = ids
        self.seq = dict.fromkeys(ids, 0)
        self.boot = "f" * 32
        self.sent: list[Event] = []

    async def flap(self, rounds: int) -> list[Event]:
        """Each cabinet opens and closes its door ``rounds`` times, interleaved."""
        published = []
        async with MqttConnection(self.settings, "scripted-cabinets", self.ticker) as connection:
            for round_ in range(rounds):
                for cabinet_id in self.ids:
                    self.seq[cabinet_id] += 1
                    kind = EventType.DOOR_OPENED if round_ % 2 == 0 else EventType.DOOR_CLOSED
                    event = Event(
                        v=1,
                        cabinet_id=cabinet_id,
                        boot_id=self.boot,
                        seq=self.seq[cabinet_id],
                        ts=datetime.now(UTC),
                        event=kind,
                    )
                    await connection.publish_confirmed(
                        topic(cabinet_id, Channel.EVENT), encode(event)
                    )
                    published.append(event)
        self.sent.extend(published)
        return published

    @property
    def keys(self) -> set[str]:
        return {event_key(event) for event in self.sent}


@pytest.mark.timeout(180 + OUTAGE_S)
async def test_an_endpoint_outage_delays_but_loses_reorders_and_repeats_nothing(
    broker: MosquittoBroker, ticker: KeepAliveTicker, tmp_path: Path
) -> None:
    ids = [f"out-{index}" for index in range(5)]
    store_url = f"sqlite:///{tmp_path / 'state.sqlite3'}"
    seed(store_url, ids)
    receiver = DispatchReceiver()
    settings = service_settings(
        broker,
        store_url,
        [endpoint("cc", receiver.url())],
        # No rate limit: every event is a message of its own, so order is visible.
        coalescing={"min_update_interval_s": 0},
    )
    cabinets = Cabinets(broker_settings(broker), ticker, ids)
    async with running(DispatchService(settings)) as service:
        api = f"http://127.0.0.1:{service.api_port}"
        await receiver.start()
        await cabinets.flap(2)
        await eventually(lambda: len(receiver.arrivals) == 10, 30, "the first round is missing")
        await receiver.stop()
        back_at = time.monotonic() + OUTAGE_S
        await cabinets.flap(4)

        pending_url = f"{api}/api/deliveries?status=pending&endpoint=cc&limit=100"

        def fewest_head_attempts(pending: list[dict[str, Any]]) -> int:
            attempts = dict.fromkeys(ids, 0)
            for delivery in pending:
                cabinet_id = delivery["cabinet_id"]
                attempts[cabinet_id] = max(attempts[cabinet_id], delivery["attempts"])
            return min(attempts.values())

        # Down until every cabinet's head message failed its way to the longest delay,
        # as recorded in the outbox: the API is served from this event loop, so it is
        # polled from a thread, not from eventually's predicate.
        async with asyncio.timeout(30):
            while True:
                pending = await asyncio.to_thread(get_json, pending_url)
                if fewest_head_attempts(pending) >= ATTEMPTS_TO_THE_CEILING:
                    break
                await asyncio.sleep(0.05)
        await asyncio.sleep(max(0.0, back_at - time.monotonic()))  # DISPATCH_TEST_OUTAGE_S
        pending = await asyncio.to_thread(get_json, pending_url)
        assert len(pending) == 4 * len(ids)
        assert len(receiver.arrivals) == 10
        await receiver.start()
        try:
            await eventually(
                lambda: set(receiver.keys()) == cabinets.keys, 30, "not delivered after the outage"
            )
            metrics = await asyncio.to_thread(get_text, f"{api}/metrics")
        finally:
            await receiver.stop()

    keys = receiver.keys()
    assert len(keys) == len(set(keys)) == 6 * len(ids), "a message arrived twice"
    check_order(receiver.arrivals)
    by_cabinet: dict[str, list[int]] = defaultdict(list)
    for arrival in receiver.arrivals:
        event = arrival.event()
        by_cabinet[event.cabinet_id].append(event.idempotency_key.seq)
    assert all(seqs == list(range(1, 7)) for seqs in by_cabinet.values())
    assert 'aedfleet_dispatch_delivered_total{endpoint="cc"} 30.0' in metrics
    assert 'aedfleet_dispatch_pending{endpoint="cc"} 0.0' in metrics
    # Every attempt is recorded, and `aedfleet dispatch list` shows them.
    with DispatchOutbox.open(store_url) as outbox:
        records = outbox.recent(100, endpoint="cc")
    assert {r.status for r in records} == {DeliveryStatus.DELIVERED}
    # Only the head of each cabinet's lane is retried; what queued behind it waits, and
    # goes through at the first attempt once the head is delivered.
    retried = [r for r in records if r.attempts > 1]
    assert len(retried) == len(ids)
    assert all(r.attempts >= 3 for r in retried)
    assert sum(1 for r in records if r.attempts == 1) == len(records) - len(ids)
    for record in retried:
        assert [a.ok for a in record.attempt_log] == [False] * (record.attempts - 1) + [True]
        assert all("cannot post" in (a.error or "") for a in record.attempt_log[:-1])
    listing = await asyncio.create_subprocess_exec(
        *[AEDFLEET, "dispatch", "list", "--store", store_url, "--endpoint", "cc"],
        *["--limit", str(len(records))],
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(listing.communicate(), 60)
    assert listing.returncode == 0, stderr.decode()
    text = stdout.decode()
    assert text.count("-> cc: delivered") == len(records)
    assert text.count("failed: cannot post") == sum(r.attempts - 1 for r in retried)
    assert "attempt 1 " in text


@pytest.mark.timeout(120)
@pytest.mark.timeout(120)
async def test_an_event_published_under_another_cabinets_login_is_refused(
    broker: MosquittoBroker, ticker: KeepAliveTicker, tmp_path: Path
) -> None:
    store_url = f"sqlite:///{tmp_path / 'state.sqlite3'}"
    seed(store_url, ["cab-a", "cab-b"])
    mqtt = broker_settings(broker)

    async with DispatchReceiver() as receiver:
        settings = service_settings(
            broker, store_url, [endpoint("cc", receiver.url())], republish={"enabled": False}
        )
        parked_filter = dead_letter_topic(Reason.IDENTITY_MISMATCH)
        async with (
            Recorder(mqtt, ticker, parked_filter, "parked") as parked,
            running(DispatchService(settings)) as service,
            claiming(mqtt, ticker, "cab-a") as cabinet_a,
            claiming(mqtt, ticker, "cab-b") as cabinet_b,
        ):
            # cab-a's login speaks for cab-b: a false door alert, with a matching payload.
            await cabinet_a.publish_confirmed(
                topic("cab-b", Channel.EVENT), door_opened("cab-b", 1)
            )
            await eventually(lambda: len(parked.messages) == 1, 20, "the spoof was not parked")
            await cabinet_b.publish_confirmed(
                topic("cab-b", Channel.EVENT), door_opened("cab-b", 2)
            )
            await eventually(lambda: len(receiver.arrivals) == 1, 20, "cab-b's own event is lost")
    letter = DeadLetter.model_validate_json(parked.messages[0].payload)
    assert letter.service == "dispatch"
    assert letter.topic == topic("cab-b", Channel.EVENT)
    assert "'cab-a'" in letter.detail
    (arrival,) = receiver.arrivals
    assert arrival.event().idempotency_key.seq == 2
    refusals = service.metrics.registry.get_sample_value(
        "aedfleet_dispatch_refused_events_total", {"reason": "identity_mismatch"}
    )
    assert refusals == 1


def parked_events(letters: Iterable[InboundMessage]) -> set[tuple[str, int]]:
    """(boot id, seq) of the events the dispatch service dead-lettered."""
    parked = set()
    for message in letters:
        letter = DeadLetter.model_validate_json(message.payload)
        if letter.service == "dispatch":
            event = decode_cabinet_message(letter.topic, base64.b64decode(letter.payload_b64))
            assert isinstance(event, Event)
            parked.add((event.boot_id, event.seq))
    return parked


async def test_held_updates_and_unregistered_cabinets_are_dispatched_when_configured(
    broker: MosquittoBroker, ticker: KeepAliveTicker, tmp_path: Path
) -> None:
    store_url = f"sqlite:///{tmp_path / 'state.sqlite3'}"
    seed(store_url, ["known-1"])
    async with DispatchReceiver() as receiver:
        settings = service_settings(
            broker,
            store_url,
            [endpoint("cc", receiver.url())],
            coalescing={"min_update_interval_s": 2},
            republish={"enabled": False},
            unregistered_cabinets="dispatch",
        )
        cabinets = Cabinets(broker_settings(broker), ticker, ["known-1", "stranger-9"])
        async with running(DispatchService(settings)):
            await cabinets.flap(4)
            await eventually(lambda: len(receiver.arrivals) >= 2, 20, "no alerts")
            alerts = list(receiver.arrivals)
            await eventually(
                lambda: set(reported(receiver.arrivals)) == cabinets.keys,
                20,
                "held updates never went out",
            )
    assert {a.event().kind.value for a in alerts[:2]} == {"alert"}
    by_cabinet = {a.event().cabinet_id: a.event() for a in alerts[:2]}
    assert by_cabinet["known-1"].registered
    assert not by_cabinet["stranger-9"].registered
    # Two cabinets, each an alert and one update with the three held events.
    assert len(receiver.arrivals) == 4
    updates = [a.event() for a in receiver.arrivals[2:]]
    assert all(len(update.events) == 3 for update in updates)
    assert all(update.door_open is False for update in updates)


def test_a_bad_configuration_is_refused_with_the_key(tmp_path: Path) -> None:
    config = write_toml(
        tmp_path / "dispatch.toml",
        {"endpoints": [{"name": "Bad Name", "url": "not a url"}]},
    )
    result = subprocess.run(
        [AEDFLEET, "dispatch", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "endpoints.0.name" in result.stderr
    assert "endpoints.0.url" in result.stderr


# -- kill -9 -----------------------------------------------------------------------------------


class DispatchProcess:
    """``aedfleet dispatch --config …`` as an operator runs it."""

    def __init__(self, config: Path, log: Path) -> None:
        self._log = log.open("ab")
        self.process = subprocess.Popen(
            [AEDFLEET, "dispatch", "--config", str(config), "--log-level", "DEBUG"],
            cwd=REPO,
            env=command_env(),
            stdout=self._log,
            stderr=self._log,
        )

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        self._log.close()

    def terminate(self) -> int:
        self.process.terminate()
        code = self.process.wait(timeout=20)
        self._log.close()
        return code


@contextlib.contextmanager
def dispatch_process(config: Path, log: Path) -> Iterator[DispatchProcess]:
    process = DispatchProcess(config, log)
    try:
        yield process
    finally:
        if process.process.poll() is None:
            process.kill()


def subscribed(api_port: int) -> bool:
    try:
        return bool(get_json(f"http://127.0.0.1:{api_port}/api/health")["subscribed"])
    except OSError:
        return False


def pending_to(store_url: str, endpoint_name: str) -> int:
    with DispatchOutbox.open(store_url) as outbox:
        return outbox.counts().get((endpoint_name, DeliveryStatus.PENDING), 0)


@pytest.mark.timeout(240)
async def test_undelivered_events_survive_kill_9(
    broker: MosquittoBroker, ticker: KeepAliveTicker, tmp_path: Path
) -> None:
    ids = [f"kill-{index}" for index in range(4)]
    store_url = f"sqlite:///{tmp_path / 'state.sqlite3'}"
    seed(store_url, ids)
    secret_file = tmp_path / "hmac.secret"
    secret_file.write_text(HMAC_SECRET, encoding="utf-8")
    receiver = DispatchReceiver()
    api_port = free_port()
    mqtt = broker_settings(broker)
    config = write_toml(
        tmp_path / "dispatch.toml",
        {
            "client_id": "dispatch-kill-test",
            "store_url": store_url,
            "api_port": api_port,
            "mqtt": {"port": broker.port, "keepalive_s": 5, "connect_timeout_s": 5},
            "coalescing": {"min_update_interval_s": 0},
            "reconnect": {"initial_s": 0.1, "max_s": 0.5},
            "endpoints": [
                {
                    "name": "cc",
                    "url": receiver.url(),
                    "retry": FAST_RETRY,
                    "auth": {"kind": "hmac", "secret_file": str(secret_file)},
                }
            ],
        },
    )
    log = tmp_path / "dispatch.log"
    cabinets = Cabinets(mqtt, ticker, ids)
    with dispatch_process(config, log) as first:
        await eventually(lambda: subscribed(api_port), 60, "dispatch never subscribed", 0.2)
        # The receiver is down: everything stays in the outbox.
        await cabinets.flap(3)
        await eventually(
            lambda: pending_to(store_url, "cc") == 3 * len(ids),
            30,
            "the events never reached the outbox",
            every_s=0.2,
        )
        first.kill()
    # While dispatch is dead, more doors open: the broker holds them for its session.
    await cabinets.flap(2)
    await receiver.start()
    try:
        with dispatch_process(config, log) as second:
            await eventually(
                lambda: set(receiver.keys()) == cabinets.keys,
                60,
                f"not delivered after the restart; log: {log.read_text()[-2000:]}",
            )
            await eventually(
                lambda: pending_to(store_url, "mqtt") == 0,
                30,
                "the MQTT republication is behind",
                every_s=0.2,
            )
            assert second.terminate() == 0
    finally:
        await receiver.stop()
    keys = receiver.keys()
    assert len(keys) == len(set(keys)) == 5 * len(ids), "a message arrived twice"
    check_order(receiver.arrivals)
    assert sorted(reported(receiver.arrivals)) == sorted(cabinets.keys)
    with DispatchOutbox.open(store_url) as outbox:
        assert outbox.counts() == {
            ("cc", DeliveryStatus.DELIVERED): 5 * len(ids),
            ("mqtt", DeliveryStatus.DELIVERED): 5 * len(ids),
        }


@pytest.mark.timeout(60)
async def test_a_cabinet_registered_while_running_is_known_after_the_next_refresh(
    broker: MosquittoBroker, tmp_path: Path
) -> None:
    store_url = f"sqlite:///{tmp_path / 'state.sqlite3'}"
    seed(store_url, ["reg-0", "reg-1"])
    settings = service_settings(broker, store_url, [], registry_refresh_s=0.05)
    async with running(DispatchService(settings)) as service:
        health = f"http://127.0.0.1:{service.api_port}/api/health"

        async def registered() -> int:
            return int((await asyncio.to_thread(get_json, health))["registered_cabinets"])

        assert await registered() == 2
        await asyncio.to_thread(seed, store_url, ["reg-2"])
        async with asyncio.timeout(10):
            while await registered() != 3:  # noqa: ASYNC110 - polls a server
                await asyncio.sleep(0.05)
