"""Incident coalescing (pure): alerts at once, updates rate-limited, every event once."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aedfleet.contract import DispatchKind, Event, EventType, dispatch_event_id
from dispatch.incident import (
    CabinetState,
    CoalescingPolicy,
    Notice,
    Outcome,
    due_at,
    flush,
    observe,
)

T0 = datetime(2025, 6, 1, 8, 0, tzinfo=UTC)
BOOT = "a" * 32
POLICY = CoalescingPolicy(window_s=120, min_update_interval_s=15, max_listed_events=5)


def event(kind: EventType, seq: int, at_s: float, cabinet: str = "SZ-1", boot: str = BOOT) -> Event:
    return Event(
        v=1, cabinet_id=cabinet, boot_id=boot, seq=seq, ts=T0 + timedelta(seconds=at_s), event=kind
    )


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


class Run:
    """Feeds events in, at the service time given, and collects every notice."""

    def __init__(self, policy: CoalescingPolicy = POLICY) -> None:
        self.policy = policy
        self.state: CabinetState | None = None
        self.notices: list[Notice] = []
        self.outcomes: list[Outcome] = []

    def feed(self, message: Event, now_s: float) -> Outcome:
        step = observe(self.state, message, at(now_s), self.policy)
        self.state = step.state
        self.notices.extend(step.notices)
        self.outcomes.append(step.outcome)
        return step.outcome

    def tick(self, now_s: float) -> None:
        if self.state is not None:
            step = flush(self.state, at(now_s), self.policy)
            self.state = step.state
            self.notices.extend(step.notices)


def reported(notices: Iterable[Notice]) -> list[str]:
    return [e.event_id for notice in notices for e in notice.events]


def test_the_first_door_opening_is_an_alert_at_once() -> None:
    run = Run()
    assert run.feed(event(EventType.DOOR_OPENED, 1, 0), 0.2) is Outcome.SENT
    [alert] = run.notices
    assert alert.kind is DispatchKind.ALERT
    assert alert.number == 0
    assert alert.references == ()
    assert alert.incident_id == dispatch_event_id("SZ-1", BOOT, 1)
    assert alert.message_id == alert.incident_id
    assert alert.created_at == at(0.2)
    assert alert.opened_at == at(0)
    assert alert.door_open is True
    assert alert.active


def test_a_door_closing_soon_after_is_held_then_sent_as_an_update_referencing_the_alert() -> None:
    run = Run()
    run.feed(event(EventType.DOOR_OPENED, 1, 0), 0)
    assert run.feed(event(EventType.DOOR_CLOSED, 2, 5), 5) is Outcome.HELD
    assert len(run.notices) == 1
    assert run.state is not None
    assert due_at(run.state, POLICY) == at(15)
    run.tick(14.9)
    assert len(run.notices) == 1
    run.tick(15)
    alert, update = run.notices
    assert update.kind is DispatchKind.UPDATE
    assert update.number == 1
    assert update.incident_id == alert.incident_id
    assert [r.event_id for r in update.references] == [alert.message_id]
    assert update.references[0].sent_at == alert.created_at
    assert update.door_open is False
    assert not update.active
    assert due_at(run.state, POLICY) is None


def test_an_update_after_the_interval_goes_at_once() -> None:
    run = Run()
    run.feed(event(EventType.DOOR_OPENED, 1, 0), 0)
    assert run.feed(event(EventType.DOOR_CLOSED, 2, 40), 40) is Outcome.SENT
    assert [n.kind for n in run.notices] == [DispatchKind.ALERT, DispatchKind.UPDATE]


def test_aed_removal_is_never_held_back_but_only_the_first() -> None:
    run = Run()
    run.feed(event(EventType.DOOR_OPENED, 1, 0), 0)
    assert run.feed(event(EventType.AED_REMOVED, 2, 3), 3) is Outcome.SENT
    update = run.notices[-1]
    assert update.aed_removed
    assert update.door_open is True
    run.feed(event(EventType.AED_RETURNED, 3, 5), 5)
    assert run.feed(event(EventType.AED_REMOVED, 4, 6), 6) is Outcome.HELD


def test_a_removal_alone_opens_an_incident_with_the_door_state_unknown() -> None:
    run = Run()
    run.feed(event(EventType.AED_REMOVED, 1, 0), 0)
    [alert] = run.notices
    assert alert.aed_removed
    assert alert.door_open is None
    assert alert.active


def test_a_prank_is_one_incident_with_few_updates() -> None:
    run = Run()
    seq = 0
    # Open and close every 4 seconds for ten minutes.
    for second in range(0, 600, 2):
        seq += 1
        kind = EventType.DOOR_OPENED if seq % 2 else EventType.DOOR_CLOSED
        run.feed(event(kind, seq, second), second)
        run.tick(second)
    run.tick(1_000)
    assert len({n.incident_id for n in run.notices}) == 1
    assert [n.kind for n in run.notices].count(DispatchKind.ALERT) == 1
    # One update per 15 s at most: 600 s / 15 s, and the last held events.
    assert len(run.notices) <= 600 / 15 + 2
    sent_at = [n.created_at for n in run.notices]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(sent_at)]
    assert min(gaps) >= 15
    # A flood is summarised: listed events plus the omitted count add up to all of them.
    assert sum(len(n.events) + n.omitted for n in run.notices) == seq


def test_an_opening_after_the_window_is_a_new_incident() -> None:
    run = Run()
    run.feed(event(EventType.DOOR_OPENED, 1, 0), 0)
    run.feed(event(EventType.DOOR_CLOSED, 2, 30), 30)
    run.feed(event(EventType.DOOR_OPENED, 3, 100), 100)
    run.feed(event(EventType.DOOR_CLOSED, 4, 110), 110)
    run.tick(200)
    assert len({n.incident_id for n in run.notices}) == 1
    run.feed(event(EventType.DOOR_OPENED, 5, 110 + 121), 231)
    assert run.notices[-1].kind is DispatchKind.ALERT
    assert run.notices[-1].incident_id == dispatch_event_id("SZ-1", BOOT, 5)


def test_an_open_door_keeps_its_incident_however_long() -> None:
    run = Run()
    run.feed(event(EventType.DOOR_OPENED, 1, 0), 0)
    run.feed(event(EventType.DOOR_CLOSED, 2, 3_600), 3_600)
    assert [n.incident_id for n in run.notices] == [dispatch_event_id("SZ-1", BOOT, 1)] * 2


def test_an_incident_never_closed_ends_after_max_active() -> None:
    policy = POLICY.model_copy(update={"max_active_s": 600})
    run = Run(policy)
    run.feed(event(EventType.DOOR_OPENED, 1, 0), 0)
    run.feed(event(EventType.DOOR_OPENED, 2, 601), 601)
    assert [n.kind for n in run.notices] == [DispatchKind.ALERT, DispatchKind.ALERT]


def test_held_events_of_an_ended_incident_go_out_before_the_next_alert() -> None:
    run = Run()
    run.feed(event(EventType.DOOR_OPENED, 1, 0), 0)
    run.feed(event(EventType.DOOR_CLOSED, 2, 1), 1)
    # No tick: the service was down. The next opening, long after, ends the incident.
    run.feed(event(EventType.DOOR_OPENED, 3, 500), 500)
    kinds = [(n.kind, n.number) for n in run.notices]
    assert kinds == [(DispatchKind.ALERT, 0), (DispatchKind.UPDATE, 1), (DispatchKind.ALERT, 0)]
    assert reported(run.notices) == [dispatch_event_id("SZ-1", BOOT, s) for s in (1, 2, 3)]


def test_a_redelivered_event_is_recognised() -> None:
    run = Run()
    run.feed(event(EventType.DOOR_OPENED, 1, 0), 0)
    assert run.feed(event(EventType.DOOR_OPENED, 1, 0), 1) is Outcome.DUPLICATE
    assert len(run.notices) == 1


def test_a_closing_without_an_incident_and_other_events_are_not_dispatched() -> None:
    run = Run()
    assert run.feed(event(EventType.DOOR_CLOSED, 1, 0), 0) is Outcome.NO_INCIDENT
    assert run.feed(event(EventType.TAMPER, 2, 1), 1) is Outcome.NOT_DISPATCHED
    assert run.feed(event(EventType.POWER_LOST, 3, 2), 2) is Outcome.NOT_DISPATCHED
    assert run.notices == []


def test_a_late_event_is_reported_without_turning_the_door_back() -> None:
    run = Run()
    run.feed(event(EventType.DOOR_OPENED, 2, 10), 10)
    run.feed(event(EventType.DOOR_CLOSED, 3, 20), 40)
    run.feed(event(EventType.DOOR_OPENED, 1, 5), 60)
    run.tick(100)
    assert run.notices[-1].door_open is False
    assert sorted(reported(run.notices)) == sorted(
        dispatch_event_id("SZ-1", BOOT, s) for s in (1, 2, 3)
    )


def test_state_of_another_cabinet_is_refused() -> None:
    run = Run()
    run.feed(event(EventType.DOOR_OPENED, 1, 0), 0)
    assert run.state is not None
    with pytest.raises(ValueError, match="SZ-2"):
        observe(run.state, event(EventType.DOOR_OPENED, 1, 0, cabinet="SZ-2"), at(1), POLICY)


def test_the_state_survives_json() -> None:
    run = Run()
    run.feed(event(EventType.DOOR_OPENED, 1, 0), 0)
    run.feed(event(EventType.DOOR_CLOSED, 2, 1), 1)
    assert run.state is not None
    restored = CabinetState.model_validate_json(run.state.model_dump_json())
    assert restored == run.state


# -- invariants ----------------------------------------------------------------------------

DISPATCHED = [
    EventType.DOOR_OPENED,
    EventType.DOOR_CLOSED,
    EventType.AED_REMOVED,
    EventType.AED_RETURNED,
]


@st.composite
def histories(draw: st.DrawFn) -> list[tuple[EventType, float, float]]:
    """(event type, device offset s, service delay s) in device order, with redeliveries."""
    count = draw(st.integers(min_value=1, max_value=40))
    gaps = draw(st.lists(st.floats(0, 400), min_size=count, max_size=count))
    kinds = draw(st.lists(st.sampled_from(DISPATCHED), min_size=count, max_size=count))
    delays = draw(st.lists(st.floats(0, 5), min_size=count, max_size=count))
    offset = 0.0
    history = []
    for kind, gap, delay in zip(kinds, gaps, delays, strict=True):
        offset += gap
        history.append((kind, offset, delay))
    return history


@settings(max_examples=200, deadline=None)
@given(histories(), st.data())
def test_every_event_is_reported_at_most_once_and_the_rate_limit_holds(
    history: list[tuple[EventType, float, float]], data: st.DataObject
) -> None:
    run = Run()
    now = 0.0
    ids = []
    for seq, (kind, offset, delay) in enumerate(history, start=1):
        now = max(now, offset + delay)
        message = event(kind, seq, offset)
        run.feed(message, now)
        ids.append(dispatch_event_id("SZ-1", BOOT, seq))
        if data.draw(st.booleans()):
            # A redelivery changes nothing.
            before = len(run.notices)
            assert run.feed(message, now) is Outcome.DUPLICATE
            assert len(run.notices) == before
        run.tick(now)
    run.tick(now + 10_000)
    sent = reported(run.notices)
    assert len(sent) == len(set(sent)), "an event was reported twice"
    handled = [o for o in run.outcomes if o is not Outcome.DUPLICATE]
    not_sent = [
        ident for ident, outcome in zip(ids, handled, strict=True) if outcome is Outcome.NO_INCIDENT
    ]
    omitted = sum(n.omitted for n in run.notices)
    assert len(sent) + omitted + len(not_sent) == len(ids), "an event was lost"
    assert set(sent).isdisjoint(not_sent)
    by_incident: dict[str, list[Notice]] = {}
    for notice in run.notices:
        by_incident.setdefault(notice.incident_id, []).append(notice)
    for notices in by_incident.values():
        assert notices[0].kind is DispatchKind.ALERT
        assert [n.number for n in notices] == list(range(len(notices)))
        assert all(n.kind is DispatchKind.UPDATE for n in notices[1:])
        assert all(n.references[0].event_id == notices[0].message_id for n in notices[1:])
        # Updates wait for the interval, unless urgent (an AED removal) or the incident
        # ended (what it held goes out then, whatever the rate limit).
        for index, (earlier, later) in enumerate(itertools.pairwise(notices)):
            gap = (later.created_at - earlier.created_at).total_seconds()
            urgent = any(e.type is EventType.AED_REMOVED for e in later.events)
            last = index + 2 == len(notices)
            assert gap >= POLICY.min_update_interval_s or urgent or last


@settings(max_examples=200, deadline=None)
@given(histories())
def test_an_opening_is_an_alert_at_once_unless_it_joins_an_incident(
    history: list[tuple[EventType, float, float]],
) -> None:
    run = Run()
    for seq, (kind, offset, _) in enumerate(history, start=1):
        incident_before = run.state.incident if run.state else None
        count = len(run.notices)
        run.feed(event(kind, seq, offset), offset)
        new = run.notices[count:]
        alerts = [n for n in new if n.kind is DispatchKind.ALERT]
        if alerts:
            # The alert is the last notice of the step, for this very event, at once.
            assert new[-1] is alerts[0]
            assert alerts[0].message_id == dispatch_event_id("SZ-1", BOOT, seq)
            assert alerts[0].created_at == at(offset)
        elif kind in (EventType.DOOR_OPENED, EventType.AED_REMOVED):
            assert incident_before is not None, "an opening with no incident was not alerted"
            assert run.state is not None
            assert run.state.incident is not None
            assert run.state.incident.incident_id == incident_before.incident_id
