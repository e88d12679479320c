"""The alarm store: alarms, their history and escalations, and the notification outbox,
in the state store's database; transactions tie these three together (an
acknowledgement stops the escalation and withdraws pending pages at once).

The records no transaction ties to alarms have stores of their own on the same engine,
reached as attributes: :attr:`AlarmStore.silences` (:mod:`alerting.silence_store`),
:attr:`AlarmStore.inspections` (:mod:`alerting.inspection_store`) and
:attr:`AlarmStore.facts` (:mod:`alerting.fact_store`).

Synchronous SQLAlchemy Core, like :class:`aedfleet.db.StateStore`, opened on the same
URL (SQLite in WAL mode or PostgreSQL) and migrated by the same chain. Safe to share
between threads, and between processes on one database: every method is one
transaction; read-modify-write ones lock what they modify first (the rows on PostgreSQL,
the database on SQLite, whose write transactions begin ``IMMEDIATE``), then apply the
pure transitions of :mod:`alerting.lifecycle` and :mod:`alerting.escalation`, so that
the store holds no second definition of them.

Guarantees, and what makes them hold:

- **One active alarm per (cabinet, type)**: the partial unique index ``uq_alarms_active``.
  :meth:`AlarmStore.apply` inserts with ``ON CONFLICT DO NOTHING`` on it; a worker that
  loses a race to raise the same alarm gets the winner's alarm back (in
  ``already_raised``) and records nothing.
- **Every raised alarm escalates**: the alarm, its first history event and its
  escalation are written in one transaction; an upgrade restarts the escalation in the
  transaction that records it.
- **Nobody is paged twice for one decision**: a notification's (page key, person) is
  unique, so recording it again after a crash records nothing (:meth:`record_notice`
  returns None).
- **An acknowledgement stops every page at once**: acknowledging or resolving stops the
  escalation and withdraws the alarm from every pending notification in the same
  transaction (a notification left about no alarm is cancelled), and
  :meth:`AlarmStore.record_notice` refuses a page or reminder about alarms that are no
  longer raised. Both lock the alarm rows, so an acknowledgement and a page being
  recorded cannot pass each other.
- **Escalations are worked once at a time**: :meth:`AlarmStore.claim_due` leases the
  due escalations to its caller (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so that
  workers take different ones; the write lock on SQLite) until it saves the advanced
  state or the lease runs out (a worker that died).

Only :mod:`alerting.model` values, the lifecycle's changes and the escalation's states,
:class:`AppliedChanges` and :class:`AlarmStoreError` cross this interface.

Exceptions::

    AlertingError
    └── AlarmStoreError      the database failed, or the request cannot be done
        ├── AlarmNotFoundError    no alarm has that id; .alarm_id
        └── TransitionRefusedError  the lifecycle forbids it (acknowledging a resolved alarm)
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Final

from pydantic import BaseModel, ConfigDict
from sqlalchemy import Connection, Engine, and_, func, or_, select, update

from aedfleet.db.base import DatabaseStore, open_migrated
from aedfleet.db.engine import DEFAULT_TIMEOUT_S
from aedfleet.db.errors import StoreError
from alerting.errors import (
    AlarmNotFoundError,
    AlarmStoreError,
    TransitionRefusedError,
)
from alerting.escalation import EscalationPolicies, EscalationState, start
from alerting.fact_store import FactStore
from alerting.inspection_store import InspectionStore
from alerting.lifecycle import (
    CancelClear,
    Change,
    ClearSeen,
    EscalationEffect,
    LifecycleError,
    Raise,
    Resolve,
    Update,
    acknowledge,
    apply_change,
    escalation_effect,
    raise_alarm,
    resolve,
)
from alerting.model import (
    Alarm,
    AlarmEvent,
    AlarmEventKind,
    AlarmState,
    AlarmType,
    DeliveryAttempt,
    NoticeKind,
    Notification,
    NotificationState,
    Via,
)
from alerting.silence_store import SilenceStore
from alerting.store_rows import chunks, columns_of, insert_into, is_postgres, model_of
from alerting.tables import (
    ACTIVE_ALARM,
    alarm_events,
    alarms,
    escalations,
    notification_alarms,
    notification_attempts,
    notifications,
)

__all__ = [
    "AlarmNotFoundError",
    "AlarmStore",
    "AlarmStoreError",
    "AppliedChanges",
    "TransitionRefusedError",
]

_RAISE_ATTEMPTS: Final = 5
DEFAULT_LEASE: Final = timedelta(minutes=1)
# Notifications an acknowledgement withdraws: everything but the news that it resolved.
_WITHDRAWABLE: Final = tuple(kind.value for kind in NoticeKind if kind is not NoticeKind.RESOLVED)


class AppliedChanges(BaseModel):
    """What :meth:`AlarmStore.apply` did, each alarm as it ended up.

    ``escalations`` are the escalations started (new alarms) or restarted (upgrades):
    their first step is due at once for most policies, so the caller may advance them
    right away instead of waiting for the next :meth:`AlarmStore.claim_due`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    raised: tuple[Alarm, ...] = ()  # new alarms (also in resolved if resolved at once)
    already_raised: tuple[Alarm, ...] = ()
    changed: tuple[Alarm, ...] = ()
    resolved: tuple[Alarm, ...] = ()
    escalations: tuple[EscalationState, ...] = ()


