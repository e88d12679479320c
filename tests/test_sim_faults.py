from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, time, timedelta

import pytest

from aedfleet.contract import (
    DoorState,
    EventType,
    PowerSource,
    SelftestKind,
    SelftestPeriod,
    SelftestResult,
    SelftestSchedule,
)
from edge_agent.hardware import CabinetEvent, ConsumablesReport, HardwareNotice, SelftestReport
from firmware_sim.cabinet import LOW_BATTERY_PCT, CabinetModel, CabinetSpec
from firmware_sim.climate import ClimateProfile
from firmware_sim.faults import (
    RUNNER_FAULTS,
    Fault,
    FaultPlan,
    FaultWindow,
    Phase,
    PlannedFault,
)

START = datetime(2025, 1, 6, 12, tzinfo=UTC)
HOUR = 3600.0


def quiet_model(climate: ClimateProfile = ClimateProfile.INDOOR) -> CabinetModel:
    """A cabinet nobody opens, testing itself at 03:00 UTC, so faults stand out."""
    return CabinetModel(
        CabinetSpec(
            cabinet_id="cab-7",
            seed=7,
            climate=climate,
            time_zone="UTC",
            selftest=SelftestSchedule(period=SelftestPeriod.DAILY, at_local=time(3, 0)),
            door_openings_per_day=0.0,
            aed_taken_fraction=0.0,
        ),
        START,
    )


def at(hours: float) -> datetime:
    return START + timedelta(hours=hours)


def selftests(notices: list[HardwareNotice]) -> list[SelftestReport]:
    return [n for n in notices if isinstance(n, SelftestReport)]


def event_types(notices: list[HardwareNotice]) -> list[EventType]:
    return [n.event for n in notices if isinstance(n, CabinetEvent)]


def test_selftest_failure_fails_the_next_selftests_until_it_ends() -> None:
    model = quiet_model()
    model.apply_fault(Fault.SELFTEST_FAILURE, at(1), 30 * HOUR)
    assert model.advance(at(2)) == []
    assert model.sensors(at(2)).aed_ready, "nothing shows before the AED tests itself"
    (report,) = selftests(model.advance(at(16)))
    assert report.result is SelftestResult.FAIL
    assert report.fault_codes == ("E-CIRCUIT",)
    assert not model.sensors(at(16)).aed_ready
    (report,) = selftests(model.advance(at(40)))
    assert report.result is SelftestResult.PASS
    assert model.sensors(at(40)).aed_ready


def test_battery_failure_drains_the_battery_until_replaced() -> None:
    model = quiet_model()
    model.apply_fault(Fault.BATTERY_FAILURE, at(1), 20 * HOUR)
    model.advance(at(1))
    snapshot = model.sensors(at(1))
    assert snapshot.battery_pct < LOW_BATTERY_PCT
    assert not snapshot.aed_ready
    (report,) = selftests(model.advance(at(16)))
    assert report.fault_codes == ("E-BATT",)
    notices = model.advance(at(22))
    (consumables,) = [n for n in notices if isinstance(n, ConsumablesReport)]
    assert consumables.battery_expiry is not None
    assert consumables.battery_expiry > at(22).date() + timedelta(days=3 * 365)
    (check,) = selftests(notices)
    assert check.kind is SelftestKind.MANUAL
    assert check.result is SelftestResult.PASS
    assert model.sensors(at(22)).aed_ready


def test_pads_removed_is_reported_and_fails_selftests() -> None:
    model = quiet_model()
    model.apply_fault(Fault.PADS_REMOVED, at(1), 20 * HOUR)
    (removed,) = model.advance(at(1))
    assert removed == ConsumablesReport(
        pads_present=False,
        pads_expiry=model.consumables().pads_expiry,
        battery_expiry=model.consumables().battery_expiry,
    )
    assert not model.sensors(at(1)).aed_ready
    (report,) = selftests(model.advance(at(16)))
    assert report.fault_codes == ("E-PADS",)
    notices = model.advance(at(22))
    assert [n.pads_present for n in notices if isinstance(n, ConsumablesReport)] == [True]
    assert model.sensors(at(22)).aed_ready


