"""Readiness: the one definition, from the conditions, and the fleet's summary."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest
from pydantic import ValidationError

from aedfleet.contract import CabinetMessage, ConnectionState, DoorState, EventType
from aedfleet.registry import Cabinet, SiteType
from alerting.facts import CabinetFacts
from alerting.model import AlarmType, Condition, Severity
from alerting.readiness import (
    FleetReadiness,
    Readiness,
    ReadinessCount,
    cabinet_readiness,
    fleet_readiness,
    readiness,
)
from alerting.rules import evaluate
from tests.alerting_rules_support import (
    CAB,
    CABINET,
    RULES,
    at,
    birth,
    consumables,
    event,
    heartbeat,
    selftest,
    state,
    status,
)


def condition(
    alarm_type: AlarmType, severity: Severity, since: datetime, *, blocks: bool = True
) -> Condition:
    return Condition(
        cabinet_id=CABINET,
        type=alarm_type,
        severity=severity,
        since=since,
        blocks_readiness=blocks,
    )


def test_ready_without_blocking_conditions() -> None:
    assert readiness(CABINET, ()) == Readiness(cabinet_id=CABINET, ready=True)
    notices = [
        condition(AlarmType.PADS_EXPIRING, Severity.HIGH, at(0), blocks=False),
        condition(AlarmType.TAMPER, Severity.HIGH, at(5), blocks=False),
    ]
    assert readiness(CABINET, notices).ready


def test_not_ready_names_the_blocking_reasons_most_severe_first() -> None:
    state_ = readiness(
        CABINET,
        [
            condition(AlarmType.OFFLINE, Severity.WARNING, at(10)),
            condition(AlarmType.INSPECTION_OVERDUE, Severity.WARNING, at(0), blocks=False),
            condition(AlarmType.PADS_EXPIRED, Severity.CRITICAL, at(30)),
            condition(AlarmType.BATTERY_LOW, Severity.HIGH, at(20)),
        ],
    )
    assert not state_.ready
    assert state_.reasons == (AlarmType.PADS_EXPIRED, AlarmType.BATTERY_LOW, AlarmType.OFFLINE)
    assert state_.since == at(10)


def test_conditions_of_another_cabinet_are_refused() -> None:
    stranger = condition(AlarmType.OFFLINE, Severity.WARNING, at(0)).model_copy(
        update={"cabinet_id": "cab-other"}
    )
    with pytest.raises(ValueError, match="cab-other"):
        readiness(CABINET, [stranger])


# -- the definition, criterion by criterion ------------------------------------------------


def healthy(*later: CabinetMessage) -> list[CabinetMessage]:
    return [
        birth(0, 1, at(0)),
        status(0, 1, at(0), ConnectionState.ONLINE),
        heartbeat(0, 2, at(0)),
        selftest(0, 3, at(0)),
        consumables(0, 4, at(0)),
        *later,
    ]


def ready_at(messages: list[CabinetMessage], now: datetime) -> Readiness:
    twin, facts = state(messages)
    return cabinet_readiness(CAB, twin, facts, RULES, now)


NOT_READY: dict[str, tuple[list[CabinetMessage], datetime, AlarmType]] = {
    "offline": (healthy(), at(180), AlarmType.OFFLINE),
    "AED out": (healthy(event(0, 5, at(10), EventType.AED_REMOVED)), at(11), AlarmType.AED_REMOVED),
    "ready light off": (
        healthy(heartbeat(0, 5, at(10), aed_ready=False)),
        at(11),
        AlarmType.AED_NOT_READY,
    ),
    "self-test failed": (
        healthy(selftest(0, 5, at(10), passed=False)),
        at(11),
        AlarmType.SELFTEST_FAILED,
    ),
    "self-test not recent": (
        [birth(0, 1, at(0), interval_s=86_400), selftest(0, 2, at(0))],
        at(26 * 3600),
        AlarmType.SELFTEST_MISSING,
    ),
    "pads missing": (
        healthy(consumables(0, 5, at(10), pads_present=False, pads_expiry=None)),
        at(11),
        AlarmType.PADS_MISSING,
    ),
    "pads expired": (
        healthy(consumables(0, 5, at(10), pads_expiry=date(2024, 4, 30))),
        at(11),
        AlarmType.PADS_EXPIRED,
    ),
    "battery expired": (
        healthy(consumables(0, 5, at(10), battery_expiry=date(2024, 4, 30))),
        at(11),
        AlarmType.BATTERY_EXPIRED,
    ),
    "battery low": (
        healthy(heartbeat(0, 5, at(10), battery_pct=10.0)),
        at(11),
        AlarmType.BATTERY_LOW,
    ),
    "too hot": (
        [birth(0, 1, at(0), interval_s=86_400), heartbeat(0, 2, at(0), temperature_c=60.0)],
        at(1800),
        AlarmType.TEMPERATURE,
    ),
    "door open too long": (
        [birth(0, 1, at(0), interval_s=86_400), event(0, 2, at(0), EventType.DOOR_OPENED)],
        at(600),
        AlarmType.DOOR_OPENED,
    ),
    "used, not checked": (
        healthy(
            event(0, 5, at(10), EventType.AED_REMOVED),
            event(0, 6, at(20), EventType.AED_RETURNED),
        ),
        at(21),
        AlarmType.POST_USE_CHECK,
    ),
}


@pytest.mark.parametrize("name", NOT_READY)
def test_each_criterion_of_readiness(name: str) -> None:
    messages, now, reason = NOT_READY[name]
    state_ = ready_at(messages, now)
    assert not state_.ready
    assert reason in state_.reasons


def test_a_healthy_cabinet_is_ready_and_notices_do_not_change_that() -> None:
    assert ready_at(healthy(), at(1)).ready
    notices = healthy(
        consumables(0, 5, at(10), pads_expiry=date(2024, 5, 20)),
        event(0, 6, at(11), EventType.TAMPER),
        event(0, 7, at(12), EventType.POWER_LOST),
    )
    twin, facts = state(notices)
    types = {c.type for c in evaluate(CAB, twin, facts, RULES, at(13))}
    assert {AlarmType.PADS_EXPIRING, AlarmType.TAMPER, AlarmType.POWER_LOST} <= types
    assert ready_at(notices, at(13)).ready


def test_an_inspection_with_the_door_open_keeps_the_cabinet_ready_for_the_allowance() -> None:
    messages = healthy(
        event(0, 5, at(10), EventType.DOOR_OPENED), heartbeat(0, 6, at(60), door=DoorState.OPEN)
    )
    messages += [heartbeat(0, seq, at(60 * (seq - 5)), door=DoorState.OPEN) for seq in range(7, 16)]
    assert ready_at(messages, at(10 + 600) - timedelta(microseconds=1)).ready
    late = ready_at(messages, at(10 + 600))
    assert late.reasons == (AlarmType.DOOR_OPENED,)
    assert late.since == at(10)


def test_a_cabinet_never_heard_from_is_not_ready() -> None:
    state_ = cabinet_readiness(CAB, None, CabinetFacts(cabinet_id=CABINET), RULES, at(0))
    assert state_.reasons == (AlarmType.OFFLINE,)


# -- the fleet ------------------------------------------------------------------------------------


def cabinet(number: int, region: str, site: SiteType) -> Cabinet:
    return CAB.model_copy(
        update={"cabinet_id": f"cab-{number}", "region_code": region, "site_type": site}
    )


def judged(number: int, reasons: tuple[AlarmType, ...] = ()) -> Readiness:
    return Readiness(
        cabinet_id=f"cab-{number}",
        ready=not reasons,
        reasons=reasons,
        since=at(0) if reasons else None,
    )


def test_the_fleet_summary_counts_by_region_site_and_reason() -> None:
    fleet = [
        (cabinet(1, "440305", SiteType.SCHOOL), judged(1)),
        (cabinet(2, "440305", SiteType.SCHOOL), judged(2, (AlarmType.OFFLINE,))),
        (cabinet(3, "440304", SiteType.HOSPITAL), judged(3)),
        (
            cabinet(4, "440304", SiteType.SCHOOL),
            judged(4, (AlarmType.PADS_EXPIRED, AlarmType.OFFLINE)),
        ),
        (cabinet(5, "", SiteType.OTHER), judged(5)),
        # A cabinet given twice counts once, as last given.
        (cabinet(3, "440304", SiteType.HOSPITAL), judged(3, (AlarmType.AED_REMOVED,))),
    ]
    summary = fleet_readiness(fleet)
    assert (summary.total, summary.ready, summary.not_ready) == (5, 2, 3)
    assert summary.by_region_code == {
        "": ReadinessCount(total=1, ready=1),
        "440304": ReadinessCount(total=2, ready=0),
        "440305": ReadinessCount(total=2, ready=1),
    }
    assert list(summary.by_region_code) == ["", "440304", "440305"]
    assert summary.by_site_type == {
        SiteType.SCHOOL: ReadinessCount(total=3, ready=1),
        SiteType.HOSPITAL: ReadinessCount(total=1, ready=0),
        SiteType.OTHER: ReadinessCount(total=1, ready=1),
    }
    assert summary.not_ready_by_reason == {
        AlarmType.OFFLINE: 2,
        AlarmType.PADS_EXPIRED: 1,
        AlarmType.AED_REMOVED: 1,
    }
    dumped = summary.model_dump(mode="json")
    assert (dumped["total"], dumped["ready"], dumped["not_ready"]) == (5, 2, 3)
    assert dumped["by_region_code"]["440305"] == {"total": 2, "ready": 1, "not_ready": 1}
    assert FleetReadiness.model_validate_json(summary.model_dump_json()) == summary


def test_counts_must_add_up() -> None:
    with pytest.raises(ValidationError, match="not_ready must be"):
        ReadinessCount.model_validate({"total": 3, "ready": 1, "not_ready": 1})
    with pytest.raises(ValidationError, match="2 ready out of 1"):
        ReadinessCount(total=1, ready=2)


def test_an_empty_fleet_and_mismatched_pairs() -> None:
    assert fleet_readiness([]) == FleetReadiness()
    assert FleetReadiness().not_ready == 0
    with pytest.raises(ValueError, match="cab-2"):
        fleet_readiness([(cabinet(1, "", SiteType.OTHER), judged(2))])
