"""The alerting engine over real stores: messages to alarms, escalation, delivery records.

Every test runs the synchronous :class:`~alerting.engine.AlertingEngine` on a real
SQLite state store and alarm store (a file of its own) and drives time by hand: each
call takes an explicit ``now``, as the service's scheduler would pass it. Delivery is
what the notifiers would report (:class:`DeliveryReport` values made here), so no
network is involved; the end-to-end test covers the real notifiers.

The helpers here (:class:`Device`, :class:`Rig`, the registry) are shared with
``tests/test_alerting_http.py``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import SecretStr

from aedfleet.contract import CabinetMessage, ConnectionState, EventType
from aedfleet.db import StateStore
from aedfleet.registry import Assignment, Cabinet, Language, Person, Registry, Role
from alerting.config import AlertingSettings, LinkSettings
from alerting.engine import AlertingEngine, OutgoingMessage
from alerting.escalation import EscalationState
from alerting.links import LinkAction, LinkSigner
from alerting.model import (
    Alarm,
    AlarmDetail,
    AlarmState,
    AlarmType,
    DetailKey,
    Inspection,
    NoticeKind,
    Notification,
    NotificationState,
    Severity,
    Via,
)
from alerting.notifiers.base import Channel
from alerting.notifiers.delivery import Attempt, DeliveryReport
from alerting.quiet import QuietSettings
from alerting.render import Renderer
from alerting.rule_config import RuleConfig, Thresholds
from alerting.store import AlarmStore
from tests import alerting_rules_support as build
from tests.test_twin import CABINET

SECRET = "x" * 64
SHANGHAI = ZoneInfo("Asia/Shanghai")
# Monday 3 March 2025, 10:00 in Shanghai: daytime, outside the default quiet hours.
T0 = datetime(2025, 3, 3, 2, 0, tzinfo=UTC)
TODAY = T0.astimezone(SHANGHAI).date()
SECOND = timedelta(seconds=1)
MINUTE = timedelta(minutes=1)
CABINET_2 = "cab-0002"
CAPTAIN, BACKUP, COORDINATOR = "cap-1", "bak-1", "coord-1"
STAFF = {CAPTAIN: Role.CAPTAIN, BACKUP: Role.BACKUP, COORDINATOR: Role.COORDINATOR}


def local(day: date, hour: int, minute: int = 0) -> datetime:
    """A Shanghai wall-clock time as a UTC instant."""
    return datetime.combine(day, time(hour, minute), tzinfo=SHANGHAI).astimezone(UTC)


# -- the registry ------------------------------------------------------------------------------


def cabinet(cabinet_id: str = CABINET, **changes: Any) -> Cabinet:
    values: dict[str, Any] = {
        "cabinet_id": cabinet_id,
        "name": f"Station hall {cabinet_id}",
        "aed_model": build.MODEL,
        "latitude": 22.5,
        "longitude": 114.0,
        "address": "1 Shennan Road",
        "region_code": "440305",
        # Installed yesterday: the first inspection is due in a month.
        "install_date": TODAY - timedelta(days=1),
    }
    return Cabinet(**(values | changes))


def person(person_id: str, language: Language = Language.EN) -> Person:
    return Person(
        person_id=person_id,
        name=f"Person {person_id}",
        email=f"{person_id}@example.cn",
        language=language,
    )


def registry(*cabinets: Cabinet, extra: Sequence[tuple[str, Role, int]] = ()) -> Registry:
    """The cabinets, each looked after by the same captain, backup and coordinator (plus
    ``extra`` people: id, role, rank)."""
    staff = [(person_id, role, 0) for person_id, role in STAFF.items()] + list(extra)
    cabinets = cabinets or (cabinet(),)
    return Registry(
        cabinets=cabinets,
        people=tuple(person(person_id) for person_id, _, _ in staff),
        assignments=tuple(
            Assignment(cabinet_id=c.cabinet_id, person_id=person_id, role=role, rank=rank)
            for c in cabinets
            for person_id, role, rank in staff
        ),
    )


def alerting_settings(**sections: Any) -> AlertingSettings:
    """The defaults, without quiet hours unless a test asks for them."""
    values: dict[str, Any] = {
        "links": LinkSettings(secrets=(SecretStr(SECRET),)),
        "quiet": QuietSettings(default=None),
    }
    return AlertingSettings(**(values | sections))


def signer_for(settings: AlertingSettings) -> LinkSigner:
    return LinkSigner(
        [secret.get_secret_value().encode() for secret in settings.links.secrets],
        settings.links.base_url,
        settings.links.ttl,
    )


# -- a cabinet's messages ---------------------------------------------------------------------


class Device:
    """One cabinet's message stream: sequence numbers in order, device time as given."""

    def __init__(self, cabinet_id: str = CABINET, *, interval_s: int = 3600) -> None:
        self.cabinet_id = cabinet_id
        self.boot = 0
        # Hourly heartbeats by default, so that a test that lets hours pass without
        # feeding heartbeats sees no offline alarm within the first three.
        self.interval_s = interval_s
        self._seq = itertools.count(1)

    def _own(self, message: CabinetMessage) -> CabinetMessage:
        if self.cabinet_id == CABINET:
            return message
        return message.model_copy(update={"cabinet_id": self.cabinet_id})

    def start(self, ts: datetime, **heartbeat: Any) -> list[CabinetMessage]:
        """Birth, online and a first heartbeat: a healthy cabinet coming up."""
        return [
            self._own(build.birth(self.boot, next(self._seq), ts, interval_s=self.interval_s)),
            self._own(build.status(self.boot, 1, ts, ConnectionState.ONLINE)),
            self.heartbeat(ts, **heartbeat),
        ]

    def heartbeat(self, ts: datetime, **values: Any) -> CabinetMessage:
        return self._own(build.heartbeat(self.boot, next(self._seq), ts, **values))

    def selftest(self, ts: datetime, **values: Any) -> CabinetMessage:
        return self._own(build.selftest(self.boot, next(self._seq), ts, **values))

    def consumables(self, ts: datetime, **values: Any) -> CabinetMessage:
        return self._own(build.consumables(self.boot, next(self._seq), ts, **values))

    def event(self, ts: datetime, kind: EventType) -> CabinetMessage:
        return self._own(build.event(self.boot, next(self._seq), ts, kind))


# -- the engine on real stores ---------------------------------------------------------------


def report(message: OutgoingMessage, at: datetime, *, delivered: bool = True) -> DeliveryReport:
    """What the deliverer reports after one email attempt, as the notifier would."""
    error = None if delivered else "550 mailbox unavailable"
    return DeliveryReport(
        notice_id=message.notice.notice_id,
        delivered=delivered,
        channel=Channel.EMAIL if delivered else None,
        attempts=(Attempt(channel=Channel.EMAIL, at=at, ok=delivered, error=error),),
        error=error,
    )


