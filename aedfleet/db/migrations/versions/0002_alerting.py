"""Alerting: alarms and their history, escalations, notifications, silences, inspections, facts.

Creates exactly the tables of :mod:`alerting.tables`.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

_ACTIVE_ALARM = "state <> 'resolved'"


def upgrade() -> None:
    op.create_table(
        "alarms",
        sa.Column("alarm_id", sa.Integer, nullable=False, autoincrement=True),
        sa.Column("cabinet_id", sa.String(64), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("severity", sa.String(32), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("detail", sa.String, nullable=False),
        sa.Column("condition_since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("raised_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("clear_since", sa.DateTime(timezone=True)),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True)),
        sa.Column("acknowledged_by", sa.String),
        sa.Column("acknowledged_via", sa.String(32)),
        sa.Column("resolved_at", sa.DateTime(timezone=True)),
        sa.Column("resolved_by", sa.String),
        sa.Column("resolved_via", sa.String(32)),
        sa.PrimaryKeyConstraint("alarm_id", name="pk_alarms"),
    )
    op.create_index("ix_alarms_cabinet_id", "alarms", ["cabinet_id"])
    op.create_index("ix_alarms_state", "alarms", ["state"])
    op.create_index(
        "uq_alarms_active",
        "alarms",
        ["cabinet_id", "type"],
        unique=True,
        sqlite_where=sa.text(_ACTIVE_ALARM),
        postgresql_where=sa.text(_ACTIVE_ALARM),
    )
    op.create_table(
        "alarm_events",
        sa.Column("event_id", sa.Integer, nullable=False, autoincrement=True),
        sa.Column("alarm_id", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("by", sa.String),
        sa.Column("via", sa.String(32), nullable=False),
        sa.Column("severity", sa.String(32), nullable=False),
        sa.Column("detail", sa.String, nullable=False),
        sa.PrimaryKeyConstraint("event_id", name="pk_alarm_events"),
        sa.ForeignKeyConstraint(["alarm_id"], ["alarms.alarm_id"], name="fk_alarm_events_alarm_id"),
    )
    op.create_index("ix_alarm_events_alarm_id", "alarm_events", ["alarm_id"])
    op.create_table(
        "escalations",
        sa.Column("alarm_id", sa.Integer, nullable=False),
        sa.Column("severity", sa.String(32), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("first_round", sa.Integer, nullable=False),
        sa.Column("round", sa.Integer, nullable=False),
        sa.Column("next_step", sa.Integer, nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True)),
        sa.Column("claimed_until", sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint("alarm_id", name="pk_escalations"),
        sa.ForeignKeyConstraint(["alarm_id"], ["alarms.alarm_id"], name="fk_escalations_alarm_id"),
    )
    op.create_index("ix_escalations_due_at", "escalations", ["due_at"])
    op.create_table(
        "notifications",
        sa.Column("notification_id", sa.Integer, nullable=False, autoincrement=True),
        sa.Column("page_key", sa.String(200), nullable=False),
        sa.Column("person_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("channel_plan", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("release_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True)),
        sa.Column("delivered_channel", sa.String(32)),
        sa.Column("failed_at", sa.DateTime(timezone=True)),
        sa.Column("error", sa.String),
        sa.PrimaryKeyConstraint("notification_id", name="pk_notifications"),
        sa.UniqueConstraint("page_key", "person_id", name="uq_notifications_page_key_person_id"),
    )
    op.create_index("ix_notifications_state_release_at", "notifications", ["state", "release_at"])
    op.create_table(
        "notification_alarms",
        sa.Column("notification_id", sa.Integer, nullable=False),
        sa.Column("alarm_id", sa.Integer, nullable=False),
        sa.Column("withdrawn_at", sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint("notification_id", "alarm_id", name="pk_notification_alarms"),
        sa.ForeignKeyConstraint(
            ["notification_id"],
            ["notifications.notification_id"],
            name="fk_notification_alarms_notification_id",
        ),
        sa.ForeignKeyConstraint(
            ["alarm_id"], ["alarms.alarm_id"], name="fk_notification_alarms_alarm_id"
        ),
    )
    op.create_index("ix_notification_alarms_alarm_id", "notification_alarms", ["alarm_id"])
    op.create_table(
        "notification_attempts",
        sa.Column("attempt_id", sa.Integer, nullable=False, autoincrement=True),
        sa.Column("notification_id", sa.Integer, nullable=False),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ok", sa.Boolean, nullable=False),
        sa.Column("error", sa.String),
        sa.PrimaryKeyConstraint("attempt_id", name="pk_notification_attempts"),
        sa.ForeignKeyConstraint(
            ["notification_id"],
            ["notifications.notification_id"],
            name="fk_notification_attempts_notification_id",
        ),
    )
    op.create_index(
        "ix_notification_attempts_notification_id", "notification_attempts", ["notification_id"]
    )
    op.create_table(
        "silences",
        sa.Column("silence_id", sa.Integer, nullable=False, autoincrement=True),
        sa.Column("cabinet_id", sa.String(64)),
        sa.Column("region_code", sa.String(32)),
        sa.Column("alarm_type", sa.String(32)),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.String, nullable=False),
        sa.Column("created_by", sa.String, nullable=False),
        sa.PrimaryKeyConstraint("silence_id", name="pk_silences"),
    )
    op.create_index("ix_silences_ends_at", "silences", ["ends_at"])
    op.create_table(
        "inspections",
        sa.Column("inspection_id", sa.Integer, nullable=False, autoincrement=True),
        sa.Column("cabinet_id", sa.String(64), nullable=False),
        sa.Column("person_id", sa.String(64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ready_light_ok", sa.Boolean, nullable=False),
        sa.Column("pads_expiry", sa.Date),
        sa.Column("battery_expiry", sa.Date),
        sa.Column("cabinet_intact_and_clean", sa.Boolean, nullable=False),
        sa.Column("alarm_works", sa.Boolean, nullable=False),
        sa.Column("note", sa.String, nullable=False),
        sa.Column("photo_url", sa.String),
        sa.PrimaryKeyConstraint("inspection_id", name="pk_inspections"),
        sa.ForeignKeyConstraint(
            ["cabinet_id"], ["cabinets.cabinet_id"], name="fk_inspections_cabinet_id"
        ),
    )
    op.create_index("ix_inspections_cabinet_id", "inspections", ["cabinet_id"])
    op.create_table(
        "rule_facts",
        sa.Column("cabinet_id", sa.String(64), nullable=False),
        sa.Column("facts", sa.String, nullable=False),
        sa.PrimaryKeyConstraint("cabinet_id", name="pk_rule_facts"),
    )


def downgrade() -> None:
    op.drop_table("rule_facts")
    op.drop_index("ix_inspections_cabinet_id", table_name="inspections")
    op.drop_table("inspections")
    op.drop_index("ix_silences_ends_at", table_name="silences")
    op.drop_table("silences")
    op.drop_index("ix_notification_attempts_notification_id", table_name="notification_attempts")
    op.drop_table("notification_attempts")
    op.drop_index("ix_notification_alarms_alarm_id", table_name="notification_alarms")
    op.drop_table("notification_alarms")
    op.drop_index("ix_notifications_state_release_at", table_name="notifications")
    op.drop_table("notifications")
    op.drop_index("ix_escalations_due_at", table_name="escalations")
    op.drop_table("escalations")
    op.drop_index("ix_alarm_events_alarm_id", table_name="alarm_events")
    op.drop_table("alarm_events")
    op.drop_index("uq_alarms_active", table_name="alarms")
    op.drop_index("ix_alarms_state", table_name="alarms")
    op.drop_index("ix_alarms_cabinet_id", table_name="alarms")
    op.drop_table("alarms")