def test_power_loss_switches_to_backup_and_stops_the_heater() -> None:
    winter_night = datetime(2025, 1, 10, 2, tzinfo=UTC)
    model = CabinetModel(quiet_model(ClimateProfile.COLD_REGION).spec, winter_night)
    model.advance(winter_night + timedelta(minutes=5))
    assert model.sensors(model.time).heater_on
    model.apply_fault(Fault.POWER_LOSS, model.time, 6 * HOUR)
    assert event_types(model.advance(model.time)) == [EventType.POWER_LOST]
    snapshot = model.sensors(model.time)
    assert snapshot.power is PowerSource.BACKUP
    assert not snapshot.heater_on
    model.advance(model.time + timedelta(hours=5))
    assert model.sensors(model.time).temperature_c < 0, "the cabinet cools without its heater"
    assert event_types(model.advance(model.time + timedelta(hours=1))) == [EventType.POWER_RESTORED]
    assert model.sensors(model.time).power is PowerSource.MAINS


@pytest.mark.parametrize("climate", list(ClimateProfile))
def test_temperature_excursion_leaves_the_safe_range(climate: ClimateProfile) -> None:
    model = quiet_model(climate)
    model.apply_fault(Fault.TEMPERATURE_EXCURSION, at(1), 3 * HOUR)
    for hours in (1, 2, 3.9):
        model.advance(at(hours))
        assert not 0 <= model.sensors(at(hours)).temperature_c <= 50
    model.advance(at(30))
    assert 0 <= model.sensors(at(30)).temperature_c <= 50


def test_aed_not_returned_keeps_the_aed_away_for_the_duration() -> None:
    model = quiet_model()
    model.apply_fault(Fault.AED_NOT_RETURNED, at(1), 48 * HOUR)
    assert event_types(model.advance(at(2))) == [
        EventType.DOOR_OPENED,
        EventType.AED_REMOVED,
        EventType.DOOR_CLOSED,
    ]
    assert model.advance(at(48)) == [], "no report while the AED is away, not even self-tests"
    snapshot = model.sensors(at(48))
    assert not snapshot.aed_present
    assert not snapshot.aed_ready
    assert snapshot.door is DoorState.CLOSED
    assert event_types(model.advance(at(52))) == [
        EventType.DOOR_OPENED,
        EventType.AED_RETURNED,
        EventType.DOOR_CLOSED,
    ]
    assert model.sensors(at(52)).aed_ready


def test_aed_not_returned_while_the_door_is_open() -> None:
    model = CabinetModel(
        CabinetSpec(
            cabinet_id="cab-8",
            seed=1,
            climate=ClimateProfile.INDOOR,
            time_zone="UTC",
            selftest=SelftestSchedule(period=SelftestPeriod.DAILY, at_local=time(3, 0)),
            door_openings_per_day=500.0,
            aed_taken_fraction=0.0,
        ),
        START,
    )
    now = START
    while model.sensors(now).door is DoorState.CLOSED:
        now += timedelta(seconds=1)
        model.advance(now)
    model.apply_fault(Fault.AED_NOT_RETURNED, now, None)
    assert event_types(model.advance(now + timedelta(minutes=1))) == [
        EventType.AED_REMOVED,
        EventType.DOOR_CLOSED,
    ]


@pytest.mark.parametrize("fault", sorted(RUNNER_FAULTS))
def test_runner_faults_are_handed_to_the_runner(fault: Fault) -> None:
    model = quiet_model()
    model.apply_fault(fault, at(1), HOUR)
    assert model.advance(at(0.5)) == []
    assert model.take_runner_faults() == []
    assert model.advance(at(1.5)) == []
    assert model.take_runner_faults() == [FaultWindow(fault, at(1), at(2))]
    assert model.take_runner_faults() == []
    model.advance(at(3))
    assert [p.phase for p in model.take_fault_phases()] == [Phase.START, Phase.END]


