"""Pure tests of the readiness rules: every rule at the instants around its threshold,
and the property that ``next_change`` never lies."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aedfleet.contract import (
    CabinetMessage,
    ConnectionState,
    DoorState,
    EventType,
    PowerSource,
    SelftestKind,
    SelftestPeriod,
)
from aedfleet.registry import Cabinet
from aedfleet.twin import Twin
from alerting.facts import CabinetFacts, with_inspection
from alerting.model import AlarmDetail, AlarmType, Condition, DetailKey, Severity
from alerting.rule_config import RuleConfig, RuleSet, rules_for
from alerting.rules import evaluate, inspection_due, inspection_reminder_at, next_change
from tests.alerting_rules_support import (
    CAB,
    CABINET,
    RULES,
    US,
    at,
    birth,
    consumables,
    event,
    heartbeat,
    histories,
    selftest,
    state,
    status,
)

HOUR = 3600
DAY = 86_400
# A heartbeat a day keeps long scenarios online without a heartbeat a minute.
SLOW = 86_400


def found(
    messages: Sequence[CabinetMessage],
    now: datetime,
    *,
    rules: RuleSet = RULES,
    cabinet: Cabinet = CAB,
    facts: CabinetFacts | None = None,
) -> dict[AlarmType, Condition]:
    twin, folded = state(messages, rules)
    conditions = evaluate(cabinet, twin, facts or folded, rules, now)
    assert len({c.type for c in conditions}) == len(conditions)
    return {condition.type: condition for condition in conditions}


def change(
    messages: Sequence[CabinetMessage],
    now: datetime,
    *,
    rules: RuleSet = RULES,
    cabinet: Cabinet = CAB,
) -> datetime | None:
    twin, facts = state(messages, rules)
    return next_change(cabinet, twin, facts, rules, now)


def started(*later: CabinetMessage, interval_s: int = 60) -> list[CabinetMessage]:
    """A healthy cabinet at T0 (boot 0, seq 1-4), then ``later``."""
    return [
        birth(0, 1, at(0), interval_s=interval_s),
        status(0, 1, at(0), ConnectionState.ONLINE),
        heartbeat(0, 2, at(0)),
        selftest(0, 3, at(0)),
        consumables(0, 4, at(0)),
        *later,
    ]


def test_a_healthy_cabinet_has_no_condition() -> None:
    assert found(started(), at(1)) == {}
    assert change(started(), at(1)) == at(180)  # the heartbeat deadline


# -- door and AED --------------------------------------------------------------------------------


def test_an_open_door_alarms_at_once_and_blocks_readiness_after_the_allowance() -> None:
    messages = started(event(0, 5, at(100), EventType.DOOR_OPENED), heartbeat(0, 6, at(150)))
    messages[-1] = heartbeat(0, 6, at(150), door=DoorState.OPEN)
    door = found(messages, at(100))[AlarmType.DOOR_OPENED]
    assert (door.severity, door.since, door.blocks_readiness) == (
        Severity.CRITICAL,
        at(100),
        False,
    )
    allowance = at(100 + 600)
    assert change(messages, at(200)) == at(150 + 180)  # the heartbeat comes first
    assert not found(messages, allowance - US)[AlarmType.DOOR_OPENED].blocks_readiness
    assert found(messages, allowance)[AlarmType.DOOR_OPENED].blocks_readiness
    closed = [*messages, event(0, 7, at(160), EventType.DOOR_CLOSED)]
    assert AlarmType.DOOR_OPENED not in found(closed, allowance)


def test_a_door_opened_and_closed_between_evaluations_still_alarms_for_the_event_hold() -> None:
    messages = started(
        event(0, 5, at(100), EventType.DOOR_OPENED),
        event(0, 6, at(130), EventType.DOOR_CLOSED),
        interval_s=SLOW,
    )
    door = found(messages, at(140))[AlarmType.DOOR_OPENED]
    assert (door.severity, door.since, door.blocks_readiness, door.over) == (
        Severity.CRITICAL,
        at(100),
        False,
        True,
    )
    hold_ends = at(100 + 120)
    assert change(messages, at(140)) == hold_ends
    assert AlarmType.DOOR_OPENED in found(messages, hold_ends - US)
    assert AlarmType.DOOR_OPENED not in found(messages, hold_ends)


def test_an_aed_taken_and_put_back_between_evaluations_still_alarms() -> None:
    messages = started(
        event(0, 5, at(100), EventType.AED_REMOVED),
        event(0, 6, at(110), EventType.AED_RETURNED),
        interval_s=SLOW,
    )
    conditions = found(messages, at(150))
    assert conditions[AlarmType.AED_REMOVED].since == at(100)
    assert conditions[AlarmType.AED_REMOVED].over
    assert not conditions[AlarmType.AED_REMOVED].blocks_readiness
    assert AlarmType.POST_USE_CHECK in conditions
    assert AlarmType.AED_REMOVED not in found(messages, at(220))


def test_the_door_allowance_is_a_next_change() -> None:
    messages = started(event(0, 5, at(100), EventType.DOOR_OPENED), interval_s=SLOW)
    assert change(messages, at(100)) == at(700)
    assert found(messages, at(700) - US) != found(messages, at(700))


def test_a_removed_aed_alarms_at_once_and_is_not_returned_after_the_allowed_time() -> None:
    messages = started(event(0, 5, at(100), EventType.AED_REMOVED), interval_s=SLOW)
    removed = found(messages, at(100))
    assert removed[AlarmType.AED_REMOVED].severity is Severity.CRITICAL
    assert removed[AlarmType.AED_REMOVED].since == at(100)
    deadline = at(100 + 30 * 60)
    assert change(messages, at(100)) == deadline
    assert AlarmType.AED_NOT_RETURNED not in found(messages, deadline - US)
    late = found(messages, deadline)[AlarmType.AED_NOT_RETURNED]
    assert (late.severity, late.since) == (Severity.CRITICAL, deadline)
    assert AlarmType.AED_NOT_RETURNED in found(messages, deadline + timedelta(days=3))


def test_a_returned_aed_needs_its_post_use_check() -> None:
    used = started(
        event(0, 5, at(100), EventType.AED_REMOVED),
        event(0, 6, at(400), EventType.AED_RETURNED),
        interval_s=SLOW,
    )
    after = found(used, at(500))
    assert AlarmType.AED_REMOVED not in after
    assert AlarmType.AED_NOT_RETURNED not in after
    check = after[AlarmType.POST_USE_CHECK]
    assert (check.severity, check.since, check.blocks_readiness) == (Severity.HIGH, at(400), True)
    tested = [*used, selftest(0, 7, at(600))]
    assert AlarmType.POST_USE_CHECK in found(tested, at(700))
    fresh = [*tested, consumables(0, 8, at(650), pads_expiry=date(2027, 6, 1))]
    assert AlarmType.POST_USE_CHECK not in found(fresh, at(700))


def test_the_ready_indicator_counts_only_while_the_aed_is_in_its_cabinet() -> None:
    not_ready = started(heartbeat(0, 5, at(60), aed_ready=False))
    condition = found(not_ready, at(61))[AlarmType.AED_NOT_READY]
    assert (condition.severity, condition.since) == (Severity.CRITICAL, at(0))
    out = [*not_ready, heartbeat(0, 6, at(120), aed_ready=False, aed_present=False)]
    conditions = found(out, at(121))
    assert AlarmType.AED_NOT_READY not in conditions
    assert conditions[AlarmType.AED_REMOVED].since == at(60)


# -- the AED's own health ------------------------------------------------------------------------


def test_a_failed_self_test_is_one_condition_that_names_its_fault_codes() -> None:
    messages = started(selftest(0, 5, at(30), passed=False, codes=("E-CIRCUIT", "E-PADS")))
    conditions = found(messages, at(31))
    assert set(conditions) == {AlarmType.SELFTEST_FAILED}
    failed = conditions[AlarmType.SELFTEST_FAILED]
    assert (failed.severity, failed.since) == (Severity.CRITICAL, at(30))
    assert failed.detail == AlarmDetail(
        key=DetailKey.SELFTEST_FAILED,
        selftest_kind=SelftestKind.DAILY,
        codes=("E-CIRCUIT", "E-PADS"),
    )
    silent = started(selftest(0, 5, at(30), passed=False))
    assert found(silent, at(31))[AlarmType.SELFTEST_FAILED].detail == AlarmDetail(
        key=DetailKey.SELFTEST_FAILED, selftest_kind=SelftestKind.DAILY
    )
    passed = [*messages, selftest(0, 6, at(40))]
    assert not {AlarmType.SELFTEST_FAILED, AlarmType.FAULT_CODES} & set(found(passed, at(41)))


def test_the_ready_light_off_after_a_failed_self_test_is_covered_by_it() -> None:
    failed = started(
        selftest(0, 5, at(30), passed=False, codes=("E-CIRCUIT",)),
        heartbeat(0, 6, at(60), aed_ready=False),
    )
    conditions = found(failed, at(61))
    assert conditions[AlarmType.AED_NOT_READY].covered_by is AlarmType.SELFTEST_FAILED
    assert conditions[AlarmType.SELFTEST_FAILED].covered_by is None
    retested = [*failed, selftest(0, 7, at(70))]
    assert found(retested, at(71))[AlarmType.AED_NOT_READY].covered_by is None


def test_fault_codes_of_a_passing_self_test_still_count() -> None:
    messages = started(selftest(0, 5, at(30), codes=("W-TEMP",)))
    conditions = found(messages, at(31))
    assert conditions[AlarmType.FAULT_CODES].detail == AlarmDetail(
        key=DetailKey.FAULT_CODES, selftest_kind=SelftestKind.DAILY, codes=("W-TEMP",)
    )
    assert AlarmType.SELFTEST_FAILED not in conditions


def test_battery_below_the_models_minimum() -> None:
    messages = started(heartbeat(0, 5, at(60), battery_pct=19.9))
    low = found(messages, at(61))[AlarmType.BATTERY_LOW]
    assert (low.severity, low.since) == (Severity.HIGH, at(0))
    at_minimum = started(heartbeat(0, 5, at(60), battery_pct=20.0))
    assert AlarmType.BATTERY_LOW not in found(at_minimum, at(61))


def test_the_battery_minimum_is_the_current_rules_not_the_facts() -> None:
    messages = started(heartbeat(0, 5, at(60), battery_pct=30.0))
    twin, facts = state(messages)  # folded with a minimum of 20 %
    stricter = RULES.model_copy(
        update={"aed": RULES.aed.model_copy(update={"min_battery_pct": 40})}
    )
    low = {c.type: c for c in evaluate(CAB, twin, facts, stricter, at(61))}[AlarmType.BATTERY_LOW]
    assert low.since == at(60)  # the facts know nothing: the reading's time


# -- consumables ---------------------------------------------------------------------------------


def shanghai_midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC) - timedelta(hours=8)


@pytest.mark.parametrize(
    ("days_before", "severity"),
    [(91, None), (90, Severity.INFO), (31, Severity.INFO), (30, Severity.WARNING),
     (8, Severity.WARNING), (7, Severity.HIGH), (0, Severity.HIGH)],
)  # fmt: skip
def test_pads_expiry_notices_rise_as_the_date_nears(
    days_before: int, severity: Severity | None
) -> None:
    expiry = date(2024, 9, 1)
    messages = started(consumables(0, 5, at(1), pads_expiry=expiry), interval_s=SLOW)
    day_start = shanghai_midnight(expiry - timedelta(days=days_before))
    for now in (day_start, day_start + timedelta(hours=23, minutes=59)):
        condition = found(messages, now).get(AlarmType.PADS_EXPIRING)
        assert (condition and condition.severity) == severity
        if condition:
            assert condition.since == shanghai_midnight(expiry - timedelta(days=90))
            assert not condition.blocks_readiness
            assert condition.detail == AlarmDetail(key=DetailKey.PADS_EXPIRE, day=expiry)
    if severity is None:
        assert change(messages, day_start) == shanghai_midnight(expiry - timedelta(days=90))


def test_expired_from_the_midnight_after_the_expiry_date() -> None:
    expiry = date(2024, 5, 3)
    messages = started(consumables(0, 5, at(1), pads_expiry=expiry, battery_expiry=expiry))
    expired_at = shanghai_midnight(date(2024, 5, 4))
    assert expired_at == datetime(2024, 5, 3, 16, tzinfo=UTC)
    twin, facts = state(messages)
    beat = heartbeat(0, 6, expired_at - timedelta(seconds=30))
    messages.append(beat)
    before = found(messages, expired_at - US)
    assert before[AlarmType.PADS_EXPIRING].severity is Severity.HIGH
    assert before[AlarmType.BATTERY_EXPIRING].severity is Severity.HIGH
    assert AlarmType.PADS_EXPIRED not in before
    after = found(messages, expired_at)
    assert AlarmType.PADS_EXPIRING not in after
    for expired in (AlarmType.PADS_EXPIRED, AlarmType.BATTERY_EXPIRED):
        assert (after[expired].severity, after[expired].since) == (Severity.CRITICAL, expired_at)
        assert after[expired].blocks_readiness
    assert change(messages, expired_at - timedelta(seconds=10)) == expired_at
    del twin, facts


def test_expiry_dates_are_read_in_the_cabinets_time_zone() -> None:
    expiry = date(2024, 5, 3)
    messages: list[CabinetMessage] = [
        birth(0, 1, at(0), interval_s=SLOW, time_zone="Europe/Berlin"),
        consumables(0, 2, at(1), pads_expiry=expiry),
    ]
    berlin_midnight = datetime(2024, 5, 3, 22, tzinfo=UTC)  # CEST, UTC+2
    assert AlarmType.PADS_EXPIRED not in found(messages, berlin_midnight - US)
    assert found(messages, berlin_midnight)[AlarmType.PADS_EXPIRED].since == berlin_midnight


def test_the_registry_dates_count_until_the_aed_reports_its_own() -> None:
    cabinet = CAB.model_copy(
        update={"pads_expiry": date(2024, 4, 1), "battery_expiry": date(2024, 5, 25)}
    )
    quiet: list[CabinetMessage] = [birth(0, 1, at(0), interval_s=SLOW)]
    conditions = found(quiet, at(1), cabinet=cabinet)
    assert conditions[AlarmType.PADS_EXPIRED].detail == AlarmDetail(
        key=DetailKey.PADS_EXPIRED, day=date(2024, 4, 1)
    )
    assert conditions[AlarmType.BATTERY_EXPIRING].severity is Severity.WARNING
    reported = [*quiet, consumables(0, 2, at(1), battery_expiry=None)]
    conditions = found(reported, at(2), cabinet=cabinet)
    assert AlarmType.PADS_EXPIRED not in conditions  # the AED's pads expire in 2026
    assert AlarmType.BATTERY_EXPIRING in conditions  # the AED does not know its battery's


def test_missing_pads_are_critical_and_have_no_expiry() -> None:
    messages = started(consumables(0, 5, at(30), pads_present=False, pads_expiry=date(2024, 5, 2)))
    conditions = found(messages, at(31))
    missing = conditions[AlarmType.PADS_MISSING]
    # Since the last report that saw pads: the earliest instant they may have gone.
    assert (missing.severity, missing.since, missing.blocks_readiness) == (
        Severity.CRITICAL,
        at(0),
        True,
    )
    assert AlarmType.PADS_EXPIRING not in conditions


def test_no_expiry_notices_when_none_are_configured() -> None:
    rules = RULES.model_copy(
        update={"thresholds": RULES.thresholds.model_copy(update={"expiry_notices": ()})}
    )
    messages = started(consumables(0, 5, at(1), pads_expiry=date(2024, 5, 2)))
    assert AlarmType.PADS_EXPIRING not in found(messages, at(2), rules=rules)


# -- connection ----------------------------------------------------------------------------------


def test_offline_after_three_missed_heartbeats_and_critical_after_a_day() -> None:
    messages = started(heartbeat(0, 5, at(60)))
    deadline = at(60 + 180)
    assert AlarmType.OFFLINE not in found(messages, deadline - US)
    assert change(messages, at(100)) == deadline
    offline = found(messages, deadline)[AlarmType.OFFLINE]
    assert (offline.severity, offline.since) == (Severity.WARNING, at(60))
    critical_at = at(60 + DAY)
    assert change(messages, deadline) == critical_at
    assert found(messages, critical_at - US)[AlarmType.OFFLINE].severity is Severity.WARNING
    assert found(messages, critical_at)[AlarmType.OFFLINE].severity is Severity.CRITICAL


def test_the_heartbeat_interval_comes_from_the_birth_else_the_configuration() -> None:
    slow = started(interval_s=600)
    assert AlarmType.OFFLINE not in found(slow, at(1800) - US)
    assert AlarmType.OFFLINE in found(slow, at(1800))
    no_birth = [heartbeat(0, 2, at(0))]
    assert AlarmType.OFFLINE not in found(no_birth, at(180) - US)
    assert AlarmType.OFFLINE in found(no_birth, at(180))


def test_the_last_will_is_offline_since_the_cabinet_was_last_heard_from() -> None:
    messages = started(heartbeat(0, 5, at(60)), status(0, 1, at(0), ConnectionState.OFFLINE))
    offline = found(messages, at(61))[AlarmType.OFFLINE]
    assert (offline.severity, offline.since) == (Severity.WARNING, at(60))
    # Three intervals on, the silence takes over with the same since (the last beat).
    assert found(messages, at(240))[AlarmType.OFFLINE].since == at(60)
    back = [*messages, status(0, 2, at(300), ConnectionState.ONLINE), heartbeat(0, 6, at(300))]
    assert AlarmType.OFFLINE not in found(back, at(301))


def test_a_cabinet_never_heard_from_is_offline_once_and_never_critical() -> None:
    facts = CabinetFacts(cabinet_id=CABINET)
    conditions = evaluate(CAB, None, facts, RULES, at(10 * DAY))
    offline = next(c for c in conditions if c.type is AlarmType.OFFLINE)
    assert (offline.severity, offline.since) == (
        Severity.WARNING,
        shanghai_midnight(date(2024, 4, 20)),  # the install date
    )
    assert [c.type for c in conditions] == [AlarmType.OFFLINE]
    unknown = CAB.model_copy(update={"install_date": None})
    assert evaluate(unknown, None, facts, RULES, at(5)) == (
        Condition(
            cabinet_id=CABINET,
            type=AlarmType.OFFLINE,
            severity=Severity.WARNING,
            since=at(5),
            detail=AlarmDetail(key=DetailKey.NEVER_HEARD),
        ),
    )
    assert next_change(unknown, None, facts, RULES, at(5)) is None
    planned = CAB.model_copy(update={"install_date": date(2024, 6, 1)})
    assert evaluate(planned, None, facts, RULES, at(0)) == ()
    assert next_change(planned, None, facts, RULES, at(0)) == shanghai_midnight(date(2024, 6, 1))
    assert evaluate(planned, Twin(cabinet_id=CABINET), facts, RULES, at(0)) == ()


# -- schedules -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("period", "grace"),
    [
        (SelftestPeriod.DAILY, timedelta(hours=26)),
        (SelftestPeriod.WEEKLY, timedelta(days=8)),
        (SelftestPeriod.MONTHLY, timedelta(days=32)),
    ],
)
def test_a_missing_self_test_after_the_schedules_grace(
    period: SelftestPeriod, grace: timedelta
) -> None:
    messages: list[CabinetMessage] = [
        birth(0, 1, at(0), interval_s=SLOW, period=period),
        selftest(0, 2, at(50)),
    ]
    deadline = at(50) + grace
    assert AlarmType.SELFTEST_MISSING not in found(messages, deadline - US)
    missing = found(messages, deadline)[AlarmType.SELFTEST_MISSING]
    assert (missing.severity, missing.since, missing.blocks_readiness) == (
        Severity.HIGH,
        deadline,
        True,
    )


def test_never_tested_counts_from_first_contact_as_daily_when_the_schedule_is_unknown() -> None:
    messages = [heartbeat(0, 2, at(0))]
    deadline = at(26 * HOUR)
    rules = RULES.model_copy(
        update={
            "thresholds": RULES.thresholds.model_copy(
                update={"heartbeat_interval": timedelta(days=1)}
            )
        }
    )
    assert AlarmType.SELFTEST_MISSING not in found(messages, deadline - US, rules=rules)
    missing = found(messages, deadline, rules=rules)[AlarmType.SELFTEST_MISSING]
    assert missing.detail == AlarmDetail(key=DetailKey.NO_SELFTEST_YET)


def test_tamper_holds_for_its_window() -> None:
    messages = started(event(0, 5, at(100), EventType.TAMPER), interval_s=SLOW)
    tamper = found(messages, at(100))[AlarmType.TAMPER]
    assert (tamper.severity, tamper.since, tamper.blocks_readiness) == (
        Severity.HIGH,
        at(100),
        False,
    )
    assert AlarmType.TAMPER in found(messages, at(100 + HOUR) - US)
    assert AlarmType.TAMPER not in found(messages, at(100 + HOUR))
    assert change(messages, at(200)) == at(100 + HOUR)


def test_inspection_overdue_after_the_interval() -> None:
    messages = started(interval_s=SLOW)
    installed = shanghai_midnight(date(2024, 4, 20))
    due = installed + timedelta(days=30)
    twin, facts = state(messages)
    assert inspection_due(CAB, twin, facts, RULES) == due
    assert inspection_reminder_at(CAB, twin, facts, RULES) == due - timedelta(days=3)
    assert AlarmType.INSPECTION_OVERDUE not in found(messages, due - US)
    overdue = found(messages, due)[AlarmType.INSPECTION_OVERDUE]
    assert (overdue.severity, overdue.since, overdue.blocks_readiness) == (
        Severity.WARNING,
        due,
        False,
    )
    inspected = with_inspection(facts, due + timedelta(hours=2))
    conditions = evaluate(CAB, twin, inspected, RULES, due + timedelta(hours=3))
    assert AlarmType.INSPECTION_OVERDUE not in {c.type for c in conditions}
    assert inspection_due(CAB, twin, inspected, RULES) == due + timedelta(days=30, hours=2)


def test_inspection_without_install_date_counts_from_first_contact() -> None:
    cabinet = CAB.model_copy(update={"install_date": None})
    twin, facts = state(started(interval_s=SLOW))
    assert inspection_due(cabinet, twin, facts, RULES) == at(30 * DAY)
    assert inspection_due(cabinet, None, facts, RULES) is None
    assert inspection_reminder_at(cabinet, None, facts, RULES) is None
    # A reminder lead longer than the interval reminds right after the inspection.
    rules = RULES.model_copy(
        update={
            "thresholds": RULES.thresholds.model_copy(
                update={"inspection_reminder_lead": timedelta(days=40)}
            )
        }
    )
    assert inspection_reminder_at(cabinet, twin, facts, rules) == at(0)


# -- climate and power ---------------------------------------------------------------------------


def test_temperature_outside_the_range_for_the_excursion_duration() -> None:
    messages = started(
        heartbeat(0, 5, at(60), temperature_c=50.0),
        heartbeat(0, 6, at(120), temperature_c=50.1),
        heartbeat(0, 7, at(180), temperature_c=58.0),
    )
    left = at(60)  # the last reading inside the range
    alarm_at = left + timedelta(minutes=30)
    assert change(messages, at(181)) == at(180 + 180)
    assert AlarmType.TEMPERATURE not in found(messages, alarm_at - US)
    hot = found(messages, alarm_at)[AlarmType.TEMPERATURE]
    assert (hot.severity, hot.since, hot.blocks_readiness) == (Severity.HIGH, left, True)
    assert hot.detail == AlarmDetail(key=DetailKey.ABOVE_STORAGE_RANGE, low_c=0, high_c=50)
    back = [*messages, heartbeat(0, 8, at(240), temperature_c=45.0)]
    assert AlarmType.TEMPERATURE not in found(back, alarm_at)


def test_the_storage_range_is_the_aed_models() -> None:
    hs1 = CAB.model_copy(update={"aed_model": "Philips HeartStart HS1"})
    rules = rules_for(hs1, RuleConfig())
    messages: list[CabinetMessage] = [
        birth(0, 1, at(0), interval_s=SLOW),
        heartbeat(0, 2, at(0), temperature_c=20.0),
        heartbeat(0, 3, at(60), temperature_c=9.5),
    ]
    cold = found(messages, at(60 + 1800), rules=rules, cabinet=hs1)[AlarmType.TEMPERATURE]
    assert cold.detail == AlarmDetail(key=DetailKey.BELOW_STORAGE_RANGE, low_c=10, high_c=43)
    assert AlarmType.TEMPERATURE not in found(messages, at(60 + 1800))  # ZOLL: 0 to 50 °C


def test_power_lost_is_a_warning_unless_the_cabinet_needs_heating() -> None:
    lost = started(event(0, 5, at(100), EventType.POWER_LOST))
    power = found(lost, at(101))[AlarmType.POWER_LOST]
    assert (power.severity, power.since, power.blocks_readiness) == (
        Severity.WARNING,
        at(100),
        False,
    )
    heating = [*lost, heartbeat(0, 6, at(110), power=PowerSource.BACKUP, heater_on=True)]
    assert found(heating, at(111))[AlarmType.POWER_LOST].severity is Severity.CRITICAL
    freezing = [*lost, heartbeat(0, 6, at(110), power=PowerSource.BACKUP, temperature_c=-1.0)]
    assert found(freezing, at(111))[AlarmType.POWER_LOST].severity is Severity.CRITICAL
    restored = [*lost, event(0, 6, at(120), EventType.POWER_RESTORED)]
    assert AlarmType.POWER_LOST not in found(restored, at(121))


# -- facts that know nothing yet -----------------------------------------------------------------


def test_the_twin_answers_while_the_facts_know_nothing() -> None:
    messages = started(
        heartbeat(
            0,
            5,
            at(60),
            door=DoorState.OPEN,
            aed_present=False,
            aed_ready=False,
            power=PowerSource.BACKUP,
        ),
        consumables(0, 6, at(60), pads_present=False, pads_expiry=None),
    )
    empty = CabinetFacts(cabinet_id=CABINET)
    conditions = found(messages, at(61), facts=empty)
    for alarm_type in (
        AlarmType.DOOR_OPENED,
        AlarmType.AED_REMOVED,
        AlarmType.POWER_LOST,
        AlarmType.PADS_MISSING,
    ):
        assert conditions[alarm_type].since == at(60)


# -- the shape of the answer ---------------------------------------------------------------------


def test_conditions_come_in_the_order_of_the_alarm_types() -> None:
    messages = started(
        event(0, 5, at(10), EventType.TAMPER),
        event(0, 6, at(20), EventType.DOOR_OPENED),
        selftest(0, 7, at(30), passed=False, codes=("E1",)),
        heartbeat(0, 8, at(40), battery_pct=5.0, door=DoorState.OPEN),
    )
    types = [c.type for c in evaluate(CAB, *state(messages), RULES, at(41))]
    assert types == sorted(types, key=list(AlarmType).index)
    assert len(types) >= 4


def test_a_detail_carries_every_fault_code_the_contract_allows() -> None:
    codes = tuple(f"E{index:031d}" for index in range(32))
    messages = started(selftest(0, 5, at(30), passed=False, codes=codes))
    detail = found(messages, at(31))[AlarmType.SELFTEST_FAILED].detail
    assert detail is not None
    assert detail.codes == codes


def test_now_must_be_aware_and_the_state_must_be_the_cabinets() -> None:
    twin, facts = state(started())
    with pytest.raises(ValueError, match="timezone-aware"):
        evaluate(CAB, twin, facts, RULES, datetime(2024, 5, 1, 12))
    other = CAB.model_copy(update={"cabinet_id": "cab-other"})
    with pytest.raises(ValueError, match="twin"):
        evaluate(other, twin, facts, RULES, at(1))
    with pytest.raises(ValueError, match="facts"):
        evaluate(other, None, facts, RULES, at(1))


def test_dates_at_the_ends_of_the_calendar_do_not_overflow() -> None:
    cabinet = CAB.model_copy(
        update={"pads_expiry": date.max, "battery_expiry": date.min, "install_date": date.min}
    )
    conditions = {
        c.type for c in evaluate(cabinet, None, CabinetFacts(cabinet_id=CABINET), RULES, at(0))
    }
    assert AlarmType.BATTERY_EXPIRED in conditions
    assert AlarmType.PADS_EXPIRED not in conditions
    rules = RULES.model_copy(
        update={"thresholds": RULES.thresholds.model_copy(update={"expiry_notices": ()})}
    )
    facts = with_inspection(CabinetFacts(cabinet_id=CABINET), at(0))
    forever = rules.model_copy(
        update={
            "thresholds": rules.thresholds.model_copy(update={"inspection_interval": timedelta.max})
        }
    )
    # Deadlines past the end of the calendar never come.
    assert next_change(cabinet, None, facts, forever, at(0)) is None


# -- next_change never lies ----------------------------------------------------------------------

PROPERTY = settings(max_examples=100, deadline=None)


@PROPERTY
@given(history=histories(), data=st.data())
def test_evaluate_is_constant_until_next_change(
    history: list[CabinetMessage], data: st.DataObject
) -> None:
    twin, facts = state(history)
    last = history[-1].ts
    now = last + timedelta(seconds=data.draw(st.integers(-600, 40 * DAY)))
    if data.draw(st.booleans()):
        facts = with_inspection(facts, last - timedelta(days=data.draw(st.integers(0, 40))))
    answer = evaluate(CAB, twin, facts, RULES, now)
    upcoming = next_change(CAB, twin, facts, RULES, now)
    if upcoming is None:
        later = [now + timedelta(days=400)]
    else:
        assert upcoming > now
        span = upcoming - now
        probe = now + span * data.draw(st.floats(0, 1, exclude_max=True))
        later = [upcoming - US, min(probe, upcoming - US)]
    for instant in later:
        if instant >= now:
            assert evaluate(CAB, twin, facts, RULES, instant) == answer


@PROPERTY
@given(history=histories(), data=st.data())
def test_following_next_change_walks_every_change(
    history: list[CabinetMessage], data: st.DataObject
) -> None:
    """Stepping from change to change, the answer between two steps never moves."""
    twin, facts = state(history)
    now = history[-1].ts
    for _ in range(6):
        upcoming = next_change(CAB, twin, facts, RULES, now)
        if upcoming is None:
            break
        answer = evaluate(CAB, twin, facts, RULES, now)
        probe = now + (upcoming - now) * data.draw(st.floats(0, 1, exclude_max=True))
        for instant in (min(probe, upcoming - US), upcoming - US):
            assert evaluate(CAB, twin, facts, RULES, instant) == answer
        now = upcoming
