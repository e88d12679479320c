"""Builders for the notifier tests: notices from registry and alarm values with
overridable defaults, and a clock that stands still until slept on.

The real servers the notifiers talk to are in :mod:`aedfleet_testing.mailbox` (SMTP) and
:mod:`tests.receiver` (the HTTP robots, webhook and SMS gateway).
"""

# Chinese text is written with full-width punctuation on purpose.
# ruff: noqa: RUF001

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from aedfleet.contract import SelftestKind
from aedfleet.registry import AccessMode, Cabinet, Language, Person, Role, SiteType
from alerting.model import (
    Alarm,
    AlarmDetail,
    AlarmState,
    AlarmType,
    DetailKey,
    NoticeKind,
    Severity,
    Via,
)
from alerting.notifiers.base import AlarmBrief, Notice, PriorPage

NOW = datetime(2025, 5, 1, 6, 3, tzinfo=UTC)  # 14:03 in Shanghai
SINCE = NOW - timedelta(minutes=12)  # 13:51 in Shanghai
BEAT = NOW - timedelta(minutes=40)  # 13:23 in Shanghai
# What the rules say about each alarm type, as they say it (alerting.rules).
DETAILS: dict[AlarmType, AlarmDetail] = {
    AlarmType.DOOR_OPENED: AlarmDetail(key=DetailKey.DOOR_OPEN, at=SINCE),
    AlarmType.AED_REMOVED: AlarmDetail(key=DetailKey.AED_OUT, at=SINCE),
    AlarmType.AED_NOT_RETURNED: AlarmDetail(key=DetailKey.AED_NOT_RETURNED, at=SINCE),
    AlarmType.POST_USE_CHECK: AlarmDetail(key=DetailKey.AED_BACK_UNCHECKED, at=SINCE),
    AlarmType.SELFTEST_FAILED: AlarmDetail(
        key=DetailKey.SELFTEST_FAILED, selftest_kind=SelftestKind.DAILY
    ),
    AlarmType.AED_NOT_READY: AlarmDetail(key=DetailKey.READY_LIGHT_OFF),
    AlarmType.FAULT_CODES: AlarmDetail(key=DetailKey.FAULT_CODES, codes=("E-42", "B3")),
    AlarmType.PADS_MISSING: AlarmDetail(key=DetailKey.NO_PADS),
    AlarmType.PADS_EXPIRING: AlarmDetail(key=DetailKey.PADS_EXPIRE, day=date(2025, 6, 1)),
    AlarmType.PADS_EXPIRED: AlarmDetail(key=DetailKey.PADS_EXPIRED, day=date(2025, 4, 30)),
    AlarmType.BATTERY_EXPIRING: AlarmDetail(key=DetailKey.BATTERY_EXPIRES, day=date(2025, 7, 1)),
    AlarmType.BATTERY_EXPIRED: AlarmDetail(key=DetailKey.BATTERY_EXPIRED, day=date(2025, 4, 1)),
    AlarmType.BATTERY_LOW: AlarmDetail(key=DetailKey.BATTERY_BELOW, percent=20),
    AlarmType.OFFLINE: AlarmDetail(key=DetailKey.LAST_HEARD, at=SINCE, heartbeat_at=BEAT),
    AlarmType.SELFTEST_MISSING: AlarmDetail(key=DetailKey.NO_SELFTEST_SINCE, at=BEAT),
    AlarmType.TEMPERATURE: AlarmDetail(key=DetailKey.BELOW_STORAGE_RANGE, low_c=0, high_c=50),
    AlarmType.POWER_LOST: AlarmDetail(key=DetailKey.ON_BACKUP_POWER, needs_heat=True),
    AlarmType.TAMPER: AlarmDetail(key=DetailKey.TAMPER_REPORTED, at=SINCE),
    AlarmType.INSPECTION_OVERDUE: AlarmDetail(key=DetailKey.INSPECTION_DUE, at=SINCE),
}


def cabinet(**overrides: Any) -> Cabinet:
    values: dict[str, Any] = {
        "cabinet_id": "sz-nanshan-0001",
        "name": "深圳湾小学 东门",
        "latitude": 22.517_614,
        "longitude": 113.944_218,
        "address": "南山区滨海大道 3001 号",
        "floor": "1",
        "indoor_description": "体育馆入口左侧，消防栓旁",
        "site_type": SiteType.SCHOOL,
        "region_code": "440305",
        "access_mode": AccessMode.PIN,
        "pads_expiry": date(2025, 6, 1),
        "battery_expiry": date(2027, 3, 1),
    }
    return Cabinet(**(values | overrides))


def alarm(
    alarm_type: AlarmType = AlarmType.DOOR_OPENED,
    severity: Severity = Severity.CRITICAL,
    **overrides: Any,
) -> Alarm:
    values: dict[str, Any] = {
        "alarm_id": 42,
        "cabinet_id": "sz-nanshan-0001",
        "type": alarm_type,
        "severity": severity,
        "state": AlarmState.RAISED,
        "detail": None,
        "condition_since": SINCE,
        "raised_at": NOW - timedelta(minutes=11),
    }
    return Alarm(**(values | overrides))


def resolved(source: Alarm) -> Alarm:
    return source.model_copy(
        update={
            "state": AlarmState.RESOLVED,
            "resolved_at": NOW,
            "resolved_by": "王芳",
            "resolved_via": Via.LINK,
        }
    )


def person(language: Language = Language.ZH, **overrides: Any) -> Person:
    values: dict[str, Any] = {
        "person_id": "p-zhang",
        "name": "张伟",
        "phone": "13800138000",
        "email": "zhang@example.cn",
        "language": language,
    }
    return Person(**(values | overrides))


def brief(
    alarm_value: Alarm | None = None,
    cabinet_value: Cabinet | None = None,
    *,
    time_zone: str | None = None,
    **links: str | None,
) -> AlarmBrief:
    found = alarm_value or alarm()
    place = cabinet_value or cabinet(cabinet_id=found.cabinet_id)
    values: dict[str, str | None] = {
        "ack_url": f"https://aed.example.cn/a/{found.alarm_id}-ack",
        "resolve_url": f"https://aed.example.cn/r/{found.alarm_id}-fix",
        "inspect_url": f"https://aed.example.cn/i/{found.cabinet_id}",
    }
    return AlarmBrief(alarm=found, cabinet=place, time_zone=time_zone, **(values | links))


def notice(
    kind: NoticeKind = NoticeKind.PAGE,
    *briefs: AlarmBrief,
    recipient: Person | None = None,
    role: Role = Role.CAPTAIN,
    escalated_after: tuple[PriorPage, ...] = (),
    notice_id: str = "42:page:0:0:captain",
) -> Notice:
    return Notice(
        notice_id=notice_id,
        kind=kind,
        recipient=recipient or person(),
        role=role,
        alarms=briefs or (brief(),),
        escalated_after=escalated_after,
        created_at=NOW,
    )


class FakeClock:
    """Stands still until slept on; records every sleep instead of waiting."""

    def __init__(self, start: datetime = NOW) -> None:
        self.current = start
        self.sleeps: list[float] = []

    def now(self) -> datetime:
        return self.current

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.current += timedelta(seconds=seconds)
