"""The registry (cabinets, people, assignments) and the cabinet twins.

Revision ID: 0001
Revises: none
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def _stamp(section: str, boot_column: str | None = None) -> list[sa.Column[object]]:
    return [
        sa.Column(boot_column or f"{section}_boot_id", sa.String(32)),
        sa.Column(f"{section}_seq", sa.BigInteger),
        sa.Column(f"{section}_ts", sa.DateTime(timezone=True)),
    ]


def upgrade() -> None:
    op.create_table(
        "cabinets",
        sa.Column("cabinet_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String, nullable=False),
        sa.Column("aed_model", sa.String, nullable=False),
        sa.Column("aed_serial", sa.String, nullable=False),
        sa.Column("latitude", sa.Float, nullable=False),
        sa.Column("longitude", sa.Float, nullable=False),
        sa.Column("address", sa.String, nullable=False),
        sa.Column("floor", sa.String, nullable=False),
        sa.Column("indoor_description", sa.String, nullable=False),
        sa.Column("site_type", sa.String(32), nullable=False),
        sa.Column("region_code", sa.String, nullable=False),
        sa.Column("owner_unit", sa.String, nullable=False),
        sa.Column("access_mode", sa.String(32), nullable=False),
        sa.Column("availability_hours", sa.String, nullable=False),
        sa.Column("install_date", sa.Date),
        sa.Column("pads_expiry", sa.Date),
        sa.Column("battery_expiry", sa.Date),
        sa.PrimaryKeyConstraint("cabinet_id", name="pk_cabinets"),
    )
    op.create_table(
        "people",
        sa.Column("person_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String, nullable=False),
        sa.Column("phone", sa.String, nullable=False),
        sa.Column("email", sa.String),
        sa.Column("chat_webhook", sa.String),
        sa.Column("language", sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint("person_id", name="pk_people"),
    )
    op.create_table(
        "assignments",
        sa.Column("cabinet_id", sa.String(64), nullable=False),
        sa.Column("person_id", sa.String(64), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("rank", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("cabinet_id", "person_id", "role", name="pk_assignments"),
        sa.ForeignKeyConstraint(
            ["cabinet_id"], ["cabinets.cabinet_id"], name="fk_assignments_cabinet_id"
        ),
        sa.ForeignKeyConstraint(
            ["person_id"], ["people.person_id"], name="fk_assignments_person_id"
        ),
    )
    op.create_index("ix_assignments_person_id", "assignments", ["person_id"])
    op.create_table(
        "twins",
        sa.Column("cabinet_id", sa.String(64), nullable=False),
        sa.Column("online", sa.Boolean),
        *_stamp("status"),
        *_stamp("birth", boot_column="boot_id"),
        sa.Column("aed_model", sa.String),
        sa.Column("firmware_version", sa.String),
        sa.Column("heartbeat_interval_s", sa.Integer),
        sa.Column("selftest_period", sa.String(32)),
        sa.Column("time_zone", sa.String),
        sa.Column("aed_ready", sa.Boolean),
        sa.Column("battery_pct", sa.Float),
        sa.Column("temperature_c", sa.Float),
        sa.Column("humidity_pct", sa.Float),
        sa.Column("heater_on", sa.Boolean),
        sa.Column("rssi_dbm", sa.Integer),
        sa.Column("outbox_pending", sa.BigInteger),
        sa.Column("outbox_shed", sa.BigInteger),
        *_stamp("heartbeat"),
        sa.Column("door", sa.String(32)),
        *_stamp("door"),
        sa.Column("aed_present", sa.Boolean),
        *_stamp("aed_present"),
        sa.Column("power", sa.String(32)),
        *_stamp("power"),
        sa.Column("selftest_kind", sa.String(32)),
        sa.Column("selftest_result", sa.String(32)),
        sa.Column("selftest_fault_codes", sa.JSON),
        sa.Column("selftest_battery_pct", sa.Float),
        *_stamp("selftest"),
        sa.Column("pads_present", sa.Boolean),
        sa.Column("pads_expiry", sa.Date),
        sa.Column("battery_expiry", sa.Date),
        sa.Column("consumables_source", sa.String(32)),
        *_stamp("consumables"),
        sa.Column("last_boot_id", sa.String(32)),
        sa.Column("last_seq", sa.BigInteger),
        sa.Column("last_seq_ts", sa.DateTime(timezone=True)),
        sa.Column("first_seen", sa.DateTime(timezone=True)),
        sa.Column("last_seen", sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint("cabinet_id", name="pk_twins"),
    )


def downgrade() -> None:
    op.drop_table("twins")
    op.drop_index("ix_assignments_person_id", table_name="assignments")
    op.drop_table("assignments")
    op.drop_table("people")
    op.drop_table("cabinets")