@dataclass
class Rig:
    """One alerting process: its stores on the shared database and its engine."""

    url: str
    settings: AlertingSettings
    state: StateStore
    alarms: AlarmStore
    engine: AlertingEngine

    def feed(self, now: datetime, messages: Sequence[CabinetMessage]) -> None:
        """What the ingest does with a batch: twins first, then alerting."""
        self.state.apply_messages(messages)
        self.engine.observe(messages, now)

    def send(self, now: datetime, *, delivered: bool = True) -> list[OutgoingMessage]:
        """Send what is due, each message delivered (or failed) by email."""
        messages = self.engine.due_messages(now)
        for message in messages:
            self.engine.delivered(message, report(message, now, delivered=delivered), now)
        return messages

    def alarm(self, alarm_type: AlarmType, cabinet_id: str = CABINET) -> Alarm:
        """The newest alarm of this type at the cabinet."""
        found = [a for a in self.alarms.alarms(cabinet_id=cabinet_id) if a.type is alarm_type]
        assert found, f"no {alarm_type.value} alarm at {cabinet_id}"
        return found[0]

    def types(self, cabinet_id: str = CABINET) -> set[AlarmType]:
        """The types of the cabinet's active alarms."""
        return {a.type for a in self.alarms.alarms(cabinet_id=cabinet_id) if a.active}

    def notices(self, alarm_id: int, kind: NoticeKind | None = None) -> list[Notification]:
        return [n for n in self.alarms.notifications(alarm_id) if kind is None or n.kind is kind]

    def told(self, alarm_id: int, kind: NoticeKind) -> dict[str, NotificationState]:
        """Person → state of their notification of this kind about the alarm."""
        return {n.person_id: n.state for n in self.notices(alarm_id, kind)}

    def close(self) -> None:
        self.alarms.close()
        self.state.close()


OpenRig = Callable[..., Rig]


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    """The database of the test's rigs: a SQLite file of its own. A module that imports
    :func:`open_rig` must import this fixture too, or define its own (PostgreSQL)."""
    return f"sqlite:///{tmp_path / 'store.sqlite3'}"


@pytest.fixture
def open_rig(store_url: str) -> Iterator[OpenRig]:
    """Opens engines on this test's database; the first call seeds the registry.

    Each call is one process: a second call on the same database is a restart (after
    kill -9, nothing of the first one's memory survives). ``store`` replaces the alarm
    store class (to make a process die at a chosen point).
    """
    url = store_url
    opened: list[Rig] = []

    def open_one(
        the_registry: Registry | None = None,
        *,
        settings: AlertingSettings | None = None,
        start: datetime | None = T0,
        store: type[AlarmStore] = AlarmStore,
    ) -> Rig:
        settings = settings or alerting_settings()
        state = StateStore.open(url)
        if not opened or the_registry is not None:
            state.apply_registry(the_registry or registry())
        alarms = store.open(url, policies=settings.escalation)
        engine = AlertingEngine(settings, state, alarms, signer_for(settings))
        rig = Rig(url, settings, state, alarms, engine)
        opened.append(rig)
        if start is not None:
            engine.start(start)
        return rig

    yield open_one
    for rig in opened:
        rig.close()


def healthy(rig: Rig, device: Device, at: datetime = T0) -> None:
    """The cabinet comes up with nothing wrong at the device."""
    rig.feed(at, device.start(at))


def failed_selftest(rig: Rig, device: Device, at: datetime = T0) -> Alarm:
    """A healthy cabinet whose self-test fails at ``at``: one critical alarm."""
    healthy(rig, device, at)
    rig.feed(at, [device.selftest(at, passed=False)])
    return rig.alarm(AlarmType.SELFTEST_FAILED, device.cabinet_id)


def recipients(messages: Sequence[OutgoingMessage]) -> list[str]:
    return sorted(message.notice.recipient.person_id for message in messages)


def alarm_ids(message: OutgoingMessage) -> list[int]:
    return [brief.alarm.alarm_id for brief in message.notice.alarms]


# -- messages → alarms -------------------------------------------------------------------------


def test_a_failed_selftest_raises_a_critical_alarm_and_the_cabinet_is_not_ready(
    open_rig: OpenRig,
) -> None:
    rig = open_rig()
    device = Device()
    healthy(rig, device)
    assert rig.types() == set()
    ready = rig.engine.cabinet_readiness(CABINET)
    assert ready is not None
    assert ready.ready

    at = T0 + 5 * MINUTE
    failed = [device.selftest(at, passed=False)]
    rig.feed(at, failed)

    alarm = rig.alarm(AlarmType.SELFTEST_FAILED)
    assert alarm.severity is Severity.CRITICAL
    assert alarm.state is AlarmState.RAISED
    assert alarm.condition_since == at
    assert alarm.raised_at == at
    not_ready = rig.engine.cabinet_readiness(CABINET)
    assert not_ready is not None
    assert not not_ready.ready
    assert not_ready.reasons == (AlarmType.SELFTEST_FAILED,)
    fleet = rig.engine.fleet_readiness()
    assert (fleet.total, fleet.ready) == (1, 0)
    assert fleet.not_ready_by_reason == {AlarmType.SELFTEST_FAILED: 1}

    # The same batch again (a broker redelivery) changes nothing.
    rig.feed(at + SECOND, failed)
    assert [a.alarm_id for a in rig.alarms.alarms()] == [alarm.alarm_id]


def test_a_failed_selftest_with_a_fault_code_is_one_alarm_one_page_naming_the_code(
    open_rig: OpenRig,
) -> None:
    rig = open_rig()
    device = Device()
    healthy(rig, device)
    failed = T0 + MINUTE
    rig.feed(failed, [device.selftest(failed, passed=False, codes=("E-CIRCUIT",))])
    # The AED's ready light goes off with the failure: the same fault, no alarm of its own.
    rig.feed(failed + MINUTE, [device.heartbeat(failed + MINUTE, aed_ready=False)])

    [alarm] = rig.alarms.alarms()
    assert (alarm.type, alarm.severity) == (AlarmType.SELFTEST_FAILED, Severity.CRITICAL)
    assert alarm.detail is not None
    assert alarm.detail.codes == ("E-CIRCUIT",)
    assert rig.engine.escalate(failed + MINUTE) == 1
    [page] = rig.send(failed + MINUTE)
    assert alarm_ids(page) == [alarm.alarm_id]
    rendered = Renderer().render(page.notice)
    assert "E-CIRCUIT" in rendered.text
    assert "E-CIRCUIT" in rendered.html
    assert "E-CIRCUIT" in rendered.markdown
    assert "E-CIRCUIT" in rendered.short_text  # the SMS and chat form
    ready = rig.engine.cabinet_readiness(CABINET)
    assert ready is not None
    assert set(ready.reasons) == {AlarmType.SELFTEST_FAILED, AlarmType.AED_NOT_READY}

    # One acknowledgement stops it all.
    rig.engine.acknowledge(alarm.alarm_id, CAPTAIN, Via.API, failed + 2 * MINUTE)
    assert rig.engine.escalate(failed + 60 * MINUTE) == 0


