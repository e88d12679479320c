"""Pure tests of the alarm lifecycle: reconcile, hysteresis, manual transitions.

The hypothesis tests drive random sequences of condition sets, acknowledgements, manual
resolves and time steps through :func:`reconcile` and an in-memory model of the store
(:class:`MemoryAlarms`, which applies changes with the lifecycle's own transitions and
runs each alarm's escalation), and check the invariants the service relies on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aedfleet.contract import CabinetMessage, EventType
from aedfleet.registry import Role
from alerting.escalation import EscalationPolicies, EscalationState, advance, start
from alerting.lifecycle import (
    CancelClear,
    Change,
    ClearSeen,
    EscalationEffect,
    Hysteresis,
    LifecycleError,
    Raise,
    Resolve,
    Update,
    acknowledge,
    apply_change,
    news_to_check,
    raise_alarm,
    reconcile,
    resolve,
)
from alerting.model import (
    Alarm,
    AlarmDetail,
    AlarmState,
    AlarmType,
    Condition,
    DetailKey,
    Page,
    Severity,
    Via,
)
from alerting.rule_config import RuleConfig, Thresholds, rules_for
from alerting.rules import evaluate as rules_evaluate
from tests.alerting_rules_support import CAB, event
from tests.alerting_rules_support import at as twin_at
from tests.alerting_rules_support import state as fold_state
from tests.test_alerting_rules import started

CABINET = "SZ-0001"
T0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
HYSTERESIS = Hysteresis()
COLD = AlarmDetail(key=DetailKey.BELOW_STORAGE_RANGE, low_c=0, high_c=50)
FAST = settings(max_examples=200, deadline=None)


def minutes(count: float) -> datetime:
    return T0 + timedelta(minutes=count)


def condition(
    alarm_type: AlarmType = AlarmType.TEMPERATURE,
    severity: Severity = Severity.WARNING,
    detail: AlarmDetail | None = None,
    cabinet_id: str = CABINET,
) -> Condition:
    return Condition(
        cabinet_id=cabinet_id, type=alarm_type, severity=severity, since=T0, detail=detail
    )


def alarm(
    alarm_type: AlarmType = AlarmType.TEMPERATURE,
    severity: Severity = Severity.WARNING,
    alarm_id: int = 1,
    **changes: object,
) -> Alarm:
    raised = raise_alarm(alarm_id, condition(alarm_type, severity), T0)
    return raised.model_copy(update=changes)


def by_type(*alarms: Alarm) -> dict[AlarmType, Alarm]:
    return {a.type: a for a in alarms}


# -- reconcile --------------------------------------------------------------------------------


def test_a_new_condition_raises_an_alarm() -> None:
    found = condition(severity=Severity.HIGH, detail=COLD)
    assert reconcile({}, [found], T0, HYSTERESIS) == (Raise(condition=found),)


def test_nothing_changes_while_the_condition_holds_as_it_was() -> None:
    held = alarm()
    assert reconcile(by_type(held), [condition()], minutes(5), HYSTERESIS) == ()


def test_a_severity_going_up_restarts_the_escalation() -> None:
    held = alarm(severity=Severity.WARNING)
    changes = reconcile(by_type(held), [condition(severity=Severity.CRITICAL)], T0, HYSTERESIS)
    assert changes == (
        Update(
            alarm_id=1,
            type=AlarmType.TEMPERATURE,
            severity=Severity.CRITICAL,
            detail=None,
            escalation=EscalationEffect.RESTART,
        ),
    )


@pytest.mark.parametrize(
    ("held", "now_severity", "detail"),
    [
        (alarm(severity=Severity.CRITICAL), Severity.HIGH, None),  # downgrade
        (alarm(severity=Severity.HIGH), Severity.HIGH, COLD),  # new detail only
        (  # upgrade, but somebody is already on it
            alarm(
                severity=Severity.WARNING,
                state=AlarmState.ACKNOWLEDGED,
                acknowledged_at=T0,
                acknowledged_by="wang",
                acknowledged_via=Via.LINK,
            ),
            Severity.CRITICAL,
            None,
        ),
    ],
    ids=["downgrade", "detail", "acknowledged-upgrade"],
)
def test_other_updates_continue_the_escalation(
    held: Alarm, now_severity: Severity, detail: AlarmDetail | None
) -> None:
    changes = reconcile(
        by_type(held), [condition(severity=now_severity, detail=detail)], T0, HYSTERESIS
    )
    assert len(changes) == 1
    update = changes[0]
    assert isinstance(update, Update)
    assert (update.severity, update.detail) == (now_severity, detail)
    assert update.escalation is EscalationEffect.CONTINUE


def test_a_cleared_condition_resolves_after_the_hold_time() -> None:
    held = alarm()
    assert reconcile(by_type(held), [], minutes(1), HYSTERESIS) == (
        ClearSeen(alarm_id=1, type=AlarmType.TEMPERATURE),
    )
    clearing = apply_change(held, ClearSeen(alarm_id=1, type=AlarmType.TEMPERATURE), minutes(1))
    assert clearing.clear_since == minutes(1)
    assert reconcile(by_type(clearing), [], minutes(2.9), HYSTERESIS) == ()
    assert reconcile(by_type(clearing), [], minutes(3), HYSTERESIS) == (
        Resolve(alarm_id=1, type=AlarmType.TEMPERATURE),
    )


@pytest.mark.parametrize(
    "alarm_type", [AlarmType.DOOR_OPENED, AlarmType.AED_REMOVED, AlarmType.AED_NOT_RETURNED]
)
def test_presence_alarms_resolve_as_soon_as_they_clear(alarm_type: AlarmType) -> None:
    held = alarm(alarm_type, Severity.CRITICAL)
    assert reconcile(by_type(held), [], minutes(0.1), HYSTERESIS) == (
        Resolve(alarm_id=1, type=alarm_type),
    )


# An AED taken at T0 and put back: the rules report the removal as over for a while.
STATE_DETAIL = AlarmDetail(key=DetailKey.AED_OUT, at=T0)
NEWS_DETAIL = AlarmDetail(key=DetailKey.AED_TAKEN_AND_RETURNED, at=T0)


def put_back(since: datetime = T0) -> Condition:
    return Condition(
        cabinet_id=CABINET,
        type=AlarmType.AED_REMOVED,
        severity=Severity.CRITICAL,
        since=since,
        detail=AlarmDetail(key=DetailKey.AED_TAKEN_AND_RETURNED, at=since),
        blocks_readiness=False,
        over=True,
    )


def test_an_aed_put_back_resolves_the_removal_alarm_at_the_return_itself() -> None:
    # The alarm was raised while the AED was out; the return is news of an event that
    # is over, and it ends that alarm at once rather than keeping it for the news.
    out = alarm(AlarmType.AED_REMOVED, Severity.CRITICAL, detail=STATE_DETAIL)
    assert reconcile(by_type(out), [put_back()], minutes(0.5), HYSTERESIS) == (
        Resolve(alarm_id=1, type=AlarmType.AED_REMOVED),
    )
    # With a hold configured for the type, the return starts it like an absent condition.
    held = Hysteresis(holds={AlarmType.AED_REMOVED: timedelta(minutes=1)})
    assert reconcile(by_type(out), [put_back()], minutes(0.5), held) == (
        ClearSeen(alarm_id=1, type=AlarmType.AED_REMOVED),
    )


def test_an_event_already_over_is_raised_once_as_news() -> None:
    # Taken and put back before any evaluation saw it out: news, raised once.
    news = put_back()
    assert reconcile({}, [news], minutes(0.5), HYSTERESIS) == (Raise(condition=news),)
    assert reconcile({}, [news], minutes(0.5), HYSTERESIS, {AlarmType.AED_REMOVED: T0}) == ()
    # The alarm raised for the news lasts while the rules report it.
    told = alarm(AlarmType.AED_REMOVED, Severity.CRITICAL, detail=NEWS_DETAIL)
    assert reconcile(by_type(told), [news], minutes(1), HYSTERESIS) == ()
    # A later opening is news again, and updates an alarm of an earlier one.
    later = put_back(minutes(1))
    assert reconcile({}, [later], minutes(1.5), HYSTERESIS, {AlarmType.AED_REMOVED: T0}) == (
        Raise(condition=later),
    )
    assert [
        type(change) for change in reconcile(by_type(told), [later], minutes(1.5), HYSTERESIS)
    ] == [Update]
    assert news_to_check(by_type(told), [news]) == frozenset()
    assert news_to_check({}, [news, condition()]) == {AlarmType.AED_REMOVED}


def test_a_condition_covered_by_another_raises_no_alarm_but_one_raised_carries_on() -> None:
    failed = condition(AlarmType.SELFTEST_FAILED, Severity.CRITICAL)
    light_off = condition(AlarmType.AED_NOT_READY, Severity.CRITICAL).model_copy(
        update={"covered_by": AlarmType.SELFTEST_FAILED}
    )
    assert reconcile({}, [failed, light_off], T0, HYSTERESIS) == (Raise(condition=failed),)
    raised_first = alarm(AlarmType.AED_NOT_READY, Severity.CRITICAL)
    assert reconcile(by_type(raised_first), [failed, light_off], T0, HYSTERESIS) == (
        Raise(condition=failed),
    )
    # Alone (the other condition gone), it is a condition like any other.
    assert reconcile({}, [light_off], T0, HYSTERESIS) == (Raise(condition=light_off),)


def test_hold_times_are_configurable_per_type() -> None:
    hysteresis = Hysteresis(
        default_hold=timedelta(minutes=10), holds={AlarmType.OFFLINE: timedelta(0)}
    )
    offline = alarm(AlarmType.OFFLINE, alarm_id=1)
    door = alarm(AlarmType.DOOR_OPENED, alarm_id=2)
    assert reconcile(by_type(offline, door), [], T0, hysteresis) == (
        ClearSeen(alarm_id=2, type=AlarmType.DOOR_OPENED),
        Resolve(alarm_id=1, type=AlarmType.OFFLINE),
    )
    assert hysteresis.hold(AlarmType.TEMPERATURE) == timedelta(minutes=10)
    with pytest.raises(ValueError, match="must not be negative: offline"):
        Hysteresis(holds={AlarmType.OFFLINE: timedelta(seconds=-1)})


def test_a_condition_returning_while_clearing_keeps_the_same_alarm() -> None:
    clearing = alarm(clear_since=minutes(1))
    assert reconcile(by_type(clearing), [condition()], minutes(2), HYSTERESIS) == (
        CancelClear(alarm_id=1, type=AlarmType.TEMPERATURE),
    )
    stronger = reconcile(
        by_type(clearing), [condition(severity=Severity.HIGH)], minutes(2), HYSTERESIS
    )
    assert [type(change) for change in stronger] == [CancelClear, Update]


def test_changes_come_in_alarm_type_order() -> None:
    held = by_type(alarm(AlarmType.OFFLINE, alarm_id=7), alarm(AlarmType.DOOR_OPENED, alarm_id=8))
    found = [condition(AlarmType.TEMPERATURE), condition(AlarmType.AED_REMOVED)]
    changes = reconcile(held, found, T0, HYSTERESIS)
    assert [change.type for change in changes] == [
        AlarmType.DOOR_OPENED,
        AlarmType.AED_REMOVED,
        AlarmType.OFFLINE,
        AlarmType.TEMPERATURE,
    ]


def test_reconcile_refuses_inconsistent_input() -> None:
    with pytest.raises(LifecycleError, match="one cabinet at a time"):
        reconcile(
            {}, [condition(), condition(AlarmType.OFFLINE, cabinet_id="SZ-2")], T0, HYSTERESIS
        )
    with pytest.raises(LifecycleError, match="reports temperature twice"):
        reconcile({}, [condition(), condition(severity=Severity.HIGH)], T0, HYSTERESIS)
    with pytest.raises(LifecycleError, match="is not the active offline alarm"):
        reconcile({AlarmType.OFFLINE: alarm()}, [], T0, HYSTERESIS)
    resolved = resolve(alarm(), None, Via.AUTO, T0)
    with pytest.raises(LifecycleError, match="resolved"):
        reconcile(by_type(resolved), [], T0, HYSTERESIS)


# -- transitions ---------------------------------------------------------------------------------


def test_acknowledging_records_who_when_and_how() -> None:
    acked = acknowledge(alarm(), " wang ", Via.LINK, minutes(3))
    assert acked.state is AlarmState.ACKNOWLEDGED
    assert (acked.acknowledged_at, acked.acknowledged_by, acked.acknowledged_via) == (
        minutes(3),
        "wang",
        Via.LINK,
    )
    assert acked.active


def test_acknowledging_twice_keeps_the_first() -> None:
    first = acknowledge(alarm(), "wang", Via.LINK, minutes(3))
    assert acknowledge(first, "li", Via.CLI, minutes(9)) == first


def test_invalid_acknowledgements_are_refused() -> None:
    resolved = resolve(alarm(), "wang", Via.CLI, minutes(1))
    with pytest.raises(LifecycleError, match="resolved alarm cannot be acknowledged"):
        acknowledge(resolved, "wang", Via.LINK, minutes(2))
    with pytest.raises(LifecycleError, match="only a person acknowledges"):
        acknowledge(alarm(), "system", Via.AUTO, minutes(2))
    with pytest.raises(LifecycleError, match="say who"):
        acknowledge(alarm(), "  ", Via.API, minutes(2))
    with pytest.raises(LifecycleError, match="before it was raised"):
        acknowledge(alarm(), "wang", Via.API, minutes(-1))


def test_resolving_by_hand_and_by_the_system() -> None:
    by_hand = resolve(alarm(), "wang", Via.CLI, minutes(4))
    assert (by_hand.state, by_hand.resolved_by, by_hand.resolved_via, by_hand.resolved_at) == (
        AlarmState.RESOLVED,
        "wang",
        Via.CLI,
        minutes(4),
    )
    assert not by_hand.active
    assert resolve(by_hand, "li", Via.API, minutes(5)) == by_hand
    automatic = resolve(alarm(), None, Via.AUTO, minutes(4))
    assert (automatic.resolved_by, automatic.resolved_via) == (None, Via.AUTO)
    acked = acknowledge(alarm(), "wang", Via.LINK, minutes(1))
    assert resolve(acked, "wang", Via.LINK, minutes(2)).state is AlarmState.RESOLVED


def test_invalid_resolutions_are_refused() -> None:
    with pytest.raises(LifecycleError, match="system resolves via auto"):
        resolve(alarm(), None, Via.CLI, T0)
    with pytest.raises(LifecycleError, match="system resolves via auto"):
        resolve(alarm(), "wang", Via.AUTO, T0)
    with pytest.raises(LifecycleError, match="before it was raised"):
        resolve(alarm(), "wang", Via.CLI, minutes(-1))


def test_a_manual_resolve_of_a_condition_that_holds_is_raised_again() -> None:
    resolved = resolve(alarm(), "wang", Via.CLI, minutes(1))
    assert not resolved.active
    # The store no longer lists it as active; the rule still reports the condition.
    assert reconcile({}, [condition()], minutes(2), HYSTERESIS) == (Raise(condition=condition()),)


def test_stale_changes_are_harmless() -> None:
    resolved = resolve(alarm(), None, Via.AUTO, minutes(3))
    for change in (
        ClearSeen(alarm_id=1, type=AlarmType.TEMPERATURE),
        CancelClear(alarm_id=1, type=AlarmType.TEMPERATURE),
        Resolve(alarm_id=1, type=AlarmType.TEMPERATURE),
        Update(
            alarm_id=1,
            type=AlarmType.TEMPERATURE,
            severity=Severity.HIGH,
            detail=None,
            escalation=EscalationEffect.RESTART,
        ),
    ):
        assert apply_change(resolved, change, minutes(4)) == resolved
    clearing = alarm(clear_since=minutes(1))
    seen_again = apply_change(
        clearing, ClearSeen(alarm_id=1, type=AlarmType.TEMPERATURE), minutes(2)
    )
    assert seen_again.clear_since == minutes(1)
    with pytest.raises(LifecycleError, match="change of alarm 2 applied to 1"):
        apply_change(clearing, ClearSeen(alarm_id=2, type=AlarmType.TEMPERATURE), minutes(2))


# -- random histories through an in-memory store ---------------------------------------------


@dataclass
class MemoryAlarms:
    """What the store does with changes, in memory: the reference the invariants check.

    Raises start an escalation (with the default policies), upgrades restart it, and
    every step advances every due escalation, recording the pages.
    """

    hysteresis: Hysteresis = HYSTERESIS
    policies: EscalationPolicies = field(default_factory=EscalationPolicies)
    alarms: dict[int, Alarm] = field(default_factory=dict)
    escalations: dict[int, EscalationState] = field(default_factory=dict)
    # Pages and acknowledgements by tick (one per step of a history), in order.
    tick: int = 0
    pages: list[tuple[int, Page]] = field(default_factory=list)
    acknowledged_at: dict[int, int] = field(default_factory=dict)

    def active(self, cabinet_id: str) -> dict[AlarmType, Alarm]:
        found: dict[AlarmType, Alarm] = {}
        for held in self.alarms.values():
            if held.cabinet_id == cabinet_id and held.active:
                assert held.type not in found, f"two active {held.type} alarms"
                found[held.type] = held
        return found

    def apply(self, changes: Sequence[Change], now: datetime) -> None:
        for change in changes:
            if isinstance(change, Raise):
                assert change.type not in self.active(change.condition.cabinet_id)
                new = raise_alarm(len(self.alarms) + 1, change.condition, now)
                self.alarms[new.alarm_id] = new
                self.escalations[new.alarm_id] = start(
                    new, self.policies.for_severity(new.severity), now
                )
                continue
            before = self.alarms[change.alarm_id]
            after = apply_change(before, change, now)
            self.alarms[after.alarm_id] = after
            if isinstance(change, Update) and change.escalation is EscalationEffect.RESTART:
                self.escalations[after.alarm_id] = start(
                    after,
                    self.policies.for_severity(after.severity),
                    now,
                    previous=self.escalations[after.alarm_id],
                )

    def acknowledge(self, alarm_id: int, now: datetime) -> None:
        self.alarms[alarm_id] = acknowledge(self.alarms[alarm_id], "wang", Via.LINK, now)
        self.acknowledged_at.setdefault(alarm_id, self.tick)

    def resolve(self, alarm_id: int, now: datetime) -> None:
        self.alarms[alarm_id] = resolve(self.alarms[alarm_id], "li", Via.CLI, now)

    def escalate(self, now: datetime) -> None:
        for alarm_id, state in list(self.escalations.items()):
            held = self.alarms[alarm_id]
            pages, self.escalations[alarm_id] = advance(
                held, state, self.policies.for_severity(state.severity), now
            )
            self.pages += [(self.tick, page) for page in pages]
        self.tick += 1


SEVERITIES = st.sampled_from(list(Severity))
SOME_TYPES = (
    AlarmType.TEMPERATURE,
    AlarmType.DOOR_OPENED,
    AlarmType.OFFLINE,
    AlarmType.BATTERY_LOW,
)
TYPES = st.sampled_from(SOME_TYPES)
STEPS = st.lists(
    st.one_of(
        st.tuples(
            st.just("evaluate"),
            st.dictionaries(
                TYPES, st.tuples(SEVERITIES, st.sampled_from([None, COLD])), max_size=4
            ),
        ),
        st.tuples(st.just("wait"), st.integers(0, 400)),
        st.tuples(st.just("acknowledge"), st.integers(0, 10)),
        st.tuples(st.just("resolve"), st.integers(0, 10)),
    ),
    max_size=40,
)


def evaluate(
    memory: MemoryAlarms,
    reported: dict[AlarmType, tuple[Severity, AlarmDetail | None]],
    now: datetime,
    absent_since: dict[AlarmType, datetime],
) -> None:
    """Reconcile what the rules report, apply it, and check what came out."""
    active = memory.active(CABINET)
    found = [condition(t, severity, detail) for t, (severity, detail) in reported.items()]
    changes = reconcile(active, found, now, memory.hysteresis)
    for change in changes:
        if isinstance(change, Raise):  # only when nothing of its type is active
            assert change.type not in active
        if isinstance(change, Resolve):  # only after the full hold time away
            hold = memory.hysteresis.hold(change.type)
            assert now - absent_since.get(change.type, now) >= hold
    for alarm_type in SOME_TYPES:
        if alarm_type in reported:
            absent_since.pop(alarm_type, None)
        else:
            absent_since.setdefault(alarm_type, now)
    memory.apply(changes, now)
    after = memory.active(CABINET)
    for found_condition in found:  # every condition has its alarm, as reported
        held = after[found_condition.type]
        assert (held.severity, held.detail, held.clear_since) == (
            found_condition.severity,
            found_condition.detail,
            None,
        )
    for alarm_type, held in after.items():  # an alarm without its condition is clearing
        if alarm_type not in reported:
            assert held.clear_since is not None


@FAST
@given(steps=STEPS)
def test_random_histories_keep_the_lifecycle_invariants(
    steps: list[tuple[str, object]],
) -> None:
    memory = MemoryAlarms()
    now = T0
    absent_since: dict[AlarmType, datetime] = {}
    for action, argument in steps:
        active = sorted(memory.active(CABINET).values(), key=lambda a: a.alarm_id)
        if action == "wait":
            assert isinstance(argument, int)
            now += timedelta(seconds=argument * 15)
        elif action == "acknowledge" and active:
            assert isinstance(argument, int)
            memory.acknowledge(active[argument % len(active)].alarm_id, now)
        elif action == "resolve" and active:
            assert isinstance(argument, int)
            memory.resolve(active[argument % len(active)].alarm_id, now)
        elif action == "evaluate":
            assert isinstance(argument, dict)
            evaluate(memory, argument, now, absent_since)
        memory.escalate(now)

    for alarm_id, acked_at in memory.acknowledged_at.items():
        late = [p for tick, p in memory.pages if p.alarm_id == alarm_id and tick >= acked_at]
        assert late == [], "an acknowledged alarm was paged"
    keys = [page.key for _, page in memory.pages]
    assert len(keys) == len(set(keys)), "a page was decided twice"
    for held in memory.alarms.values():
        if held.acknowledged_at is not None:
            assert held.state is not AlarmState.RAISED


@FAST
@given(
    gaps=st.lists(st.integers(1, 20), min_size=1, max_size=20),
    severity=SEVERITIES,
)
def test_flapping_within_the_hold_time_raises_one_alarm_and_pages_once(
    gaps: list[int], severity: Severity
) -> None:
    """A condition that comes and goes faster than the hold time is one alarm."""
    memory = MemoryAlarms()
    now = T0
    present = True
    for gap in gaps:
        found = [condition(AlarmType.TEMPERATURE, severity)] if present else []
        memory.apply(reconcile(memory.active(CABINET), found, now, HYSTERESIS), now)
        memory.escalate(now)
        now += timedelta(seconds=gap * 5)  # at most 100 s: under the 2 minute hold
        present = not present
    assert len(memory.alarms) == 1
    first_pages = [page for _, page in memory.pages if page.round == 0 and page.step == 0]
    assert len(first_pages) <= 1


# -- the rules and the lifecycle together, on an injected clock ---------------------------------


@pytest.mark.parametrize(
    ("alarm_type", "onset", "end"),
    [
        (AlarmType.DOOR_OPENED, EventType.DOOR_OPENED, EventType.DOOR_CLOSED),
        (AlarmType.AED_REMOVED, EventType.AED_REMOVED, EventType.AED_RETURNED),
    ],
)
def test_an_opening_stops_paging_at_the_close_or_return_and_is_not_raised_again(
    alarm_type: AlarmType, onset: EventType, end: EventType
) -> None:
    # A long event hold: the alarm used to outlive the return by it, paging up the chain.
    rules = rules_for(CAB, RuleConfig(thresholds=Thresholds(event_hold=timedelta(hours=1))))
    memory = MemoryAlarms()
    opened, back = twin_at(60), twin_at(9 * 60)
    messages: list[CabinetMessage] = started()
    for second in range(0, 2 * 3600, 30):
        now = twin_at(second)
        if now == opened:
            messages.append(event(0, 5, opened, onset))
        if now == back:
            messages.append(event(0, 6, back, end))
        twin, facts = fold_state(messages, rules)
        conditions = rules_evaluate(CAB, twin, facts, rules, now)
        active = memory.active(CAB.cabinet_id)
        last_raised = {
            held.type: held.condition_since
            for held in sorted(memory.alarms.values(), key=lambda held: held.condition_since)
        }
        memory.apply(reconcile(active, conditions, now, HYSTERESIS, last_raised), now)
        memory.escalate(now)
    [alarm] = [held for held in memory.alarms.values() if held.type is alarm_type]
    assert alarm.resolved_at == back
    assert [
        (page.role, page.alarm_id) for _, page in memory.pages if page.alarm_id == alarm.alarm_id
    ] == [(Role.CAPTAIN, alarm.alarm_id)]
