"""Composing outgoing messages: which notices go together, and what each message says.

Pure: the engine reads the outbox, the alarms, the registry and the cabinets' time
zones from its stores and passes them in, so a message can be composed (and tested)
without a store.

* :func:`batches` - the released notifications grouped into messages: pages and
  reminders together, resolution notices and digests each on their own (their own
  templates, no acknowledge links), urgent batches first.
* :func:`compose` - one message to one person: a :class:`~alerting.notifiers.base.Notice`
  with a brief (and signed links) for each alarm and, for a page, who was paged about
  its lead alarm before (:func:`prior_pages`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from aedfleet.registry import Cabinet, Person, Role
from alerting.links import LinkAction, LinkSigner
from alerting.model import Alarm, NoticeKind, Notification, NotificationState, Severity
from alerting.notifiers.base import AlarmBrief, Notice, PriorPage
from alerting.quiet import Batch, GroupingPolicy, PendingNotice, group

# Notices that may go out together as one message (pages and reminders are both about
# alarms that still need action).
_FAMILY: Mapping[NoticeKind, str] = {
    NoticeKind.PAGE: "alarm",
    NoticeKind.REMINDER: "alarm",
    NoticeKind.RESOLVED: "resolved",
    NoticeKind.DIGEST: "digest",
}


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """One message to send now: the notice, and the notifications it delivers."""

    notice: Notice
    notification_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Roster:
    """The registry as messages are composed from it, indexed by id."""

    cabinets: Mapping[str, Cabinet]
    people: Mapping[str, Person]
    # cabinet id → (role, rank, person id), in escalation order
    assignments: Mapping[str, tuple[tuple[Role, int, str], ...]]

    def people_in_role(self, cabinet_id: str, role: Role) -> list[Person]:
        return [
            self.people[person_id]
            for held_role, _, person_id in self.assignments.get(cabinet_id, ())
            if held_role is role and person_id in self.people
        ]

    def role_of(self, cabinet_id: str, person_id: str) -> Role:
        """The person's role at the cabinet; a coordinator's when they hold none there."""
        for role, _, holder in self.assignments.get(cabinet_id, ()):
            if holder == person_id:
                return role
        return Role.COORDINATOR


def batches(
    pending: Sequence[Notification],
    alarms: Mapping[int, Alarm],
    grouping: GroupingPolicy,
    now: datetime,
) -> list[Batch]:
    """The released ``pending`` notifications grouped into messages, urgent ones first.

    A notification's severity is that of the worst of its ``alarms`` (info when none is
    known); a notification that no longer speaks for any alarm is left out.
    """
    waiting = [
        PendingNotice(
            notification_id=notification.notification_id,
            person_id=notification.person_id,
            alarm_id=notification.alarm_ids[0],
            severity=max(
                (alarms[i].severity for i in notification.alarm_ids if i in alarms),
                key=lambda severity: severity.rank,
                default=Severity.INFO,
            ),
            kind=notification.kind,
            created_at=notification.created_at,
            release_at=notification.release_at,
        )
        for notification in pending
        if notification.alarm_ids
    ]
    # News of a resolution and the digest read differently from a page (their own
    # templates, no acknowledge links), so each family is grouped on its own: a
    # person gets them beside a page, never merged into it.
    families: dict[str, list[PendingNotice]] = {}
    for waiting_notice in waiting:
        families.setdefault(_FAMILY[waiting_notice.kind], []).append(waiting_notice)
    grouped = [batch for family in families.values() for batch in group(family, grouping, now)]
    grouped.sort(key=lambda batch: not batch.urgent)
    return grouped


def lead_alarm(notifications: Sequence[Notification], alarms: Mapping[int, Alarm]) -> Alarm:
    """The alarm a message leads with: the recipient's role and earlier pages are its."""
    for alarm_id in _alarm_ids(notifications):
        if alarm_id in alarms:
            return alarms[alarm_id]
    ids = [n.notification_id for n in notifications]
    raise ValueError(f"notifications {ids} speak for no known alarm")


