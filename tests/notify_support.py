"""Builders for the notifier tests: notices from registry and alarm values with
overridable defaults, and a clock that stands still until slept on.

The real servers the notifiers talk to are in :mod:`tests.mailbox` (SMTP) and
:mod:`tests.receiver` (the HTTP robots, webhook and SMS gateway).
"""

# Chinese text is written with full-width punctuation on purpose.
# ruff: noqa: RUF001

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from alerting.model import Alarm, AlarmState, AlarmType, NoticeKind, Severity, Via
from alerting.notifiers.base import AlarmBrief, Notice, PriorPage
from ingest.registry.models import AccessMode, Cabinet, Language, Person, Role, SiteType

NOW = datetime(2025, 5, 1, 6, 3, tzinfo=UTC)  # 14:03 in Shanghai


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
        "detail": "",
        "condition_since": NOW - timedelta(minutes=12),
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
    alarm_value: Alarm | None = None, cabinet_value: Cabinet | None = None, **links: str | None
) -> AlarmBrief:
    found = alarm_value or alarm()
    place = cabinet_value or cabinet(cabinet_id=found.cabinet_id)
    values: dict[str, str | None] = {
        "ack_url": f"https://aed.example.cn/a/{found.alarm_id}-ack",
        "resolve_url": f"https://aed.example.cn/r/{found.alarm_id}-fix",
        "inspect_url": f"https://aed.example.cn/i/{found.cabinet_id}",
    }
    return AlarmBrief(alarm=found, cabinet=place, **(values | links))


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
