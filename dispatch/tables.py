"""The dispatch outbox's tables in the state store.

They share the state store's :data:`~aedfleet.db.tables.metadata` (one schema, one
migration chain: ``aedfleet/db/migrations/versions/0003_dispatch.py`` creates exactly
these) and its conventions: enumerations as their string values, times as UTC.

- ``dispatch_cabinets``: the coalescing state of each cabinet (its current or last
  incident and the ids of its recent events), the pure
  :class:`~dispatch.incident.CabinetState` as JSON, with the time its held events are due;
- ``dispatch_messages``: every message created, keyed by the event id it is sent under
  (the idempotency key), with the :class:`~aedfleet.contract.DispatchEvent` as JSON;
- ``dispatch_deliveries``: one row per (message, endpoint), written in the same
  transaction as the message and before any attempt; ``uq_dispatch_deliveries_message_id_
  endpoint`` makes a message reach an endpoint's queue once. Delivered in ``delivery_id``
  order per (endpoint, cabinet);
- ``dispatch_attempts``: every attempt and its outcome (HTTP status or error).

No foreign key to ``cabinets``: an unregistered cabinet is dispatched too.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import (
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    UniqueConstraint,
)

from aedfleet.db.tables import ENUM_LENGTH, ID_LENGTH, UtcDateTime, metadata

__all__ = [
    "MESSAGE_ID_LENGTH",
    "dispatch_attempts",
    "dispatch_cabinets",
    "dispatch_deliveries",
    "dispatch_messages",
]

MESSAGE_ID_LENGTH: Final = 200
"""cabinet id (64) / boot id (32) / seq (at most 16 digits), with room to spare."""

dispatch_cabinets = Table(
    "dispatch_cabinets",
    metadata,
    Column("cabinet_id", String(ID_LENGTH), primary_key=True),
    Column("state", String, nullable=False),
    Column("due_at", UtcDateTime, index=True),
    Column("updated_at", UtcDateTime, nullable=False),
)

dispatch_messages = Table(
    "dispatch_messages",
    metadata,
    Column("message_id", String(MESSAGE_ID_LENGTH), primary_key=True),
    Column("cabinet_id", String(ID_LENGTH), nullable=False, index=True),
    Column("incident_id", String(MESSAGE_ID_LENGTH), nullable=False, index=True),
    Column("number", Integer, nullable=False),
    Column("kind", String(ENUM_LENGTH), nullable=False),
    Column("event_type", String(ENUM_LENGTH), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("payload", String, nullable=False),
)

dispatch_deliveries = Table(
    "dispatch_deliveries",
    metadata,
    Column("delivery_id", Integer, primary_key=True, autoincrement=True),
    Column(
        "message_id",
        String(MESSAGE_ID_LENGTH),
        ForeignKey("dispatch_messages.message_id"),
        nullable=False,
    ),
    Column("endpoint", String(ENUM_LENGTH), nullable=False),
    Column("cabinet_id", String(ID_LENGTH), nullable=False, index=True),
    Column("status", String(ENUM_LENGTH), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("next_attempt_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("finished_at", UtcDateTime),
    Column("last_error", String),
    UniqueConstraint("message_id", "endpoint", name="uq_dispatch_deliveries_message_id_endpoint"),
    Index("ix_dispatch_deliveries_status_endpoint", "status", "endpoint"),
)

dispatch_attempts = Table(
    "dispatch_attempts",
    metadata,
    Column("attempt_id", Integer, primary_key=True, autoincrement=True),
    Column(
        "delivery_id",
        Integer,
        ForeignKey("dispatch_deliveries.delivery_id"),
        nullable=False,
        index=True,
    ),
    Column("number", Integer, nullable=False),
    Column("started_at", UtcDateTime, nullable=False),
    Column("duration_ms", Float, nullable=False),
    Column("ok", Boolean, nullable=False),
    Column("http_status", Integer),
    Column("error", String),
)
