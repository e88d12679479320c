"""The values alerting is about: conditions, alarms, pages and their vocabularies.

Every component of alerting speaks these types; none of them carries I/O.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, model_validator

from aedfleet.contract import CabinetId, FaultCode, SelftestKind, UtcTimestamp
from aedfleet.registry import PersonId, Role


class Severity(StrEnum):
    """How bad; the order of the members is the order of urgency (see :func:`rank`)."""

    INFO = "info"
    WARNING = "warning"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]


_SEVERITY_RANK = {severity: rank for rank, severity in enumerate(Severity)}


class AlarmType(StrEnum):
    """What is wrong with a cabinet; at most one active alarm per (cabinet, type)."""

    DOOR_OPENED = "door_opened"
    AED_REMOVED = "aed_removed"
    AED_NOT_RETURNED = "aed_not_returned"
    POST_USE_CHECK = "post_use_check"
    SELFTEST_FAILED = "selftest_failed"
    AED_NOT_READY = "aed_not_ready"
    FAULT_CODES = "fault_codes"
    PADS_MISSING = "pads_missing"
    PADS_EXPIRING = "pads_expiring"
    PADS_EXPIRED = "pads_expired"
    BATTERY_EXPIRING = "battery_expiring"
    BATTERY_EXPIRED = "battery_expired"
    BATTERY_LOW = "battery_low"
    OFFLINE = "offline"
    SELFTEST_MISSING = "selftest_missing"
    TEMPERATURE = "temperature"
    POWER_LOST = "power_lost"
    TAMPER = "tamper"
    INSPECTION_OVERDUE = "inspection_overdue"


class _Value(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


Note = Annotated[str, Field(max_length=500)]


class DetailKey(StrEnum):
    """What a rule found beyond its alarm type; the comment names the values it needs."""

    DOOR_OPEN = "door_open"  # at: since when
    DOOR_OPENED_AND_CLOSED = "door_opened_and_closed"  # at: when it was opened
    AED_OUT = "aed_out"  # at: since when
    AED_TAKEN_AND_RETURNED = "aed_taken_and_returned"  # at: when it was taken
    AED_NOT_RETURNED = "aed_not_returned"  # at: when it was taken
    AED_BACK_UNCHECKED = "aed_back_unchecked"  # at: when it came back
    SELFTEST_FAILED = "selftest_failed"  # selftest_kind, when known
    FAULT_CODES = "fault_codes"  # codes
    READY_LIGHT_OFF = "ready_light_off"
    BATTERY_BELOW = "battery_below"  # percent: the model's minimum
    NO_PADS = "no_pads"
    PADS_EXPIRE = "pads_expire"  # day
    PADS_EXPIRED = "pads_expired"  # day
    BATTERY_EXPIRES = "battery_expires"  # day
    BATTERY_EXPIRED = "battery_expired"  # day
    LAST_HEARD = "last_heard"  # at; heartbeat_at unless the cabinet said it went offline
    NEVER_HEARD = "never_heard"
    NO_SELFTEST_SINCE = "no_selftest_since"  # at: the last self-test
    NO_SELFTEST_YET = "no_selftest_yet"
    ABOVE_STORAGE_RANGE = "above_storage_range"  # low_c, high_c
    BELOW_STORAGE_RANGE = "below_storage_range"  # low_c, high_c
    ON_BACKUP_POWER = "on_backup_power"  # needs_heat
    TAMPER_REPORTED = "tamper_reported"  # at
    INSPECTION_DUE = "inspection_due"  # at: when it fell due


_NEEDS: dict[DetailKey, tuple[str, ...]] = {
    DetailKey.DOOR_OPEN: ("at",),
    DetailKey.DOOR_OPENED_AND_CLOSED: ("at",),
    DetailKey.AED_OUT: ("at",),
    DetailKey.AED_TAKEN_AND_RETURNED: ("at",),
    DetailKey.AED_NOT_RETURNED: ("at",),
    DetailKey.AED_BACK_UNCHECKED: ("at",),
    DetailKey.FAULT_CODES: ("codes",),
    DetailKey.BATTERY_BELOW: ("percent",),
    DetailKey.PADS_EXPIRE: ("day",),
    DetailKey.PADS_EXPIRED: ("day",),
    DetailKey.BATTERY_EXPIRES: ("day",),
    DetailKey.BATTERY_EXPIRED: ("day",),
    DetailKey.LAST_HEARD: ("at",),
    DetailKey.NO_SELFTEST_SINCE: ("at",),
    DetailKey.ABOVE_STORAGE_RANGE: ("low_c", "high_c"),
    DetailKey.BELOW_STORAGE_RANGE: ("low_c", "high_c"),
    DetailKey.TAMPER_REPORTED: ("at",),
    DetailKey.INSPECTION_DUE: ("at",),
}


class AlarmDetail(_Value):
    """The facts behind a condition, without words: a key and the values it needs.

    The rules stay free of any language; :mod:`alerting.phrasing` says a detail in the
    reader's language, with its instants in the cabinet's time zone. Stored as this
    model's JSON (``exclude_defaults``).
    """

    key: DetailKey
    at: UtcTimestamp | None = None
    heartbeat_at: UtcTimestamp | None = None
    day: date | None = None
    selftest_kind: SelftestKind | None = None
    codes: tuple[FaultCode, ...] = Field(default=(), max_length=32)
    percent: float | None = None
    low_c: float | None = None
    high_c: float | None = None
    needs_heat: bool = False

    @model_validator(mode="after")
    def _has_what_its_key_needs(self) -> AlarmDetail:
        missing = [name for name in _NEEDS.get(self.key, ()) if getattr(self, name) in (None, ())]
        if missing:
            raise ValueError(f"a {self.key} detail needs {', '.join(missing)}")
        return self


class Condition(_Value):
    """A rule's finding that something is wrong at a cabinet right now.

    ``since`` is when the condition began as far as the facts tell (the device time of
    the message that showed it, or the moment a deadline passed), not when it was seen.
    """

    cabinet_id: CabinetId
    type: AlarmType
    severity: Severity
    since: UtcTimestamp
    detail: AlarmDetail | None = None
    blocks_readiness: bool = Field(
        default=True, description="False for advance notices: the AED is still usable"
    )
    over: bool = Field(
        default=False,
        description="The event is over (the door closed again, the AED put back): the "
        "condition is news of it, not a state that holds (see alerting.lifecycle)",
    )
    covered_by: AlarmType | None = Field(
        default=None,
        description="Another condition of the same fault, reported with this one, that "
        "speaks for it (the ready light off after a failed self-test): no alarm of its own "
        "is raised for it, and one raised before carries on",
    )


class AlarmState(StrEnum):
    RAISED = "raised"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class Via(StrEnum):
    """How someone acted on an alarm."""

    LINK = "link"
    CLI = "cli"
    API = "api"
    AUTO = "auto"


class Alarm(_Value):
    alarm_id: int
    cabinet_id: CabinetId
    type: AlarmType
    severity: Severity
    state: AlarmState
    detail: AlarmDetail | None = None
    condition_since: UtcTimestamp
    raised_at: UtcTimestamp
    # Hysteresis: when the condition was first seen clear since it last held.
    clear_since: UtcTimestamp | None = None
    acknowledged_at: UtcTimestamp | None = None
    acknowledged_by: str | None = None
    acknowledged_via: Via | None = None
    resolved_at: UtcTimestamp | None = None
    resolved_by: str | None = None
    resolved_via: Via | None = None

    @property
    def active(self) -> bool:
        return self.state is not AlarmState.RESOLVED


class NoticeKind(StrEnum):
    """Why a person is messaged."""

    PAGE = "page"  # an alarm needs action
    REMINDER = "reminder"  # still open (warning-level repeat, inspection reminders)
    RESOLVED = "resolved"  # the condition cleared or someone resolved it
    DIGEST = "digest"  # the daily round-up of info-level alarms


class Page(_Value):
    """One decision of the escalation policy: message this role about this alarm.

    ``key`` identifies the decision across restarts (alarm, round, step), so the store
    can refuse to record the same page twice.
    """

    alarm_id: int
    role: Role
    kind: NoticeKind
    round: int = Field(ge=0)
    step: int = Field(ge=0)

    @property
    def key(self) -> str:
        return f"{self.alarm_id}:{self.kind}:{self.round}:{self.step}:{self.role}"


class Recipient(_Value):
    person_id: PersonId
    role: Role
    rank: int = 0


class Silence(_Value):
    """A maintenance window: matching alarms are recorded but nobody is paged.

    Empty matchers match everything; a silence must name at least one of them.
    """

    silence_id: int
    cabinet_id: CabinetId | None = None
    region_code: str | None = None
    alarm_type: AlarmType | None = None
    starts_at: UtcTimestamp
    ends_at: UtcTimestamp
    reason: Note
    created_by: str

    def covers(self, at: datetime) -> bool:
        return self.starts_at <= at < self.ends_at


class AlarmEventKind(StrEnum):
    """What happened to an alarm; its history is the sequence of these."""

    RAISED = "raised"
    SEVERITY_CHANGED = "severity_changed"
    DETAIL_CHANGED = "detail_changed"
    CLEAR_SEEN = "clear_seen"
    CLEAR_CANCELLED = "clear_cancelled"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class AlarmEvent(_Value):
    """One entry of an alarm's history; ``by`` is None for what the system did itself."""

    event_id: int
    alarm_id: int
    kind: AlarmEventKind
    at: UtcTimestamp
    by: str | None = None
    via: Via
    severity: Severity
    detail: AlarmDetail | None = None


