"""The alarm lifecycle: raise, update, clear with hysteresis, acknowledge, resolve.

Pure: every function takes ``now`` and returns values; the store applies the result.

:func:`reconcile` compares what the rules report for ONE cabinet right now (its
:class:`~alerting.model.Condition` set) with the cabinet's active alarms and decides the
:data:`Change` list that brings the alarms in line:

- a condition with no active alarm of its type → :class:`Raise`;
- a condition whose alarm has another severity or detail → :class:`Update`. A severity
  going UP on an unacknowledged alarm says ``escalation=RESTART``: the escalation starts
  over under the higher severity's policy (see :func:`alerting.escalation.start`, which
  continues the round numbering so that no page key repeats). A severity going down, a
  new detail, or any change to an acknowledged alarm says ``CONTINUE``: nobody is paged
  again for it, and an acknowledged alarm is never paged again at all;
- an active alarm whose condition is absent → :class:`ClearSeen` (the alarm remembers
  when), then :class:`Resolve` (via ``AUTO``) once it has stayed clear for the hold time
  of its type (:class:`Hysteresis`: two minutes by default, zero for the door and AED
  presence alarms so that what dispatch watches closes at once, without a ClearSeen);
- a condition back while its alarm is clear-seen → :class:`CancelClear`: the same alarm
  carries on, no new alarm and no new page. That is the flapping protection.

A condition that is ``over`` (the door closed again, the AED put back, reported by the
rules for a while after the opening; see :func:`alerting.rules._recent_onset`) is news of
an event, not a state. It ends an alarm raised while the door was open or the AED out:
that alarm clears as if the condition were absent, so it resolves at the close or return
itself, and its escalation stops then. Without an active alarm it is raised only when it
is news: no alarm of its type was raised for that opening or a later one
(``last_raised_for``). The alarm it raises keeps its detail ("opened and closed again")
and lasts while the rules report it, so that the captain hears of an opening nobody saw.

A condition ``covered_by`` another one reported with it (the ready light off after a
failed self-test: one fault) raises no alarm of its own; an alarm of its type raised
before the other condition came (the light went off first) carries on, so that nobody is
told of a resolution while the AED is still not ready.

A condition is only ever raised anew after its alarm resolved. In particular, **a manual
resolve of a condition that still holds is re-raised by the next evaluation**: the
condition is real, and a person closing the alarm does not fix the cabinet. Whoever
wants it quiet while they work on it acknowledges it (or adds a silence) instead.

:func:`acknowledge` and :func:`resolve` are the manual transitions. Both are idempotent
(doing it again keeps the first who and when); acknowledging a resolved alarm, acting
before the alarm was raised, acknowledging "via auto" or with no name are refused with
:class:`LifecycleError`. :func:`raise_alarm` and :func:`apply_change` turn decisions into
alarm values: the store and the tests' in-memory model both go through them, so that one
definition of every transition exists.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from alerting.errors import AlertingError
from alerting.model import (
    Alarm,
    AlarmDetail,
    AlarmState,
    AlarmType,
    Condition,
    Severity,
    Via,
)

__all__ = [
    "DEFAULT_HOLD",
    "INSTANT_CLEAR",
    "CancelClear",
    "Change",
    "ClearSeen",
    "EscalationEffect",
    "Hysteresis",
    "LifecycleError",
    "Raise",
    "Resolve",
    "Update",
    "acknowledge",
    "apply_change",
    "escalation_effect",
    "news_to_check",
    "raise_alarm",
    "reconcile",
    "resolve",
]

DEFAULT_HOLD: Final = timedelta(minutes=2)
INSTANT_CLEAR: Final = frozenset(
    {AlarmType.DOOR_OPENED, AlarmType.AED_REMOVED, AlarmType.AED_NOT_RETURNED}
)
"""Presence alarms: the door closed or the AED is back, and dispatch must see it at once."""


class LifecycleError(AlertingError, ValueError):
    """A transition the lifecycle does not allow, or input that breaks its assumptions."""


class _Value(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Hysteresis(_Value):
    """How long an alarm's condition must stay away before the alarm resolves by itself."""

    default_hold: timedelta = Field(
        default=DEFAULT_HOLD,
        ge=timedelta(0),
        description="How long a condition must stay clear before its alarm resolves by itself; "
        "a condition back within it cancels the clearing",
    )
    holds: dict[AlarmType, timedelta] = Field(
        default_factory=lambda: dict.fromkeys(sorted(INSTANT_CLEAR), timedelta(0)),
        description="Hold time per alarm type, overriding default_hold",
    )

    @field_validator("holds")
    @classmethod
    def _not_negative(cls, holds: dict[AlarmType, timedelta]) -> dict[AlarmType, timedelta]:
        negative = sorted(kind.value for kind, hold in holds.items() if hold < timedelta(0))
        if negative:
            raise ValueError(f"hold times must not be negative: {', '.join(negative)}")
        return holds

    def hold(self, alarm_type: AlarmType) -> timedelta:
        return self.holds.get(alarm_type, self.default_hold)


