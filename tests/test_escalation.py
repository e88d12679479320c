"""Pure tests of escalation timing: who is paged when, catch-up after a pause, restarts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from aedfleet.registry import Role
from alerting.escalation import (
    EscalationError,
    EscalationPolicies,
    EscalationPolicy,
    EscalationState,
    EscalationStep,
    advance,
    start,
)
from alerting.lifecycle import acknowledge, raise_alarm, resolve
from alerting.model import Alarm, AlarmType, Condition, NoticeKind, Page, Severity, Via

T0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
POLICIES = EscalationPolicies()
FAST = settings(max_examples=200, deadline=None)
CAPTAIN, BACKUP, COORDINATOR = Role.CAPTAIN, Role.BACKUP, Role.COORDINATOR


def minutes(count: float) -> datetime:
    return T0 + timedelta(minutes=count)


def alarm(severity: Severity = Severity.CRITICAL, alarm_id: int = 1) -> Alarm:
    found = Condition(
        cabinet_id="SZ-0001", type=AlarmType.AED_NOT_READY, severity=severity, since=T0
    )
    return raise_alarm(alarm_id, found, T0)


def run(
    raised: Alarm,
    policy: EscalationPolicy,
    at_minutes: list[float],
    state: EscalationState | None = None,
) -> tuple[list[tuple[float, Role, NoticeKind, int, int]], EscalationState]:
    """Advance at each of ``at_minutes``; every page as (minute, role, kind, round, step)."""
    state = state or start(raised, policy, T0)
    paged: list[tuple[float, Role, NoticeKind, int, int]] = []
    for minute in at_minutes:
        pages, state = advance(raised, state, policy, minutes(minute))
        paged += [(minute, p.role, p.kind, p.round, p.step) for p in pages]
    return paged, state


EVERY_MINUTE = [float(minute) for minute in range(181)]


# -- the default policies -------------------------------------------------------------------------


def test_critical_pages_captain_backup_coordinator_then_everyone_every_30_minutes() -> None:
    paged, state = run(alarm(), POLICIES.critical, EVERY_MINUTE)
    assert paged == [
        (0, CAPTAIN, NoticeKind.PAGE, 0, 0),
        (10, BACKUP, NoticeKind.PAGE, 0, 1),
        (30, COORDINATOR, NoticeKind.PAGE, 0, 2),
        *[
            (minute, role, NoticeKind.PAGE, round_, 0)
            for round_, minute in enumerate([60, 90, 120, 150, 180], start=1)
            for role in (CAPTAIN, BACKUP, COORDINATOR)
        ],
    ]
    assert (state.round, state.next_step, state.due_at) == (6, 0, minutes(210))


def test_high_pages_captain_backup_after_30_minutes_coordinator_after_2_hours() -> None:
    paged, state = run(alarm(Severity.HIGH), POLICIES.high, [m * 10.0 for m in range(60)])
    assert paged == [
        (0, CAPTAIN, NoticeKind.PAGE, 0, 0),
        (30, BACKUP, NoticeKind.PAGE, 0, 1),
        (120, COORDINATOR, NoticeKind.PAGE, 0, 2),
        (360, CAPTAIN, NoticeKind.PAGE, 1, 0),
        (360, BACKUP, NoticeKind.PAGE, 1, 0),
        (360, COORDINATOR, NoticeKind.PAGE, 1, 0),
    ]
    assert state.due_at == minutes(600)


def test_warning_pages_the_captain_then_reminds_daily() -> None:
    day = 24 * 60.0
    paged, state = run(alarm(Severity.WARNING), POLICIES.warning, [0, 60, day - 1, day, 2 * day])
    assert paged == [
        (0, CAPTAIN, NoticeKind.PAGE, 0, 0),
        (day, CAPTAIN, NoticeKind.REMINDER, 1, 0),
        (2 * day, CAPTAIN, NoticeKind.REMINDER, 2, 0),
    ]
    assert state.due_at == minutes(3 * day)


def test_info_pages_nobody() -> None:
    state = start(alarm(Severity.INFO), POLICIES.info, T0)
    assert state.due_at is None
    assert state.finished
    paged, after = run(alarm(Severity.INFO), POLICIES.info, EVERY_MINUTE, state)
    assert paged == []
    assert after == state


def test_policies_are_looked_up_by_severity() -> None:
    assert POLICIES.for_severity(Severity.CRITICAL) is POLICIES.critical
    assert POLICIES.for_severity(Severity.INFO).digest
    configured = EscalationPolicies.model_validate(
        {"warning": {"steps": [{"after": 0, "roles": ["captain", "backup"]}]}}
    )
    assert configured.warning.repeat_every is None
    assert configured.warning.repeat_roles == (CAPTAIN, BACKUP)


def test_nothing_is_due_before_the_first_step() -> None:
    policy = EscalationPolicy(steps=(EscalationStep(after=timedelta(minutes=5), roles=(BACKUP,)),))
    state = start(alarm(), policy, T0)
    assert state.due_at == minutes(5)
    assert advance(alarm(), state, policy, minutes(4.9)) == ((), state)
    pages, finished = advance(alarm(), state, policy, minutes(5))
    assert [p.role for p in pages] == [BACKUP]
    assert finished.finished
    assert advance(alarm(), finished, policy, minutes(500)) == ((), finished)


def test_a_step_may_page_several_roles() -> None:
    policy = EscalationPolicy(steps=(EscalationStep(after=timedelta(0), roles=(CAPTAIN, BACKUP)),))
    pages, _ = advance(alarm(), start(alarm(), policy, T0), policy, T0)
    assert [(p.role, p.step) for p in pages] == [(CAPTAIN, 0), (BACKUP, 0)]


# -- catching up ---------------------------------------------------------------------------------


def test_catch_up_pages_every_overdue_step_once() -> None:
    paged, state = run(alarm(), POLICIES.critical, [0, 35, 35, 36])
    assert paged == [
        (0, CAPTAIN, NoticeKind.PAGE, 0, 0),
        (35, BACKUP, NoticeKind.PAGE, 0, 1),
        (35, COORDINATOR, NoticeKind.PAGE, 0, 2),
    ]
    assert state.due_at == minutes(60)


def test_missed_repeat_rounds_collapse_into_one() -> None:
    paged, state = run(alarm(), POLICIES.critical, [0, 10, 30, 300, 301])
    assert paged[3:] == [
        (300, role, NoticeKind.PAGE, 9, 0) for role in (CAPTAIN, BACKUP, COORDINATOR)
    ]
    assert state.due_at == minutes(330)
    assert state.round == 10


def test_a_long_pause_pages_each_role_once() -> None:
    """Down from just after the raise to five hours later: each role once, not ten rounds."""
    paged, state = run(alarm(), POLICIES.critical, [0, 300])
    assert paged == [
        (0, CAPTAIN, NoticeKind.PAGE, 0, 0),
        (300, BACKUP, NoticeKind.PAGE, 0, 1),
        (300, COORDINATOR, NoticeKind.PAGE, 0, 2),
        (300, CAPTAIN, NoticeKind.PAGE, 9, 0),
    ]
    assert state.due_at == minutes(330)


# -- stopping and restarting -----------------------------------------------------------------------


def test_an_acknowledged_or_resolved_alarm_is_never_paged() -> None:
    raised = alarm()
    state = start(raised, POLICIES.critical, T0)
    for ended in (
        acknowledge(raised, "wang", Via.LINK, T0),
        resolve(raised, "wang", Via.CLI, T0),
        resolve(raised, None, Via.AUTO, T0),
    ):
        pages, stopped = advance(ended, state, POLICIES.critical, minutes(100))
        assert pages == ()
        assert stopped.finished
        assert advance(ended, stopped, POLICIES.critical, minutes(200)) == ((), stopped)


def test_advance_refuses_another_alarms_state() -> None:
    state = start(alarm(alarm_id=1), POLICIES.critical, T0)
    with pytest.raises(EscalationError, match="escalation of alarm 1 cannot page for alarm 2"):
        advance(alarm(alarm_id=2), state, POLICIES.critical, T0)
    with pytest.raises(EscalationError, match="cannot restart"):
        start(alarm(alarm_id=2), POLICIES.critical, T0, previous=state)


def test_an_upgrade_restarts_with_fresh_page_keys() -> None:
    warning = alarm(Severity.WARNING)
    before, state = run(warning, POLICIES.warning, [0, 24 * 60])
    assert len(before) == 2  # the page, and one reminder (round 1)
    critical = warning.model_copy(update={"severity": Severity.CRITICAL})
    restarted = start(critical, POLICIES.critical, minutes(24 * 60 + 5), previous=state)
    assert (restarted.severity, restarted.first_round, restarted.round) == (
        Severity.CRITICAL,
        3,
        3,
    )
    assert restarted.due_at == minutes(24 * 60 + 5)
    pages, after = advance(critical, restarted, POLICIES.critical, minutes(24 * 60 + 5))
    assert [(p.role, p.round, p.step) for p in pages] == [(CAPTAIN, 3, 0)]
    assert after.due_at == minutes(24 * 60 + 15)


def test_page_keys_name_alarm_kind_round_step_and_role() -> None:
    page = Page(alarm_id=7, role=BACKUP, kind=NoticeKind.PAGE, round=2, step=1)
    assert page.key == "7:page:2:1:backup"


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ({}, "at least one step"),
        ({"digest": True, "steps": [{"after": 0, "roles": ["captain"]}]}, "takes no steps"),
        (
            {"steps": [{"after": 60, "roles": ["captain"]}, {"after": 0, "roles": ["backup"]}]},
            "in the order",
        ),
        ({"steps": [{"after": 0, "roles": []}]}, "at least 1 item"),
        ({"steps": [{"after": -1, "roles": ["captain"]}]}, "greater than or equal"),
        ({"steps": [{"after": 0, "roles": ["captain"]}], "repeat_every": 0}, "greater than"),
        (
            {"steps": [{"after": 0, "roles": ["captain"]}], "repeat_kind": "resolved"},
            "page or a reminder",
        ),
    ],
)
def test_invalid_policies_are_refused(values: dict[str, object], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        EscalationPolicy.model_validate(values)


# -- invariants over random policies and schedules -------------------------------------------------


@st.composite
def policies(draw: st.DrawFn) -> EscalationPolicy:
    afters = sorted(draw(st.lists(st.integers(0, 120), min_size=1, max_size=4)))
    roles = st.lists(st.sampled_from(list(Role)), min_size=1, max_size=3, unique=True)
    steps = tuple(
        EscalationStep(after=timedelta(minutes=after), roles=tuple(draw(roles))) for after in afters
    )
    repeat = draw(st.one_of(st.none(), st.integers(1, 90)))
    return EscalationPolicy(
        steps=steps,
        repeat_every=None if repeat is None else timedelta(minutes=repeat),
        repeat_kind=draw(st.sampled_from([NoticeKind.PAGE, NoticeKind.REMINDER])),
    )


def _due(policy: EscalationPolicy, page: Page) -> datetime:
    """When ``page`` was due (an escalation that started at T0, first round 0)."""
    if page.round == 0:
        return T0 + policy.steps[page.step].after
    assert policy.repeat_every is not None
    return T0 + policy.steps[-1].after + page.round * policy.repeat_every


@FAST
@given(policy=policies(), at=st.lists(st.integers(0, 1000), max_size=30))
def test_pages_are_due_unique_complete_and_bounded(policy: EscalationPolicy, at: list[int]) -> None:
    raised = alarm()
    state = start(raised, policy, T0)
    seen: set[str] = set()
    first_round_roles = sum(len(step.roles) for step in policy.steps)
    for minute in sorted(at):
        now = minutes(minute)
        pages, state = advance(raised, state, policy, now)
        assert len(pages) <= first_round_roles + len(policy.repeat_roles)
        assert len({p.round for p in pages if p.round > 0}) <= 1, "two repeat rounds at once"
        for page in pages:
            assert page.key not in seen, "a page was decided twice"
            seen.add(page.key)
            assert _due(policy, page) <= now, "a page before its time"
            assert page.kind is (NoticeKind.PAGE if page.round == 0 else policy.repeat_kind)
        if state.due_at is not None:
            assert state.due_at > now
        for index, step in enumerate(policy.steps):  # every step due by now was paged
            if T0 + step.after <= now:
                assert {f"1:page:0:{index}:{role}" for role in step.roles} <= seen
    if at and policy.repeat_every is not None:  # the latest repeat round due was reached
        last = minutes(max(at))
        repeats_from = T0 + policy.steps[-1].after
        if last >= repeats_from + policy.repeat_every:
            latest = (last - repeats_from) // policy.repeat_every
            assert state.round == latest + 1
            assert state.due_at == repeats_from + (latest + 1) * policy.repeat_every
