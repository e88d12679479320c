"""Databases of the tests' own on the local PostgreSQL (trust auth on loopback).

A test module takes one database for the whole session from :func:`postgres_database`
(import the fixture into the module) and empties it with :func:`empty_postgres` before
each test, which is far cheaper than creating a database per test. A test that needs a
database apart (two at once, or one it may break) makes one with
:func:`fresh_postgres_database`. Every database is created with a random name and
dropped at the end, even while connections to it are still open.

Where the server is unreachable, the tests that need it are skipped on a developer's
machine, but fail on a CI runner (``CI=true``): there ``scripts/setup.sh`` has installed
and started PostgreSQL, so an unreachable server is a broken run, not a missing extra.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Final

import pytest
import sqlalchemy as sa

from aedfleet_testing.tiers import POSTGRES, require_tier

SERVER_URL: Final = "postgresql+psycopg://postgres@127.0.0.1:5432"
ADMIN_URL: Final = f"{SERVER_URL}/postgres"
CONNECT_TIMEOUT_S: Final = 5
# The backends a store's contract suite runs against (``@pytest.fixture(params=...)``);
# the PostgreSQL one carries its tier's marker, which a fixture's name cannot give.
STORE_BACKENDS: Final = ("sqlite", pytest.param("postgresql", marks=pytest.mark.postgres))


def must_reach_postgres(environment: Mapping[str, str]) -> bool:
    """Whether an unreachable server fails the tests rather than skips them: on a CI
    runner, which announces itself with ``CI=true`` (GitHub Actions, GitLab CI and most
    others; some say ``1``)."""
    return environment.get("CI", "").strip().lower() in {"true", "1"}


@contextmanager
def fresh_postgres_database(prefix: str = "aedfleet_test") -> Iterator[str]:
    """The SQLAlchemy URL of a new, empty database, dropped when the block ends."""
    require_tier(POSTGRES)
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
            unreachable = f"PostgreSQL is unreachable at {ADMIN_URL}: {exc.orig}"
            if must_reach_postgres(os.environ):
                pytest.fail(f"{unreachable} (CI is set: scripts/setup.sh starts it)", pytrace=False)
            pytest.skip(f"{unreachable} (scripts/setup.sh installs and starts it)")
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
