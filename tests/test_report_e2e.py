"""The fleet report end to end: a simulated fleet with injected faults → real Mosquitto →
ingest + alerting → real InfluxDB and the state store → ``make_report`` → the HTML opened
in headless Chromium, which draws the Chinese names with a Noto CJK face.

Clock at 60 times wall speed, from two minutes before the fleet's self-tests (01:00 to
01:05 local), so that every fault shows within seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta
from datetime import time as clock_time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from aedfleet.clock import ScaledClock
from aedfleet.db.state import StateStore
from aedfleet.registry import District, Language, Registry
from aedfleet_app.alerting_process import AlertingProcess
from aedfleet_testing.alerting_e2e_support import (
    EMAIL_DOMAIN,
    alerting_settings,
    running,
    store_url_in,
)
from aedfleet_testing.brokers import MosquittoBroker, broker_settings
from aedfleet_testing.influx import InfluxServer
from aedfleet_testing.mailbox import Mailbox
from alerting.config import SchedulerSettings
from alerting.report.figures import HORIZON_DAYS, within
from alerting.report.making import ReportSettings, make_report
from alerting.report.sources import LATEST_READINESS
from alerting.store import AlarmStore
from firmware_sim.faults import Fault
from firmware_sim.fleet import FleetSettings, SimulatedFleet
from firmware_sim.registry import simulated_registry
from firmware_sim.scenario import ExplicitFault, FleetDefaults, Scenario
from tests.browser import chromium, fonts_rendering
from tests.recorder import eventually

SCALE = 60.0
SHANGHAI = ZoneInfo("Asia/Shanghai")
START = datetime(2026, 11, 26, 0, 58, tzinfo=SHANGHAI)
SIZE = 7
# cabinet index → its fault, and the state it leaves the cabinet in
FAULTS = {
    0: (Fault.SELFTEST_FAILURE, "not_ready"),
    1: (Fault.AED_NOT_RETURNED, "in_use"),
    2: (Fault.CABINET_OFFLINE, "offline"),
}
# The simulated registry puts cabinet i in district i % 6 (440303 罗湖区 … 440308 盐田区);
# the registry describes every one but 盐田区, so cabinet 5 has no population known.
DISTRICTS = (
    District(region_code="440303", name="罗湖区", population=1_098_000),
    District(region_code="440304", name="福田区", population=1_553_225, target_per_100k=40),
    District(region_code="440305", name="南山区", population=1_795_826),
    District(region_code="440306", name="宝安区", population=4_476_554),
    District(region_code="440307", name="龙岗区", population=3_979_037),
)


TODAY = START.date()
# Dates the registry records for some cabinets: the report takes them where a cabinet has
# not reported its own (the cabinets report theirs at start, when the ingest sees it).
RECORDED_DATES = {
    3: {"pads_expiry": 5},
    4: {"battery_expiry": 20, "pads_expiry": 400},
    5: {"pads_expiry": -2},
    6: {"battery_expiry": 60},
}


def scenario() -> Scenario:
    return Scenario(
        seed=12,
        fleet=FleetDefaults(
            size=SIZE,
            id_prefix="rp-",
            time_zones=("Asia/Shanghai",),
            climate_mix={"indoor": 1.0},
            door_openings_per_day=0,
            aed_taken_fraction=0,
            fresh_consumables=False,
            selftest_earliest=clock_time(1, 0),
            selftest_latest=clock_time(1, 2),
        ),
        faults=tuple(
            ExplicitFault(at=30, cabinet=index, fault=fault, duration_s=14_400)
            for index, (fault, _) in FAULTS.items()
        ),
    )


def seed(store_url: str, plan: Scenario) -> Registry:
    fleet = simulated_registry(plan, email_domain=EMAIL_DOMAIN)
    cabinets = list(fleet.cabinets)
    for index, dates in RECORDED_DATES.items():
        cabinets[index] = cabinets[index].model_copy(
            update={name: TODAY + timedelta(days=days) for name, days in dates.items()}
        )
    registry = fleet.model_copy(update={"cabinets": tuple(cabinets), "districts": DISTRICTS})
    with StateStore.open(store_url) as store:
        store.apply_registry(registry)
    return registry


@pytest.mark.browser
@pytest.mark.timeout(120)
async def test_report_of_a_simulated_fleet_in_chromium(
    broker: MosquittoBroker,
    influx_server: InfluxServer,
    influx_database: str,
    tmp_path: Path,
) -> None:
    plan = scenario()
    store_url = store_url_in(tmp_path)
    registry = seed(store_url, plan)
    clock = ScaledClock(START, SCALE)
    fleet = SimulatedFleet(
        FleetSettings(
            cabinets=SIZE,
            broker=broker_settings(broker),
            work_dir=tmp_path / "fleet",
            heartbeat_interval_s=60,
            tick_s=10,
            ramp_s=0.2,
        ),
        plan,
        clock,
    )
    with Mailbox() as mailbox:
        settings = alerting_settings(
            broker,
            influx_server,
            influx_database,
            store_url,
            mailbox,
            scheduler=SchedulerSettings(tick_s=0.1, readiness_snapshot_s=0.5),
        )
        fleet_run = asyncio.create_task(fleet.run(duration_s=None))
        try:
            async with running(AlertingProcess(settings, clock=clock)):

                def states() -> dict[str, str]:
                    rows = influx_server.query_all(LATEST_READINESS, influx_database)
                    return {row["cabinet_id"]: row["state"] for row in rows}

                def faults_show() -> bool:
                    now = states()
                    return len(now) == SIZE and all(
                        now.get(plan.cabinet_id(index)) == state
                        for index, (_, state) in FAULTS.items()
                    )

                await eventually(faults_show, 60, "every fault in the readiness points", 0.25)
        finally:
            fleet_run.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await fleet_run

    # Everything stopped: the report sees what the test sees.
    final = states()
    with StateStore.open(store_url) as store:
        twins = {twin.cabinet_id: twin for twin in store.twins()}
    with AlarmStore.open(store_url) as alarms:
        active = alarms.active_alarms(c.cabinet_id for c in registry.cabinets)
    report_settings = ReportSettings(
        influx=settings.ingest.influx,
        store_url=settings.ingest.store_url,
        coverage=settings.coverage,
        time_zone=settings.notify.render.time_zone,
    )
    html = await make_report(report_settings, Language.ZH, clock.now())
    page_path = tmp_path / "report.html"
    page_path.write_text(html, encoding="utf-8")

    today = clock.now().astimezone(SHANGHAI).date()
    expiring = {"expired": 0, **{str(days): 0 for days in HORIZON_DAYS}}
    for cabinet in registry.cabinets:
        twin = twins.get(cabinet.cabinet_id)
        for expiry in (
            (twin and twin.pads_expiry) or cabinet.pads_expiry,
            (twin and twin.battery_expiry) or cabinet.battery_expiry,
        ):
            if expiry is None:
                continue
            days_left = (expiry - today).days
            horizon = within(days_left) if days_left >= 0 else "expired"
            if horizon is not None:
                expiring[str(horizon)] += 1
    assert sum(expiring.values()) > 0, "no consumables expire: nothing checked"

    async with chromium() as browser:
        context = await browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
        context.set_default_timeout(10_000)
        try:
            page = await context.new_page()
            await page.goto(page_path.as_uri())
            await page.screenshot(path=tmp_path / "report-zh.png", full_page=True)

            pins = page.locator("svg#map circle.pin")
            assert await pins.count() == SIZE
            for index, (_, state) in FAULTS.items():
                pin = pins.and_(page.locator(f'[data-cabinet="{plan.cabinet_id(index)}"]'))
                assert await pin.get_attribute("data-state") == state
            for name in ("ready", "not_ready", "offline", "in_use"):
                shown = await page.locator(f"#count-{name}").inner_text()
                assert int(shown) == list(final.values()).count(name), name
            assert await page.locator("#count-not_ready").inner_text() != "0"
            assert int(await page.locator("#count-open-alarms").inner_text()) == sum(
                len(by_type) for by_type in active.values()
            )
            for key, expected in expiring.items():
                shown = await page.locator(f"#expiring-{key}").inner_text()
                assert int(shown) == expected, key

            for district in DISTRICTS:
                row = page.locator(f'#districts tr[data-region="{district.region_code}"]')
                assert district.name in await row.locator(".district-name").inner_text()
                members = [c for c in registry.cabinets if c.region_code == district.region_code]
                assert int(await row.locator(".cabinets").inner_text()) == len(members)
                open_alarms = sum(len(active.get(c.cabinet_id, {})) for c in members)
                assert int(await row.locator(".open-alarms").inner_text()) == open_alarms
            faulted = page.locator(f'#districts tr[data-region="{DISTRICTS[0].region_code}"]')
            assert int(await faulted.locator(".open-alarms").inner_text()) >= 1
            assert await page.locator("#unplaced .cabinets").inner_text() == "1"
            site_name = registry.cabinets[0].name
            title = page.locator(f'circle[data-cabinet="{plan.cabinet_id(0)}"] title')
            assert site_name in await title.text_content()  # type: ignore[operator]

            # Chinese drawn with real glyphs: a Noto CJK face, not a Latin fallback's boxes.
            cell = f'#districts tr[data-region="{DISTRICTS[1].region_code}"] .district-name'
            drawn = await fonts_rendering(context, page, cell)
            assert any(name.startswith("Noto Sans CJK") for name in drawn), drawn
            assert await page.evaluate(
                "document.fonts.check('16px \"Noto Sans CJK SC\"', '福田区')"
            )
        finally:
            await context.close()
