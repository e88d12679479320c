from __future__ import annotations

import random
from collections import Counter
from dataclasses import asdict, replace
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aedfleet.contract import (
    EventType,
    Heartbeat,
    PowerSource,
    Selftest,
    SelftestKind,
    SelftestPeriod,
    SelftestResult,
    SelftestSchedule,
)
from edge_agent.hardware import CabinetEvent, HardwareNotice, SelftestReport
from firmware_sim.cabinet import (
    LOW_BATTERY_PCT,
    CabinetModel,
    CabinetSpec,
    next_selftest_after,
    spread_expiry,
)
from firmware_sim.climate import HEATER_SETPOINT_C, ClimateProfile
from firmware_sim.faults import Fault

START = datetime(2025, 1, 6, 12, tzinfo=UTC)
BOOT_ID = "0" * 32


def spec(**changes: object) -> CabinetSpec:
    base = CabinetSpec(
        cabinet_id="cab-1",
        seed=11,
        climate=ClimateProfile.INDOOR,
        time_zone="Europe/Berlin",
        selftest=SelftestSchedule(period=SelftestPeriod.DAILY, at_local=time(3, 30)),
        door_openings_per_day=6.0,
        aed_taken_fraction=0.2,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def drive(model: CabinetModel, steps_s: list[float]) -> list[tuple[datetime, HardwareNotice]]:
    """Advance by each step in turn; notices carry the time of the advance reporting them."""
    seen: list[tuple[datetime, HardwareNotice]] = []
    now = model.time
    for step_s in steps_s:
        now += timedelta(seconds=step_s)
        seen += [(now, notice) for notice in model.advance(now)]
    return seen


def events(seen: list[tuple[datetime, HardwareNotice]]) -> list[tuple[datetime, EventType]]:
    return [(at, n.event) for at, n in seen if isinstance(n, CabinetEvent)]


def assert_door_and_aed_consistent(seen: list[tuple[datetime, EventType]]) -> None:
    door_open = False
    aed_present = True
    for _, event in seen:
        if event is EventType.DOOR_OPENED:
            assert not door_open, "door opened twice"
            door_open = True
        elif event is EventType.DOOR_CLOSED:
            assert door_open, "door closed twice"
            door_open = False
        elif event is EventType.AED_REMOVED:
            assert door_open, "AED removed through a closed door"
            assert aed_present, "AED removed twice"
            aed_present = False
        elif event is EventType.AED_RETURNED:
            assert door_open, "AED returned through a closed door"
            assert not aed_present, "AED returned twice"
            aed_present = True


def assert_aed_comes_back(model: CabinetModel) -> None:
    """A taken AED returns within 90 minutes of the door closing behind it."""
    if not model.aed_present:
        later = events(drive(model, [60.0] * 180))
        assert EventType.AED_RETURNED in [event for _, event in later]


def test_spread_expiry_fills_every_bucket() -> None:
    rng = random.Random(5)
    today = date(2025, 6, 1)
    buckets: Counter[str] = Counter()
    for _ in range(4000):
        days = (spread_expiry(rng, today) - today).days
        if days < 0:
            buckets["expired"] += 1
        elif days <= 7:
            buckets["7"] += 1
        elif days <= 30:
            buckets["30"] += 1
        elif days <= 90:
            buckets["90"] += 1
        else:
            buckets["later"] += 1
    assert all(buckets[name] >= 100 for name in ("expired", "7", "30", "90"))
    assert buckets["later"] > 0.6 * 4000


@pytest.mark.parametrize(
    ("schedule", "after", "expected"),
    [
        (
            SelftestSchedule(period=SelftestPeriod.DAILY, at_local=time(3, 0)),
            datetime(2025, 1, 6, 1, 0, tzinfo=UTC),
            datetime(2025, 1, 6, 2, 0, tzinfo=UTC),
        ),
        (
            SelftestSchedule(period=SelftestPeriod.DAILY, at_local=time(3, 0)),
            datetime(2025, 1, 6, 2, 0, tzinfo=UTC),
            datetime(2025, 1, 7, 2, 0, tzinfo=UTC),
        ),
        (
            SelftestSchedule(period=SelftestPeriod.DAILY, at_local=time(3, 0)),
            datetime(2025, 7, 6, 0, 0, tzinfo=UTC),
            datetime(2025, 7, 6, 1, 0, tzinfo=UTC),
        ),
        (
            SelftestSchedule(period=SelftestPeriod.WEEKLY, at_local=time(4, 0), weekday=2),
            datetime(2025, 1, 6, 0, 0, tzinfo=UTC),
            datetime(2025, 1, 8, 3, 0, tzinfo=UTC),
        ),
        (
            SelftestSchedule(period=SelftestPeriod.MONTHLY, at_local=time(4, 0), day_of_month=3),
            datetime(2025, 1, 6, 0, 0, tzinfo=UTC),
            datetime(2025, 2, 3, 3, 0, tzinfo=UTC),
        ),
    ],
)
def test_next_selftest_is_in_local_time(
    schedule: SelftestSchedule, after: datetime, expected: datetime
) -> None:
    assert next_selftest_after(schedule, ZoneInfo("Europe/Berlin"), after) == expected


def test_daily_selftest_passes_at_the_local_time() -> None:
    model = CabinetModel(spec(door_openings_per_day=0), START)
    seen = drive(model, [600.0] * 6 * 24 * 3)
    tests = [(at, n) for at, n in seen if isinstance(n, SelftestReport)]
    assert len(tests) == 3
    for at, report in tests:
        assert at.astimezone(ZoneInfo("Europe/Berlin")).time() == time(3, 30)
        assert report.kind is SelftestKind.DAILY
        assert report.result is SelftestResult.PASS
        assert report.fault_codes == ()


def test_battery_drains_by_day_and_by_selftest() -> None:
    model = CabinetModel(spec(door_openings_per_day=0), START)
    before = model.sensors(START).battery_pct
    model.advance(START + timedelta(days=30))
    drained = before - model.sensors(model.time).battery_pct
    assert 1.5 < drained < 3
    level = model.sensors(model.time).battery_pct
    report = model.run_selftest(SelftestKind.MANUAL)
    assert report.battery_pct <= level


def test_doors_open_at_the_configured_rate() -> None:
    model = CabinetModel(spec(door_openings_per_day=10, aed_taken_fraction=0.1), START)
    seen = events(drive(model, [60.0] * 60 * 24 * 20))
    openings = sum(1 for _, e in seen if e is EventType.DOOR_OPENED)
    removals = sum(1 for _, e in seen if e is EventType.AED_REMOVED)
    # Taken AEDs come back through the door too: one extra opening per removal.
    assert 150 < openings - removals < 260
    assert 5 < removals < 45


def test_inspections_close_within_two_minutes() -> None:
    model = CabinetModel(spec(door_openings_per_day=20, aed_taken_fraction=0.0), START)
    seen = events(drive(model, [5.0] * 12 * 60 * 24 * 2))
    opened_at = None
    for at, event in seen:
        if event is EventType.DOOR_OPENED:
            opened_at = at
        elif event is EventType.DOOR_CLOSED:
            assert opened_at is not None
            assert timedelta(seconds=25) <= at - opened_at <= timedelta(seconds=125)


def test_models_are_deterministic() -> None:
    first = drive(CabinetModel(spec(), START), [300.0] * 2000)
    second = drive(CabinetModel(spec(), START), [300.0] * 2000)
    assert first == second
    other = drive(CabinetModel(spec(seed=12), START), [300.0] * 2000)
    assert first != other


def test_one_big_step_plays_the_same_events_as_many_small_ones() -> None:
    small = [n for _, n in drive(CabinetModel(spec(), START), [60.0] * 60 * 24 * 3)]
    big = CabinetModel(spec(), START).advance(START + timedelta(days=3))
    assert small == big


def test_sensor_values_fit_the_wire_contract() -> None:
    for climate in ClimateProfile:
        model = CabinetModel(spec(climate=climate), START)
        for _ in range(50):
            model.advance(model.time + timedelta(hours=7))
            Heartbeat(
                v=1,
                cabinet_id="cab-1",
                boot_id=BOOT_ID,
                seq=1,
                ts=model.time,
                outbox_pending=0,
                outbox_shed=0,
                **asdict(model.sensors(model.time)),
            )


def test_selftest_reports_fit_the_wire_contract() -> None:
    model = CabinetModel(spec(), START)
    model.apply_fault(Fault.BATTERY_FAILURE, START, None)
    model.apply_fault(Fault.PADS_REMOVED, START, None)
    model.apply_fault(Fault.SELFTEST_FAILURE, START, None)
    model.advance(START)
    report = model.run_selftest(SelftestKind.MANUAL)
    assert set(report.fault_codes) == {"E-BATT", "E-PADS", "E-CIRCUIT"}
    Selftest(v=1, cabinet_id="cab-1", boot_id=BOOT_ID, seq=1, ts=START, **asdict(report))


def test_aed_is_not_ready_while_taken() -> None:
    model = CabinetModel(spec(door_openings_per_day=50, aed_taken_fraction=1.0), START)
    now = START
    while model.aed_present:
        now += timedelta(seconds=5)
        model.advance(now)
    assert not model.sensors(now).aed_ready
    while not model.aed_present:
        now += timedelta(seconds=5)
        model.advance(now)
    assert model.sensors(now).aed_ready


def test_aed_is_not_ready_on_a_low_battery() -> None:
    model = CabinetModel(spec(door_openings_per_day=0), START)
    model.apply_fault(Fault.BATTERY_FAILURE, START, None)
    model.advance(START)
    snapshot = model.sensors(START)
    assert snapshot.battery_pct < LOW_BATTERY_PCT
    assert not snapshot.aed_ready


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(min_value=0, max_value=2**32),
    climate=st.sampled_from(ClimateProfile),
    openings=st.floats(min_value=0, max_value=40),
    taken=st.floats(min_value=0, max_value=1),
    steps=st.lists(st.floats(min_value=1, max_value=4 * 3600), min_size=1, max_size=200),
)
def test_door_and_aed_events_stay_consistent(
    seed: int, climate: ClimateProfile, openings: float, taken: float, steps: list[float]
) -> None:
    model = CabinetModel(
        spec(seed=seed, climate=climate, door_openings_per_day=openings, aed_taken_fraction=taken),
        START,
    )
    seen = drive(model, steps)
    assert_door_and_aed_consistent(events(seen))
    assert_aed_comes_back(model)
    snapshot = model.sensors(model.time)
    assert 0 <= snapshot.battery_pct <= 100


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(min_value=0, max_value=2**32),
    faults=st.lists(
        st.tuples(
            st.sampled_from(Fault),
            st.floats(min_value=0, max_value=3 * 86_400),
            st.none() | st.floats(min_value=1, max_value=86_400),
        ),
        max_size=8,
    ),
    steps=st.lists(st.floats(min_value=1, max_value=3600), min_size=1, max_size=150),
)
def test_faults_keep_events_consistent(
    seed: int, faults: list[tuple[Fault, float, float | None]], steps: list[float]
) -> None:
    model = CabinetModel(spec(seed=seed, door_openings_per_day=30, aed_taken_fraction=0.5), START)
    for fault, at_s, duration_s in faults:
        model.apply_fault(fault, START + timedelta(seconds=at_s), duration_s)
    seen = drive(model, steps)
    assert_door_and_aed_consistent(events(seen))
    if all(fault is not Fault.AED_NOT_RETURNED for fault, _, _ in faults):
        assert_aed_comes_back(model)
    power = [e for _, e in events(seen) if e in (EventType.POWER_LOST, EventType.POWER_RESTORED)]
    assert power == [EventType.POWER_LOST, EventType.POWER_RESTORED] * (len(power) // 2) + (
        [EventType.POWER_LOST] if len(power) % 2 else []
    )
    assert 0 <= model.sensors(model.time).battery_pct <= 100
    phases = model.take_fault_phases()
    assert [p.ts for p in phases] == sorted(p.ts for p in phases)


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(min_value=0, max_value=2**32),
    start_day=st.integers(min_value=0, max_value=364),
    steps=st.lists(st.floats(min_value=1, max_value=6 * 3600), min_size=1, max_size=100),
)
def test_powered_cold_region_cabinet_stays_above_5(
    seed: int, start_day: int, steps: list[float]
) -> None:
    start = datetime(2025, 1, 1, tzinfo=UTC) + timedelta(days=start_day)
    model = CabinetModel(spec(seed=seed, climate=ClimateProfile.COLD_REGION), start)
    assert model.sensors(start).temperature_c >= HEATER_SETPOINT_C
    for step in steps:
        model.advance(model.time + timedelta(seconds=step))
        snapshot = model.sensors(model.time)
        assert snapshot.power is PowerSource.MAINS
        assert snapshot.temperature_c >= HEATER_SETPOINT_C


def test_cold_region_heater_runs_on_winter_nights() -> None:
    model = CabinetModel(spec(climate=ClimateProfile.COLD_REGION, seed=3), START)
    heater = []
    for _ in range(48):
        model.advance(model.time + timedelta(hours=1))
        heater.append(model.sensors(model.time).heater_on)
    assert any(heater)
