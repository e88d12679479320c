"""The simulated fleet, the ingest and the dispatch on the secured Mosquitto, each with its
own login: the generated ACL gives every one of them exactly what its code uses."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import SecretBytes

from aedfleet.broker_auth import ServiceAccount
from aedfleet.clock import ScaledClock
from aedfleet.contract import (
    DEAD_LETTER_PREFIX,
    Channel,
    DeadLetter,
    DispatchEvent,
    Event,
    EventType,
    Reason,
    dispatch_subscription,
    dispatch_topic,
    encode,
    topic,
)
from aedfleet.db.state import StateStore
from aedfleet.influx.writer import InfluxSettings
from aedfleet.mqtt import MqttSettings
from aedfleet_app.alerting_process import AlertingProcess
from aedfleet_testing.alerting_e2e_support import alerting_settings, seed_fleet_registry
from aedfleet_testing.alerting_e2e_support import running as alerting_running
from aedfleet_testing.dispatch_support import seed
from aedfleet_testing.influx import InfluxServer
from aedfleet_testing.ingest_support import seed_registry
from aedfleet_testing.mailbox import Mailbox
from dispatch.config import DispatchSettings
from dispatch.outbox import DeliveryStatus, DispatchOutbox
from dispatch.service import DispatchService
from firmware_sim.fleet import FleetSettings, SimulatedFleet
from ingest.config import IngestSettings
from ingest.service import IngestService
from tests.broker_security_support import SECRET, probe, secured_broker
from tests.recorder import eventually
from tests.test_dispatch_e2e import running as dispatch_running
from tests.test_ingest_e2e import quiet_scenario
from tests.test_ingest_e2e import running as ingest_running

# Every test here starts a Mosquitto of its own, in a module fixture or its body.
pytestmark = pytest.mark.broker

NOT_AUTHORIZED = 0x87


def online_twins(store_url: str) -> set[str]:
    store = StateStore.open(store_url)
    try:
        return {twin.cabinet_id for twin in store.twins() if twin.online}
    finally:
        store.close()


async def until_online(
    fleet: SimulatedFleet, store_url: str, fleet_ids: list[str], reader: str
) -> None:
    """Run the fleet until every cabinet's status has reached the store through ``reader``."""
    running_fleet = asyncio.create_task(fleet.run(None))
    try:
        await eventually(
            lambda: online_twins(store_url) >= set(fleet_ids),
            60,
            f"the fleet's statuses did not reach {reader}",
            every_s=0.2,
        )
    finally:
        running_fleet.cancel()
        await asyncio.gather(running_fleet, return_exceptions=True)


def deliveries(store_url: str) -> set[tuple[str, DeliveryStatus]]:
    with DispatchOutbox.open(store_url) as outbox:
        return {(record.cabinet_id, record.status) for record in outbox.recent(100)}


@pytest.mark.timeout(120)
async def test_a_fleet_reaches_the_ingest_and_refusals_reach_the_operator(
    tmp_path: Path, influx_server: InfluxServer, influx_database: str
) -> None:
    cabinets = 5
    scenario = quiet_scenario(cabinets)
    fleet_ids = [scenario.cabinet_id(index) for index in range(cabinets)]
    sender = "e2e-garbled"
    store_url = f"sqlite:///{tmp_path / 'state.sqlite3'}"
    seed_registry(store_url, [*fleet_ids, sender])
    with secured_broker(tmp_path / "broker", [*fleet_ids, sender]) as secured:
        service = IngestService(
            IngestSettings(
                mqtt=secured.login(ServiceAccount.INGEST.value),
                client_id="ingest-secured",
                influx=InfluxSettings(url=influx_server.url, bucket=influx_database),
                store_url=store_url,
                batch_max_delay_s=0.2,
            )
        )
        fleet = SimulatedFleet(
            FleetSettings(
                cabinets=cabinets,
                broker=MqttSettings(host="127.0.0.1", port=secured.broker.port, keepalive_s=5),
                broker_secret=SecretBytes(SECRET),
                work_dir=tmp_path / "sim",
                ramp_s=0,
                tick_s=10,
            ),
            scenario,
            ScaledClock(datetime.now(UTC), 10),
        )
        with (
            probe(secured.login(ServiceAccount.OPERATOR.value), "operator") as operator,
            probe(secured.login(sender), f"aed-{sender}") as garbled,
        ):
            operator.subscribe(f"{DEAD_LETTER_PREFIX}/#")
            async with ingest_running(service):
                # The refusal first: the ingest is done parking it long before it stops.
                await asyncio.to_thread(
                    garbled.publish, topic(sender, Channel.HEARTBEAT), b"not json"
                )
                parked = await asyncio.to_thread(operator.next_message)
                await until_online(fleet, store_url, fleet_ids, "the store")
    letter = DeadLetter.model_validate_json(parked.payload)
    assert parked.topic == f"{DEAD_LETTER_PREFIX}/{Reason.INVALID_JSON.value}"
    assert letter.topic == topic(sender, Channel.HEARTBEAT)


