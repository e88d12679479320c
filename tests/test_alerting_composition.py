"""Composing outgoing messages from plain values: no store, no registry load, no clock.

The alarms, cabinets and people come from :mod:`tests.notify_support`; the outbox rows
(:class:`Notification`) are built here as the alarm store would hold them.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from aedfleet.registry import Role
from alerting.composition import (
    Roster,
    batches,
    brief,
    compose,
    lead_alarm,
    notice_kind,
    prior_pages,
)
from alerting.links import LinkAction, LinkSigner
from alerting.model import AlarmType, NoticeKind, Notification, NotificationState, Severity
from alerting.notifiers.base import PriorPage
from alerting.quiet import GroupingPolicy
from tests.notify_support import NOW, alarm, cabinet, person, resolved

SIGNER = LinkSigner([b"k" * 64], "https://aed.example.cn/l", timedelta(days=7))
CABINET = cabinet()
ZHANG = person(person_id="p-zhang", name="张伟")
WANG = person(person_id="p-wang", name="王芳")
LI = person(person_id="p-li", name="李强")
ROSTER = Roster(
    cabinets={CABINET.cabinet_id: CABINET},
    people={p.person_id: p for p in (ZHANG, WANG, LI)},
    assignments={
        CABINET.cabinet_id: (
            (Role.BACKUP, 0, "p-wang"),
            (Role.CAPTAIN, 0, "p-zhang"),
        )
    },
)
ZONES = {CABINET.cabinet_id: "Asia/Shanghai"}
DOOR = alarm(AlarmType.DOOR_OPENED, Severity.CRITICAL, alarm_id=42)
PADS = alarm(AlarmType.PADS_EXPIRING, Severity.WARNING, alarm_id=43)


def notification(notification_id: int, **changes: Any) -> Notification:
    values: dict[str, Any] = {
        "notification_id": notification_id,
        "page_key": f"key-{notification_id}",
        "person_id": "p-wang",
        "kind": NoticeKind.PAGE,
        "alarm_ids": (42,),
        "channel_plan": ("email",),
        "created_at": NOW - timedelta(minutes=1),
        "release_at": NOW - timedelta(minutes=1),
        "state": NotificationState.PENDING,
    }
    return Notification(**(values | changes))


def delivered(
    notification_id: int, person_id: str, minutes_ago: int, **changes: Any
) -> Notification:
    return notification(
        notification_id,
        person_id=person_id,
        state=NotificationState.DELIVERED,
        delivered_at=NOW - timedelta(minutes=minutes_ago),
        delivered_channel="email",
        **changes,
    )


def test_a_page_names_who_was_paged_before_oldest_first() -> None:
    history = (
        delivered(1, "p-zhang", minutes_ago=30),
        delivered(2, "p-li", minutes_ago=20, kind=NoticeKind.REMINDER),
        notification(4, person_id="p-li"),  # recorded, never delivered
        delivered(5, "p-li", minutes_ago=5, kind=NoticeKind.RESOLVED),
        delivered(6, "p-wang", minutes_ago=25),  # the recipient's own page
    )
    page = notification(7)
    message = compose(WANG, [page], {42: DOOR}, ROSTER, ZONES, SIGNER, history, NOW)

    notice = message.notice
    assert message.notification_ids == (7,)
    assert notice.notice_id == "n7"
    assert notice.kind is NoticeKind.PAGE
    assert notice.recipient == WANG
    assert notice.role is Role.BACKUP
    assert notice.created_at == page.created_at
    assert notice.escalated_after == (
        PriorPage(name="张伟", role=Role.CAPTAIN, paged_at=NOW - timedelta(minutes=30)),
        # Li holds no role at the cabinet: a coordinator's.
        PriorPage(name="李强", role=Role.COORDINATOR, paged_at=NOW - timedelta(minutes=20)),
    )
    [only] = notice.alarms
    assert (only.alarm, only.cabinet, only.time_zone) == (DOOR, CABINET, "Asia/Shanghai")


def test_the_links_are_signed_for_the_recipient_and_the_alarm() -> None:
    made = brief(DOOR, CABINET, "p-wang", None, SIGNER, NOW)

    assert made.ack_url is not None
    assert made.resolve_url is not None
    assert made.inspect_url is not None
    ack = SIGNER.verify(made.ack_url, NOW, LinkAction.ACKNOWLEDGE)
    assert (ack.alarm_id, ack.person_id) == (42, "p-wang")
    assert SIGNER.verify(made.resolve_url, NOW, LinkAction.RESOLVE).alarm_id == 42
    inspect = SIGNER.verify(made.inspect_url, NOW, LinkAction.RECORD_INSPECTION)
    assert inspect.cabinet_id == CABINET.cabinet_id
    assert made.time_zone is None


def test_a_reminder_grouping_two_alarms_lists_both_and_no_earlier_pages() -> None:
    history = (delivered(1, "p-wang", minutes_ago=30),)
    reminders = [
        notification(8, person_id="p-zhang", kind=NoticeKind.REMINDER, alarm_ids=(43,)),
        notification(
            9,
            person_id="p-zhang",
            kind=NoticeKind.REMINDER,
            alarm_ids=(42, 43),
            created_at=NOW - timedelta(minutes=3),
        ),
    ]
    alarms = {42: DOOR, 43: PADS}
    message = compose(ZHANG, reminders, alarms, ROSTER, ZONES, SIGNER, history, NOW)

    assert message.notification_ids == (8, 9)
    assert message.notice.notice_id == "n8-9"
    assert message.notice.kind is NoticeKind.REMINDER
    assert message.notice.role is Role.CAPTAIN
    assert [b.alarm.alarm_id for b in message.notice.alarms] == [43, 42]
    assert message.notice.created_at == NOW - timedelta(minutes=3)
    assert message.notice.escalated_after == ()
    assert lead_alarm(reminders, alarms) == PADS


def test_a_resolution_notice_has_no_links_to_act_and_no_earlier_pages() -> None:
    over = resolved(DOOR)
    history = (delivered(1, "p-zhang", minutes_ago=30),)
    notice = notification(10, kind=NoticeKind.RESOLVED)
    message = compose(WANG, [notice], {42: over}, ROSTER, ZONES, SIGNER, history, NOW)

    assert message.notice.kind is NoticeKind.RESOLVED
    assert message.notice.escalated_after == ()
    [only] = message.notice.alarms
    assert only.alarm == over
    assert (only.ack_url, only.resolve_url) == (None, None)
    assert only.inspect_url is not None


def test_mixed_kinds_make_a_page_and_an_unknown_alarm_is_left_out() -> None:
    mixed = [
        notification(11, alarm_ids=(99, 42)),
        notification(12, kind=NoticeKind.REMINDER, alarm_ids=(43,)),
    ]
    message = compose(WANG, mixed, {42: DOOR, 43: PADS}, ROSTER, ZONES, SIGNER, (), NOW)

    assert message.notice.kind is notice_kind(mixed) is NoticeKind.PAGE
    assert [b.alarm.alarm_id for b in message.notice.alarms] == [42, 43]


def test_notifications_for_no_known_alarm_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"notifications \[13\] speak for no known alarm"):
        lead_alarm([notification(13, alarm_ids=(99,))], {42: DOOR})


def test_prior_pages_name_each_person_and_role_once_at_their_latest_page() -> None:
    history = (
        delivered(1, "p-zhang", minutes_ago=30),
        delivered(2, "p-li", minutes_ago=20),
        delivered(3, "p-zhang", minutes_ago=10, kind=NoticeKind.REMINDER),
        delivered(4, "p-gone", minutes_ago=5),  # left the registry since
    )
    # Zhang's latest page is newer than Li's: oldest first puts Li first.
    assert prior_pages(DOOR, "p-wang", history, ROSTER) == (
        PriorPage(name="李强", role=Role.COORDINATOR, paged_at=NOW - timedelta(minutes=20)),
        PriorPage(name="张伟", role=Role.CAPTAIN, paged_at=NOW - timedelta(minutes=10)),
    )


def test_batches_keep_resolutions_apart_from_pages_and_put_urgent_first() -> None:
    pending = [
        notification(20, person_id="p-zhang", kind=NoticeKind.REMINDER, alarm_ids=(43,)),
        notification(21, person_id="p-zhang", kind=NoticeKind.RESOLVED, alarm_ids=(43,)),
        notification(22, person_id="p-zhang", alarm_ids=(42,)),
        notification(23, person_id="p-zhang", alarm_ids=()),  # speaks for nothing now
    ]
    grouped = batches(pending, {42: DOOR, 43: PADS}, GroupingPolicy(window=timedelta(0)), NOW)

    assert [batch.notification_ids for batch in grouped] == [(22,), (20,), (21,)]
    assert [batch.urgent for batch in grouped] == [True, False, False]