def test_a_ready_light_off_before_the_selftest_failed_carries_on_unresolved(
    open_rig: OpenRig,
) -> None:
    rig = open_rig()
    device = Device()
    healthy(rig, device)
    off = T0 + MINUTE
    rig.feed(off, [device.heartbeat(off, aed_ready=False)])
    not_ready = rig.alarm(AlarmType.AED_NOT_READY)
    failed = T0 + 5 * MINUTE
    rig.feed(failed, [device.selftest(failed, passed=False, codes=("E-BATT",))])
    rig.engine.evaluate_due(failed + 10 * MINUTE)
    assert rig.types() == {AlarmType.AED_NOT_READY, AlarmType.SELFTEST_FAILED}
    kept = rig.alarm(AlarmType.AED_NOT_READY)
    assert (kept.alarm_id, kept.clear_since) == (not_ready.alarm_id, None)


def test_a_backlog_being_drained_is_not_taken_for_silent_cabinets(open_rig: OpenRig) -> None:
    rig = open_rig()
    device = Device(interval_s=60)
    healthy(rig, device)
    # The service falls ten minutes behind: the heartbeats it reads now are old, and
    # judged against its own clock the cabinet would look silent for minutes.
    behind = 10 * MINUTE
    for minute in range(2, 8):
        sent = T0 + minute * MINUTE
        rig.feed(sent + behind, [device.heartbeat(sent)])
        rig.engine.evaluate_due(sent + behind)
        assert AlarmType.OFFLINE not in rig.types()
    # Once nothing more comes in, silence is silence again.
    last = T0 + 7 * MINUTE + behind
    rig.engine.evaluate_due(last + 3 * MINUTE)
    assert AlarmType.OFFLINE in rig.types()


def test_heartbeats_stopping_raise_offline_after_three_intervals_with_no_message(
    open_rig: OpenRig,
) -> None:
    rig = open_rig()
    device = Device(interval_s=60)
    healthy(rig, device)
    last_beat = T0 + 2 * MINUTE
    rig.feed(last_beat, [device.heartbeat(last_beat)])

    assert rig.engine.evaluate_due(last_beat + 3 * MINUTE - SECOND) == 0
    assert AlarmType.OFFLINE not in rig.types()
    assert rig.engine.evaluate_due(last_beat + 3 * MINUTE) == 1
    offline = rig.alarm(AlarmType.OFFLINE)
    assert offline.severity is Severity.WARNING
    assert offline.condition_since == last_beat
    assert offline.raised_at == last_beat + 3 * MINUTE

    # Heartbeats again: the alarm is seen clear, and resolves after the two-minute hold.
    back = last_beat + 10 * MINUTE
    rig.feed(back, [device.heartbeat(back)])
    cleared = rig.alarm(AlarmType.OFFLINE)
    assert cleared.state is AlarmState.RAISED
    assert cleared.clear_since == back
    rig.engine.evaluate_due(back + 2 * MINUTE - SECOND)
    assert rig.alarm(AlarmType.OFFLINE).active
    rig.engine.evaluate_due(back + 2 * MINUTE)
    resolved = rig.alarm(AlarmType.OFFLINE)
    assert resolved.state is AlarmState.RESOLVED
    assert resolved.resolved_via is Via.AUTO


def test_pads_expire_at_local_midnight_with_no_message(open_rig: OpenRig) -> None:
    rig = open_rig()
    device = Device()
    healthy(rig, device)
    # The AED reports pads that expire today (Shanghai): a high-severity notice now.
    rig.feed(T0, [device.consumables(T0, pads_expiry=TODAY)])
    expiring = rig.alarm(AlarmType.PADS_EXPIRING)
    assert expiring.severity is Severity.HIGH
    assert AlarmType.PADS_EXPIRED not in rig.types()

    midnight = local(TODAY + timedelta(days=1), 0)
    rig.engine.evaluate_due(midnight - SECOND)
    assert AlarmType.PADS_EXPIRED not in rig.types()
    assert rig.engine.evaluate_due(midnight) == 1
    expired = rig.alarm(AlarmType.PADS_EXPIRED)
    assert expired.severity is Severity.CRITICAL
    assert expired.condition_since == midnight
    assert expired.raised_at == midnight
    assert rig.alarm(AlarmType.PADS_EXPIRING).clear_since == midnight
    rig.engine.evaluate_due(midnight + 2 * MINUTE)
    assert rig.alarm(AlarmType.PADS_EXPIRING).state is AlarmState.RESOLVED


# -- escalation --------------------------------------------------------------------------------


def test_a_critical_alarm_pages_captain_backup_coordinator_then_all_again(
    open_rig: OpenRig,
) -> None:
    rig = open_rig()
    alarm = failed_selftest(rig, Device())
    raised = alarm.raised_at
    engine = rig.engine

    assert engine.escalate(raised) == 1
    [to_captain] = rig.send(raised)
    assert to_captain.notice.recipient.person_id == CAPTAIN
    assert to_captain.notice.role is Role.CAPTAIN
    assert to_captain.notice.kind is NoticeKind.PAGE
    assert alarm_ids(to_captain) == [alarm.alarm_id]
    assert to_captain.notice.escalated_after == ()
    brief = to_captain.notice.alarms[0]
    assert brief.ack_url is not None
    assert brief.resolve_url is not None
    assert brief.inspect_url is not None
    claim = signer_for(rig.settings).verify(brief.ack_url, raised)
    assert (claim.action, claim.alarm_id, claim.person_id) == (
        LinkAction.ACKNOWLEDGE,
        alarm.alarm_id,
        CAPTAIN,
    )
    assert rig.told(alarm.alarm_id, NoticeKind.PAGE) == {CAPTAIN: NotificationState.DELIVERED}

    assert engine.escalate(raised + 10 * MINUTE - SECOND) == 0
    assert engine.escalate(raised + 10 * MINUTE) == 1
    [to_backup] = rig.send(raised + 10 * MINUTE)
    assert to_backup.notice.recipient.person_id == BACKUP
    assert to_backup.notice.role is Role.BACKUP
    assert [(p.name, p.role) for p in to_backup.notice.escalated_after] == [
        (f"Person {CAPTAIN}", Role.CAPTAIN)
    ]

    assert engine.escalate(raised + 30 * MINUTE - SECOND) == 0
    assert engine.escalate(raised + 30 * MINUTE) == 1
    [to_coordinator] = rig.send(raised + 30 * MINUTE)
    assert to_coordinator.notice.recipient.person_id == COORDINATOR
    assert {p.role for p in to_coordinator.notice.escalated_after} == {
        Role.CAPTAIN,
        Role.BACKUP,
    }

    # Nobody has acknowledged: every 30 minutes after the last step, all three again.
    assert engine.escalate(raised + 60 * MINUTE - SECOND) == 0
    assert engine.escalate(raised + 60 * MINUTE) == 3
    again = rig.send(raised + 60 * MINUTE)
    assert recipients(again) == sorted(STAFF)
    assert {m.notice.kind for m in again} == {NoticeKind.PAGE}
    assert engine.escalate(raised + 90 * MINUTE) == 3
    assert len(rig.send(raised + 90 * MINUTE)) == 3
    pages = rig.notices(alarm.alarm_id, NoticeKind.PAGE)
    assert len(pages) == 9
    assert {n.state for n in pages} == {NotificationState.DELIVERED}


