"""Engines for the state store's two backends, SQLite and PostgreSQL.

SQLite runs in WAL mode (readers never wait for the writer) with foreign keys on and a
busy timeout. Python's sqlite3 module would begin transactions on its own, too late to
take the write lock first; the engine turns that off and begins every transaction itself:
``BEGIN IMMEDIATE`` on connections marked with :data:`WRITE`, so that read-modify-write
transactions queue for the lock up front instead of failing at their first write.

PostgreSQL connects through psycopg 3 with a connect timeout and a lock timeout, so that
no wait is unbounded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError

from aedfleet.db.errors import StoreError
from aedfleet.redact import redact_url

WRITE: Final[dict[str, Any]] = {"aedfleet_write": True}
"""Execution options of a connection that will write (``BEGIN IMMEDIATE`` on SQLite)."""

DEFAULT_TIMEOUT_S: Final = 30.0


def describe(engine: Engine) -> str:
    """The engine's URL for messages, without its password."""
    return engine.url.render_as_string(hide_password=True)


def reason(exc: BaseException) -> str:
    """The short cause of a database error: the driver's message, not the SQL."""
    cause: BaseException = exc
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        cause = exc.orig
    first_line = str(cause).strip().splitlines()
    return first_line[0] if first_line else type(cause).__name__


def _parse(url: str) -> URL:
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        # SQLAlchemy's message may quote the URL with its password; say what is expected.
        raise StoreError(
            f"invalid state store URL {redact_url(url)!r}: "
            "use sqlite:///path or postgresql+psycopg://user@host/db"
        ) from None
    if parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() != "psycopg":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def create_store_engine(url: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> Engine:
    """An engine for ``sqlite:///path`` or ``postgresql[+psycopg]://...``; nothing connects yet."""
    parsed = _parse(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(parsed, timeout_s)
    if backend == "postgresql":
        return create_engine(
            parsed,
            pool_pre_ping=True,
            connect_args={
                "connect_timeout": max(1, round(timeout_s)),
                "options": f"-c lock_timeout={round(timeout_s * 1000)}",
            },
        )
    raise StoreError(
        f"unsupported state store URL {parsed.render_as_string(hide_password=True)!r}: "
        "use sqlite:///path or postgresql+psycopg://..."
    )


def _sqlite_engine(url: URL, timeout_s: float) -> Engine:
    database = url.database or ""
    if database in {"", ":memory:"} or database.startswith("file::memory:"):
        raise StoreError(
            "the state store needs an SQLite file (sqlite:///path): an in-memory database "
            "is not shared between the store's connections"
        )
    # SQLite would create the file, but not its folder; a folder that is not there is
    # a mistyped URL, not a new store (an empty store would look like an empty fleet).
    folder = Path(database).parent
    if not folder.is_dir():
        raise StoreError(
            f"the state store's folder {folder} does not exist "
            f"(from {redact_url(url.render_as_string(hide_password=False))!r}): "
            "create it first, or fix the URL"
        )
    engine = create_engine(url)
    busy_timeout_ms = round(timeout_s * 1000)

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # the "begin" listener begins
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
            cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        immediate = connection.get_execution_options().get("aedfleet_write", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine
