"""Silences: maintenance windows during which matching alarms are recorded but page nobody.

A :class:`~alerting.model.Silence` names up to three matchers (a cabinet, a district or
region code, an alarm type) and a time window ``[starts_at, ends_at)``. It applies to an
alarm when every matcher it names matches; a matcher it leaves empty matches anything,
and it must name at least one, so nobody can silence the whole fleet by accident.

One rule overrides every silence: **an opened door or a removed AED is never silenced**
(:data:`NEVER_SILENCED`). Those alarms mean that someone may be using the AED on a
person in cardiac arrest right now, so they always page and dispatch is never
suppressed, even in a window that names the cabinet and the alarm type, and whatever
severity a rule gave them (a rule that rates one below critical opens no loophole).
:func:`silenced` enforces the rule at match time, and :class:`SilenceRequest` refuses a
silence that names one of those types, so nobody believes they silenced what still pages.

The region matcher compares the cabinet's registry ``region_code`` exactly: codes are
free-form strings in the registry, so guessing a hierarchy from them (440300 covering
440305) would silence cabinets nobody named.

Accepting a silence is two steps. :class:`SilenceRequest` validates what a person
submits (shape, matchers, window order, a reason); :func:`accept` then applies what
needs the clock and the operator's limits (:class:`SilenceLimits`: the longest window,
no window already over) and fixes the start, giving an :class:`AcceptedSilence`. The
store records that with who made it (from authentication, never from the request) and
gives it its id. Both steps report problems as ``ValueError``: pydantic's
``ValidationError`` from the first, :class:`SilenceError` from the second.

Everything here is pure: ``now`` is passed in.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Annotated, Final

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from aedfleet.contract import CabinetId, UtcTimestamp
from alerting.errors import AlertingError
from alerting.model import AlarmType, Severity, Silence

NEVER_SILENCED: Final = frozenset({AlarmType.DOOR_OPENED, AlarmType.AED_REMOVED})
"""Alarm types no silence can hold back: the AED may be in use on a patient right now."""

DEFAULT_MAX_DURATION: Final = timedelta(days=30)

RegionCode = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=32)]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)]


class SilenceError(AlertingError, ValueError):
    """A silence request that is well formed but cannot be accepted now."""


def never_silenced(alarm_type: AlarmType) -> bool:
    """True for the alarm types that page through every silence (see :data:`NEVER_SILENCED`)."""
    return alarm_type in NEVER_SILENCED


def silenced(
    silences: Iterable[Silence],
    cabinet_id: str,
    region_code: str,
    alarm_type: AlarmType,
    severity: Severity,
    now: datetime,
) -> Silence | None:
    """The silence that keeps this alarm from paging at ``now``, or None if it must page.

    ``region_code`` is the cabinet's registry region ('' when it has none, which no
    region matcher matches). When several silences apply, the one that ends last wins,
    so the caller can say how long the alarm stays quiet; ties go to the lowest id.

    ``severity`` deliberately widens nothing: :data:`NEVER_SILENCED` types page at any
    severity, and no silence distinguishes severities; it is taken so that every caller
    states the alarm in full and the rule reads the same wherever it is applied.
    """
    if never_silenced(alarm_type):
        return None
    applying = [
        silence
        for silence in silences
        if silence.covers(now) and _matches(silence, cabinet_id, region_code, alarm_type)
    ]
    if not applying:
        return None
    return min(applying, key=lambda silence: (-silence.ends_at.timestamp(), silence.silence_id))


def _matches(silence: Silence, cabinet_id: str, region_code: str, alarm_type: AlarmType) -> bool:
    if silence.cabinet_id is not None and silence.cabinet_id != cabinet_id:
        return False
    if silence.region_code is not None and silence.region_code != region_code:
        return False
    return silence.alarm_type is None or silence.alarm_type is alarm_type


class SilenceLimits(BaseModel):
    """What an operator allows: configuration, validated like any other settings."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_duration: timedelta = Field(
        default=DEFAULT_MAX_DURATION,
        gt=timedelta(0),
        description="Longest silence; a forgotten window must not hide a cabinet for months",
    )


class SilenceRequest(BaseModel):
    """What a person submits to silence alarms (API body, CLI flags).

    ``starts_at`` left out means "from now" (fixed by :func:`accept`).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    cabinet_id: CabinetId | None = None
    region_code: RegionCode | None = None
    alarm_type: AlarmType | None = None
    starts_at: UtcTimestamp | None = None
    ends_at: UtcTimestamp
    reason: Reason

    @model_validator(mode="after")
    def _check(self) -> SilenceRequest:
        if self.cabinet_id is None and self.region_code is None and self.alarm_type is None:
            raise ValueError(
                "a silence needs at least one of cabinet_id, region_code or alarm_type;"
                " one without any would silence the whole fleet"
            )
        if self.alarm_type is not None and never_silenced(self.alarm_type):
            raise ValueError(
                f"{self.alarm_type.value} alarms are never silenced: an opened cabinet may"
                " mean the AED is in use on a patient, so it always pages"
            )
        if self.starts_at is not None and self.ends_at <= self.starts_at:
            raise ValueError(
                f"ends_at ({self.ends_at.isoformat()}) must be after"
                f" starts_at ({self.starts_at.isoformat()})"
            )
        if not self.reason:
            raise ValueError("reason is required: say why nobody should be paged")
        return self


class AcceptedSilence(BaseModel):
    """A request that may be stored now: its start fixed, every limit checked."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cabinet_id: CabinetId | None
    region_code: RegionCode | None
    alarm_type: AlarmType | None
    starts_at: UtcTimestamp
    ends_at: UtcTimestamp
    reason: Reason


def accept(request: SilenceRequest, *, limits: SilenceLimits, now: datetime) -> AcceptedSilence:
    """The request with its start fixed (``now`` if it gave none), or :class:`SilenceError`."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    starts_at = request.starts_at if request.starts_at is not None else now
    # The request already ends after its own start; ending after now is what remains.
    if request.ends_at <= now:
        raise SilenceError(
            f"ends_at ({request.ends_at.isoformat()}) is not in the future; the window is over"
        )
    duration = request.ends_at - starts_at
    if duration > limits.max_duration:
        raise SilenceError(
            f"a silence may last at most {_describe(limits.max_duration)};"
            f" this one would last {_describe(duration)}"
        )
    return AcceptedSilence(
        cabinet_id=request.cabinet_id,
        region_code=request.region_code,
        alarm_type=request.alarm_type,
        starts_at=starts_at,
        ends_at=request.ends_at,
        reason=request.reason,
    )


def _describe(duration: timedelta) -> str:
    days, remainder = divmod(int(duration.total_seconds()), 86_400)
    hours, remainder = divmod(remainder, 3_600)
    minutes, seconds = divmod(remainder, 60)
    parts = [
        f"{amount} {unit}{'' if amount == 1 else 's'}"
        for amount, unit in (
            (days, "day"),
            (hours, "hour"),
            (minutes, "minute"),
            (seconds, "second"),
        )
        if amount
    ]
    return " ".join(parts) or "0 seconds"