class EscalationEffect(StrEnum):
    """What an :class:`Update` does to the alarm's escalation."""

    CONTINUE = "continue"  # carry on as scheduled (or stay stopped, once acknowledged)
    RESTART = "restart"  # start over under the new, higher severity's policy


class Raise(_Value):
    """Open a new alarm for ``condition``."""

    kind: Literal["raise"] = "raise"
    condition: Condition

    @property
    def type(self) -> AlarmType:
        return self.condition.type


class Update(_Value):
    """The alarm's condition still holds with another severity or detail."""

    kind: Literal["update"] = "update"
    alarm_id: int
    type: AlarmType
    severity: Severity
    detail: AlarmDetail | None
    escalation: EscalationEffect


class ClearSeen(_Value):
    """The alarm's condition is absent: start the hold time."""

    kind: Literal["clear_seen"] = "clear_seen"
    alarm_id: int
    type: AlarmType


class CancelClear(_Value):
    """The condition came back during the hold time: the alarm carries on unchanged."""

    kind: Literal["cancel_clear"] = "cancel_clear"
    alarm_id: int
    type: AlarmType


class Resolve(_Value):
    """The condition stayed absent for the hold time: the alarm resolves (via AUTO)."""

    kind: Literal["resolve"] = "resolve"
    alarm_id: int
    type: AlarmType


Change = Annotated[Raise | Update | ClearSeen | CancelClear | Resolve, Field(discriminator="kind")]
_TYPE_ORDER: Final = {alarm_type: index for index, alarm_type in enumerate(AlarmType)}


def reconcile(
    active: Mapping[AlarmType, Alarm],
    conditions: Sequence[Condition],
    now: datetime,
    hysteresis: Hysteresis,
    last_raised_for: Mapping[AlarmType, datetime] | None = None,
) -> tuple[Change, ...]:
    """The changes that bring one cabinet's active alarms in line with its conditions.

    ``active`` holds the cabinet's unresolved alarms by type, ``conditions`` what its
    rules report at ``now`` (at most one per type). ``last_raised_for`` holds, per type,
    the newest ``condition_since`` of the cabinet's alarms, resolved ones included; only
    the types of conditions that are ``over`` with no active alarm are looked up (see
    :func:`news_to_check`). Changes come in alarm type order, a :class:`CancelClear`
    before the :class:`Update` of the same alarm.
    """
    _check_input(active, conditions)
    raised_for = last_raised_for or {}
    holding = {condition.type: condition for condition in conditions}
    changes: list[Change] = []
    for alarm_type in sorted(holding.keys() | active.keys(), key=_TYPE_ORDER.__getitem__):
        condition = holding.get(alarm_type)
        alarm = active.get(alarm_type)
        if alarm is None:
            if (
                condition is not None
                and condition.covered_by not in holding
                and _is_news(condition, raised_for.get(alarm_type))
            ):
                changes.append(Raise(condition=condition))
        elif condition is None or _ends(alarm, condition):
            changes.extend(_clearing(alarm, now, hysteresis.hold(alarm_type)))
        else:
            changes.extend(_holding(alarm, condition))
    return tuple(changes)


