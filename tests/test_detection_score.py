"""The detection score's pure parts: its scenario, how pages are judged, and the report.

The run itself (fleet, broker, service, SMTP) is the benchmark; what is tested here is
that the arithmetic on its results says what the report claims.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, time, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aedfleet.contract import CabinetMessage, SelftestPeriod, SelftestSchedule
from alerting.lifecycle import Hysteresis, Raise, raise_alarm, reconcile
from alerting.model import Alarm, AlarmType, Severity
from alerting.rule_config import RuleConfig, Thresholds
from alerting.rules import evaluate
from benchmarks.detection.plan import (
    EXPECTED,
    MIN_CABINETS,
    MIN_FAULTS_PER_TYPE,
    QUICK_CABINETS,
    SCENARIO,
    SIDE_EFFECTS,
    RunFailedError,
    observable_at,
    observation_end,
    rule_delays,
    scored_scenario,
    thresholds_by_cabinet,
)
from benchmarks.detection.report import RunFacts, report
from benchmarks.detection.score import InjectedFault, PageSeen, Verdict, WallClock, judge
from firmware_sim.cabinet import CODE_BATTERY, CODE_CIRCUIT, CODE_PADS, CabinetSpec
from firmware_sim.climate import ClimateProfile
from firmware_sim.faults import Fault
from firmware_sim.scenario import load_scenario
from tests.alerting_rules_support import CAB, RULES, at, heartbeat, selftest, state
from tests.test_alerting_rules import started

GROUPING_S = 10.0


def hold_s(severity: Severity) -> float:
    return 0.0 if severity in {Severity.CRITICAL, Severity.HIGH} else GROUPING_S


def fault(
    fault_type: Fault = Fault.PADS_REMOVED,
    cabinet: int = 1,
    started: float = 100.0,
    observable: float | None = None,
) -> InjectedFault:
    return InjectedFault(
        cabinet_id=f"det-{cabinet:04d}",
        captain_id=f"captain-{cabinet:04d}",
        fault=fault_type,
        started_wall=started,
        observable_wall=started if observable is None else observable,
        rule_delay_s={
            alarm: delay.total_seconds() / 30
            for alarm, delay in rule_delays(fault_type, Thresholds()).items()
        },
    )


def page(
    at: float,
    alarm_type: AlarmType = AlarmType.PADS_MISSING,
    cabinet: int = 1,
    person: str | None = None,
    severity: Severity = Severity.CRITICAL,
    raised: float | None = None,
) -> PageSeen:
    return PageSeen(
        at_wall=at,
        raised_wall=at if raised is None else raised,
        person_id=person or f"captain-{cabinet:04d}",
        alarm_id=cabinet * 100 + list(AlarmType).index(alarm_type),
        cabinet_id=f"det-{cabinet:04d}",
        alarm_type=alarm_type,
        severity=severity,
    )


# -- the scenario ---------------------------------------------------------------------------


def test_the_scenario_injects_every_fault_type_often_at_distinct_cabinets() -> None:
    scenario = scored_scenario(load_scenario(SCENARIO), MIN_CABINETS, quick=False)
    per_type = Counter(planned.fault for planned in scenario.faults)
    assert set(per_type) == set(Fault)
    assert min(per_type.values()) >= MIN_FAULTS_PER_TYPE
    cabinets = [scenario.cabinet_index(planned.cabinet) for planned in scenario.faults]
    assert len(set(cabinets)) == len(cabinets)
    # Staggered: no two faults start together.
    starts = [planned.at for planned in scenario.faults]
    assert len(set(starts)) == len(starts)


def test_the_scenario_fleet_has_no_alarm_of_its_own() -> None:
    fleet = load_scenario(SCENARIO).fleet
    assert fleet.fresh_consumables
    assert fleet.door_openings_per_day == 0
    assert fleet.aed_taken_fraction == 0
    assert set(fleet.climate_mix) == {ClimateProfile.INDOOR}


def test_quick_plays_every_fault_type_on_the_first_cabinets() -> None:
    scenario = scored_scenario(load_scenario(SCENARIO), QUICK_CABINETS, quick=True)
    assert scenario.fleet.size == QUICK_CABINETS
    assert {planned.fault for planned in scenario.faults} == set(Fault)
    assert all(scenario.cabinet_index(f.cabinet) < QUICK_CABINETS for f in scenario.faults)


def test_a_score_needs_the_full_fleet() -> None:
    with pytest.raises(ValueError, match="at least 500 cabinets"):
        scored_scenario(load_scenario(SCENARIO), 100, quick=False)
    with pytest.raises(ValueError, match=r"no .* fault on the first 10 cabinets"):
        scored_scenario(load_scenario(SCENARIO), 10, quick=True)


def test_each_fault_has_expected_alarms_and_side_effects_apart() -> None:
    for fault_type in Fault:
        assert EXPECTED[fault_type]
        assert not EXPECTED[fault_type] & set(SIDE_EFFECTS[fault_type])


@pytest.mark.parametrize(
    ("fault_type", "codes", "light_off_first"),
    [
        (Fault.SELFTEST_FAILURE, (CODE_CIRCUIT,), False),
        (Fault.SELFTEST_FAILURE, (CODE_CIRCUIT,), True),
        (Fault.BATTERY_FAILURE, (CODE_BATTERY,), True),
        (Fault.PADS_REMOVED, (CODE_PADS,), True),
    ],
)
def test_a_failing_selftest_raises_only_alarms_the_score_expects(
    fault_type: Fault, codes: tuple[str, ...], light_off_first: bool
) -> None:
    """What the rules and the lifecycle raise for the simulator's failing self-test (its
    codes, the ready light off before or after it) is expected or a listed side effect."""
    failed = selftest(0, 6, at(60), passed=False, codes=codes)
    light_off = heartbeat(0, 5 if light_off_first else 7, at(30 if light_off_first else 90))
    light_off = light_off.model_copy(update={"aed_ready": False})
    raised: set[AlarmType] = set()
    active: dict[AlarmType, Alarm] = {}
    history: list[CabinetMessage] = [light_off, failed] if light_off_first else [failed, light_off]
    for seen in range(1, len(history) + 1):
        now = history[seen - 1].ts
        twin, facts = state(started(*history[:seen]))
        conditions = evaluate(CAB, twin, facts, RULES, now)
        for change in reconcile(active, conditions, now, Hysteresis()):
            if isinstance(change, Raise):
                active[change.type] = raise_alarm(len(raised) + 1, change.condition, now)
                raised.add(change.type)
    side_effects = raised - EXPECTED[fault_type]
    assert side_effects <= set(SIDE_EFFECTS[fault_type])
    assert AlarmType.FAULT_CODES not in raised
    if fault_type is Fault.SELFTEST_FAILURE and not light_off_first:
        assert raised == EXPECTED[fault_type]


def test_rule_delays_follow_the_thresholds() -> None:
    thresholds = Thresholds(
        temperature_excursion_after=timedelta(minutes=45),
        aed_not_returned_after=timedelta(minutes=20),
    )
    assert rule_delays(Fault.TEMPERATURE_EXCURSION, thresholds) == {
        AlarmType.TEMPERATURE: timedelta(minutes=45)
    }
    assert rule_delays(Fault.AED_NOT_RETURNED, thresholds) == {
        AlarmType.DOOR_OPENED: timedelta(0),
        AlarmType.AED_REMOVED: timedelta(0),
        AlarmType.AED_NOT_RETURNED: timedelta(minutes=20),
    }
    quick = scored_scenario(load_scenario(SCENARIO), QUICK_CABINETS, quick=True)
    by_cabinet = thresholds_by_cabinet(quick, RuleConfig())
    assert len(by_cabinet) == QUICK_CABINETS
    assert set(by_cabinet.values()) == {Thresholds()}


# -- timing ---------------------------------------------------------------------------------


def test_a_fault_shows_at_the_selftest_a_battery_in_a_heartbeat_others_at_once() -> None:
    spec = CabinetSpec(
        cabinet_id="det-0001",
        seed=1,
        climate=ClimateProfile.INDOOR,
        time_zone="Asia/Shanghai",
        selftest=SelftestSchedule(period=SelftestPeriod.DAILY, at_local=time(9, 50)),
        door_openings_per_day=0,
        aed_taken_fraction=0,
    )
    started = datetime(2026, 11, 26, 1, 10, tzinfo=UTC)  # 09:10 in Shanghai
    assert observable_at(Fault.SELFTEST_FAILURE, started, spec) == datetime(
        2026, 11, 26, 1, 50, tzinfo=UTC
    )
    assert observable_at(Fault.BATTERY_FAILURE, started, spec) == started
    heartbeat = started + timedelta(seconds=42)
    assert observable_at(Fault.BATTERY_FAILURE, started, spec, heartbeat) == heartbeat
    assert observable_at(Fault.TEMPERATURE_EXCURSION, started, spec, heartbeat) == started


def test_the_observation_covers_the_slowest_rule_and_refuses_a_late_start() -> None:
    scenario = scored_scenario(load_scenario(SCENARIO), QUICK_CABINETS, quick=True)
    thresholds = thresholds_by_cabinet(scenario, RuleConfig())
    fleet_start = datetime(2026, 11, 26, 0, 56, tzinfo=UTC)  # 08:56 in Shanghai
    end = observation_end(scenario, thresholds, fleet_start, timedelta(minutes=5))
    last_temperature = max(f.at for f in scenario.faults if f.fault is Fault.TEMPERATURE_EXCURSION)
    assert end > fleet_start + timedelta(seconds=last_temperature, minutes=30)
    assert end < fleet_start + timedelta(hours=2)
    with pytest.raises(RunFailedError, match="started too late"):
        observation_end(scenario, thresholds, fleet_start + timedelta(hours=1), timedelta(0))


def test_wall_clock_converts_clock_time_through_the_scale() -> None:
    anchor = datetime(2026, 11, 26, 1, 0, tzinfo=UTC)
    walls = WallClock(anchor, 1_000.0, 30.0)
    assert walls.wall(anchor + timedelta(minutes=30)) == pytest.approx(1_060.0)
    assert walls.seconds(timedelta(minutes=5)) == pytest.approx(10.0)


# -- judging pages --------------------------------------------------------------------------


def test_the_captains_first_page_detects_a_fault_and_times_it() -> None:
    pads = fault(Fault.PADS_REMOVED, started=100.0)
    score = judge([pads], [page(103.0), page(101.5)], hold_s)
    (detection,) = score.detections
    assert detection.page is not None
    assert detection.page.at_wall == 101.5
    assert detection.beyond_s == pytest.approx(1.5)
    assert score.recall(Fault.PADS_REMOVED) == (1, 1)
    assert score.met


def test_a_page_to_someone_else_or_before_the_fault_does_not_detect_it() -> None:
    pads = fault(Fault.PADS_REMOVED, started=100.0)
    pages = [
        page(101.0, person="backup-0001"),
        page(99.0),
        page(102.0, cabinet=2),
        page(103.0, alarm_type=AlarmType.FAULT_CODES),
    ]
    score = judge([pads], pages, hold_s)
    assert score.recall(Fault.PADS_REMOVED) == (0, 1)
    assert not score.recall_met
    assert not score.met


def test_designed_delay_is_the_rule_and_the_grouping_of_a_warning() -> None:
    offline = fault(Fault.CABINET_OFFLINE, started=100.0)
    temperature = fault(Fault.TEMPERATURE_EXCURSION, cabinet=2, started=100.0)
    score = judge(
        [offline, temperature],
        [
            page(111.0, AlarmType.OFFLINE, severity=Severity.WARNING),
            page(100.0 + 60.0 + 4.0, AlarmType.TEMPERATURE, cabinet=2, severity=Severity.HIGH),
        ],
        hold_s,
    )
    by_type = {d.alarm_type: d for d in score.detections}
    assert by_type[AlarmType.OFFLINE].hold_s == GROUPING_S
    assert by_type[AlarmType.OFFLINE].beyond_s == pytest.approx(1.0)
    assert by_type[AlarmType.TEMPERATURE].designed_delay_s == pytest.approx(60.0)
    assert by_type[AlarmType.TEMPERATURE].beyond_s == pytest.approx(4.0)
    assert score.latency_met


def test_latency_splits_into_detection_and_notification() -> None:
    offline = fault(Fault.AGENT_KILLED, started=100.0)
    score = judge(
        [offline],
        [page(113.0, AlarmType.OFFLINE, severity=Severity.WARNING, raised=101.0)],
        hold_s,
    )
    (detection,) = score.detections
    assert detection.to_alarm_s == pytest.approx(1.0)
    assert detection.to_email_s == pytest.approx(2.0)
    assert detection.beyond_s == pytest.approx(3.0)


def test_a_late_page_misses_the_latency_goal_only() -> None:
    pads = fault(Fault.PADS_REMOVED, started=100.0)
    score = judge([pads], [page(106.0)], hold_s)
    assert score.recall_met
    assert score.precision_met
    assert not score.latency_met
    assert not score.met


def test_a_failing_selftest_is_timed_from_the_selftest() -> None:
    circuit = fault(Fault.SELFTEST_FAILURE, started=100.0, observable=400.0)
    score = judge([circuit], [page(400.5, AlarmType.SELFTEST_FAILED)], hold_s)
    (detection,) = score.detections
    assert detection.beyond_s == pytest.approx(0.5)
    assert detection.from_fault_s == pytest.approx(300.5)


def test_pages_are_expected_side_effects_or_unexplained() -> None:
    battery = fault(Fault.BATTERY_FAILURE, cabinet=1, started=100.0)
    pages = [
        page(101.0, AlarmType.BATTERY_LOW, severity=Severity.HIGH),
        page(101.0, AlarmType.AED_NOT_READY, person="backup-0001"),
        page(102.0, AlarmType.PADS_MISSING),
        page(102.0, AlarmType.OFFLINE, cabinet=9, severity=Severity.WARNING),
    ]
    score = judge([battery], pages, hold_s)
    verdicts = [(j.page.alarm_type, j.verdict, j.fault) for j in score.pages]
    assert verdicts == [
        (AlarmType.BATTERY_LOW, Verdict.EXPECTED, Fault.BATTERY_FAILURE),
        (AlarmType.AED_NOT_READY, Verdict.SIDE_EFFECT, Fault.BATTERY_FAILURE),
        (AlarmType.PADS_MISSING, Verdict.UNEXPLAINED, None),
        (AlarmType.OFFLINE, Verdict.UNEXPLAINED, None),
    ]
    assert score.explained == 2
    assert score.precision == pytest.approx(0.5)
    assert not score.precision_met


@given(
    st.lists(
        st.tuples(
            st.sampled_from(list(AlarmType)),
            st.integers(min_value=0, max_value=3),
            st.floats(min_value=0, max_value=500, allow_nan=False),
        ),
        max_size=30,
    )
)
def test_a_page_is_explained_exactly_when_a_fault_before_it_at_its_cabinet_accounts_for_it(
    drawn: list[tuple[AlarmType, int, float]],
) -> None:
    faults = [
        fault(Fault.BATTERY_FAILURE, cabinet=1, started=100.0),
        fault(Fault.AED_NOT_RETURNED, cabinet=2, started=200.0),
    ]
    pages = [page(at, alarm_type, cabinet=cabinet) for alarm_type, cabinet, at in drawn]
    score = judge(faults, pages, hold_s)
    assert len(score.pages) == len(pages)
    for judged in score.pages:
        accounting = [
            f
            for f in faults
            if f.cabinet_id == judged.page.cabinet_id
            and f.started_wall <= judged.page.at_wall
            and (
                judged.page.alarm_type in EXPECTED[f.fault]
                or judged.page.alarm_type in SIDE_EFFECTS[f.fault]
            )
        ]
        assert (judged.verdict is not Verdict.UNEXPLAINED) == bool(accounting)
    assert 0.0 <= score.precision <= 1.0


# -- the report -----------------------------------------------------------------------------


def run_facts(faults: list[InjectedFault]) -> RunFacts:
    start = datetime(2026, 11, 26, 0, 56, tzinfo=UTC)
    return RunFacts(
        cabinets=500,
        scale=30.0,
        faults_per_type=Counter(f.fault for f in faults),
        observed_clock=(start, start + timedelta(minutes=80)),
        grouping_window=timedelta(minutes=5),
        cpu_shares={"service": 0.8, "fleet": 0.4},
        load_average=1.5,
        service_stop_error=None,
        alarms_raised=3,
        alarms_without_fault=(),
        notifications_failed=0,
        notifications_pending=0,
    )


def test_the_report_says_met_when_every_goal_is() -> None:
    faults = [fault(Fault.PADS_REMOVED), fault(Fault.POWER_LOSS, cabinet=2)]
    pages = [
        page(100.5),
        page(100.4, AlarmType.AED_NOT_READY),
        page(111.0, AlarmType.POWER_LOST, cabinet=2, severity=Severity.WARNING),
    ]
    text = "\n".join(report(judge(faults, pages, hold_s), run_facts(faults)))
    assert "MISSED" not in text
    assert "goals met" in text
    assert "side effect pads_removed -> aed_not_ready: 1 pages" in text
    assert "WALL seconds" in text
    assert "08:56:00-10:16:00" in text  # the observation, in the fleet's time zone


def test_the_report_names_what_was_missed_and_what_was_unexplained() -> None:
    faults = [fault(Fault.PADS_REMOVED), fault(Fault.POWER_LOSS, cabinet=2)]
    pages = [page(100.5), page(101.0, AlarmType.TAMPER, cabinet=7, severity=Severity.HIGH)]
    text = "\n".join(report(judge(faults, pages, hold_s), run_facts(faults)))
    assert "not paged: det-0002 power_lost" in text
    assert "UNEXPLAINED: tamper (high) at det-0007 to captain-0007" in text
    assert "goals NOT met" in text
