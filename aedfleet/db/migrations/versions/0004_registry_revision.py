"""Registry revision: a counter that every change to the registry's tables moves.

Services that cache the registry (ingest, alerting, dispatch) read this one row instead of
reloading every cabinet, person and assignment on each refresh. Triggers keep it, so every
writer (imports, recorded inspections, an operator's SQL) moves it without knowing of it.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from typing import Final

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None

REGISTRY_TABLES: Final = ("cabinets", "people", "assignments")
_BUMP: Final = "UPDATE registry_revision SET revision = revision + 1 WHERE id = 1"


def upgrade() -> None:
    op.create_table(
        "registry_revision",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("revision", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_registry_revision"),
        sa.CheckConstraint("id = 1", name="ck_registry_revision_one_row"),
    )
    op.execute("INSERT INTO registry_revision (id, revision) VALUES (1, 0)")
    if op.get_bind().dialect.name == "postgresql":
        # One bump per statement: an import of 100,000 rows moves it once.
        op.execute(
            "CREATE FUNCTION bump_registry_revision() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN {_BUMP}; RETURN NULL; END $$"
        )
        for table in REGISTRY_TABLES:
            op.execute(
                f"CREATE TRIGGER {table}_registry_revision "
                f"AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION bump_registry_revision()"
            )
    else:
        # SQLite has row triggers only.
        for table in REGISTRY_TABLES:
            for change in ("insert", "update", "delete"):
                op.execute(
                    f"CREATE TRIGGER {table}_{change}_registry_revision "
                    f"AFTER {change.upper()} ON {table} BEGIN {_BUMP}; END"
                )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in REGISTRY_TABLES:
            op.execute(f"DROP TRIGGER {table}_registry_revision ON {table}")
        op.execute("DROP FUNCTION bump_registry_revision()")
    else:
        for table in REGISTRY_TABLES:
            for change in ("insert", "update", "delete"):
                op.execute(f"DROP TRIGGER {table}_{change}_registry_revision")
    op.drop_table("registry_revision")
