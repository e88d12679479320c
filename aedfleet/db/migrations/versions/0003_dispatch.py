"""Dispatch: the outbox of messages to command centres, their deliveries and attempts.

Creates exactly the tables of :mod:`dispatch.tables`.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "dispatch_cabinets",
        sa.Column("cabinet_id", sa.String(64), nullable=False),
        sa.Column("state", sa.String, nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True)),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("cabinet_id", name="pk_dispatch_cabinets"),
    )
    op.create_index("ix_dispatch_cabinets_due_at", "dispatch_cabinets", ["due_at"])
    op.create_table(
        "dispatch_messages",
        sa.Column("message_id", sa.String(200), nullable=False),
        sa.Column("cabinet_id", sa.String(64), nullable=False),
        sa.Column("incident_id", sa.String(200), nullable=False),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("event_type", sa.String(32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("payload", sa.String, nullable=False),
        sa.PrimaryKeyConstraint("message_id", name="pk_dispatch_messages"),
    )
    op.create_index("ix_dispatch_messages_cabinet_id", "dispatch_messages", ["cabinet_id"])
    op.create_index("ix_dispatch_messages_incident_id", "dispatch_messages", ["incident_id"])
    op.create_table(
        "dispatch_deliveries",
        sa.Column("delivery_id", sa.Integer, nullable=False, autoincrement=True),
        sa.Column("message_id", sa.String(200), nullable=False),
        sa.Column("endpoint", sa.String(32), nullable=False),
        sa.Column("cabinet_id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("last_error", sa.String),
        sa.PrimaryKeyConstraint("delivery_id", name="pk_dispatch_deliveries"),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["dispatch_messages.message_id"],
            name="fk_dispatch_deliveries_message_id",
        ),
        sa.UniqueConstraint(
            "message_id", "endpoint", name="uq_dispatch_deliveries_message_id_endpoint"
        ),
    )
    op.create_index("ix_dispatch_deliveries_cabinet_id", "dispatch_deliveries", ["cabinet_id"])
    op.create_index(
        "ix_dispatch_deliveries_status_endpoint", "dispatch_deliveries", ["status", "endpoint"]
    )
    op.create_table(
        "dispatch_attempts",
        sa.Column("attempt_id", sa.Integer, nullable=False, autoincrement=True),
        sa.Column("delivery_id", sa.Integer, nullable=False),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("duration_ms", sa.Float, nullable=False),
        sa.Column("ok", sa.Boolean, nullable=False),
        sa.Column("http_status", sa.Integer),
        sa.Column("error", sa.String),
        sa.PrimaryKeyConstraint("attempt_id", name="pk_dispatch_attempts"),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["dispatch_deliveries.delivery_id"],
            name="fk_dispatch_attempts_delivery_id",
        ),
    )
    op.create_index("ix_dispatch_attempts_delivery_id", "dispatch_attempts", ["delivery_id"])


def downgrade() -> None:
    op.drop_index("ix_dispatch_attempts_delivery_id", table_name="dispatch_attempts")
    op.drop_table("dispatch_attempts")
    op.drop_index("ix_dispatch_deliveries_status_endpoint", table_name="dispatch_deliveries")
    op.drop_index("ix_dispatch_deliveries_cabinet_id", table_name="dispatch_deliveries")
    op.drop_table("dispatch_deliveries")
    op.drop_index("ix_dispatch_messages_incident_id", table_name="dispatch_messages")
    op.drop_index("ix_dispatch_messages_cabinet_id", table_name="dispatch_messages")
    op.drop_table("dispatch_messages")
    op.drop_index("ix_dispatch_cabinets_due_at", table_name="dispatch_cabinets")
    op.drop_table("dispatch_cabinets")
