"""The durable outbox of dispatch messages, in the state store (SQLite or PostgreSQL).

Synchronous SQLAlchemy Core, called from the service's one store thread. The service
writes, in ONE transaction per batch of cabinet events (:meth:`DispatchOutbox.record`):
the cabinets' coalescing states, the new messages, and one delivery row per (message,
endpoint); only then does it acknowledge the events to the broker and attempt any
delivery. So a message exists before anything is sent, and a crash at any point either
loses nothing (the broker redelivers the unacknowledged events, whose ids the recorded
states recognise) or leaves pending deliveries that :meth:`DispatchOutbox.pending`
returns after a restart.

Every attempt is recorded with its outcome (:meth:`DispatchOutbox.record_attempts`);
:meth:`DispatchOutbox.recent` is what ``aedfleet dispatch list`` and the API show.

Only :mod:`dispatch` values, :mod:`aedfleet.contract` values and :class:`OutboxError`
cross this interface; SQLAlchemy stays inside.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, ValidationError
from sqlalchemy import (
    Connection,
    Engine,
    String,
    and_,
    bindparam,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from aedfleet.contract import DispatchEvent
from aedfleet.db.base import DatabaseStore
from aedfleet.db.engine import DEFAULT_TIMEOUT_S, create_store_engine, describe
from aedfleet.db.errors import StoreError
from aedfleet.db.migration import upgrade
from aedfleet.db.tables import UtcDateTime
from dispatch.errors import OutboxError
from dispatch.incident import CabinetState, CoalescingPolicy, due_at
from dispatch.tables import (
    dispatch_attempts,
    dispatch_cabinets,
    dispatch_deliveries,
    dispatch_messages,
)


class Durability(StrEnum):
    """When a commit of the outbox returns.

    ``synced``: once the database has flushed it to disk (fsync): it survives a power
    cut. ``written``: once the operating system has it (SQLite ``synchronous=NORMAL`` in
    WAL mode, PostgreSQL ``synchronous_commit=off``): it survives the service being
    killed, not a power cut of the machine, and spares the door event a disk flush, whose
    tail is long on a disk the ingest keeps busy (see ``docs/dispatch.md``).
    """

    SYNCED = "synced"
    WRITTEN = "written"


def _relax_commits(engine: Engine) -> None:
    """Commits return once the OS has the data (see :class:`Durability`)."""

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            if engine.dialect.name == "sqlite":
                cursor.execute("PRAGMA synchronous=NORMAL")
            elif engine.dialect.name == "postgresql":
                cursor.execute("SET synchronous_commit TO off")
        finally:
            cursor.close()


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    EXPIRED = "expired"


class _Value(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Route(_Value):
    """Where a new message goes: an endpoint, and when it stops being worth sending."""

    endpoint: str
    expires_at: datetime


class NewMessage(_Value):
    event: DispatchEvent
    routes: tuple[Route, ...]


class PendingDelivery(_Value):
    """A delivery still to make, with the message it carries."""

    delivery_id: int
    endpoint: str
    cabinet_id: str
    attempts: int
    created_at: datetime
    next_attempt_at: datetime
    expires_at: datetime
    event: DispatchEvent


class Attempt(_Value):
    number: int
    started_at: datetime
    duration_ms: float
    ok: bool
    http_status: int | None = None
    error: str | None = None


class DeliveryRecord(_Value):
    """A delivery as ``aedfleet dispatch list`` and the API show it."""

    delivery_id: int
    message_id: str
    endpoint: str
    cabinet_id: str
    incident_id: str
    number: int
    kind: str
    event_type: str
    status: DeliveryStatus
    attempts: int
    created_at: datetime
    next_attempt_at: datetime
    expires_at: datetime
    finished_at: datetime | None
    last_error: str | None
    attempt_log: tuple[Attempt, ...] = ()


# One statement for every attempt of a batch (executemany): a success finishes the
# delivery; a failure only moves its next attempt time (never its status: the lane may
# have expired it meanwhile).
_RECORD_ATTEMPT: Final = (
    update(dispatch_deliveries)
    .where(dispatch_deliveries.c.delivery_id == bindparam("key"))
    .values(
        attempts=bindparam("new_attempts"),
        last_error=bindparam("new_error"),
        status=func.coalesce(bindparam("new_status", type_=String), dispatch_deliveries.c.status),
        finished_at=func.coalesce(
            bindparam("new_finished_at", type_=UtcDateTime), dispatch_deliveries.c.finished_at
        ),
        next_attempt_at=func.coalesce(
            bindparam("new_next_attempt_at", type_=UtcDateTime),
            dispatch_deliveries.c.next_attempt_at,
        ),
    )
)


_STORED_MESSAGES: Final = select(dispatch_messages.c.message_id).where(
    dispatch_messages.c.message_id.in_(bindparam("ids", expanding=True))
)
_INSERT_MESSAGES: Final = insert(dispatch_messages)
_INSERT_DELIVERIES: Final = insert(dispatch_deliveries).returning(
    dispatch_deliveries.c.delivery_id, sort_by_parameter_order=True
)
_INSERT_ATTEMPTS: Final = insert(dispatch_attempts)


def _upsert_states(dialect: str) -> postgresql.Insert | sqlite.Insert:
    """INSERT … ON CONFLICT (cabinet_id) DO UPDATE of the cabinets' coalescing states."""
    statement = (
        postgresql.insert(dispatch_cabinets)
        if dialect == "postgresql"
        else sqlite.insert(dispatch_cabinets)
    )
    return statement.on_conflict_do_update(
        index_elements=["cabinet_id"],
        set_={
            "state": statement.excluded.state,
            "due_at": statement.excluded.due_at,
            "updated_at": statement.excluded.updated_at,
        },
    )


