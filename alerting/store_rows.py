"""Rows of alerting's tables as values, and the helpers every alerting store shares."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import date, datetime
from enum import Enum
from itertools import islice
from typing import Any, Final, TypeVar

from pydantic import BaseModel, ValidationError
from sqlalchemy import Connection, Table
from sqlalchemy.dialects import postgresql, sqlite

from alerting.errors import AlarmStoreError
from alerting.model import AlarmDetail

# Ids per "IN (...)" query: well below SQLite's and PostgreSQL's limits on parameters.
CHUNK: Final = 500

M = TypeVar("M", bound=BaseModel)
K = TypeVar("K", int, str)


def columns_of(model: BaseModel) -> dict[str, object]:
    """A value's fields as column values (enumerations by value, URLs as text)."""
    row: dict[str, object] = {}
    for name, value in model.__dict__.items():
        if isinstance(value, Enum):
            row[name] = value.value
        elif value is None or isinstance(value, str | int | float | date | datetime | AlarmDetail):
            row[name] = value
        elif isinstance(value, tuple):
            row[name] = list(value)
        else:
            row[name] = str(value)
    return row


def model_of(kind: type[M], row: Mapping[str, Any]) -> M:
    """A stored row as its value; :class:`AlarmStoreError` if it does not validate."""
    try:
        return kind.model_validate(dict(row))
    except ValidationError as exc:
        raise AlarmStoreError(f"a stored {kind.__name__} is invalid: {exc}") from None


def chunks(items: Sequence[K], size: int = CHUNK) -> Iterator[list[K]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def is_postgres(connection: Connection) -> bool:
    return connection.dialect.name == "postgresql"


def insert_into(connection: Connection, table: Table) -> postgresql.Insert | sqlite.Insert:
    """An INSERT with the dialect's ``ON CONFLICT`` support."""
    if is_postgres(connection):
        return postgresql.insert(table)
    return sqlite.insert(table)
