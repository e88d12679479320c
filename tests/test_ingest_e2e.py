"""Ingest end to end: simulated fleet -> real Mosquitto -> ingest -> real InfluxDB and store."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import subprocess
import urllib.request
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from aedfleet.clock import ScaledClock
from aedfleet.contract import (
    DEAD_LETTER_PREFIX,
    MAX_PAYLOAD_BYTES,
    DeadLetter,
    Heartbeat,
    Reason,
    decode_cabinet_message,
    subscription,
)
from aedfleet.db.state import StateStore
from aedfleet.influx.writer import InfluxSettings
from aedfleet.mqtt import KeepAliveTicker, MqttConnection, MqttSettings
from aedfleet_testing.brokers import MosquittoBroker, broker_settings
from aedfleet_testing.commands import AEDFLEET
from aedfleet_testing.influx import InfluxServer
from aedfleet_testing.ingest_support import duplicates, published, seed_registry, stored_points
from firmware_sim.fleet import FleetSettings, SimulatedFleet
from firmware_sim.scenario import FleetDefaults, Scenario
from ingest.config import IngestSettings
from ingest.service import IngestService
from tests.recorder import Recorder, eventually


def read_metrics(port: int | None) -> str:
    url = f"http://127.0.0.1:{port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


def quiet_scenario(size: int) -> Scenario:
    return Scenario(
        seed=3,
        fleet=FleetDefaults(size=size, id_prefix="e2e-", door_openings_per_day=200),
        fault_rates={},
    )


def ingest_settings(
    broker: MosquittoBroker, influx: InfluxServer, database: str, store_url: str
) -> IngestSettings:
    return IngestSettings(
        mqtt=broker_settings(broker),
        client_id=f"ingest-{uuid.uuid4().hex[:8]}",
        influx=InfluxSettings(url=influx.url, bucket=database),
        store_url=store_url,
        batch_max_delay_s=0.2,
        metrics_port=0,
    )


@contextlib.asynccontextmanager
async def running(service: IngestService) -> AsyncIterator[IngestService]:
    task = asyncio.create_task(service.run())
    try:
        await asyncio.wait_for(service.subscribed.wait(), 20)
        yield service
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.mark.timeout(300)
async def test_a_fleet_minute_lands_exactly_once_and_twins_match(
    broker: MosquittoBroker,
    influx_server: InfluxServer,
    influx_database: str,
    ticker: KeepAliveTicker,
    tmp_path: Path,
) -> None:
    cabinets = 200
    scenario = quiet_scenario(cabinets)
    store_url = f"sqlite:///{tmp_path / 'state.sqlite3'}"
    seed_registry(store_url, [scenario.cabinet_id(i) for i in range(cabinets)])
    service = IngestService(ingest_settings(broker, influx_server, influx_database, store_url))
    fleet = SimulatedFleet(
        FleetSettings(
            cabinets=cabinets,
            broker=broker_settings(broker),
            work_dir=tmp_path / "sim",
            ramp_s=3,
            tick_s=10,
        ),
        scenario,
        ScaledClock(datetime.now(UTC), 10),
    )
    async with (
        Recorder(broker_settings(broker), ticker, subscription(), "witness") as witness,
        running(service),
    ):
        await fleet.run(duration_s=60)
        sent = published(witness.messages)
        await eventually(
            lambda: len(stored_points(influx_server, influx_database)) >= len(sent),
            60,
            "ingest did not catch up",
            every_s=0.5,
        )
        points = stored_points(influx_server, influx_database)

        def all_offline() -> bool:
            store = StateStore.open(store_url)
            try:
                twins = store.twins()
            finally:
                store.close()
            return len(twins) == cabinets and not any(twin.online for twin in twins)

        await eventually(
            all_offline, 30, "the stopped fleet's offline statuses were not applied", every_s=0.2
        )
        metrics = await asyncio.to_thread(read_metrics, service.metrics_port)

    assert not duplicates(points)
    assert set(points) == sent
    assert len({key[0] for key in sent}) == cabinets
    assert "aedfleet_ingest_written_total" in metrics

    last_heartbeat: dict[str, Heartbeat] = {}
    for message in witness.messages:
        decoded = decode_cabinet_message(message.topic, message.payload)
        if isinstance(decoded, Heartbeat):
            held = last_heartbeat.get(decoded.cabinet_id)
            if held is None or decoded.seq > held.seq:
                last_heartbeat[decoded.cabinet_id] = decoded
    store = StateStore.open(store_url)
    try:
        twins = {twin.cabinet_id: twin for twin in store.twins()}
    finally:
        store.close()
    assert set(twins) == set(last_heartbeat)
    for cabinet_id, heartbeat in last_heartbeat.items():
        twin = twins[cabinet_id]
        assert twin.heartbeat_ts == heartbeat.ts
        assert twin.battery_pct == heartbeat.battery_pct
        assert twin.temperature_c == heartbeat.temperature_c


async def test_bad_payloads_are_parked_by_reason_and_the_service_goes_on(
    broker: MosquittoBroker,
    influx_server: InfluxServer,
    influx_database: str,
    ticker: KeepAliveTicker,
    tmp_path: Path,
) -> None:
    store_url = f"sqlite:///{tmp_path / 'state.sqlite3'}"
    seed_registry(store_url, ["SZ-0001"])
    settings = broker_settings(broker)
    good = {
        "v": 1,
        "cabinet_id": "SZ-0001",
        "boot_id": "0123456789abcdef0123456789abcdef",
        "seq": 1,
        "ts": "2026-11-25T08:00:00Z",
        "event": "door_opened",
        "detail": None,
    }

    def variant(**changes: object) -> bytes:
        return json.dumps({**good, **changes}).encode()

    corpus: list[tuple[str, bytes, Reason]] = [
        ("aed/v1/SZ-0001/event", variant()[:-7], Reason.INVALID_JSON),
        ("aed/v1/SZ-0001/event", variant(seq="one"), Reason.SCHEMA_VIOLATION),
        ("aed/v1/SZ-0001/event", variant(detail="x" * 20_000), Reason.OVERSIZED),
        ("aed/v1/SZ-0001/event", variant(detail="長" * 300), Reason.SCHEMA_VIOLATION),
        (
            "aed/v1/SZ-0001/event",
            variant().replace(b'"seq": 1', b'"seq": NaN'),
            Reason.INVALID_JSON,
        ),
        ("aed/v1/SZ-0001/event", variant(ts="2999-01-01T00:00:00"), Reason.SCHEMA_VIOLATION),
        ("aed/v1/SZ-0001/event", variant(ts="0001-01-01T00:00:00+08:00"), Reason.SCHEMA_VIOLATION),
        ("aed/v1/SZ-0001/event", variant(v=3), Reason.UNKNOWN_VERSION),
        ("aed/v1/SZ-0002/event", variant(), Reason.CABINET_MISMATCH),
        ("aed/v1/SZ-0001/doorbell", variant(), Reason.UNKNOWN_CHANNEL),
        ("aed/v1/XX-0404/event", variant(cabinet_id="XX-0404"), Reason.UNKNOWN_CABINET),
        ("aed/v1/SZ-0001/event", b"\xff\xfe\x00garbage", Reason.INVALID_JSON),
        ("aed/v1/SZ-0001/event", b"[1, 2, 3]", Reason.SCHEMA_VIOLATION),
        # json.loads would read both; the contract is UTF-8 without a byte order mark.
        ("aed/v1/SZ-0001/event", variant(seq=7).decode().encode("utf-16"), Reason.INVALID_JSON),
        ("aed/v1/SZ-0001/event", b"\xef\xbb\xbf" + variant(seq=8), Reason.INVALID_JSON),
    ]
    service = IngestService(ingest_settings(broker, influx_server, influx_database, store_url))
    async with (
        Recorder(settings, ticker, f"{DEAD_LETTER_PREFIX}/#", "dlq-reader") as dead_letters,
        running(service),
        MqttConnection(settings, "vandal", ticker) as vandal,
    ):
        for topic_name, payload, _ in corpus:
            await vandal.publish_confirmed(topic_name, payload)
        await vandal.publish_confirmed("aed/v1/SZ-0001/event", variant(seq=2))
        await eventually(lambda: len(dead_letters.messages) >= len(corpus), 30, "not parked")
        await eventually(
            lambda: bool(influx_server.query('SELECT * FROM "event"', influx_database)),
            30,
            "the valid message after the bad ones was not written",
            every_s=0.2,
        )

    # Published before it on one connection, each refused message was screened before
    # the valid one was written: only the valid event is in InfluxDB.
    events = influx_server.query('SELECT seq FROM "event"', influx_database)
    assert [row["seq"] for row in events] == [2]
    letters = [DeadLetter.model_validate_json(m.payload) for m in dead_letters.messages]
    by_original = {
        (letter.topic, base64.b64decode(letter.payload_b64)): (letter, message.topic)
        for letter, message in zip(letters, dead_letters.messages, strict=True)
    }
    for topic_name, payload, reason in corpus:
        parked = by_original.get((topic_name, payload))
        assert parked is not None, f"{topic_name} {payload[:40]!r} was not parked"
        letter, letter_topic = parked
        assert letter.reason is reason, (payload[:60], letter.detail)
        assert letter_topic == f"{DEAD_LETTER_PREFIX}/{reason.value}"
    invalid = service.metrics.invalid
    # At least once: a redelivered refusal is counted (and parked) again.
    assert sum(invalid.labels(reason.value)._value.get() for reason in Reason) >= len(corpus)


def test_ingest_config_errors_name_the_key(tmp_path: Path) -> None:
    config = tmp_path / "ingest.toml"
    config.write_text("batch_max_messages = 0\n[influx]\nurl = 5\n", encoding="utf-8")
    result = subprocess.run(
        [AEDFLEET, "ingest", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "batch_max_messages" in result.stderr
    assert "influx.url" in result.stderr


def test_the_ingest_refuses_mqtt_3_1_1_up_front() -> None:
    with pytest.raises(ValueError, match="needs MQTT 5"):
        IngestService(IngestSettings(mqtt=MqttSettings(protocol="3.1.1")))


def test_a_maximum_packet_size_too_small_for_a_valid_message_is_refused() -> None:
    with pytest.raises(ValueError, match="max_packet_size"):
        IngestSettings(max_packet_size=MAX_PAYLOAD_BYTES)