def news_to_check(
    active: Mapping[AlarmType, Alarm], conditions: Sequence[Condition]
) -> frozenset[AlarmType]:
    """The types whose ``last_raised_for`` :func:`reconcile` needs: conditions that are
    over and have no active alarm (rare, so the store is asked only then)."""
    return frozenset(
        condition.type
        for condition in conditions
        if condition.over and condition.type not in active
    )


def _is_news(condition: Condition, last_raised_for: datetime | None) -> bool:
    """Whether the condition deserves a new alarm: a state always does, an event that is
    over only when no alarm was raised for its opening (or a later one) already."""
    return not condition.over or last_raised_for is None or condition.since > last_raised_for


def _ends(alarm: Alarm, condition: Condition) -> bool:
    """Whether ``condition``, over, ends ``alarm``: an alarm raised while that opening
    held, not the one raised for its news (which carries its detail). An alarm of an
    earlier opening takes the news of this one as an update instead: the door was
    opened again."""
    return (
        condition.over
        and condition.since <= alarm.condition_since
        and condition.detail != alarm.detail
    )


def _check_input(active: Mapping[AlarmType, Alarm], conditions: Sequence[Condition]) -> None:
    cabinets = {alarm.cabinet_id for alarm in active.values()} | {
        condition.cabinet_id for condition in conditions
    }
    if len(cabinets) > 1:
        raise LifecycleError(f"reconcile takes one cabinet at a time, got {sorted(cabinets)}")
    for alarm_type, alarm in active.items():
        if alarm.type is not alarm_type or not alarm.active:
            raise LifecycleError(
                f"alarm {alarm.alarm_id} ({alarm.type.value}, {alarm.state.value}) is not"
                f" the active {alarm_type.value} alarm"
            )
    seen: set[AlarmType] = set()
    for condition in conditions:
        if condition.type in seen:
            raise LifecycleError(
                f"cabinet {condition.cabinet_id!r} reports {condition.type.value} twice:"
                " a rule set must report at most one condition per alarm type"
            )
        seen.add(condition.type)


def _clearing(alarm: Alarm, now: datetime, hold: timedelta) -> list[Change]:
    if hold <= timedelta(0):
        return [Resolve(alarm_id=alarm.alarm_id, type=alarm.type)]
    if alarm.clear_since is None:
        return [ClearSeen(alarm_id=alarm.alarm_id, type=alarm.type)]
    if now - alarm.clear_since >= hold:
        return [Resolve(alarm_id=alarm.alarm_id, type=alarm.type)]
    return []


def _holding(alarm: Alarm, condition: Condition) -> list[Change]:
    changes: list[Change] = []
    if alarm.clear_since is not None:
        changes.append(CancelClear(alarm_id=alarm.alarm_id, type=alarm.type))
    if (condition.severity, condition.detail) != (alarm.severity, alarm.detail):
        changes.append(
            Update(
                alarm_id=alarm.alarm_id,
                type=alarm.type,
                severity=condition.severity,
                detail=condition.detail,
                escalation=escalation_effect(alarm, condition.severity),
            )
        )
    return changes


def escalation_effect(alarm: Alarm, severity: Severity) -> EscalationEffect:
    """RESTART when ``severity`` outranks the alarm's and nobody has acknowledged it yet."""
    if alarm.state is AlarmState.RAISED and severity.rank > alarm.severity.rank:
        return EscalationEffect.RESTART
    return EscalationEffect.CONTINUE


# -- transitions ----------------------------------------------------------------------------------