@pytest.mark.parametrize("fault", list(Fault))
def test_every_fault_records_its_start_and_end(fault: Fault) -> None:
    model = quiet_model()
    model.apply_fault(fault, at(1), 2 * HOUR)
    model.advance(at(4))
    start, end = model.take_fault_phases()
    assert (start.phase, start.ts, start.fault) == (Phase.START, at(1), fault)
    assert (end.phase, end.ts, end.fault) == (Phase.END, at(3), fault)
    assert start.cabinet_id == "cab-7"
    assert start.detail
    assert model.active_faults == ()
    assert model.take_fault_phases() == []


def test_a_fault_without_duration_never_ends() -> None:
    model = quiet_model()
    model.apply_fault(Fault.POWER_LOSS, at(1), None)
    model.advance(at(24 * 30))
    assert [p.phase for p in model.take_fault_phases()] == [Phase.START]
    assert model.sensors(model.time).power is PowerSource.BACKUP


def test_a_late_fault_starts_at_the_next_advance() -> None:
    model = quiet_model()
    model.advance(at(5))
    model.apply_fault(Fault.POWER_LOSS, at(1), HOUR)
    assert event_types(model.advance(at(5))) == [EventType.POWER_LOST, EventType.POWER_RESTORED]
    assert [p.ts for p in model.take_fault_phases()] == [at(5), at(5)]


def test_restarting_an_active_fault_supersedes_it() -> None:
    model = quiet_model()
    model.apply_fault(Fault.POWER_LOSS, at(1), 2 * HOUR)
    model.apply_fault(Fault.POWER_LOSS, at(2), 5 * HOUR)
    assert event_types(model.advance(at(4))) == [EventType.POWER_LOST]
    phases = model.take_fault_phases()
    assert [(p.phase, p.ts) for p in phases] == [
        (Phase.START, at(1)),
        (Phase.END, at(2)),
        (Phase.START, at(2)),
    ]
    assert event_types(model.advance(at(8))) == [EventType.POWER_RESTORED]


def plan(**changes: object) -> FaultPlan:
    arguments: dict[str, object] = {
        "fleet_size": 100,
        "seed": 3,
        "rates_per_cabinet_day": {Fault.POWER_LOSS: 0.1, Fault.PADS_REMOVED: 0.02},
        "durations_s": {Fault.POWER_LOSS: 600.0},
    }
    arguments.update(changes)
    return FaultPlan(**arguments)  # type: ignore[arg-type]


def test_fault_plan_rates_match_per_cabinet_day() -> None:
    due = plan().due(30 * 86_400)
    counts = Counter(p.fault for p in due)
    # 100 cabinets for 30 days: about 300 power losses and 60 pad removals.
    assert 240 < counts[Fault.POWER_LOSS] < 360
    assert 35 < counts[Fault.PADS_REMOVED] < 85
    assert {p.duration_s for p in due if p.fault is Fault.POWER_LOSS} == {600.0}
    assert {p.duration_s for p in due if p.fault is Fault.PADS_REMOVED} == {86_400.0}
    assert len({p.cabinet for p in due}) > 80
    assert [p.at_s for p in due] == sorted(p.at_s for p in due)


def test_fault_plan_is_deterministic_and_hands_each_fault_out_once() -> None:
    first, second = plan(), plan()
    assert first.due(86_400) == second.due(86_400)
    later = first.due(2 * 86_400)
    assert later
    assert all(p.at_s > 86_400 for p in later)
    assert plan(seed=4).due(86_400) != plan().due(86_400)


def test_fault_plan_merges_explicit_faults_in_time_order() -> None:
    explicit = [
        PlannedFault(500.0, 2, Fault.AGENT_KILLED, 60.0),
        PlannedFault(100.0, 1, Fault.CABINET_OFFLINE, None),
    ]
    due = plan(rates_per_cabinet_day={}, explicit=explicit).due(1000)
    assert [p.at_s for p in due] == [100.0, 500.0]


def test_fault_plan_rejects_a_cabinet_outside_the_fleet() -> None:
    with pytest.raises(ValueError, match="cabinet 100"):
        plan(explicit=[PlannedFault(1.0, 100, Fault.POWER_LOSS, None)])
