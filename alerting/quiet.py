"""Quiet hours, grouping and the daily digest: when a notice may reach a person.

Three pure decisions, each with ``now`` passed in:

* :func:`release_time` - the earliest moment a notice may be sent. Each person may have
  :class:`QuietHours` (local wall-clock times in an IANA zone, e.g. 22:00-07:00
  Asia/Shanghai; a window may cross midnight). A warning or info notice that falls in
  them waits for their end. **Critical and high notices are never held by quiet hours**:
  a collapsed person next to an AED does not wait for morning, nor does an AED that
  stopped being usable overnight.
* :func:`group` - what to send now, and to whom as one message. A person's due
  non-urgent notices go out together once the oldest of them has waited the
  :class:`GroupingPolicy` window, so several alarms for one captain within five minutes
  make one message, not five. **Critical and high notices are never delayed by
  grouping**: each goes alone as soon as it is due.
* :func:`next_digest_at` - when the daily round-up of info-level alarms goes out
  (08:30 local by default), moved to the end of quiet hours if it falls inside them.

Wall-clock times are turned into instants with :mod:`zoneinfo`, so the rules hold
across daylight-saving changes even though China has none today (it had some until
1991, and captains abroad may not be in China). A wall time that occurs twice (clocks
go back) means its first occurrence after the moment in question; a wall time that
never occurs (clocks jump forward over it) means the jump itself. Membership in quiet
hours is judged by the wall clock alone, so it follows the clock the person lives by.

Configuration is :class:`QuietSettings`: a default, per-person overrides keyed by
person id (``"off"`` for someone who wants every notice at once), the grouping window
and the digest time. Pydantic reports a bad value with its key, e.g.
``overrides.p-7.time_zone``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, time, timedelta
from typing import Annotated, Any, Final
from zoneinfo import ZoneInfo

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from aedfleet.contract import TimeZoneName, UtcTimestamp
from aedfleet.registry import PersonId
from alerting.model import NoticeKind, Severity

URGENT: Final = frozenset({Severity.CRITICAL, Severity.HIGH})
"""Severities that neither quiet hours nor grouping may delay."""

DEFAULT_TIME_ZONE: Final = "Asia/Shanghai"
DEFAULT_DIGEST_TIME: Final = time(8, 30)
DEFAULT_GROUPING_WINDOW: Final = timedelta(minutes=5)
OFF: Final = "off"


def is_urgent(severity: Severity) -> bool:
    return severity in URGENT


def _naive_time(value: time) -> time:
    if value.tzinfo is not None:
        raise ValueError("give a local wall-clock time without an offset; the zone is separate")
    return value


LocalTime = Annotated[
    time, AfterValidator(_naive_time), Field(description="Local wall-clock time, e.g. 22:00")
]


class _Value(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class QuietHours(_Value):
    """A daily window of local wall-clock time in which non-urgent notices wait.

    ``start`` is inside the window, ``end`` is not; ``start > end`` crosses midnight.
    """

    start: LocalTime = Field(description="Local wall-clock time the window starts, e.g. 22:00")
    end: LocalTime = Field(
        description="Local wall-clock time the window ends, e.g. 07:00; before start, the "
        "window crosses midnight"
    )
    time_zone: TimeZoneName = Field(
        default=DEFAULT_TIME_ZONE,
        description="IANA zone of start and end, and of the person's daily digest",
    )

    @model_validator(mode="after")
    def _check(self) -> QuietHours:
        if self.start == self.end:
            raise ValueError(
                f"start and end are both {self.start.isoformat()}: that is no window;"
                f" to disable quiet hours use {OFF!r}"
            )
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)

    def contains(self, at: datetime) -> bool:
        """Whether the person's wall clock at ``at`` reads a time inside the window."""
        wall = at.astimezone(self.zone).time()
        if self.start < self.end:
            return self.start <= wall < self.end
        return wall >= self.start or wall < self.end

    def end_after(self, at: datetime) -> datetime:
        """The first moment after ``at`` at which the window ends (meaningful when inside it)."""
        return _next_wall_instant(at, self.end, self.zone)