def test_acknowledging_stops_every_further_message_even_those_recorded(
    open_rig: OpenRig,
) -> None:
    rig = open_rig()
    alarm = failed_selftest(rig, Device())
    raised = alarm.raised_at
    engine = rig.engine
    engine.escalate(raised)
    rig.send(raised)
    # The backup's page is recorded but not sent yet (the delivery loop is busy).
    assert engine.escalate(raised + 10 * MINUTE) == 1

    acknowledged = engine.acknowledge(alarm.alarm_id, CAPTAIN, Via.LINK, raised + 11 * MINUTE)
    assert acknowledged.state is AlarmState.ACKNOWLEDGED
    assert acknowledged.acknowledged_by == CAPTAIN
    assert acknowledged.acknowledged_via is Via.LINK

    assert engine.due_messages(raised + 11 * MINUTE) == []
    assert rig.told(alarm.alarm_id, NoticeKind.PAGE) == {
        CAPTAIN: NotificationState.DELIVERED,
        BACKUP: NotificationState.CANCELLED,
    }
    for later in (30 * MINUTE, 60 * MINUTE, 24 * 60 * MINUTE):
        assert engine.escalate(raised + later) == 0
        assert engine.due_messages(raised + later) == []
    escalation = rig.alarms.escalation(alarm.alarm_id)
    assert escalation is not None
    assert escalation.finished
    assert len(rig.notices(alarm.alarm_id)) == 2


# -- every page once ---------------------------------------------------------------------------


def test_escalating_twice_or_after_a_restart_records_each_page_once(open_rig: OpenRig) -> None:
    first = open_rig()
    alarm = failed_selftest(first, Device())
    raised = alarm.raised_at
    assert first.engine.escalate(raised) == 1
    assert first.engine.escalate(raised) == 0

    # kill -9 before the page was sent; a new process on the same database.
    second = open_rig(start=raised + SECOND)
    assert second.engine.escalate(raised + SECOND) == 0
    [page] = second.send(raised + SECOND)
    assert page.notice.recipient.person_id == CAPTAIN
    assert second.send(raised + 2 * SECOND) == []

    assert second.engine.escalate(raised + 10 * MINUTE) == 1
    assert first.engine.escalate(raised + 10 * MINUTE) == 0  # a second worker, too late
    assert second.engine.escalate(raised + 10 * MINUTE) == 0
    assert sorted(n.person_id for n in second.notices(alarm.alarm_id)) == [BACKUP, CAPTAIN]


class ProcessKilled(BaseException):
    """Stands for kill -9: nothing after it runs, nothing catches it."""


class DiesBeforeSavingEscalations(AlarmStore):
    """A real alarm store whose process dies after recording pages, before saving the
    escalation that decided them."""

    def save_escalation(self, state: EscalationState) -> bool:
        raise ProcessKilled


def test_an_escalation_claimed_but_not_saved_resumes_after_its_lease_without_a_duplicate(
    open_rig: OpenRig,
) -> None:
    doomed = open_rig(store=DiesBeforeSavingEscalations)
    alarm = failed_selftest(doomed, Device())
    raised = alarm.raised_at
    with pytest.raises(ProcessKilled):
        doomed.engine.escalate(raised)
    assert doomed.told(alarm.alarm_id, NoticeKind.PAGE) == {CAPTAIN: NotificationState.PENDING}

    restarted = open_rig(start=raised + SECOND)
    # The dead process's claim holds for its lease (a minute): nobody takes it over.
    assert restarted.engine.escalate(raised + 59 * SECOND) == 0
    escalation = restarted.alarms.escalation(alarm.alarm_id)
    assert escalation is not None
    assert escalation.next_step == 0
    # After the lease, the escalation is taken over: the captain's page is decided again
    # and recorded as nothing new, and the escalation moves on.
    assert restarted.engine.escalate(raised + MINUTE) == 0
    escalation = restarted.alarms.escalation(alarm.alarm_id)
    assert escalation is not None
    assert (escalation.next_step, escalation.due_at) == (1, raised + 10 * MINUTE)
    [page] = restarted.send(raised + MINUTE)
    assert page.notice.recipient.person_id == CAPTAIN
    assert restarted.engine.escalate(raised + 10 * MINUTE) == 1
    assert restarted.told(alarm.alarm_id, NoticeKind.PAGE) == {
        CAPTAIN: NotificationState.DELIVERED,
        BACKUP: NotificationState.PENDING,
    }


# -- silences ----------------------------------------------------------------------------------


def test_a_silenced_alarm_is_recorded_but_pages_nobody(open_rig: OpenRig) -> None:
    rig = open_rig()
    rig.alarms.silences.add(
        starts_at=T0 - MINUTE,
        ends_at=T0 + 2 * 60 * MINUTE,
        reason="replacing the AED",
        created_by="ops",
        cabinet_id=CABINET,
    )
    alarm = failed_selftest(rig, Device())
    assert alarm.state is AlarmState.RAISED
    for later in (0, 10, 30, 60):
        assert rig.engine.escalate(alarm.raised_at + later * MINUTE) == 0
        assert rig.send(alarm.raised_at + later * MINUTE) == []
    assert rig.notices(alarm.alarm_id) == []


def test_an_opened_door_pages_through_every_silence(open_rig: OpenRig) -> None:
    rig = open_rig()
    for alarm_type in (None, AlarmType.DOOR_OPENED):
        # The store takes what the API refuses (a silence naming the door), as a
        # silence added by an older version or by hand might.
        rig.alarms.silences.add(
            starts_at=T0 - MINUTE,
            ends_at=T0 + 60 * MINUTE,
            reason="works in the hall",
            created_by="ops",
            cabinet_id=CABINET,
            alarm_type=alarm_type,
        )
    device = Device()
    healthy(rig, device)
    opened = T0 + MINUTE
    rig.feed(opened, [device.event(opened, EventType.DOOR_OPENED)])
    door = rig.alarm(AlarmType.DOOR_OPENED)
    assert rig.engine.escalate(opened) == 1
    [page] = rig.send(opened)
    assert page.notice.recipient.person_id == CAPTAIN
    assert alarm_ids(page) == [door.alarm_id]


# -- quiet hours and grouping ------------------------------------------------------------------


def test_quiet_hours_hold_warning_pages_until_morning_never_critical_ones(
    open_rig: OpenRig,
) -> None:
    rig = open_rig(settings=alerting_settings(quiet=QuietSettings()), start=None)  # 22:00-07:00
    night = local(TODAY, 23)
    rig.engine.start(night)
    device = Device()
    healthy(rig, device, night)
    rig.feed(night, [device.event(night, EventType.POWER_LOST)])
    rig.feed(night, [device.selftest(night, passed=False)])
    power = rig.alarm(AlarmType.POWER_LOST)
    selftest = rig.alarm(AlarmType.SELFTEST_FAILED)
    assert (power.severity, selftest.severity) == (Severity.WARNING, Severity.CRITICAL)
    assert rig.engine.escalate(night) == 2

    [urgent] = rig.send(night)
    assert alarm_ids(urgent) == [selftest.alarm_id]
    morning = local(TODAY + timedelta(days=1), 7)
    assert rig.send(night + 5 * MINUTE) == []
    assert rig.send(morning - SECOND) == []
    [held] = rig.send(morning)
    assert alarm_ids(held) == [power.alarm_id]
    assert held.notice.recipient.person_id == CAPTAIN
    [page] = rig.notices(power.alarm_id)
    assert page.created_at == night
    assert page.release_at == morning


