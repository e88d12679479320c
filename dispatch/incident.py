"""Incident coalescing (pure): cabinet events in, dispatch notices out.

A door that opens is a possible cardiac arrest nearby, so the first ``door_opened`` (or
``aed_removed``) of a cabinet becomes an *alert* at once. What follows at the same
cabinet belongs to that incident and is sent as *updates* of it:

- an incident is **active** while the door is open or the AED is out, and stays open
  for ``window_s`` after it last became inactive, so that an inspection or a prank
  (open, close, open, close…) is one incident, not one alert per opening;
- updates are rate-limited to one per ``min_update_interval_s``; events that arrive
  sooner wait in ``pending`` and go out together when the interval has passed
  (:func:`flush`). Two kinds of event are never held back: the alert, and the first
  ``aed_removed`` of an incident (the AED is being carried to a patient);
- a flood is bounded: at most ``max_listed_events`` events are listed in one update,
  the rest are counted in ``omitted``;
- ``door_closed`` / ``aed_returned`` with no open incident (the opening happened
  before dispatch ran) open nothing and are reported as ignored;
- when an incident is over, the events it still held go out before anything else of
  the cabinet, whatever the rate limit;
- events are identified by (cabinet, boot id, seq): a redelivered event is recognised
  among the last ``recent_ids_kept`` of the cabinet and ignored.

Membership in an incident is judged on device time (the order things happened at the
cabinet); the rate limit on ``now``, the service's clock, passed in by the caller. The
state of one cabinet is a frozen value that serialises to JSON, so the service can
persist it in the same transaction as the notices it produced.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final

from pydantic import BaseModel, ConfigDict, Field

from aedfleet.contract import (
    DispatchedEvent,
    DispatchKind,
    DispatchReference,
    Event,
    EventType,
    UtcTimestamp,
    dispatch_event_id,
)

OPENING: Final = frozenset({EventType.DOOR_OPENED, EventType.AED_REMOVED})
CLOSING: Final = frozenset({EventType.DOOR_CLOSED, EventType.AED_RETURNED})
DISPATCHED_TYPES: Final = OPENING | CLOSING


class CoalescingPolicy(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    window_s: float = Field(
        default=120,
        ge=0,
        description="An opening this soon after the incident went quiet continues it",
    )
    min_update_interval_s: float = Field(
        default=15, ge=0, description="Updates of one incident go out at most this often"
    )
    max_active_s: float = Field(
        default=86_400,
        gt=0,
        description="An incident whose cabinet never reports closed ends this long after "
        "its last event",
    )
    max_listed_events: int = Field(
        default=20,
        ge=1,
        le=1_000,
        description="Events one update lists at most; the rest are counted in omitted_events",
    )
    recent_ids_kept: int = Field(
        default=64,
        ge=1,
        le=10_000,
        description="Event ids remembered per cabinet, to recognise one the broker delivers again",
    )


class _Value(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Incident(_Value):
    incident_id: str
    opened_at: UtcTimestamp
    last_event_at: UtcTimestamp
    door_open: bool | None
    aed_removed: bool
    messages: int = Field(ge=1, description="Notices produced so far; the next one's number")
    first_message: DispatchReference
    last_message: DispatchReference
    removal_sent: bool
    pending: tuple[DispatchedEvent, ...] = ()
    omitted: int = 0

    @property
    def active(self) -> bool:
        return bool(self.door_open) or self.aed_removed

    def due_at(self, policy: CoalescingPolicy) -> datetime | None:
        """When the pending events may go out; None when nothing is pending."""
        if not self.pending:
            return None
        return self.last_message.sent_at + timedelta(seconds=policy.min_update_interval_s)


class CabinetState(_Value):
    """What dispatch remembers of one cabinet: its current or last incident."""

    cabinet_id: str
    incident: Incident | None = None
    recent_event_ids: tuple[str, ...] = ()


class Notice(_Value):
    """A message to send: the alert of an incident or one of its updates."""

    cabinet_id: str
    incident_id: str
    kind: DispatchKind
    number: int = Field(ge=0)
    references: tuple[DispatchReference, ...]
    created_at: UtcTimestamp
    opened_at: UtcTimestamp
    events: tuple[DispatchedEvent, ...] = Field(min_length=1)
    omitted: int = 0
    door_open: bool | None
    aed_removed: bool
    active: bool

    @property
    def message_id(self) -> str:
        """The id of the newest event reported: unique, since each event is sent once."""
        return self.events[-1].event_id


class Outcome(StrEnum):
    SENT = "sent"
    HELD = "held"
    """Part of an incident, waiting for the rate limit."""
    DUPLICATE = "duplicate"
    NOT_DISPATCHED = "not_dispatched"
    """An event type dispatch does not send (tamper, power)."""
    NO_INCIDENT = "no_incident"
    """A door closing or AED return with no incident open."""


class Step(_Value):
    state: CabinetState
    notices: tuple[Notice, ...] = ()
    """Oldest first: held events of an incident that ended come before a new alert."""
    outcome: Outcome


def dispatched_event(event: Event) -> DispatchedEvent:
    return DispatchedEvent(
        event_id=dispatch_event_id(event.cabinet_id, event.boot_id, event.seq),
        type=event.event,
        device_ts=event.ts,
        boot_id=event.boot_id,
        seq=event.seq,
        detail=event.detail,
    )


def _continues(incident: Incident, at: datetime, policy: CoalescingPolicy) -> bool:
    """Whether an event at device time ``at`` belongs to ``incident``."""
    quiet_for = (at - incident.last_event_at).total_seconds()
    if incident.active:
        return quiet_for <= policy.max_active_s
    return quiet_for <= policy.window_s


def _remember(state: CabinetState, event_id: str, policy: CoalescingPolicy) -> tuple[str, ...]:
    return (*state.recent_event_ids, event_id)[-policy.recent_ids_kept :]


def observe(
    state: CabinetState | None, event: Event, now: datetime, policy: CoalescingPolicy
) -> Step:
    """Fold one cabinet event into its cabinet's state; ``now`` is the service's clock."""
    if state is None:
        state = CabinetState(cabinet_id=event.cabinet_id)
    elif state.cabinet_id != event.cabinet_id:
        raise ValueError(
            f"event of cabinet {event.cabinet_id!r} applied to the state of {state.cabinet_id!r}"
        )
    if event.event not in DISPATCHED_TYPES:
        return Step(state=state, outcome=Outcome.NOT_DISPATCHED)
    reported = dispatched_event(event)
    if reported.event_id in state.recent_event_ids:
        return Step(state=state, outcome=Outcome.DUPLICATE)
    recent = _remember(state, reported.event_id, policy)
    incident = state.incident
    if incident is not None and _continues(incident, event.ts, policy):
        return _update(state, incident, reported, recent, now, policy)
    # The incident is over: what it still held goes out now, whatever the rate limit.
    ended: tuple[Notice, ...] = ()
    if incident is not None and incident.pending:
        ending = _send_pending(state, incident, state.recent_event_ids, now)
        state, ended = ending.state, ending.notices
    if event.event in CLOSING:
        return Step(
            state=state.model_copy(update={"recent_event_ids": recent}),
            notices=ended,
            outcome=Outcome.NO_INCIDENT,
        )
    opened = _open(state, reported, recent, now)
    return opened.model_copy(update={"notices": (*ended, *opened.notices)})


def _open(
    state: CabinetState, reported: DispatchedEvent, recent: tuple[str, ...], now: datetime
) -> Step:
    removed = reported.type is EventType.AED_REMOVED
    message = DispatchReference(event_id=reported.event_id, sent_at=now)
    incident = Incident(
        incident_id=reported.event_id,
        opened_at=reported.device_ts,
        last_event_at=reported.device_ts,
        # An AED can only be taken through an open door, but "open" is the door switch's
        # to report: until it does, the door's state is unknown.
        door_open=True if reported.type is EventType.DOOR_OPENED else None,
        aed_removed=removed,
        messages=1,
        first_message=message,
        last_message=message,
        removal_sent=removed,
    )
    notice = Notice(
        cabinet_id=state.cabinet_id,
        incident_id=incident.incident_id,
        kind=DispatchKind.ALERT,
        number=0,
        references=(),
        created_at=now,
        opened_at=incident.opened_at,
        events=(reported,),
        door_open=incident.door_open,
        aed_removed=incident.aed_removed,
        active=incident.active,
    )
    return Step(
        state=CabinetState(cabinet_id=state.cabinet_id, incident=incident, recent_event_ids=recent),
        notices=(notice,),
        outcome=Outcome.SENT,
    )


_EFFECTS: Final = {
    EventType.DOOR_OPENED: {"door_open": True},
    EventType.DOOR_CLOSED: {"door_open": False},
    EventType.AED_REMOVED: {"aed_removed": True},
    EventType.AED_RETURNED: {"aed_removed": False},
}


def _update(
    state: CabinetState,
    incident: Incident,
    reported: DispatchedEvent,
    recent: tuple[str, ...],
    now: datetime,
    policy: CoalescingPolicy,
) -> Step:
    changes: dict[str, object] = {}
    # A late event (replayed out of order) is reported, but does not turn the door or
    # the AED back to an older state.
    if reported.device_ts >= incident.last_event_at:
        changes = {**_EFFECTS[reported.type], "last_event_at": reported.device_ts}
    if len(incident.pending) < policy.max_listed_events:
        changes["pending"] = (*incident.pending, reported)
    else:
        # The newest event stays listed (the message is keyed by it); the one it
        # replaces is counted instead.
        changes["pending"] = (*incident.pending[:-1], reported)
        changes["omitted"] = incident.omitted + 1
    updated = incident.model_copy(update=changes)
    urgent = reported.type is EventType.AED_REMOVED and not incident.removal_sent
    due = updated.due_at(policy)
    if urgent or (due is not None and now >= due):
        return _send_pending(state, updated, recent, now)
    return Step(
        state=state.model_copy(update={"incident": updated, "recent_event_ids": recent}),
        outcome=Outcome.HELD,
    )


def _send_pending(
    state: CabinetState, incident: Incident, recent: tuple[str, ...], now: datetime
) -> Step:
    events = incident.pending
    references = tuple(dict.fromkeys((incident.first_message, incident.last_message)))
    notice = Notice(
        cabinet_id=state.cabinet_id,
        incident_id=incident.incident_id,
        kind=DispatchKind.UPDATE,
        number=incident.messages,
        references=references,
        created_at=now,
        opened_at=incident.opened_at,
        events=events,
        omitted=incident.omitted,
        door_open=incident.door_open,
        aed_removed=incident.aed_removed,
        active=incident.active,
    )
    sent = incident.model_copy(
        update={
            "messages": incident.messages + 1,
            "last_message": DispatchReference(event_id=notice.message_id, sent_at=now),
            "removal_sent": incident.removal_sent
            or any(e.type is EventType.AED_REMOVED for e in events),
            "pending": (),
            "omitted": 0,
        }
    )
    return Step(
        state=state.model_copy(update={"incident": sent, "recent_event_ids": recent}),
        notices=(notice,),
        outcome=Outcome.SENT,
    )


def flush(state: CabinetState, now: datetime, policy: CoalescingPolicy) -> Step:
    """Send the held events of the cabinet's incident once the rate limit allows."""
    incident = state.incident
    if incident is None:
        return Step(state=state, outcome=Outcome.HELD)
    due = incident.due_at(policy)
    if due is None or now < due:
        return Step(state=state, outcome=Outcome.HELD)
    return _send_pending(state, incident, state.recent_event_ids, now)


def due_at(state: CabinetState, policy: CoalescingPolicy) -> datetime | None:
    """When :func:`flush` will next produce a notice for this cabinet (None: never)."""
    return None if state.incident is None else state.incident.due_at(policy)
