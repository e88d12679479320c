"""Districts: the population each region code serves, for AEDs per 100,000 people.

The registry revision (0004) moves on changes to this table too, so services reload the
districts with the rest of the registry.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from typing import Final

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None

_BUMP: Final = "UPDATE registry_revision SET revision = revision + 1 WHERE id = 1"


def upgrade() -> None:
    op.create_table(
        "districts",
        sa.Column("region_code", sa.String(32), nullable=False),
        sa.Column("name", sa.String, nullable=False),
        sa.Column("population", sa.BigInteger, nullable=False),
        sa.Column("target_per_100k", sa.Float),
        sa.PrimaryKeyConstraint("region_code", name="pk_districts"),
        sa.CheckConstraint("population > 0", name="ck_districts_population_positive"),
    )
    if op.get_bind().dialect.name == "postgresql":
        # bump_registry_revision() is migration 0004's.
        op.execute(
            "CREATE TRIGGER districts_registry_revision "
            "AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON districts "
            "FOR EACH STATEMENT EXECUTE FUNCTION bump_registry_revision()"
        )
    else:
        for change in ("insert", "update", "delete"):
            op.execute(
                f"CREATE TRIGGER districts_{change}_registry_revision "
                f"AFTER {change.upper()} ON districts BEGIN {_BUMP}; END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER districts_registry_revision ON districts")
    else:
        for change in ("insert", "update", "delete"):
            op.execute(f"DROP TRIGGER districts_{change}_registry_revision")
    op.drop_table("districts")