def test_warning_alarms_for_one_captain_within_the_window_go_out_as_one_message(
    open_rig: OpenRig,
) -> None:
    rig = open_rig(registry(cabinet(), cabinet(CABINET_2)))
    first, second = Device(), Device(CABINET_2)
    healthy(rig, first)
    healthy(rig, second)
    rig.feed(T0, [first.event(T0, EventType.POWER_LOST)])
    assert rig.engine.escalate(T0) == 1
    later = T0 + 2 * MINUTE
    rig.feed(later, [second.event(later, EventType.POWER_LOST)])
    assert rig.engine.escalate(later) == 1
    # A critical alarm meanwhile goes at once, on its own.
    critical_at = T0 + 3 * MINUTE
    rig.feed(critical_at, [first.selftest(critical_at, passed=False)])
    rig.engine.escalate(critical_at)
    [urgent] = rig.send(critical_at)
    assert alarm_ids(urgent) == [rig.alarm(AlarmType.SELFTEST_FAILED).alarm_id]

    # Five minutes after the first: one message to the captain about both.
    assert rig.send(T0 + 5 * MINUTE - SECOND) == []
    [grouped] = rig.send(T0 + 5 * MINUTE)
    assert grouped.notice.recipient.person_id == CAPTAIN
    assert grouped.notice.kind is NoticeKind.PAGE
    assert [brief.cabinet.cabinet_id for brief in grouped.notice.alarms] == [
        CABINET,
        CABINET_2,
    ]
    assert {brief.alarm.type for brief in grouped.notice.alarms} == {AlarmType.POWER_LOST}
    assert len(grouped.notification_ids) == 2
    for alarm_id in alarm_ids(grouped):
        assert rig.told(alarm_id, NoticeKind.PAGE) == {CAPTAIN: NotificationState.DELIVERED}
    assert rig.send(T0 + 6 * MINUTE) == []


def test_an_alarm_acknowledged_while_its_page_waits_leaves_the_grouped_message(
    open_rig: OpenRig,
) -> None:
    rig = open_rig(registry(cabinet(), cabinet(CABINET_2)))
    devices = [Device(), Device(CABINET_2)]
    for device in devices:
        healthy(rig, device)
        rig.feed(T0, [device.event(T0, EventType.POWER_LOST)])
    assert rig.engine.escalate(T0) == 2
    first = rig.alarm(AlarmType.POWER_LOST)
    second = rig.alarm(AlarmType.POWER_LOST, CABINET_2)
    rig.engine.acknowledge(first.alarm_id, CAPTAIN, Via.CLI, T0 + MINUTE)

    [message] = rig.send(T0 + 5 * MINUTE)
    assert alarm_ids(message) == [second.alarm_id]
    assert len(message.notification_ids) == 1
    [withdrawn] = rig.notices(first.alarm_id)
    assert withdrawn.state is NotificationState.CANCELLED
    assert (withdrawn.alarm_ids, withdrawn.withdrawn_alarm_ids) == ((), (first.alarm_id,))


def test_news_of_a_resolution_is_not_merged_into_a_page(open_rig: OpenRig) -> None:
    rig = open_rig(registry(cabinet(), cabinet(CABINET_2)))
    first, second = Device(), Device(CABINET_2)
    healthy(rig, first)
    healthy(rig, second)
    rig.feed(T0, [first.event(T0, EventType.POWER_LOST)])
    rig.engine.escalate(T0)
    [page] = rig.send(T0 + 5 * MINUTE)
    power = rig.alarm(AlarmType.POWER_LOST)
    assert alarm_ids(page) == [power.alarm_id]

    # The power comes back at one cabinet as the other loses it: the captain hears that
    # the first is over and is paged about the second, in two messages.
    at = T0 + 10 * MINUTE
    rig.feed(at, [first.event(at, EventType.POWER_RESTORED)])
    rig.feed(at, [second.event(at, EventType.POWER_LOST)])
    assert rig.engine.escalate(at) == 1
    rig.engine.evaluate_due(at + 2 * MINUTE)
    assert rig.alarm(AlarmType.POWER_LOST).state is AlarmState.RESOLVED
    other = rig.alarm(AlarmType.POWER_LOST, CABINET_2)

    sent = rig.send(at + 10 * MINUTE)
    assert sorted((m.notice.kind.value, tuple(alarm_ids(m))) for m in sent) == [
        ("page", (other.alarm_id,)),
        ("resolved", (power.alarm_id,)),
    ]
    [news] = [m for m in sent if m.notice.kind is NoticeKind.RESOLVED]
    assert news.notice.alarms[0].ack_url is None  # nothing left to acknowledge


def test_the_digest_is_not_merged_into_a_page(open_rig: OpenRig) -> None:
    rig = open_rig(registry(cabinet(pads_expiry=TODAY + timedelta(days=60))))
    device = Device()
    healthy(rig, device)
    expiring = rig.alarm(AlarmType.PADS_EXPIRING)
    assert expiring.severity is Severity.INFO

    morning = local(TODAY + timedelta(days=1), 8, 30)
    rig.feed(morning, [device.heartbeat(morning), device.event(morning, EventType.POWER_LOST)])
    assert rig.engine.escalate(morning) == 1
    assert rig.engine.record_digests(morning) == 1
    sent = rig.send(morning + 5 * MINUTE)
    assert sorted((m.notice.kind.value, tuple(alarm_ids(m))) for m in sent) == [
        ("digest", (expiring.alarm_id,)),
        ("page", (rig.alarm(AlarmType.POWER_LOST).alarm_id,)),
    ]


# -- resolution --------------------------------------------------------------------------------