@pytest.mark.timeout(120)
async def test_the_alerting_service_ingests_with_its_own_login(
    tmp_path: Path, influx_server: InfluxServer, influx_database: str
) -> None:
    scenario = quiet_scenario(3)
    fleet_ids = [scenario.cabinet_id(index) for index in range(3)]
    store_url = f"sqlite:///{tmp_path / 'state.sqlite3'}"
    seed_fleet_registry(store_url, scenario)
    with secured_broker(tmp_path / "broker", fleet_ids) as secured, Mailbox() as mailbox:
        settings = alerting_settings(
            secured.broker, influx_server, influx_database, store_url, mailbox
        )
        login = secured.login(ServiceAccount.ALERTING.value)
        service = AlertingProcess(
            settings.model_copy(
                update={"ingest": settings.ingest.model_copy(update={"mqtt": login})}
            )
        )
        fleet = SimulatedFleet(
            FleetSettings(
                cabinets=3,
                broker=MqttSettings(host="127.0.0.1", port=secured.broker.port, keepalive_s=5),
                broker_secret=SecretBytes(SECRET),
                work_dir=tmp_path / "sim",
                ramp_s=0,
                tick_s=10,
            ),
            scenario,
            ScaledClock(datetime.now(UTC), 10),
        )
        async with alerting_running(service):
            await until_online(fleet, store_url, fleet_ids, "the alerting service")


@pytest.mark.timeout(60)
async def test_dispatch_sends_a_cabinets_door_event_and_never_a_forged_one(
    tmp_path: Path,
) -> None:
    honest, victim = "SZ-0001", "SZ-0002"
    store_url = f"sqlite:///{tmp_path / 'state.sqlite3'}"
    seed(store_url, [honest, victim])
    with secured_broker(tmp_path / "broker", [honest, victim]) as secured:
        service = DispatchService(
            DispatchSettings.model_validate(
                {
                    "mqtt": secured.login(ServiceAccount.DISPATCH.value),
                    "client_id": "dispatch-secured",
                    "store_url": store_url,
                    "republish": {"retry": {"initial_s": 0.2, "max_s": 1.0}},
                }
            )
        )
        with (
            probe(secured.login(ServiceAccount.DISPATCH_BRIDGE.value), "bridge") as bridge,
            probe(secured.login(honest), f"aed-{honest}") as cabinet,
        ):
            bridge.subscribe(dispatch_subscription())
            async with dispatch_running(service):
                for cabinet_id, seq in ((victim, 1), (honest, 2)):
                    door = Event(
                        v=1,
                        cabinet_id=cabinet_id,
                        boot_id="b" * 32,
                        seq=seq,
                        ts=datetime.now(UTC),
                        event=EventType.DOOR_OPENED,
                    )
                    acknowledged = await asyncio.to_thread(
                        cabinet.publish, topic(cabinet_id, Channel.EVENT), encode(door)
                    )
                    assert acknowledged.is_failure is (cabinet_id == victim)
                    if cabinet_id == victim:
                        assert int(acknowledged.value) == NOT_AUTHORIZED
                dispatched = await asyncio.to_thread(bridge.next_message)
                # Stop the service only once it has recorded the delivery, not while it
                # still waits for the republication's PUBACK.
                await eventually(
                    lambda: deliveries(store_url) == {(honest, DeliveryStatus.DELIVERED)},
                    10,
                    "the republication was not recorded as delivered",
                    every_s=0.05,
                )
    assert dispatched.topic == dispatch_topic(honest)
    assert DispatchEvent.model_validate_json(dispatched.payload).cabinet_id == honest


@pytest.mark.timeout(60)
async def test_dispatch_parks_an_event_of_a_cabinet_the_registry_no_longer_has(
    tmp_path: Path,
) -> None:
    """A cabinet whose broker login outlived its registry entry (the broker's files not yet
    regenerated) opens its door: dispatch sends nobody and may park the event."""
    kept, retired = "SZ-0001", "SZ-0009"
    store_url = f"sqlite:///{tmp_path / 'state.sqlite3'}"
    seed(store_url, [kept])
    with secured_broker(tmp_path / "broker", [kept, retired]) as secured:
        service = DispatchService(
            DispatchSettings.model_validate(
                {
                    "mqtt": secured.login(ServiceAccount.DISPATCH.value),
                    "client_id": "dispatch-secured",
                    "store_url": store_url,
                }
            )
        )
        with (
            probe(secured.login(ServiceAccount.OPERATOR.value), "operator") as operator,
            probe(secured.login(retired), f"aed-{retired}") as cabinet,
        ):
            operator.subscribe(f"{DEAD_LETTER_PREFIX}/#")
            async with dispatch_running(service):
                door = Event(
                    v=1,
                    cabinet_id=retired,
                    boot_id="c" * 32,
                    seq=1,
                    ts=datetime.now(UTC),
                    event=EventType.DOOR_OPENED,
                )
                await asyncio.to_thread(
                    cabinet.publish, topic(retired, Channel.EVENT), encode(door)
                )
                parked = await asyncio.to_thread(operator.next_message)
    letter = DeadLetter.model_validate_json(parked.payload)
    assert (letter.reason, letter.service) == (Reason.UNKNOWN_CABINET, "dispatch")
    assert deliveries(store_url) == set()
