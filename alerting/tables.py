"""Alerting's tables in the state store: alarms and their history, escalations, the
notification outbox, silences, inspections and the rules' per-cabinet facts.

They share the state store's :data:`~aedfleet.db.tables.metadata` (one schema, one
migration chain: ``aedfleet/db/migrations/versions/0002_alerting.py`` creates exactly
these) and follow its conventions: columns are named after the fields of the values they
hold (:mod:`alerting.model`), enumerations are stored as their string values, times as
UTC (:class:`~aedfleet.db.tables.UtcDateTime`), an alarm's detail as the JSON of its
:class:`~alerting.model.AlarmDetail` (:class:`DetailText`).

Two constraints carry the guarantees the service relies on:

- ``uq_alarms_active``, a unique index on (cabinet_id, type) over the alarms that are not
  resolved: at most one active alarm per cabinet and type, enforced by the database, so
  two workers raising the same alarm at once end with one alarm;
- ``uq_notifications_page_key_person_id``: a page decided once is recorded once, even
  when the service is killed between deciding and recording and decides again.

``alarms`` has no foreign key to ``cabinets`` (like ``twins``: a cabinet may report, and
be alarmed about, before the registry lists it); ``inspections`` has one, since an
inspection updates the cabinet's expiry dates. An inspector need not be in ``people``.
"""

from __future__ import annotations

from typing import Final

from pydantic import ValidationError
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

from aedfleet.db.tables import ENUM_LENGTH, ID_LENGTH, UtcDateTime, metadata
from alerting.model import AlarmDetail

__all__ = [
    "ACTIVE_ALARM",
    "PAGE_KEY_LENGTH",
    "alarm_events",
    "alarms",
    "escalations",
    "inspections",
    "notification_alarms",
    "notification_attempts",
    "notifications",
    "rule_facts",
    "silences",
]

PAGE_KEY_LENGTH: Final = 200
ACTIVE_ALARM: Final = text("state <> 'resolved'")


class DetailText(TypeDecorator[AlarmDetail]):
    """An alarm's detail as its JSON text; no detail is the empty text.

    A detail an earlier version stored as English words reads as no detail: the next
    evaluation of its cabinet finds the condition with its detail and writes that.
    """

    impl = String
    cache_ok = True

    def process_bind_param(self, value: AlarmDetail | None, dialect: Dialect) -> str:
        return "" if value is None else value.model_dump_json(exclude_defaults=True)

    def process_result_value(self, value: str | None, dialect: Dialect) -> AlarmDetail | None:
        if not value or not value.startswith("{"):
            return None
        try:
            return AlarmDetail.model_validate_json(value)
        except ValidationError:
            return None


"""The predicate of ``uq_alarms_active``, literal so that ON CONFLICT can name the index."""

alarms = Table(
    "alarms",
    metadata,
    Column("alarm_id", Integer, primary_key=True, autoincrement=True),
    Column("cabinet_id", String(ID_LENGTH), nullable=False, index=True),
    Column("type", String(ENUM_LENGTH), nullable=False),
    Column("severity", String(ENUM_LENGTH), nullable=False),
    Column("state", String(ENUM_LENGTH), nullable=False, index=True),
    Column("detail", DetailText, nullable=False),
    Column("condition_since", UtcDateTime, nullable=False),
    Column("raised_at", UtcDateTime, nullable=False),
    Column("clear_since", UtcDateTime),
    Column("acknowledged_at", UtcDateTime),
    Column("acknowledged_by", String),
    Column("acknowledged_via", String(ENUM_LENGTH)),
    Column("resolved_at", UtcDateTime),
    Column("resolved_by", String),
    Column("resolved_via", String(ENUM_LENGTH)),
    Index(
        "uq_alarms_active",
        "cabinet_id",
        "type",
        unique=True,
        sqlite_where=ACTIVE_ALARM,
        postgresql_where=ACTIVE_ALARM,
    ),
)