def test_resolution_is_told_to_everyone_delivered_a_page_and_nobody_else(
    open_rig: OpenRig,
) -> None:
    second_backup = "bak-2"
    rig = open_rig(registry(extra=[(second_backup, Role.BACKUP, 1)]))
    device = Device()
    healthy(rig, device)
    rig.feed(T0, [device.consumables(T0, pads_present=False)])
    pads = rig.alarm(AlarmType.PADS_MISSING)
    assert pads.severity is Severity.CRITICAL

    rig.engine.escalate(T0)
    rig.send(T0)  # the captain
    rig.engine.escalate(T0 + 10 * MINUTE)  # both backups
    [to_first, to_second] = sorted(
        rig.engine.due_messages(T0 + 10 * MINUTE), key=lambda m: m.notice.recipient.person_id
    )
    rig.engine.delivered(to_first, report(to_first, T0 + 10 * MINUTE), T0 + 10 * MINUTE)
    rig.engine.delivered(
        to_second, report(to_second, T0 + 10 * MINUTE, delivered=False), T0 + 10 * MINUTE
    )
    rig.engine.escalate(T0 + 30 * MINUTE)  # the coordinator: recorded, not sent yet
    assert rig.told(pads.alarm_id, NoticeKind.PAGE) == {
        CAPTAIN: NotificationState.DELIVERED,
        BACKUP: NotificationState.DELIVERED,
        second_backup: NotificationState.FAILED,
        COORDINATOR: NotificationState.PENDING,
    }

    fitted = T0 + 31 * MINUTE
    rig.feed(fitted, [device.consumables(fitted, pads_present=True)])
    assert rig.alarm(AlarmType.PADS_MISSING).clear_since == fitted
    rig.engine.evaluate_due(fitted + 2 * MINUTE - SECOND)
    assert rig.alarm(AlarmType.PADS_MISSING).active
    assert rig.told(pads.alarm_id, NoticeKind.RESOLVED) == {}

    rig.engine.evaluate_due(fitted + 2 * MINUTE)
    resolved = rig.alarm(AlarmType.PADS_MISSING)
    assert resolved.state is AlarmState.RESOLVED
    assert resolved.resolved_via is Via.AUTO
    assert rig.told(pads.alarm_id, NoticeKind.RESOLVED) == {
        CAPTAIN: NotificationState.PENDING,
        BACKUP: NotificationState.PENDING,
    }
    # The coordinator's page never went: withdrawn, and no news of something never told.
    assert rig.told(pads.alarm_id, NoticeKind.PAGE)[COORDINATOR] is NotificationState.CANCELLED
    news = rig.send(fitted + 2 * MINUTE)
    assert recipients(news) == [BACKUP, CAPTAIN]
    assert {m.notice.kind for m in news} == {NoticeKind.RESOLVED}
    assert rig.engine.escalate(fitted + 60 * MINUTE) == 0


PRESENCE = {
    AlarmType.DOOR_OPENED: (EventType.DOOR_OPENED, EventType.DOOR_CLOSED),
    AlarmType.AED_REMOVED: (EventType.AED_REMOVED, EventType.AED_RETURNED),
}


@pytest.mark.parametrize("alarm_type", list(PRESENCE))
def test_a_presence_alarm_resolves_at_the_close_or_return_and_pages_nobody_after(
    open_rig: OpenRig, alarm_type: AlarmType
) -> None:
    # A long event hold makes the old fault plain: the alarm outlived the return by the
    # hold, and its escalation went on to the backup and the coordinator.
    rules = RuleConfig(thresholds=Thresholds(event_hold=timedelta(hours=1)))
    rig = open_rig(settings=alerting_settings(rules=rules))
    device = Device()
    healthy(rig, device)
    onset, end = PRESENCE[alarm_type]
    opened = T0 + MINUTE
    rig.feed(opened, [device.event(opened, onset)])
    alarm = rig.alarm(alarm_type)
    assert rig.engine.escalate(opened) == 1
    [to_captain] = rig.send(opened)
    assert alarm_ids(to_captain) == [alarm.alarm_id]

    back = opened + 9 * MINUTE
    rig.feed(back, [device.event(back, end)])
    resolved = rig.alarm(alarm_type)
    assert resolved.alarm_id == alarm.alarm_id
    assert resolved.state is AlarmState.RESOLVED
    assert resolved.resolved_at == back
    assert resolved.resolved_via is Via.AUTO
    assert rig.told(alarm.alarm_id, NoticeKind.RESOLVED) == {CAPTAIN: NotificationState.PENDING}

    # Two hours of heartbeats and scheduler ticks: no step of its escalation pages anyone,
    # and the event, still news for the hold, raises no second alarm.
    for minute in range(0, 120, 5):
        now = back + minute * MINUTE
        rig.feed(now, [device.heartbeat(now)])
        rig.engine.evaluate_due(now)
        rig.engine.escalate(now)
        rig.send(now)
    pages = rig.notices(alarm.alarm_id, NoticeKind.PAGE)
    assert [(n.person_id, n.created_at) for n in pages] == [(CAPTAIN, opened)]
    assert [a.alarm_id for a in rig.alarms.alarms() if a.type is alarm_type] == [alarm.alarm_id]


@pytest.mark.parametrize("alarm_type", list(PRESENCE))
def test_an_opening_over_before_it_was_seen_pages_once_and_is_not_raised_again(
    open_rig: OpenRig, alarm_type: AlarmType
) -> None:
    rig = open_rig()
    device = Device()
    healthy(rig, device)
    onset, end = PRESENCE[alarm_type]
    opened = T0 + MINUTE
    rig.feed(opened + SECOND, [device.event(opened, onset), device.event(opened, end)])
    news = rig.alarm(alarm_type)
    assert news.state is AlarmState.RAISED
    rig.engine.escalate(opened + SECOND)
    assert rig.told(news.alarm_id, NoticeKind.PAGE) == {CAPTAIN: NotificationState.PENDING}

    hold_ends = opened + rig.settings.rules.thresholds.event_hold
    rig.feed(hold_ends - MINUTE, [device.heartbeat(hold_ends - MINUTE)])
    assert rig.alarm(alarm_type).state is AlarmState.RAISED  # news lasts the hold
    rig.engine.evaluate_due(hold_ends)
    assert rig.alarm(alarm_type).state is AlarmState.RESOLVED
    for minute in range(0, 60, 5):
        now = hold_ends + minute * MINUTE
        rig.feed(now, [device.heartbeat(now)])
        rig.engine.evaluate_due(now)
        rig.engine.escalate(now)
    assert [a.alarm_id for a in rig.alarms.alarms() if a.type is alarm_type] == [news.alarm_id]
    assert len(rig.notices(news.alarm_id, NoticeKind.PAGE)) == 1


def test_a_condition_back_within_the_hold_carries_on_the_same_alarm_unpaged(
    open_rig: OpenRig,
) -> None:
    rig = open_rig()
    device = Device()
    healthy(rig, device)
    rig.feed(T0, [device.consumables(T0, pads_present=False)])
    pads = rig.alarm(AlarmType.PADS_MISSING)
    assert rig.engine.escalate(T0) == 1
    rig.send(T0)

    # The pads flap: present, then missing again within the two-minute hold.
    rig.feed(T0 + MINUTE, [device.consumables(T0 + MINUTE, pads_present=True)])
    rig.feed(T0 + 2 * MINUTE, [device.consumables(T0 + 2 * MINUTE, pads_present=False)])
    rig.engine.evaluate_due(T0 + 5 * MINUTE)
    assert [a.alarm_id for a in rig.alarms.alarms()] == [pads.alarm_id]
    carried_on = rig.alarm(AlarmType.PADS_MISSING)
    assert carried_on.state is AlarmState.RAISED
    assert carried_on.clear_since is None
    assert rig.engine.escalate(T0 + 5 * MINUTE) == 0
    assert rig.told(pads.alarm_id, NoticeKind.RESOLVED) == {}
    assert rig.engine.escalate(T0 + 10 * MINUTE) == 1  # the backup, on schedule