def _decode_event(payload: str) -> DispatchEvent:
    try:
        return DispatchEvent.model_validate_json(payload)
    except ValidationError as exc:
        raise OutboxError(f"a stored dispatch message is invalid: {exc}") from None


class DispatchOutbox(DatabaseStore):
    """The outbox of one database. Create it with :meth:`open`."""

    _error_type = OutboxError

    def __init__(self, *, _engine: Engine) -> None:
        super().__init__(_engine)
        self._upsert_states = _upsert_states(_engine.dialect.name)
        # The service writes from two threads (events, attempts). Taking turns here wakes
        # the waiting one the moment the other commits; SQLite's own busy handler would
        # instead sleep 1, 2, 5, 10… ms between polls of the lock, on a door event's path.
        self._write_turn = threading.Lock()

    @classmethod
    def open(
        cls,
        url: str,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        durability: Durability = Durability.SYNCED,
    ) -> DispatchOutbox:
        """Connect to the state store at ``url`` and bring its schema up to date."""
        try:
            engine = create_store_engine(url, timeout_s)
        except StoreError as exc:
            raise OutboxError(str(exc)) from None
        if durability is Durability.WRITTEN:
            _relax_commits(engine)
        try:
            upgrade(engine)
        except StoreError as exc:
            engine.dispose()
            raise OutboxError(str(exc)) from None
        except BaseException:
            engine.dispose()
            raise
        return cls(_engine=engine)

    @property
    def location(self) -> str:
        return describe(self._engine)

    # -- plumbing ------------------------------------------------------------------------

    @contextmanager
    def _writing(self, action: str) -> Iterator[Connection]:
        with self._write_turn, super()._writing(action) as connection:
            yield connection

    # -- writing -------------------------------------------------------------------------

    def record(
        self,
        states: Sequence[CabinetState],
        messages: Sequence[NewMessage],
        now: datetime,
        policy: CoalescingPolicy,
    ) -> list[PendingDelivery]:
        """Store cabinet states, new messages and their deliveries in one transaction.

        A message already stored (the same event id) is left as it is and gets no new
        deliveries. Returns the deliveries created, in the order they are to be made.
        """
        with self._writing(f"record {len(messages)} dispatch messages") as connection:
            if states:
                connection.execute(
                    self._upsert_states,
                    [
                        {
                            "cabinet_id": state.cabinet_id,
                            "state": state.model_dump_json(),
                            "due_at": due_at(state, policy),
                            "updated_at": now,
                        }
                        for state in states
                    ],
                )
            if not messages:
                return []
            ids = [message.event.event_id for message in messages]
            stored = set(connection.scalars(_STORED_MESSAGES, {"ids": ids}))
            fresh = [message for message in messages if message.event.event_id not in stored]
            if not fresh:
                return []
            connection.execute(
                _INSERT_MESSAGES,
                [
                    {
                        "message_id": message.event.event_id,
                        "cabinet_id": message.event.cabinet_id,
                        "incident_id": message.event.incident_id,
                        "number": message.event.update_number,
                        "kind": message.event.kind.value,
                        "event_type": message.event.event_type.value,
                        "created_at": message.event.sent_at,
                        "payload": message.event.model_dump_json(),
                    }
                    for message in fresh
                ],
            )
            wanted = [(message, route) for message in fresh for route in message.routes]
            if not wanted:
                return []
            rows = connection.execute(
                _INSERT_DELIVERIES,
                [
                    {
                        "message_id": message.event.event_id,
                        "endpoint": route.endpoint,
                        "cabinet_id": message.event.cabinet_id,
                        "status": DeliveryStatus.PENDING.value,
                        "attempts": 0,
                        "created_at": now,
                        "next_attempt_at": now,
                        "expires_at": route.expires_at,
                    }
                    for message, route in wanted
                ],
            ).all()
        return [
            PendingDelivery(
                delivery_id=row.delivery_id,
                endpoint=route.endpoint,
                cabinet_id=message.event.cabinet_id,
                attempts=0,
                created_at=now,
                next_attempt_at=now,
                expires_at=route.expires_at,
                event=message.event,
            )
            for row, (message, route) in zip(rows, wanted, strict=True)
        ]

    def record_attempts(self, attempts: Sequence[tuple[int, Attempt, datetime | None]]) -> None:
        """Record attempts, each as (delivery id, attempt, next attempt time), in one
        transaction: a successful attempt finishes its delivery, a failed one schedules
        the next at the time given."""
        if not attempts:
            return
        with self._writing(f"record {len(attempts)} delivery attempts") as connection:
            connection.execute(
                _INSERT_ATTEMPTS,
                [
                    {"delivery_id": delivery_id, **attempt.model_dump()}
                    for delivery_id, attempt, _ in attempts
                ],
            )
            connection.execute(
                _RECORD_ATTEMPT,
                [
                    {
                        "key": delivery_id,
                        "new_attempts": attempt.number,
                        "new_error": attempt.error,
                        "new_status": DeliveryStatus.DELIVERED.value if attempt.ok else None,
                        "new_finished_at": attempt.started_at if attempt.ok else None,
                        "new_next_attempt_at": None if attempt.ok else next_attempt_at,
                    }
                    for delivery_id, attempt, next_attempt_at in attempts
                ],
            )

    def expire(self, delivery_id: int, now: datetime) -> None:
        """Give up on a delivery whose message is no longer worth sending."""
        with self._writing(f"expire delivery {delivery_id}") as connection:
            connection.execute(
                update(dispatch_deliveries)
                .where(
                    and_(
                        dispatch_deliveries.c.delivery_id == delivery_id,
                        dispatch_deliveries.c.status == DeliveryStatus.PENDING.value,
                    )
                )
                .values(status=DeliveryStatus.EXPIRED.value, finished_at=now)
            )

    # -- reading -------------------------------------------------------------------------

    def states(self) -> dict[str, CabinetState]:
        """Every cabinet's coalescing state, by cabinet id."""
        with self._reading("load the cabinet states") as connection:
            rows = connection.execute(
                select(dispatch_cabinets.c.cabinet_id, dispatch_cabinets.c.state)
            ).all()
        try:
            return {row.cabinet_id: CabinetState.model_validate_json(row.state) for row in rows}
        except ValidationError as exc:
            raise OutboxError(f"a stored cabinet state is invalid: {exc}") from None

    def pending(self) -> list[PendingDelivery]:
        """Every delivery not yet made nor expired, in ``delivery_id`` order."""
        with self._reading("load the pending deliveries") as connection:
            rows = connection.execute(
                select(dispatch_deliveries, dispatch_messages.c.payload)
                .join(
                    dispatch_messages,
                    dispatch_messages.c.message_id == dispatch_deliveries.c.message_id,
                )
                .where(dispatch_deliveries.c.status == DeliveryStatus.PENDING.value)
                .order_by(dispatch_deliveries.c.delivery_id)
            ).all()
        return [
            PendingDelivery(
                delivery_id=row.delivery_id,
                endpoint=row.endpoint,
                cabinet_id=row.cabinet_id,
                attempts=row.attempts,
                created_at=row.created_at,
                next_attempt_at=row.next_attempt_at,
                expires_at=row.expires_at,
                event=_decode_event(row.payload),
            )
            for row in rows
        ]

    def message(self, message_id: str) -> DispatchEvent | None:
        with self._reading(f"read message {message_id!r}") as connection:
            payload = connection.scalar(
                select(dispatch_messages.c.payload).where(
                    dispatch_messages.c.message_id == message_id
                )
            )
        return None if payload is None else _decode_event(payload)

    def counts(self) -> dict[tuple[str, DeliveryStatus], int]:
        """How many deliveries each endpoint has in each status."""
        with self._reading("count the deliveries") as connection:
            rows = connection.execute(
                select(
                    dispatch_deliveries.c.endpoint,
                    dispatch_deliveries.c.status,
                    func.count(),
                ).group_by(dispatch_deliveries.c.endpoint, dispatch_deliveries.c.status)
            ).all()
        return {(row[0], DeliveryStatus(row[1])): int(row[2]) for row in rows}

    def recent(
        self,
        limit: int = 20,
        *,
        cabinet_id: str | None = None,
        endpoint: str | None = None,
        status: DeliveryStatus | None = None,
        with_attempts: bool = True,
    ) -> list[DeliveryRecord]:
        """The newest deliveries first, with their attempts."""
        query = (
            select(
                dispatch_deliveries,
                dispatch_messages.c.incident_id,
                dispatch_messages.c.number,
                dispatch_messages.c.kind,
                dispatch_messages.c.event_type,
            )
            .join(
                dispatch_messages,
                dispatch_messages.c.message_id == dispatch_deliveries.c.message_id,
            )
            .order_by(dispatch_deliveries.c.delivery_id.desc())
            .limit(limit)
        )
        if cabinet_id is not None:
            query = query.where(dispatch_deliveries.c.cabinet_id == cabinet_id)
        if endpoint is not None:
            query = query.where(dispatch_deliveries.c.endpoint == endpoint)
        if status is not None:
            query = query.where(dispatch_deliveries.c.status == status.value)
        with self._reading("list the deliveries") as connection:
            rows = connection.execute(query).all()
            log: dict[int, list[Attempt]] = {}
            ids = [row.delivery_id for row in rows]
            if with_attempts and ids:
                attempts = connection.execute(
                    select(dispatch_attempts)
                    .where(dispatch_attempts.c.delivery_id.in_(ids))
                    .order_by(dispatch_attempts.c.attempt_id)
                ).all()
                for attempt in attempts:
                    log.setdefault(attempt.delivery_id, []).append(_attempt(attempt._mapping))
        return [
            DeliveryRecord(
                **{
                    name: value
                    for name, value in row._asdict().items()
                    if name in DeliveryRecord.model_fields
                },
                attempt_log=tuple(log.get(row.delivery_id, ())),
            )
            for row in rows
        ]


def _attempt(row: Mapping[Any, Any]) -> Attempt:
    return Attempt(
        number=row["number"],
        started_at=row["started_at"],
        duration_ms=row["duration_ms"],
        ok=row["ok"],
        http_status=row["http_status"],
        error=row["error"],
    )
