"""Alerting end to end: simulated fleet → real Mosquitto → ingest + alerting → real SMTP
(aiosmtpd), real InfluxDB, the ack link over real HTTP.

The fleet and the service share one clock running 60 times faster than wall time, so
the default escalation policy plays out in seconds: captain at once, backup after 10
clock minutes (10 wall seconds), coordinator after 30 (30 wall seconds).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from datetime import datetime, timedelta
from datetime import time as clock_time
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from aedfleet.clock import ScaledClock
from aedfleet_app.alerting_process import AlertingProcess
from aedfleet_testing.alerting_e2e_support import (
    alerting_settings,
    email_of,
    notice_alarms,
    running,
    seed_fleet_registry,
    store_url_in,
)
from aedfleet_testing.brokers import MosquittoBroker, broker_settings
from aedfleet_testing.influx import InfluxServer
from aedfleet_testing.mailbox import Mailbox, text_of
from alerting.model import AlarmState, AlarmType, NoticeKind
from alerting.store import AlarmStore
from firmware_sim.faults import Fault
from firmware_sim.fleet import FleetSettings, SimulatedFleet
from firmware_sim.registry import coordinator_id, person_ids
from firmware_sim.scenario import ExplicitFault, FleetDefaults, Scenario
from tests.recorder import eventually

SCALE = 60.0
SHANGHAI = ZoneInfo("Asia/Shanghai")
# Ten minutes before the fleet's self-tests (01:00 to 01:05 local), so that a failing
# self-test is reported within the first wall seconds of the run.
START = datetime(2026, 11, 26, 0, 50, tzinfo=SHANGHAI)

# cabinet index → the fault it suffers, seconds (clock) after the start
FAULTS = {
    0: (Fault.SELFTEST_FAILURE, 60),
    1: (Fault.BATTERY_FAILURE, 60),
    2: (Fault.PADS_REMOVED, 60),
    3: (Fault.POWER_LOSS, 60),
    4: (Fault.TEMPERATURE_EXCURSION, 60),
    5: (Fault.AED_NOT_RETURNED, 60),
    6: (Fault.CABINET_OFFLINE, 60),
    7: (Fault.AGENT_KILLED, 60),
}
# Cabinet 2's pads come back after 45 clock minutes (after its coordinator was paged);
# every other fault outlasts the test.
DURATION_S = {2: 45 * 60}
# What each fault must raise at its cabinet (at least these alarm types).
EXPECTED = {
    0: {AlarmType.SELFTEST_FAILED},
    1: {AlarmType.BATTERY_LOW},
    2: {AlarmType.PADS_MISSING},
    3: {AlarmType.POWER_LOST},
    4: {AlarmType.TEMPERATURE},
    5: {AlarmType.DOOR_OPENED, AlarmType.AED_REMOVED, AlarmType.AED_NOT_RETURNED},
    6: {AlarmType.OFFLINE},
    7: {AlarmType.OFFLINE},
}


def fault_scenario() -> Scenario:
    return Scenario(
        seed=42,
        fleet=FleetDefaults(
            size=len(FAULTS),
            id_prefix="al-",
            time_zones=("Asia/Shanghai",),
            climate_mix={"indoor": 1.0},
            door_openings_per_day=0,
            aed_taken_fraction=0,
            fresh_consumables=True,
            selftest_earliest=clock_time(1, 0),
            selftest_latest=clock_time(1, 5),
        ),
        faults=tuple(
            ExplicitFault(
                at=at, cabinet=index, fault=fault, duration_s=DURATION_S.get(index, 14_400)
            )
            for index, (fault, at) in FAULTS.items()
        ),
    )


async def follow(link: str) -> str:
    """Open a signed link and press its button, as a captain on a phone would."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        async with http.get(link) as page:
            assert page.status == 200
        async with http.post(link) as done:
            assert done.status == 200
            return await done.text()