def test_an_info_notice_that_becomes_a_warning_at_midnight_pages_the_captain(
    open_rig: OpenRig,
) -> None:
    rig = open_rig(registry(cabinet(pads_expiry=TODAY + timedelta(days=31))))
    device = Device()
    healthy(rig, device)
    notice = rig.alarm(AlarmType.PADS_EXPIRING)
    assert notice.severity is Severity.INFO
    assert rig.engine.escalate(T0) == 0

    # From midnight the pads expire within 30 days: the same alarm, now a warning.
    midnight = local(TODAY + timedelta(days=1), 0)
    rig.feed(midnight - MINUTE, [device.heartbeat(midnight - MINUTE)])
    assert rig.types() == {AlarmType.PADS_EXPIRING}
    assert rig.engine.evaluate_due(midnight) == 1
    warning = rig.alarm(AlarmType.PADS_EXPIRING)
    assert warning.alarm_id == notice.alarm_id
    assert warning.severity is Severity.WARNING
    assert rig.engine.escalate(midnight) == 1
    [page] = rig.send(midnight + 5 * MINUTE)
    assert page.notice.kind is NoticeKind.PAGE
    assert page.notice.recipient.person_id == CAPTAIN
    assert alarm_ids(page) == [notice.alarm_id]


# -- the daily digest --------------------------------------------------------------------------


def test_info_alarms_go_into_one_digest_per_captain_per_day_and_never_page(
    open_rig: OpenRig,
) -> None:
    expiring = TODAY + timedelta(days=60)
    rig = open_rig(
        registry(cabinet(pads_expiry=expiring), cabinet(CABINET_2, pads_expiry=expiring))
    )
    for device in (Device(), Device(CABINET_2)):
        healthy(rig, device)
    notices = [rig.alarm(AlarmType.PADS_EXPIRING, c) for c in (CABINET, CABINET_2)]
    assert {a.severity for a in notices} == {Severity.INFO}
    assert rig.engine.escalate(T0) == 0
    assert rig.engine.escalate(T0 + 24 * 60 * MINUTE) == 0

    # Raised at 10:00, after today's digest time (08:30): they wait for tomorrow's.
    assert rig.engine.record_digests(T0) == 0
    tomorrow = local(TODAY + timedelta(days=1), 8, 30)
    assert rig.engine.record_digests(tomorrow - SECOND) == 0
    assert rig.engine.record_digests(tomorrow) == 1
    assert rig.engine.record_digests(tomorrow + 60 * MINUTE) == 0
    assert rig.send(tomorrow) == []  # an info notice waits for others to group with
    [digest] = rig.send(tomorrow + 5 * MINUTE)
    assert digest.notice.kind is NoticeKind.DIGEST
    assert digest.notice.recipient.person_id == CAPTAIN
    assert sorted(alarm_ids(digest)) == sorted(a.alarm_id for a in notices)
    for alarm in notices:
        assert {n.kind for n in rig.notices(alarm.alarm_id)} == {NoticeKind.DIGEST}
        assert rig.told(alarm.alarm_id, NoticeKind.DIGEST) == {CAPTAIN: NotificationState.DELIVERED}

    assert rig.engine.record_digests(tomorrow + 24 * 60 * MINUTE - SECOND) == 0
    assert rig.engine.record_digests(tomorrow + 24 * 60 * MINUTE) == 1


def test_a_digest_missed_while_the_service_was_down_goes_out_when_it_is_back(
    open_rig: OpenRig,
) -> None:
    rig = open_rig(registry(cabinet(pads_expiry=TODAY + timedelta(days=60))))
    healthy(rig, Device())
    # Down from before 08:30 tomorrow until 11:00: the day's digest is caught up.
    assert rig.engine.record_digests(local(TODAY + timedelta(days=1), 11)) == 1
    assert rig.engine.record_digests(local(TODAY + timedelta(days=1), 12)) == 0


# -- inspections -------------------------------------------------------------------------------


def test_an_inspection_updates_the_registry_and_clears_inspection_overdue(
    open_rig: OpenRig,
) -> None:
    rig = open_rig(
        registry(
            cabinet(
                install_date=TODAY - timedelta(days=40),
                pads_expiry=TODAY + timedelta(days=60),
                battery_expiry=TODAY + timedelta(days=400),
            )
        )
    )
    healthy(rig, Device())
    overdue = rig.alarm(AlarmType.INSPECTION_OVERDUE)
    assert overdue.severity is Severity.WARNING
    assert rig.alarm(AlarmType.PADS_EXPIRING).severity is Severity.INFO

    at = T0 + 60 * MINUTE
    new_pads, same_battery = TODAY + timedelta(days=700), TODAY + timedelta(days=400)
    result = rig.engine.record_inspection(
        Inspection(
            cabinet_id=CABINET,
            person_id=CAPTAIN,
            at=at,
            ready_light_ok=True,
            pads_expiry=new_pads,
            battery_expiry=same_battery,
            cabinet_intact_and_clean=True,
            alarm_works=True,
            note="new pads fitted",
        ),
        at,
    )
    assert (result.pads_expiry_updated, result.battery_expiry_updated) == (True, False)
    stored = rig.state.cabinet(CABINET)
    assert stored is not None
    assert (stored.pads_expiry, stored.battery_expiry) == (new_pads, same_battery)
    engine_view = rig.engine.cabinet(CABINET)
    assert engine_view is not None
    assert engine_view.pads_expiry == new_pads
    assert rig.alarm(AlarmType.INSPECTION_OVERDUE).clear_since == at
    assert rig.alarm(AlarmType.PADS_EXPIRING).clear_since == at

    rig.engine.evaluate_due(at + 2 * MINUTE)
    for alarm_type in (AlarmType.INSPECTION_OVERDUE, AlarmType.PADS_EXPIRING):
        assert rig.alarm(alarm_type).state is AlarmState.RESOLVED
    assert rig.alarms.inspections.last([CABINET]) == {CABINET: at}


# -- resolving by hand -------------------------------------------------------------------------


def test_resolving_by_hand_while_the_condition_holds_raises_a_new_alarm(
    open_rig: OpenRig,
) -> None:
    rig = open_rig()
    alarm = failed_selftest(rig, Device())
    rig.engine.escalate(T0)
    rig.send(T0)

    at = T0 + 5 * MINUTE
    resolved = rig.engine.resolve(alarm.alarm_id, CAPTAIN, Via.CLI, at)
    assert resolved.state is AlarmState.RESOLVED
    assert (resolved.resolved_by, resolved.resolved_via) == (CAPTAIN, Via.CLI)
    assert rig.told(alarm.alarm_id, NoticeKind.RESOLVED) == {CAPTAIN: NotificationState.PENDING}

    # The failed self-test is still the latest: the next evaluation raises it again.
    assert rig.engine.evaluate_due(at) == 1
    again = rig.alarm(AlarmType.SELFTEST_FAILED)
    assert again.alarm_id != alarm.alarm_id
    assert again.state is AlarmState.RAISED
    assert again.raised_at == at
    assert rig.engine.escalate(at) == 1
    sent = rig.send(at)
    assert sorted((m.notice.kind.value, tuple(alarm_ids(m))) for m in sent) == [
        ("page", (again.alarm_id,)),
        ("resolved", (alarm.alarm_id,)),
    ]


