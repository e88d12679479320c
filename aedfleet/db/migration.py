"""Schema migrations of the state store, run in code (no ``alembic.ini`` at runtime)."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from alembic import command
from alembic.config import Config
from alembic.util import CommandError
from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from aedfleet.db.engine import WRITE, create_store_engine, describe, reason
from aedfleet.db.errors import StoreError

MIGRATIONS: Final = Path(__file__).parent / "migrations"
# pg_advisory_xact_lock key: one migration at a time when several services start together.
_MIGRATION_LOCK: Final = 0x0AEDF1EE7


def alembic_config() -> Config:
    """Alembic's configuration for the state store, built without an ini file."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("path_separator", "os")
    return config


def upgrade(engine: Engine) -> None:
    """Bring the database of ``engine`` to the newest schema, in one transaction."""
    try:
        with engine.connect() as connection:
            connection.execution_options(**WRITE)
            with connection.begin():
                if connection.dialect.name == "postgresql":
                    connection.execute(
                        text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK}
                    )
                config = alembic_config()
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
    except (SQLAlchemyError, CommandError) as exc:
        raise StoreError(
            f"cannot migrate the state store {describe(engine)}: {reason(exc)}"
        ) from exc


def migrate(url: str) -> None:
    """Upgrade the state store at ``url`` to the newest schema (idempotent)."""
    engine = create_store_engine(url)
    try:
        upgrade(engine)
    finally:
        engine.dispose()
