"""The values alerting is about: conditions, alarms, pages and their vocabularies.

Every component of alerting speaks these types; none of them carries I/O.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from aedfleet.contract import CabinetId, UtcTimestamp
from ingest.registry.models import PersonId, Role


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


Detail = Annotated[str, Field(max_length=500)]


class Condition(_Value):
    """A rule's finding that something is wrong at a cabinet right now.

    ``since`` is when the condition began as far as the facts tell (the device time of
    the message that showed it, or the moment a deadline passed), not when it was seen.
    """

    cabinet_id: CabinetId
    type: AlarmType
    severity: Severity
    since: UtcTimestamp
    detail: Detail = ""
    blocks_readiness: bool = Field(
        default=True, description="False for advance notices: the AED is still usable"
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
    detail: Detail = ""
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
    reason: Detail
    created_by: str

    def covers(self, at: datetime) -> bool:
        return self.starts_at <= at < self.ends_at