# -- never heard from --------------------------------------------------------------------------


def test_never_heard_cabinets_are_judged_only_after_the_first_contact_grace(
    open_rig: OpenRig,
) -> None:
    rig = open_rig(registry(cabinet(), cabinet(CABINET_2)), start=T0)
    grace = timedelta(seconds=rig.settings.scheduler.first_contact_grace_s)
    # One cabinet speaks during the grace: it is judged at once.
    device = Device()
    spoke = T0 + MINUTE
    rig.feed(spoke, device.start(spoke))
    rig.feed(spoke, [device.selftest(spoke, passed=False)])
    assert rig.types() == {AlarmType.SELFTEST_FAILED}

    rig.engine.evaluate_due(T0 + grace - SECOND)
    assert rig.types(CABINET_2) == set()
    assert rig.engine.cabinet_readiness(CABINET_2) is None
    rig.engine.evaluate_due(T0 + grace)
    offline = rig.alarm(AlarmType.OFFLINE, CABINET_2)
    assert offline.severity is Severity.WARNING
    assert offline.detail == AlarmDetail(key=DetailKey.NEVER_HEARD)
    assert offline.condition_since == local(TODAY - timedelta(days=1), 0)
    never = rig.engine.cabinet_readiness(CABINET_2)
    assert never is not None
    assert never.reasons == (AlarmType.OFFLINE,)


# -- registry refresh --------------------------------------------------------------------------


def test_the_registry_is_reloaded_only_after_it_changed(
    open_rig: OpenRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    rig = open_rig()
    loads: list[Registry] = []
    load_registry = rig.state.load_registry

    def counted() -> Registry:
        loads.append(load_registry())
        return loads[-1]

    monkeypatch.setattr(rig.state, "load_registry", counted)
    rig.engine.refresh_registry()
    assert loads == []

    rig.state.apply_registry(Registry(cabinets=(cabinet("SZ-0100"),)))
    rig.engine.refresh_registry()
    rig.engine.refresh_registry()

    assert len(loads) == 1
    assert rig.engine.cabinet("SZ-0100") == cabinet("SZ-0100")


# -- InfluxDB points ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Point:
    measurement: str
    tags: dict[str, str]
    fields: dict[str, object]
    timestamp_ns: int


def _split(text: str, separator: str, *, quotes: bool) -> list[str]:
    """Split at unescaped separators (outside double quotes in a field set)."""
    parts, current, escaped, quoted = [], [], False, False
    for char in text:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            current.append(char)
            escaped = True
        elif quotes and char == '"':
            current.append(char)
            quoted = not quoted
        elif char == separator and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    assert not escaped, f"unterminated escape in {text!r}"
    assert not quoted, f"unterminated string in {text!r}"
    parts.append("".join(current))
    return parts


def _unescape(text: str) -> str:
    out, escaped = [], False
    for char in text:
        if escaped or char != "\\":
            out.append(char)
            escaped = False
        else:
            escaped = True
    return "".join(out)


def _field_value(raw: str) -> object:
    if raw.startswith('"'):
        assert len(raw) >= 2, raw
        assert raw.endswith('"'), raw
        return _unescape(raw[1:-1])
    if raw.endswith("i"):
        return int(raw[:-1])
    if raw in {"true", "false"}:
        return raw == "true"
    return float(raw)


def parse_line(line: str) -> Point:
    """One line of InfluxDB line protocol, strictly: measurement and tags, fields, time."""
    assert "\n" not in line
    series, field_set, timestamp = _split(line, " ", quotes=True)
    measurement, *tag_pairs = _split(series, ",", quotes=False)
    tags = {}
    for pair in tag_pairs:
        key, value = _split(pair, "=", quotes=False)
        assert key, f"empty tag key in {line!r}"
        assert value, f"empty tag value in {line!r}"
        tags[_unescape(key)] = _unescape(value)
    fields = {}
    for pair in _split(field_set, ",", quotes=True):
        key, raw = pair.split("=", 1)
        fields[_unescape(key)] = _field_value(raw)
    assert fields, f"no fields in {line!r}"
    return Point(_unescape(measurement), tags, fields, int(timestamp))


def ns(at: datetime) -> int:
    return int(at.timestamp()) * 1_000_000_000 + at.microsecond * 1_000


def test_alarm_readiness_and_notification_points_parse_as_line_protocol(
    open_rig: OpenRig,
) -> None:
    rig = open_rig()
    alarm = failed_selftest(rig, Device())
    rig.engine.escalate(T0)
    rig.send(T0 + SECOND)
    acked_at = T0 + 3 * MINUTE
    rig.engine.acknowledge(alarm.alarm_id, CAPTAIN, Via.LINK, acked_at)
    resolved_at = T0 + 7 * MINUTE
    rig.engine.resolve(alarm.alarm_id, CAPTAIN, Via.CLI, resolved_at)
    rig.engine.snapshot_lines(resolved_at)

    points = [parse_line(line) for line in rig.engine.take_lines()]
    assert rig.engine.take_lines() == []
    assert {p.measurement for p in points} == {"alarm", "readiness", "notification"}
    cabinet_tags = {
        "cabinet_id": CABINET,
        "aed_model": build.MODEL,
        "region": "440305",
        "site_type": "other",
    }
    for point in points:
        assert cabinet_tags.items() <= point.tags.items()

    steps = {p.fields["step"]: p for p in points if p.measurement == "alarm"}
    assert set(steps) == {"raised", "acknowledged", "resolved"}
    raised = steps["raised"]
    assert raised.tags["type"] == "selftest_failed"
    assert raised.tags["severity"] == "critical"
    assert raised.fields["alarm_id"] == alarm.alarm_id
    assert raised.fields["state"] == "raised"
    assert raised.timestamp_ns == ns(T0)
    assert steps["acknowledged"].fields["response_s"] == 180.0
    assert steps["acknowledged"].timestamp_ns == ns(acked_at)
    assert steps["resolved"].fields["duration_s"] == 420.0

    [sent] = [p for p in points if p.measurement == "notification"]
    assert {k: sent.tags[k] for k in ("channel", "kind", "outcome", "role", "type")} == {
        "channel": "email",
        "kind": "page",
        "outcome": "delivered",
        "role": "captain",
        "type": "selftest_failed",
    }
    assert sent.fields == {
        "alarm_id": alarm.alarm_id,
        "attempts": 1,
        "latency_s": 1.0,
        "person_id": CAPTAIN,
    }

    readiness = [p for p in points if p.measurement == "readiness"]
    assert [(p.fields["ready"], p.fields["reasons"]) for p in readiness][:2] == [
        (1, ""),
        (0, "selftest_failed"),
    ]
    assert readiness[-1].timestamp_ns == ns(resolved_at)  # the snapshot