def notice_kind(notifications: Sequence[Notification]) -> NoticeKind:
    """What a message is: the kind of its notifications, a page when they are mixed."""
    kinds = {n.kind for n in notifications}
    return kinds.pop() if len(kinds) == 1 else NoticeKind.PAGE


def compose(
    person: Person,
    notifications: Sequence[Notification],
    alarms: Mapping[int, Alarm],
    roster: Roster,
    time_zones: Mapping[str, str],
    signer: LinkSigner,
    lead_history: Sequence[Notification],
    now: datetime,
) -> OutgoingMessage:
    """The message that delivers ``notifications`` to ``person``.

    ``alarms`` holds the alarms they speak for (one missing is left out of the message),
    ``time_zones`` each cabinet's zone, and ``lead_history`` every notification recorded
    about the :func:`lead_alarm`, from which a page names who was paged before (only a
    page reads it: for another :func:`notice_kind` it may be empty).
    """
    lead = lead_alarm(notifications, alarms)
    briefs = [
        brief(
            alarms[alarm_id],
            roster.cabinets[alarms[alarm_id].cabinet_id],
            person.person_id,
            time_zones.get(alarms[alarm_id].cabinet_id),
            signer,
            now,
        )
        for alarm_id in _alarm_ids(notifications)
        if alarm_id in alarms
    ]
    kind = notice_kind(notifications)
    ids = tuple(n.notification_id for n in notifications)
    notice = Notice(
        notice_id="n" + "-".join(str(i) for i in ids),
        kind=kind,
        recipient=person,
        role=roster.role_of(lead.cabinet_id, person.person_id),
        alarms=tuple(briefs),
        escalated_after=prior_pages(lead, person.person_id, lead_history, roster)
        if kind is NoticeKind.PAGE
        else (),
        created_at=min(n.created_at for n in notifications),
    )
    return OutgoingMessage(notice, ids)


def brief(
    alarm: Alarm,
    cabinet: Cabinet,
    person_id: str,
    time_zone: str | None,
    signer: LinkSigner,
    now: datetime,
) -> AlarmBrief:
    """The alarm as ``person_id`` reads it: acknowledge and resolve links while it is
    active, and always a link to record an inspection of its cabinet."""
    links: dict[str, str] = {}
    if alarm.active:
        links["ack_url"] = signer.make(LinkAction.ACKNOWLEDGE, alarm.alarm_id, person_id, now)
        links["resolve_url"] = signer.make(LinkAction.RESOLVE, alarm.alarm_id, person_id, now)
    links["inspect_url"] = signer.make(
        LinkAction.RECORD_INSPECTION, cabinet.cabinet_id, person_id, now
    )
    return AlarmBrief(alarm=alarm, cabinet=cabinet, time_zone=time_zone, **links)


def prior_pages(
    alarm: Alarm, person_id: str, history: Sequence[Notification], roster: Roster
) -> tuple[PriorPage, ...]:
    """Who else was told about ``alarm`` (by a delivered page, reminder or digest): each
    name and role once, at their latest page, oldest first; people no longer in the
    registry are left out."""
    earlier = []
    for notification in history:
        if (
            notification.person_id == person_id
            or notification.state is not NotificationState.DELIVERED
            or notification.kind is NoticeKind.RESOLVED
            or notification.delivered_at is None
        ):
            continue
        person = roster.people.get(notification.person_id)
        if person is not None:
            earlier.append(
                PriorPage(
                    name=person.name,
                    role=roster.role_of(alarm.cabinet_id, person.person_id),
                    paged_at=notification.delivered_at,
                )
            )
    latest = {(page.name, page.role): page for page in sorted(earlier, key=lambda p: p.paged_at)}
    return tuple(sorted(latest.values(), key=lambda page: page.paged_at))


def _alarm_ids(notifications: Sequence[Notification]) -> list[int]:
    return list(dict.fromkeys(i for n in notifications for i in n.alarm_ids))