def _off_means_none(value: Any) -> Any:
    # TOML has no null, so "off" is how a file says "no quiet hours".
    if isinstance(value, str) and value.strip().lower() in {OFF, "none"}:
        return None
    return value


OptionalQuietHours = Annotated[QuietHours | None, BeforeValidator(_off_means_none)]


class GroupingPolicy(_Value):
    window: timedelta = Field(
        default=DEFAULT_GROUPING_WINDOW,
        ge=timedelta(0),
        le=timedelta(hours=1),
        description="How long a non-urgent notice waits for others to the same person",
    )


class QuietSettings(_Value):
    """Quiet hours, grouping and digest configuration of the notification service."""

    default: OptionalQuietHours = Field(
        default=QuietHours(start=time(22, 0), end=time(7, 0), time_zone=DEFAULT_TIME_ZONE),
        description="Quiet hours of everyone without an override, in which warning and info "
        "notices wait; 'off' for none",
    )
    overrides: dict[PersonId, OptionalQuietHours] = Field(
        default_factory=dict, description="Per-person quiet hours ('off' for none)"
    )
    grouping: GroupingPolicy = Field(
        default=GroupingPolicy(),
        description="How warning and info notices to one person are combined into one message",
    )
    digest_time: LocalTime = Field(
        default=DEFAULT_DIGEST_TIME,
        description="Local wall-clock time the daily digest of info alarms goes out; at the "
        "end of quiet hours when inside them",
    )
    time_zone: TimeZoneName = Field(
        default=DEFAULT_TIME_ZONE, description="Digest zone for people without quiet hours"
    )

    def quiet_hours_for(self, person_id: str) -> QuietHours | None:
        if person_id in self.overrides:
            return self.overrides[person_id]
        return self.default

    def next_digest_for(self, person_id: str, now: datetime) -> datetime:
        """This person's next digest, in the zone of their quiet hours if they have any."""
        quiet = self.quiet_hours_for(person_id)
        time_zone = quiet.time_zone if quiet is not None else self.time_zone
        return next_digest_at(self.digest_time, time_zone, now, quiet)


def release_time(
    created_at: datetime, severity: Severity, quiet: QuietHours | None, now: datetime
) -> datetime:
    """The earliest moment a notice may be sent; at or before ``now`` means send now.

    The notice is judged at the later of ``created_at`` and ``now``, so recomputing a
    pending notice after a person's quiet hours changed holds it by the new ones. Urgent
    severities (:data:`URGENT`) are never held.
    """
    moment = max(created_at, now)
    if is_urgent(severity) or quiet is None or not quiet.contains(moment):
        return moment
    return quiet.end_after(moment)


class PendingNotice(_Value):
    """A notification waiting to be sent, as the store keeps it."""

    notification_id: int
    person_id: PersonId
    alarm_id: int
    severity: Severity
    kind: NoticeKind
    created_at: UtcTimestamp
    release_at: UtcTimestamp

    @property
    def urgent(self) -> bool:
        return is_urgent(self.severity)