def raise_alarm(alarm_id: int, condition: Condition, now: datetime) -> Alarm:
    """The new alarm for ``condition``, with the id the store gave it."""
    return Alarm(
        alarm_id=alarm_id,
        cabinet_id=condition.cabinet_id,
        type=condition.type,
        severity=condition.severity,
        state=AlarmState.RAISED,
        detail=condition.detail,
        condition_since=condition.since,
        raised_at=now,
    )


def apply_change(
    alarm: Alarm, change: Update | ClearSeen | CancelClear | Resolve, now: datetime
) -> Alarm:
    """``alarm`` after ``change``; the alarm itself when the change no longer applies.

    A change decided from an older view of the alarm (another worker applied its own
    first) is harmless: a resolved alarm takes no change, clearing an alarm already
    clearing keeps the earlier time, and an update to the values it has is no change.
    """
    if change.alarm_id != alarm.alarm_id:
        raise LifecycleError(f"a change of alarm {change.alarm_id} applied to {alarm.alarm_id}")
    if not alarm.active:
        return alarm
    match change:
        case Update():
            return alarm.model_copy(update={"severity": change.severity, "detail": change.detail})
        case ClearSeen():
            return (
                alarm
                if alarm.clear_since is not None
                else alarm.model_copy(update={"clear_since": now})
            )
        case CancelClear():
            return alarm.model_copy(update={"clear_since": None})
        case Resolve():
            return resolve(alarm, None, Via.AUTO, now)


def acknowledge(alarm: Alarm, by: str, via: Via, now: datetime) -> Alarm:
    """``alarm`` acknowledged by ``by``: someone is on it, and nobody is paged again.

    Acknowledging again keeps the first acknowledgement.
    """
    if via is Via.AUTO:
        raise LifecycleError(f"alarm {alarm.alarm_id}: only a person acknowledges an alarm")
    who = _person(alarm, by, "acknowledge")
    if alarm.state is AlarmState.RESOLVED:
        raise LifecycleError(
            f"alarm {alarm.alarm_id} was resolved at {_when(alarm.resolved_at)}:"
            " a resolved alarm cannot be acknowledged"
        )
    if alarm.state is AlarmState.ACKNOWLEDGED:
        return alarm
    _not_before_raise(alarm, now, "acknowledged")
    return alarm.model_copy(
        update={
            "state": AlarmState.ACKNOWLEDGED,
            "acknowledged_at": now,
            "acknowledged_by": who,
            "acknowledged_via": via,
        }
    )


def resolve(alarm: Alarm, by: str | None, via: Via, now: datetime) -> Alarm:
    """``alarm`` resolved: by a person, or by the system (``by=None``, ``via=AUTO``).

    Resolving again keeps the first resolution. If the condition still holds, the next
    evaluation raises a new alarm (see the module docstring).
    """
    if (by is None) != (via is Via.AUTO):
        raise LifecycleError(
            f"alarm {alarm.alarm_id}: the system resolves via auto and without a name,"
            f" a person with their name (got by={by!r}, via={via.value})"
        )
    who = None if by is None else _person(alarm, by, "resolve")
    if alarm.state is AlarmState.RESOLVED:
        return alarm
    _not_before_raise(alarm, now, "resolved")
    return alarm.model_copy(
        update={
            "state": AlarmState.RESOLVED,
            "resolved_at": now,
            "resolved_by": who,
            "resolved_via": via,
        }
    )


def _person(alarm: Alarm, by: str, action: str) -> str:
    who = by.strip()
    if not who:
        raise LifecycleError(f"alarm {alarm.alarm_id}: say who is going to {action} it")
    return who


def _not_before_raise(alarm: Alarm, now: datetime, action: str) -> None:
    if now < alarm.raised_at:
        raise LifecycleError(
            f"alarm {alarm.alarm_id} cannot be {action} at {now.isoformat()},"
            f" before it was raised at {alarm.raised_at.isoformat()}"
        )


def _when(moment: datetime | None) -> str:
    return "an unknown time" if moment is None else moment.isoformat()