def link_in(text: str, action: str) -> str:
    links = re.findall(r"http://127\.0\.0\.1:\d+/l/[A-Za-z0-9_-]+", text)
    assert links, "no link in the message"
    # The message lists acknowledge first, then resolve, then inspection.
    return str(links[{"ack": 0, "resolve": 1}[action]])


@pytest.mark.timeout(300)
async def test_each_fault_pages_its_captain_escalates_and_stops_on_ack(
    broker: MosquittoBroker,
    influx_server: InfluxServer,
    influx_database: str,
    tmp_path: Path,
) -> None:
    scenario = fault_scenario()
    store_url = store_url_in(tmp_path)
    seed_fleet_registry(store_url, scenario)
    clock = ScaledClock(START, SCALE)
    fleet = SimulatedFleet(
        FleetSettings(
            cabinets=scenario.fleet.size,
            broker=broker_settings(broker),
            work_dir=tmp_path / "fleet",
            heartbeat_interval_s=60,
            tick_s=10,
            ramp_s=0.2,
        ),
        scenario,
        clock,
    )
    cabinet = scenario.cabinet_id

    with Mailbox() as mailbox:
        settings = alerting_settings(broker, influx_server, influx_database, store_url, mailbox)
        service = AlertingProcess(settings, clock=clock)
        fleet_run = asyncio.create_task(fleet.run(duration_s=None))
        try:
            async with running(service):

                def alarms_of(index: int) -> set[AlarmType]:
                    with AlarmStore.open(store_url) as store:
                        return {a.type for a in store.alarms(cabinet_id=cabinet(index))}

                def types_paged(person_id: str, about: int | None = None) -> set[AlarmType]:
                    """Alarm types ``person_id`` was told of (at cabinet ``about`` only)."""
                    paged: set[AlarmType] = set()
                    with AlarmStore.open(store_url) as store:
                        for message in mailbox.to(email_of(person_id)):
                            notice_id = str(message["X-AEDfleet-Notice-Id"])
                            for alarm_id in notice_alarms(store_url, notice_id):
                                alarm = store.alarm(alarm_id)
                                assert alarm is not None
                                if about is None or alarm.cabinet_id == cabinet(about):
                                    paged.add(alarm.type)
                    return paged

                # Cabinet 0 (self-test failed): the captain follows the ack link at once,
                # so neither the backup nor the coordinator ever hears of it.
                captain0, backup0 = person_ids(0)
                await eventually(
                    lambda: AlarmType.SELFTEST_FAILED in types_paged(captain0),
                    timeout_s=60,
                    what="cabinet 0's failed self-test paged to its captain",
                    every_s=0.2,
                )
                with AlarmStore.open(store_url) as store:
                    selftest_alarm = next(
                        a
                        for a in store.alarms(cabinet_id=cabinet(0))
                        if a.type is AlarmType.SELFTEST_FAILED
                    )
                page = next(
                    m
                    for m in mailbox.to(email_of(captain0))
                    if selftest_alarm.alarm_id
                    in notice_alarms(store_url, str(m["X-AEDfleet-Notice-Id"]))
                )
                outcome = await follow(link_in(text_of(page), "ack"))
                assert 'id="outcome"' in outcome
                with AlarmStore.open(store_url) as store:
                    acked = store.alarm(selftest_alarm.alarm_id)
                assert acked is not None
                assert acked.state is AlarmState.ACKNOWLEDGED
                assert acked.acknowledged_by == captain0
                # Every fault raises its alarms and pages its own captain.
                for index, expected in EXPECTED.items():
                    captain = person_ids(index)[0]

                    def captain_paged(
                        expected: set[AlarmType] = expected, c: str = captain, i: int = index
                    ) -> bool:
                        return expected <= types_paged(c, about=i)

                    await eventually(
                        captain_paged,
                        timeout_s=120,
                        what=f"cabinet {index}: {expected} paged to its captain",
                        every_s=0.5,
                    )
                    assert expected <= alarms_of(index)

                # Nobody else's captain heard of cabinet 2's missing pads.
                for index in EXPECTED:
                    if index != 2:
                        assert AlarmType.PADS_MISSING not in types_paged(person_ids(index)[0], 2)

                # The right language: cabinet 3's captain reads English, cabinet 2's Chinese.
                english = mailbox.to(email_of(person_ids(3)[0]))[0]
                chinese = mailbox.to(email_of(person_ids(2)[0]))[0]
                assert english["Content-Language"] == "en"
                assert chinese["Content-Language"] == "zh"
                assert re.search(r"[\u4e00-\u9fff]", str(chinese["Subject"]))

                # Cabinet 2 (pads missing, critical) is not acknowledged: its backup is paged
                # ten clock minutes after the captain, its coordinator thirty.
                captain, backup = person_ids(2)
                coordinator = coordinator_id(2)
                await eventually(
                    lambda: AlarmType.PADS_MISSING in types_paged(coordinator),
                    timeout_s=60,
                    what="the coordinator paged about cabinet 2's pads",
                    every_s=0.5,
                )

                with AlarmStore.open(store_url) as store:
                    pads_alarm = next(
                        a
                        for a in store.alarms(cabinet_id=cabinet(2))
                        if a.type is AlarmType.PADS_MISSING
                    )

                    pages = store.notifications(pads_alarm.alarm_id)

                def first_page(person_id: str) -> datetime:
                    return min(n.created_at for n in pages if n.person_id == person_id)

                # Clock minutes between the pages as the escalation decided them (the
                # e-mails above show they went out; their arrival adds the machine's lag).
                to_backup = (first_page(backup) - first_page(captain)) / timedelta(minutes=1)
                to_coordinator = (first_page(coordinator) - first_page(captain)) / timedelta(
                    minutes=1
                )
                assert 9 <= to_backup <= 12
                assert 29 <= to_coordinator <= 32

                # Past the coordinator's step, nothing about it went out to anyone else.
                past_coordinator = selftest_alarm.raised_at + timedelta(minutes=32)
                await eventually(
                    lambda: clock.now() > past_coordinator,
                    timeout_s=45,
                    what="the clock past the coordinator's step",
                    every_s=0.2,
                )
                # A round of escalations run now, past that step, behind any the service
                # queued: a page is recorded (as a notification) before it is mailed, so
                # the store has every page that could ever go out about this alarm.
                await service.alerting.call_now(service.alerting.engine.escalate)
                with AlarmStore.open(store_url) as store:
                    told = {n.person_id for n in store.notifications(selftest_alarm.alarm_id)}
                assert told == {captain0}
                assert AlarmType.SELFTEST_FAILED not in types_paged(backup0, about=0)
                assert AlarmType.SELFTEST_FAILED not in types_paged(coordinator_id(0), about=0)

                # New pads at cabinet 2: the alarm resolves by itself and everyone who was
                # paged hears that it is over.
                def resolution_told(person_id: str) -> bool:
                    return any(
                        str(m["X-AEDfleet-Notice-Kind"]) == NoticeKind.RESOLVED.value
                        for m in mailbox.to(email_of(person_id))
                    )

                await eventually(
                    lambda: all(resolution_told(p) for p in (captain, backup, coordinator)),
                    timeout_s=60,
                    what="the resolution of cabinet 2's pads told to all three",
                    every_s=0.5,
                )

                # Dashboards see the alarms and the notifications in InfluxDB.
                def measured() -> bool:
                    alarm_points = influx_server.query(
                        'SELECT count("alarm_id") FROM "alarm"', influx_database
                    )
                    notification_points = influx_server.query(
                        'SELECT count("alarm_id") FROM "notification"', influx_database
                    )
                    return bool(alarm_points) and bool(notification_points)

                await eventually(
                    measured,
                    timeout_s=20,
                    what="alarm and notification points in InfluxDB",
                    every_s=0.5,
                )
        finally:
            fleet_run.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await fleet_run
