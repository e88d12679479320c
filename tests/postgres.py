"""Databases of the tests' own on the local PostgreSQL (trust auth on loopback).

A test module takes one database for the whole session from :func:`postgres_database`
(import the fixture into the module) and empties it with :func:`empty_postgres` before
each test, which is far cheaper than creating a database per test. A test that needs a
database apart (two at once, or one it may break) makes one with
:func:`fresh_postgres_database`. Every database is created with a random name and
dropped at the end, even while connections to it are still open. Where the server is
unreachable the tests that need it are skipped, not failed.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

import pytest
import sqlalchemy as sa

SERVER_URL: Final = "postgresql+psycopg://postgres@127.0.0.1:5432"
ADMIN_URL: Final = f"{SERVER_URL}/postgres"
CONNECT_TIMEOUT_S: Final = 5


@contextmanager
def fresh_postgres_database(prefix: str = "aedfleet_test") -> Iterator[str]:
    """The SQLAlchemy URL of a new, empty database, dropped when the block ends."""
    name = f"{prefix}_{secrets.token_hex(6)}"
    admin = sa.create_engine(
        ADMIN_URL,
        isolation_level="AUTOCOMMIT",
        connect_args={"connect_timeout": CONNECT_TIMEOUT_S},
    )
    try:
        try:
            with admin.connect() as connection:
                connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        except sa.exc.OperationalError as exc:
            pytest.skip(f"PostgreSQL is unreachable at {ADMIN_URL}: {exc.orig}")
        try:
            yield f"{SERVER_URL}/{name}"
        finally:
            with admin.connect() as connection:
                connection.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        admin.dispose()


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A database of this session's own (one per module that imports the fixture)."""
    with fresh_postgres_database() as url:
        yield url


def empty_postgres(url: str) -> str:
    """Drop every table, type and sequence of the database at ``url``; returns ``url``."""
    engine = sa.create_engine(url, connect_args={"connect_timeout": CONNECT_TIMEOUT_S})
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql("DROP SCHEMA public CASCADE")
            connection.exec_driver_sql("CREATE SCHEMA public")
    finally:
        engine.dispose()
    return url