class NotificationState(StrEnum):
    PENDING = "pending"  # recorded, waiting for its release time or a delivery
    DELIVERED = "delivered"
    FAILED = "failed"  # every channel of the plan failed for good
    CANCELLED = "cancelled"  # every alarm it was about was acknowledged or resolved first


class DeliveryAttempt(_Value):
    channel: str
    at: UtcTimestamp
    ok: bool
    error: str | None = None


class Notification(_Value):
    """One message to one person in the outbox: recorded first, delivered afterwards.

    ``page_key`` with ``person_id`` is unique, so a decision recorded once is never
    recorded (nor delivered) again, even after a crash between deciding and sending.
    ``alarm_ids`` are the alarms it still speaks for; ``withdrawn_alarm_ids`` those
    acknowledged or resolved while it waited (quiet hours, grouping).
    """

    notification_id: int
    page_key: str
    person_id: PersonId
    kind: NoticeKind
    alarm_ids: tuple[int, ...]
    withdrawn_alarm_ids: tuple[int, ...] = ()
    channel_plan: tuple[str, ...]
    created_at: UtcTimestamp
    release_at: UtcTimestamp
    state: NotificationState
    delivered_at: UtcTimestamp | None = None
    delivered_channel: str | None = None
    failed_at: UtcTimestamp | None = None
    error: str | None = None
    attempts: tuple[DeliveryAttempt, ...] = ()


class Inspection(_Value):
    """A person's monthly (or post-use) check of a cabinet, as the checklist records it.

    The expiry dates are read off the pads and the battery; None means not checked.
    """

    cabinet_id: CabinetId
    person_id: PersonId
    at: UtcTimestamp
    ready_light_ok: bool
    pads_expiry: date | None
    battery_expiry: date | None
    cabinet_intact_and_clean: bool
    alarm_works: bool
    note: Note = ""
    photo_url: HttpUrl | None = None

    @property
    def passed(self) -> bool:
        return self.ready_light_ok and self.cabinet_intact_and_clean and self.alarm_works


class InspectionResult(_Value):
    """What recording an inspection did: its id, and which registry expiry dates it changed."""

    inspection_id: int
    pads_expiry_updated: bool
    battery_expiry_updated: bool