alarm_events = Table(
    "alarm_events",
    metadata,
    Column("event_id", Integer, primary_key=True, autoincrement=True),
    Column("alarm_id", Integer, ForeignKey("alarms.alarm_id"), nullable=False, index=True),
    Column("kind", String(ENUM_LENGTH), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("by", String),
    Column("via", String(ENUM_LENGTH), nullable=False),
    Column("severity", String(ENUM_LENGTH), nullable=False),
    Column("detail", DetailText, nullable=False),
)

escalations = Table(
    "escalations",
    metadata,
    Column("alarm_id", Integer, ForeignKey("alarms.alarm_id"), primary_key=True),
    Column("severity", String(ENUM_LENGTH), nullable=False),
    Column("started_at", UtcDateTime, nullable=False),
    Column("first_round", Integer, nullable=False),
    Column("round", Integer, nullable=False),
    Column("next_step", Integer, nullable=False),
    Column("due_at", UtcDateTime, index=True),
    # A worker's lease on a claimed escalation (see AlarmStore.claim_due).
    Column("claimed_until", UtcDateTime),
)

notifications = Table(
    "notifications",
    metadata,
    Column("notification_id", Integer, primary_key=True, autoincrement=True),
    Column("page_key", String(PAGE_KEY_LENGTH), nullable=False),
    Column("person_id", String(ID_LENGTH), nullable=False),
    Column("kind", String(ENUM_LENGTH), nullable=False),
    Column("channel_plan", JSON, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("release_at", UtcDateTime, nullable=False),
    Column("state", String(ENUM_LENGTH), nullable=False),
    Column("delivered_at", UtcDateTime),
    Column("delivered_channel", String(ENUM_LENGTH)),
    Column("failed_at", UtcDateTime),
    Column("error", String),
    UniqueConstraint("page_key", "person_id", name="uq_notifications_page_key_person_id"),
    Index("ix_notifications_state_release_at", "state", "release_at"),
)

notification_alarms = Table(
    "notification_alarms",
    metadata,
    Column(
        "notification_id",
        Integer,
        ForeignKey("notifications.notification_id"),
        primary_key=True,
    ),
    Column("alarm_id", Integer, ForeignKey("alarms.alarm_id"), primary_key=True, index=True),
    # Set when the alarm was acknowledged or resolved before the notification went out.
    Column("withdrawn_at", UtcDateTime),
)

notification_attempts = Table(
    "notification_attempts",
    metadata,
    Column("attempt_id", Integer, primary_key=True, autoincrement=True),
    Column(
        "notification_id",
        Integer,
        ForeignKey("notifications.notification_id"),
        nullable=False,
        index=True,
    ),
    Column("channel", String(ENUM_LENGTH), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("ok", Boolean, nullable=False),
    Column("error", String),
)

silences = Table(
    "silences",
    metadata,
    Column("silence_id", Integer, primary_key=True, autoincrement=True),
    Column("cabinet_id", String(ID_LENGTH)),
    Column("region_code", String(ENUM_LENGTH)),
    Column("alarm_type", String(ENUM_LENGTH)),
    Column("starts_at", UtcDateTime, nullable=False),
    Column("ends_at", UtcDateTime, nullable=False, index=True),
    Column("reason", String, nullable=False),
    Column("created_by", String, nullable=False),
)

inspections = Table(
    "inspections",
    metadata,
    Column("inspection_id", Integer, primary_key=True, autoincrement=True),
    Column(
        "cabinet_id",
        String(ID_LENGTH),
        ForeignKey("cabinets.cabinet_id"),
        nullable=False,
        index=True,
    ),
    Column("person_id", String(ID_LENGTH), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("ready_light_ok", Boolean, nullable=False),
    Column("pads_expiry", Date),
    Column("battery_expiry", Date),
    Column("cabinet_intact_and_clean", Boolean, nullable=False),
    Column("alarm_works", Boolean, nullable=False),
    Column("note", String, nullable=False),
    Column("photo_url", String),
)

rule_facts = Table(
    "rule_facts",
    metadata,
    Column("cabinet_id", String(ID_LENGTH), primary_key=True),
    # Opaque to the store: the rules serialise and parse their own facts model.
    Column("facts", String, nullable=False),
)
