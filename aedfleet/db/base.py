"""What every store kept in the state store's database shares.

A store opens an engine on the URL and migrates the database (:func:`open_migrated`),
owns that engine until :meth:`DatabaseStore.close` (or the end of its ``with`` block),
and runs each method in one connection: a snapshot for reading, a transaction that takes
the write lock first for writing. SQLAlchemy's errors become the store's own error type,
saying what was being done and in which database, so that no library exception leaves
a store.

:class:`aedfleet.db.StateStore`, :class:`alerting.store.AlarmStore` and
:class:`dispatch.outbox.DispatchOutbox` derive from :class:`DatabaseStore`; they differ in
what they keep and in the error they raise (the outbox also makes its writers take turns).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import ClassVar, Self

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from aedfleet.db.engine import WRITE, create_store_engine, describe, reason
from aedfleet.db.errors import StoreError
from aedfleet.db.migration import upgrade


def open_migrated(url: str, timeout_s: float) -> Engine:
    """An engine on ``url`` whose database has the newest schema; :class:`StoreError` if not.

    ``timeout_s`` bounds connecting and every wait for a lock.
    """
    engine = create_store_engine(url, timeout_s)
    try:
        upgrade(engine)
    except BaseException:
        engine.dispose()
        raise
    return engine


class DatabaseStore:
    """A store on one engine, which it closes; a context manager that closes it too."""

    _error_type: ClassVar[type[Exception]] = StoreError
    """What the store raises when the database fails (a message-only constructor)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def close(self) -> None:
        """Close every pooled connection; the store is unusable afterwards."""
        self._engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @contextmanager
    def _reading(self, action: str) -> Iterator[Connection]:
        """A connection whose reads all see one snapshot (SQLite's transactions always do)."""
        with self._translated(action), self._engine.connect() as connection:
            if connection.dialect.name == "postgresql":
                connection.execution_options(isolation_level="REPEATABLE READ")
            yield connection

    @contextmanager
    def _writing(self, action: str) -> Iterator[Connection]:
        """A connection in a transaction that holds the write lock (``BEGIN IMMEDIATE``
        on SQLite) from its start."""
        with self._translated(action), self._engine.connect() as connection:
            connection.execution_options(**WRITE)
            with connection.begin():
                yield connection

    @contextmanager
    def _translated(self, action: str) -> Iterator[None]:
        """SQLAlchemy's errors raised as the store's error type, saying what ``action`` was."""
        try:
            yield
        except IntegrityError as exc:
            raise self._error_type(
                f"{action} violates a constraint of {describe(self._engine)}: {reason(exc)}"
            ) from exc
        except SQLAlchemyError as exc:
            raise self._error_type(
                f"cannot {action} in {describe(self._engine)}: {reason(exc)}"
            ) from exc