def _alarm(row: Mapping[str, Any]) -> Alarm:
    return model_of(Alarm, row)


def _escalation(row: Mapping[str, Any]) -> EscalationState:
    return model_of(EscalationState, {k: v for k, v in row.items() if k != "claimed_until"})


class AlarmStore(DatabaseStore):
    """Alerting's state in the state store's database. Create it with :meth:`open`."""

    _error_type = AlarmStoreError

    def __init__(self, *, _engine: Engine, _policies: EscalationPolicies) -> None:
        super().__init__(_engine)
        self._policies = _policies
        # The records no transaction ties to alarms, in stores of their own on this engine.
        self.silences = SilenceStore(_engine)
        self.inspections = InspectionStore(_engine)
        self.facts = FactStore(_engine)

    @classmethod
    def open(
        cls,
        url: str,
        *,
        policies: EscalationPolicies | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> AlarmStore:
        """Connect to ``sqlite:///path`` or ``postgresql+psycopg://...`` and migrate it.

        ``policies`` start and restart escalations in :meth:`apply` (the issue's defaults
        when None); ``timeout_s`` bounds connecting and every wait for a lock.
        """
        try:
            engine = open_migrated(url, timeout_s)
        except StoreError as exc:
            raise AlarmStoreError(str(exc)) from exc
        return cls(_engine=engine, _policies=policies or EscalationPolicies())

    # -- alarms ------------------------------------------------------------------------------

    def active_alarms(self, cabinet_ids: Iterable[str]) -> dict[str, dict[AlarmType, Alarm]]:
        """The unresolved alarms of each cabinet by type; every id asked for is a key."""
        wanted = sorted(set(cabinet_ids))
        found: dict[str, dict[AlarmType, Alarm]] = {cabinet_id: {} for cabinet_id in wanted}
        with self._reading("read the active alarms") as connection:
            for chunk in chunks(wanted):
                rows = connection.execute(
                    select(alarms).where(alarms.c.cabinet_id.in_(chunk), _active())
                )
                for row in rows:
                    alarm = _alarm(row._asdict())
                    found[alarm.cabinet_id][alarm.type] = alarm
        return found

    def last_raised_for(
        self, cabinet_id: str, alarm_types: Iterable[AlarmType]
    ) -> dict[AlarmType, datetime]:
        """The newest ``condition_since`` of the cabinet's alarms of each type, resolved
        ones included (types with no alarm are left out)."""
        wanted = sorted(alarm_type.value for alarm_type in alarm_types)
        if not wanted:
            return {}
        query = (
            select(alarms.c.type, func.max(alarms.c.condition_since))
            .where(alarms.c.cabinet_id == cabinet_id, alarms.c.type.in_(wanted))
            .group_by(alarms.c.type)
        )
        with self._reading(f"read the last alarms of cabinet {cabinet_id!r}") as connection:
            return {AlarmType(kind): since for kind, since in connection.execute(query)}

    def alarm(self, alarm_id: int) -> Alarm | None:
        with self._reading(f"read alarm {alarm_id}") as connection:
            row = connection.execute(select(alarms).where(alarms.c.alarm_id == alarm_id)).first()
        return None if row is None else _alarm(row._asdict())

    def alarms(
        self,
        state: AlarmState | None = None,
        cabinet_id: str | None = None,
        limit: int = 100,
    ) -> list[Alarm]:
        """Alarms, newest first, optionally of one state and/or one cabinet."""
        query = select(alarms)
        if state is not None:
            query = query.where(alarms.c.state == state.value)
        if cabinet_id is not None:
            query = query.where(alarms.c.cabinet_id == cabinet_id)
        query = query.order_by(alarms.c.raised_at.desc(), alarms.c.alarm_id.desc()).limit(limit)
        with self._reading("list the alarms") as connection:
            return [_alarm(row._asdict()) for row in connection.execute(query)]

    def history(self, alarm_id: int) -> list[AlarmEvent]:
        """What happened to an alarm, oldest first (empty for an unknown id)."""
        with self._reading(f"read the history of alarm {alarm_id}") as connection:
            rows = connection.execute(
                select(alarm_events)
                .where(alarm_events.c.alarm_id == alarm_id)
                .order_by(alarm_events.c.event_id)
            )
            return [model_of(AlarmEvent, row._asdict()) for row in rows]

    def apply(self, cabinet_id: str, changes: Sequence[Change], now: datetime) -> AppliedChanges:
        """Apply :func:`alerting.lifecycle.reconcile`'s changes for one cabinet, atomically.

        Each change is applied to the alarm as stored (locked), not as it was when the
        change was decided, so that changes decided by two workers from the same view
        apply once: a second raise of an active (cabinet, type) returns that alarm in
        ``already_raised``, a repeated update, clear or resolve changes nothing.
        """
        with self._writing(f"apply {len(changes)} alarm changes to cabinet {cabinet_id!r}") as c:
            return _Applying(self, c, cabinet_id, now).run(changes)

    def acknowledge(self, alarm_id: int, by: str, via: Via, now: datetime) -> Alarm:
        """Acknowledge the alarm: its escalation stops and every pending page of it is
        withdrawn, at once. Acknowledging again keeps the first acknowledgement."""
        with self._writing(f"acknowledge alarm {alarm_id}") as connection:
            return self._act(connection, alarm_id, now, lambda a: acknowledge(a, by, via, now))

    def resolve(self, alarm_id: int, by: str, via: Via, now: datetime) -> Alarm:
        """Resolve the alarm by hand (see :func:`alerting.lifecycle.resolve`): its
        escalation stops and its pending pages are withdrawn. Idempotent."""
        with self._writing(f"resolve alarm {alarm_id}") as connection:
            return self._act(connection, alarm_id, now, lambda a: resolve(a, by, via, now))

    def _act(
        self,
        connection: Connection,
        alarm_id: int,
        now: datetime,
        transition: Callable[[Alarm], Alarm],
    ) -> Alarm:
        before = self._locked_alarms(connection, [alarm_id]).get(alarm_id)
        if before is None:
            raise AlarmNotFoundError(alarm_id)
        try:
            after = transition(before)
        except LifecycleError as exc:
            raise TransitionRefusedError(str(exc)) from exc
        if after == before:
            return before
        self._write_alarm(connection, after)
        if after.state is AlarmState.RESOLVED:
            self._event(
                connection,
                after,
                AlarmEventKind.RESOLVED,
                now,
                after.resolved_by,
                after.resolved_via,
            )
        else:
            self._event(
                connection,
                after,
                AlarmEventKind.ACKNOWLEDGED,
                now,
                after.acknowledged_by,
                after.acknowledged_via,
            )
        self._stop(connection, alarm_id, now)
        return after

    def _locked_alarms(self, connection: Connection, alarm_ids: Sequence[int]) -> dict[int, Alarm]:
        """The alarms of ``alarm_ids``, locked for this transaction (in id order)."""
        found: dict[int, Alarm] = {}
        for chunk in chunks(sorted(set(alarm_ids))):
            query = select(alarms).where(alarms.c.alarm_id.in_(chunk)).order_by(alarms.c.alarm_id)
            if is_postgres(connection):
                query = query.with_for_update()
            for row in connection.execute(query):
                alarm = _alarm(row._asdict())
                found[alarm.alarm_id] = alarm
        return found

    def _write_alarm(self, connection: Connection, alarm: Alarm) -> None:
        values = columns_of(alarm)
        del values["alarm_id"]
        connection.execute(update(alarms).where(alarms.c.alarm_id == alarm.alarm_id), values)

    def _event(
        self,
        connection: Connection,
        alarm: Alarm,
        kind: AlarmEventKind,
        at: datetime,
        by: str | None = None,
        via: Via | None = None,
    ) -> None:
        connection.execute(
            alarm_events.insert(),
            {
                "alarm_id": alarm.alarm_id,
                "kind": kind.value,
                "at": at,
                "by": by,
                "via": (via or Via.AUTO).value,
                "severity": alarm.severity.value,
                "detail": alarm.detail,
            },
        )

    def _stop(self, connection: Connection, alarm_id: int, now: datetime) -> None:
        """Stop the alarm's escalation and withdraw it from every pending notification."""
        connection.execute(
            update(escalations)
            .where(escalations.c.alarm_id == alarm_id)
            .values(due_at=None, claimed_until=None)
        )
        self._withdraw(connection, alarm_id, now)

    def _withdraw(self, connection: Connection, alarm_id: int, now: datetime) -> int:
        pending = select(notifications.c.notification_id).where(
            notifications.c.state == NotificationState.PENDING.value,
            notifications.c.kind.in_(_WITHDRAWABLE),
        )
        links = and_(
            notification_alarms.c.alarm_id == alarm_id,
            notification_alarms.c.withdrawn_at.is_(None),
            notification_alarms.c.notification_id.in_(pending),
        )
        touched = list(
            connection.scalars(select(notification_alarms.c.notification_id).where(links))
        )
        if not touched:
            return 0
        connection.execute(update(notification_alarms).where(links).values(withdrawn_at=now))
        still_about = select(notification_alarms.c.notification_id).where(
            notification_alarms.c.notification_id.in_(touched),
            notification_alarms.c.withdrawn_at.is_(None),
        )
        cancelled = connection.execute(
            update(notifications)
            .where(
                notifications.c.notification_id.in_(touched),
                notifications.c.notification_id.not_in(still_about),
            )
            .values(state=NotificationState.CANCELLED.value)
        )
        return cancelled.rowcount

    # -- escalations -------------------------------------------------------------------------

    def escalation(self, alarm_id: int) -> EscalationState | None:
        with self._reading(f"read the escalation of alarm {alarm_id}") as connection:
            row = connection.execute(
                select(escalations).where(escalations.c.alarm_id == alarm_id)
            ).first()
        return None if row is None else _escalation(row._asdict())

    def save_escalation(self, state: EscalationState) -> bool:
        """Store an advanced escalation and end the caller's claim on it.

        Refused (False) when the stored escalation is further along than ``state`` (a
        restart after an upgrade, or another worker's newer state after this worker's
        lease ran out): an older state never overwrites a newer one. The escalation of
        an alarm that is no longer raised is saved stopped.
        """
        with self._writing(f"save the escalation of alarm {state.alarm_id}") as connection:
            alarm = self._locked_alarms(connection, [state.alarm_id]).get(state.alarm_id)
            if alarm is None:
                raise AlarmNotFoundError(state.alarm_id)
            stored = self._locked_escalation(connection, state.alarm_id)
            if stored is not None and _progress(stored) > _progress(state):
                return False
            if alarm.state is not AlarmState.RAISED:
                state = state.model_copy(update={"due_at": None})
            self._put_escalation(connection, state)
            return True

    def _locked_escalation(self, connection: Connection, alarm_id: int) -> EscalationState | None:
        query = select(escalations).where(escalations.c.alarm_id == alarm_id)
        if is_postgres(connection):
            query = query.with_for_update()
        row = connection.execute(query).first()
        return None if row is None else _escalation(row._asdict())

    def _put_escalation(self, connection: Connection, state: EscalationState) -> None:
        values = columns_of(state) | {"claimed_until": None}
        insert = insert_into(connection, escalations)
        connection.execute(
            insert.on_conflict_do_update(
                index_elements=["alarm_id"],
                set_={name: insert.excluded[name] for name in values if name != "alarm_id"},
            ),
            values,
        )

    def claim_due(
        self, now: datetime, limit: int = 100, lease: timedelta = DEFAULT_LEASE
    ) -> list[tuple[Alarm, EscalationState]]:
        """Lease up to ``limit`` escalations due at ``now`` of raised (unacknowledged) alarms.

        Each is the caller's until it saves the advanced state (:meth:`save_escalation`)
        or ``lease`` passes; meanwhile no other claim returns it. Most overdue first.
        """
        with self._writing("claim the due escalations") as connection:
            query = (
                select(escalations)
                .join(alarms, alarms.c.alarm_id == escalations.c.alarm_id)
                .where(
                    escalations.c.due_at <= now,
                    alarms.c.state == AlarmState.RAISED.value,
                    or_(
                        escalations.c.claimed_until.is_(None),
                        escalations.c.claimed_until <= now,
                    ),
                )
                .order_by(escalations.c.due_at, escalations.c.alarm_id)
                .limit(limit)
            )
            if is_postgres(connection):
                query = query.with_for_update(skip_locked=True, of=escalations)
            states = [_escalation(row._asdict()) for row in connection.execute(query)]
            if not states:
                return []
            ids = [state.alarm_id for state in states]
            connection.execute(
                update(escalations)
                .where(escalations.c.alarm_id.in_(ids))
                .values(claimed_until=now + lease)
            )
            by_id = {
                alarm.alarm_id: alarm
                for alarm in (
                    _alarm(row._asdict())
                    for row in connection.execute(select(alarms).where(alarms.c.alarm_id.in_(ids)))
                )
            }
        return [(by_id[state.alarm_id], state) for state in states]

    # -- notifications -----------------------------------------------------------------------

    def record_notice(
        self,
        page_key: str,
        person_id: str,
        notice_kind: NoticeKind,
        alarm_ids: Sequence[int],
        channel_plan: Sequence[str],
        created_at: datetime,
        release_at: datetime,
    ) -> int | None:
        """Put a notification in the outbox; its id, or None when nothing was recorded.

        None when (``page_key``, ``person_id``) was recorded before (a decision is
        recorded once, whatever happened in between), and when a page, reminder or
        digest names only alarms no longer raised (acknowledged or resolved first).
        Alarms among ``alarm_ids`` no longer raised are left out of such a notification.
        """
        if not alarm_ids:
            raise AlarmStoreError(f"notification {page_key!r} names no alarm")
        action = f"record notification {page_key!r} for {person_id!r}"
        with self._writing(action) as connection:
            held = self._locked_alarms(connection, alarm_ids)
            missing = sorted(set(alarm_ids) - held.keys())
            if missing:
                raise AlarmNotFoundError(missing[0])
            about = sorted(held)
            if notice_kind is not NoticeKind.RESOLVED:
                about = [i for i in about if held[i].state is AlarmState.RAISED]
                if not about:
                    return None
            inserted = connection.execute(
                insert_into(connection, notifications)
                .on_conflict_do_nothing(index_elements=["page_key", "person_id"])
                .returning(notifications.c.notification_id),
                {
                    "page_key": page_key,
                    "person_id": person_id,
                    "kind": notice_kind.value,
                    "channel_plan": list(channel_plan),
                    "created_at": created_at,
                    "release_at": release_at,
                    "state": NotificationState.PENDING.value,
                },
            ).scalar_one_or_none()
            if inserted is None:
                return None
            connection.execute(
                notification_alarms.insert(),
                [{"notification_id": inserted, "alarm_id": alarm_id} for alarm_id in about],
            )
            return int(inserted)

    def pending_notices(self, now: datetime, limit: int = 100) -> list[Notification]:
        """Notifications recorded, not delivered, failed nor cancelled, due by ``now``;
        in the order of their release time."""
        query = (
            select(notifications)
            .where(
                notifications.c.state == NotificationState.PENDING.value,
                notifications.c.release_at <= now,
            )
            .order_by(notifications.c.release_at, notifications.c.notification_id)
            .limit(limit)
        )
        with self._reading("read the pending notifications") as connection:
            return self._notifications(connection, query)

    def notification(self, notification_id: int) -> Notification | None:
        query = select(notifications).where(notifications.c.notification_id == notification_id)
        with self._reading(f"read notification {notification_id}") as connection:
            found = self._notifications(connection, query)
        return found[0] if found else None

    def notifications(self, alarm_id: int) -> list[Notification]:
        """Every notification about an alarm (withdrawn ones too), with its attempts."""
        about = select(notification_alarms.c.notification_id).where(
            notification_alarms.c.alarm_id == alarm_id
        )
        query = (
            select(notifications)
            .where(notifications.c.notification_id.in_(about))
            .order_by(notifications.c.notification_id)
        )
        with self._reading(f"read the notifications of alarm {alarm_id}") as connection:
            return self._notifications(connection, query)

    def _notifications(self, connection: Connection, query: Any) -> list[Notification]:
        rows = [dict(row._asdict()) for row in connection.execute(query)]
        ids = [row["notification_id"] for row in rows]
        about: dict[int, list[int]] = defaultdict(list)
        withdrawn: dict[int, list[int]] = defaultdict(list)
        attempts: dict[int, list[DeliveryAttempt]] = defaultdict(list)
        for chunk in chunks(ids):
            links = connection.execute(
                select(notification_alarms)
                .where(notification_alarms.c.notification_id.in_(chunk))
                .order_by(notification_alarms.c.alarm_id)
            )
            for link in links:
                bucket = about if link.withdrawn_at is None else withdrawn
                bucket[link.notification_id].append(link.alarm_id)
            tries = connection.execute(
                select(notification_attempts)
                .where(notification_attempts.c.notification_id.in_(chunk))
                .order_by(notification_attempts.c.attempt_id)
            )
            for attempt in tries:
                attempts[attempt.notification_id].append(
                    model_of(
                        DeliveryAttempt,
                        {
                            "channel": attempt.channel,
                            "at": attempt.at,
                            "ok": attempt.ok,
                            "error": attempt.error,
                        },
                    )
                )
        return [
            model_of(
                Notification,
                row
                | {
                    "alarm_ids": tuple(about[row["notification_id"]]),
                    "withdrawn_alarm_ids": tuple(withdrawn[row["notification_id"]]),
                    "channel_plan": tuple(row["channel_plan"]),
                    "attempts": tuple(attempts[row["notification_id"]]),
                },
            )
            for row in rows
        ]

    def record_attempt(
        self, notification_id: int, channel: str, at: datetime, ok: bool, error: str | None = None
    ) -> None:
        """Record one try to deliver a notification over one channel."""
        with self._writing(f"record an attempt of notification {notification_id}") as connection:
            self._require_notification(connection, notification_id)
            connection.execute(
                notification_attempts.insert(),
                {
                    "notification_id": notification_id,
                    "channel": channel,
                    "at": at,
                    "ok": ok,
                    "error": error,
                },
            )

    def mark_delivered(self, notification_id: int, channel: str, at: datetime) -> None:
        """The notification reached its person (over ``channel``). The first delivery counts;
        one cancelled while it was being sent is recorded as delivered: it was."""
        with self._writing(f"mark notification {notification_id} delivered") as connection:
            self._require_notification(connection, notification_id)
            connection.execute(
                update(notifications)
                .where(
                    notifications.c.notification_id == notification_id,
                    notifications.c.state != NotificationState.DELIVERED.value,
                )
                .values(
                    state=NotificationState.DELIVERED.value,
                    delivered_at=at,
                    delivered_channel=channel,
                )
            )

    def mark_failed(self, notification_id: int, at: datetime, error: str) -> None:
        """Every channel failed for good; a delivered or cancelled notification stays so."""
        with self._writing(f"mark notification {notification_id} failed") as connection:
            self._require_notification(connection, notification_id)
            connection.execute(
                update(notifications)
                .where(
                    notifications.c.notification_id == notification_id,
                    notifications.c.state == NotificationState.PENDING.value,
                )
                .values(state=NotificationState.FAILED.value, failed_at=at, error=error)
            )

    def _require_notification(self, connection: Connection, notification_id: int) -> None:
        found = connection.scalar(
            select(notifications.c.notification_id).where(
                notifications.c.notification_id == notification_id
            )
        )
        if found is None:
            raise AlarmStoreError(f"no notification has the id {notification_id}")

    def cancel_notices_for(self, alarm_id: int, now: datetime) -> int:
        """Withdraw the alarm from every pending page, reminder and digest; those left
        about no alarm are cancelled (their number is returned). News of a resolution
        stays. :meth:`acknowledge` and :meth:`resolve` do this themselves."""
        with self._writing(f"cancel the notifications of alarm {alarm_id}") as connection:
            if not self._locked_alarms(connection, [alarm_id]):
                raise AlarmNotFoundError(alarm_id)
            return self._withdraw(connection, alarm_id, now)


def _active() -> Any:
    return alarms.c.state != AlarmState.RESOLVED.value


def _progress(state: EscalationState) -> tuple[int, int, int]:
    return state.first_round, state.round, state.next_step


class _Applying:
    """One :meth:`AlarmStore.apply` transaction: the cabinet's alarms, locked, as changed."""

    def __init__(
        self, store: AlarmStore, connection: Connection, cabinet_id: str, now: datetime
    ) -> None:
        self._store = store
        self._connection = connection
        self._cabinet_id = cabinet_id
        self._now = now
        self._held: dict[int, Alarm] = {}
        # Alarms raised, changed and resolved by this transaction, in the order touched.
        self._touched: dict[int, None] = {}
        self._raised: set[int] = set()
        self._resolved: set[int] = set()
        self._already: list[Alarm] = []
        self._escalations: dict[int, EscalationState] = {}

    def run(self, changes: Sequence[Change]) -> AppliedChanges:
        self._lock([change.alarm_id for change in changes if not isinstance(change, Raise)])
        for change in changes:
            if isinstance(change, Raise):
                self._raise(change)
            else:
                self._change(change)
        final = [self._held[alarm_id] for alarm_id in self._touched]
        return AppliedChanges(
            raised=tuple(a for a in final if a.alarm_id in self._raised),
            already_raised=tuple(self._already),
            changed=tuple(a for a in final if a.alarm_id not in self._raised | self._resolved),
            resolved=tuple(a for a in final if a.alarm_id in self._resolved),
            escalations=tuple(self._escalations.values()),
        )

    def _lock(self, alarm_ids: list[int]) -> None:
        """Lock the cabinet's active alarms and those the changes name, in id order."""
        query = (
            select(alarms)
            .where(
                or_(
                    and_(alarms.c.cabinet_id == self._cabinet_id, _active()),
                    alarms.c.alarm_id.in_(sorted(set(alarm_ids))),
                )
            )
            .order_by(alarms.c.alarm_id)
        )
        if is_postgres(self._connection):
            query = query.with_for_update()
        for row in self._connection.execute(query):
            alarm = _alarm(row._asdict())
            if alarm.cabinet_id != self._cabinet_id:
                raise AlarmStoreError(
                    f"alarm {alarm.alarm_id} is about cabinet {alarm.cabinet_id!r},"
                    f" not {self._cabinet_id!r}"
                )
            self._held[alarm.alarm_id] = alarm
        missing = sorted(set(alarm_ids) - self._held.keys())
        if missing:
            raise AlarmNotFoundError(missing[0])

    def _active_of(self, alarm_type: AlarmType) -> Alarm | None:
        for alarm in self._held.values():
            if alarm.type is alarm_type and alarm.active:
                return alarm
        return None

    def _raise(self, change: Raise) -> None:
        condition = change.condition
        if condition.cabinet_id != self._cabinet_id:
            raise AlarmStoreError(
                f"a condition of cabinet {condition.cabinet_id!r} cannot raise an alarm"
                f" of cabinet {self._cabinet_id!r}"
            )
        connection = self._connection
        for _ in range(_RAISE_ATTEMPTS):
            existing = self._active_of(condition.type)
            if existing is not None:
                self._already.append(existing)
                return
            values = columns_of(raise_alarm(0, condition, self._now))
            del values["alarm_id"]
            alarm_id = connection.execute(
                insert_into(connection, alarms)
                .on_conflict_do_nothing(
                    index_elements=["cabinet_id", "type"], index_where=ACTIVE_ALARM
                )
                .returning(alarms.c.alarm_id),
                values,
            ).scalar_one_or_none()
            if alarm_id is not None:
                alarm = raise_alarm(alarm_id, condition, self._now)
                self._held[alarm_id] = alarm
                self._touched[alarm_id] = None
                self._raised.add(alarm_id)
                self._store._event(connection, alarm, AlarmEventKind.RAISED, self._now)
                policy = self._store._policies.for_severity(alarm.severity)
                self._escalate(start(alarm, policy, self._now))
                return
            # Another worker raised it since this transaction locked the cabinet's alarms
            # (PostgreSQL only: SQLite's write lock keeps others out). Lock theirs.
            self._lock_active(condition.type)
        raise AlarmStoreError(
            f"cannot raise {condition.type.value} at cabinet {self._cabinet_id!r}: the"
            " active alarm kept changing under concurrent writers"
        )

    def _lock_active(self, alarm_type: AlarmType) -> None:
        query = select(alarms).where(
            alarms.c.cabinet_id == self._cabinet_id, alarms.c.type == alarm_type.value, _active()
        )
        if is_postgres(self._connection):
            query = query.with_for_update()
        for row in self._connection.execute(query):
            alarm = _alarm(row._asdict())
            self._held[alarm.alarm_id] = alarm

    def _change(self, change: Update | ClearSeen | CancelClear | Resolve) -> None:
        before = self._held[change.alarm_id]
        try:
            after = apply_change(before, change, self._now)
        except LifecycleError as exc:
            raise TransitionRefusedError(str(exc)) from exc
        if after == before:
            return
        store, connection, now = self._store, self._connection, self._now
        self._held[after.alarm_id] = after
        store._write_alarm(connection, after)
        resolved = False
        match change:
            case Update():
                kind = (
                    AlarmEventKind.SEVERITY_CHANGED
                    if after.severity is not before.severity
                    else AlarmEventKind.DETAIL_CHANGED
                )
                store._event(connection, after, kind, now)
                if escalation_effect(before, after.severity) is EscalationEffect.RESTART:
                    previous = store._locked_escalation(connection, after.alarm_id)
                    policy = store._policies.for_severity(after.severity)
                    self._escalate(start(after, policy, now, previous=previous))
            case ClearSeen():
                store._event(connection, after, AlarmEventKind.CLEAR_SEEN, now)
            case CancelClear():
                store._event(connection, after, AlarmEventKind.CLEAR_CANCELLED, now)
            case Resolve():
                store._event(connection, after, AlarmEventKind.RESOLVED, now, None, Via.AUTO)
                store._stop(connection, after.alarm_id, now)
                self._escalations.pop(after.alarm_id, None)
                resolved = True
        self._touched.setdefault(after.alarm_id, None)
        if resolved:
            self._resolved.add(after.alarm_id)

    def _escalate(self, state: EscalationState) -> None:
        self._store._put_escalation(self._connection, state)
        self._escalations[state.alarm_id] = state