class Batch(_Value):
    """Notices to send now to one person as one message, oldest first."""

    person_id: PersonId
    notices: tuple[PendingNotice, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> Batch:
        strangers = {n.person_id for n in self.notices} - {self.person_id}
        if strangers:
            raise ValueError(f"a batch for {self.person_id} holds notices for {sorted(strangers)}")
        return self

    @property
    def urgent(self) -> bool:
        return any(notice.urgent for notice in self.notices)

    @property
    def severity(self) -> Severity:
        return max((notice.severity for notice in self.notices), key=lambda s: s.rank)

    @property
    def notification_ids(self) -> tuple[int, ...]:
        return tuple(notice.notification_id for notice in self.notices)

    @property
    def alarm_ids(self) -> tuple[int, ...]:
        """Distinct alarms, in the order of their first notice."""
        return tuple(dict.fromkeys(notice.alarm_id for notice in self.notices))


def _oldest_first(notice: PendingNotice) -> tuple[datetime, int]:
    return (notice.created_at, notice.notification_id)


def group(
    pending: Sequence[PendingNotice], policy: GroupingPolicy, now: datetime
) -> tuple[Batch, ...]:
    """The messages to send at ``now``: urgent notices alone, then one batch per person.

    A notice is due when its ``release_at`` has come. Each due urgent notice is its own
    batch. A person's due non-urgent notices form one batch once the oldest of them was
    created at least ``policy.window`` ago; until then they wait, and whatever else
    becomes due for that person meanwhile joins them. A notice held by quiet hours has
    waited all night, so everything held for a person goes out together when the quiet
    period ends. Notices that are not in a returned batch stay pending.
    """
    _refuse_duplicates(pending)
    due = sorted((notice for notice in pending if notice.release_at <= now), key=_oldest_first)
    alone = [Batch(person_id=n.person_id, notices=(n,)) for n in due if n.urgent]
    by_person: dict[str, list[PendingNotice]] = {}
    for notice in due:
        if not notice.urgent:
            by_person.setdefault(notice.person_id, []).append(notice)
    together = [
        Batch(person_id=person_id, notices=tuple(notices))
        for person_id, notices in by_person.items()
        if now - notices[0].created_at >= policy.window
    ]
    return tuple(alone) + tuple(sorted(together, key=lambda batch: _oldest_first(batch.notices[0])))


def _refuse_duplicates(pending: Iterable[PendingNotice]) -> None:
    seen: set[int] = set()
    for notice in pending:
        if notice.notification_id in seen:
            raise ValueError(f"notification {notice.notification_id} is pending twice")
        seen.add(notice.notification_id)


def next_digest_at(
    digest_time: time, time_zone: str, now: datetime, quiet: QuietHours | None = None
) -> datetime:
    """The first moment after ``now`` at which the local clock in ``time_zone`` reads
    ``digest_time``; if that moment is in ``quiet``, the end of that quiet period.

    Strictly after ``now``, so a scheduler that asks again at the moment it sent a digest
    is given the next day's.
    """
    moment = _next_wall_instant(now, _naive_time(digest_time), ZoneInfo(time_zone))
    if quiet is not None and quiet.contains(moment):
        return quiet.end_after(moment)
    return moment


def _next_wall_instant(after: datetime, wall_time: time, zone: ZoneInfo) -> datetime:
    """The first instant after ``after`` whose local wall clock reads ``wall_time``.

    Three local days are enough: some wall time of the day after tomorrow always lies
    after ``after``, whatever the zone's transitions.
    """
    if after.tzinfo is None:
        raise ValueError("moments must be timezone-aware")
    local_date = after.astimezone(zone).date()
    for day_offset in range(-1, 3):
        wall = datetime.combine(local_date + timedelta(days=day_offset), wall_time)
        for instant in _instants_of(wall, zone):
            if instant > after:
                return instant
    raise AssertionError(f"no {wall_time} after {after} in {zone}")  # pragma: no cover


def _instants_of(wall: datetime, zone: ZoneInfo) -> Iterator[datetime]:
    """The UTC instants at which the wall clock reads ``wall`` (naive), in order.

    One normally; two when the clocks go back over it; none when they jump forward over
    it, in which case the jump itself stands in for it.
    """
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    second = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    if _wall_of(first, zone) == wall:
        yield first
        if second != first:
            yield second
        return
    # In a gap, fold=1 reads the wall time with the offset from before the jump, fold=0
    # with the one after: the jump lies between them.
    yield _jump_between(second, first, zone)


def _wall_of(instant: datetime, zone: ZoneInfo) -> datetime:
    return instant.astimezone(zone).replace(tzinfo=None)


def _jump_between(before: datetime, after: datetime, zone: ZoneInfo) -> datetime:
    """The instant in ``(before, after]`` at which the zone's offset changes.

    Offsets change on whole seconds, so bisecting whole seconds finds it exactly.
    """
    offset_before = before.astimezone(zone).utcoffset()
    low = int(before.timestamp())
    high = int(after.timestamp())
    while high - low > 1:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, UTC).astimezone(zone).utcoffset() == offset_before:
            low = middle
        else:
            high = middle
    return datetime.fromtimestamp(high, UTC)
