"""Registry records written to SQLite through the driver, many rows to a statement.

Importing 100,000 cabinets spent more time in SQLAlchemy's per-row parameter processing
than in SQLite (``docs/benchmarks.md``). The conversions these tables need are few and
are made here exactly as SQLAlchemy makes them for SQLite (the store's contract tests
read the rows back through SQLAlchemy): dates as ``YYYY-MM-DD``, enumerations as their
values, URLs and other string-like values as text; strings and numbers as they are.
"""

from __future__ import annotations

import sqlite3
import types
import typing
from collections.abc import Callable, Sequence
from datetime import date
from enum import Enum
from operator import itemgetter
from typing import Final, get_args, get_origin

from pydantic import BaseModel
from sqlalchemy import Connection, Date, Table

__all__ = ["upsert_records"]

# Parameters per statement: 32,766 since SQLite 3.32, 999 before.
_MAX_PARAMETERS: Final = 32_766 if sqlite3.sqlite_version_info >= (3, 32, 0) else 999
_PLAIN: Final = frozenset({str, int, float, bool, type(None)})
_UNIONS: Final = frozenset({typing.Union, types.UnionType})

Converter = Callable[[object], object]


def _encode_date(value: object) -> object:
    return value.isoformat() if isinstance(value, date) else value


def _encode_value(value: object) -> object:
    if type(value) in _PLAIN:
        return value
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, str | int | float):
        return value
    return str(value)  # URLs and other string-like values


def _statement(table: Table, rows: int) -> str:
    """INSERT … ON CONFLICT (primary key) DO UPDATE every other column, for ``rows`` rows
    (names from the table and placeholders only, never values)."""
    names = [column.name for column in table.columns]
    key = [column.name for column in table.primary_key]
    quoted = ", ".join(f'"{name}"' for name in names)
    marks = "(" + ", ".join("?" for _ in names) + ")"
    updates = ", ".join(f'"{name}" = excluded."{name}"' for name in names if name not in key)
    return (
        f'INSERT INTO "{table.name}" ({quoted}) '  # noqa: S608
        f"VALUES {', '.join(marks for _ in range(rows))} "
        f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}"
    )


def _converters(table: Table, model: type[BaseModel]) -> list[tuple[int, Converter]]:
    """The columns whose values need converting, by index, and how: those whose field
    may hold something other than text, numbers, booleans and None."""
    converters: list[tuple[int, Converter]] = []
    for index, column in enumerate(table.columns):
        if isinstance(column.type, Date):
            converters.append((index, _encode_date))
            continue
        annotation = model.model_fields[column.name].annotation
        kinds = get_args(annotation) if get_origin(annotation) in _UNIONS else (annotation,)
        if not all(kind in _PLAIN for kind in kinds):
            converters.append((index, _encode_value))
    return converters


def upsert_records(connection: Connection, table: Table, records: Sequence[BaseModel]) -> None:
    """Insert or update ``records``: models of one class whose fields are ``table``'s
    columns."""
    if not records:
        return
    names = [column.name for column in table.columns]
    values_of = itemgetter(*names)
    converters = _converters(table, type(records[0]))
    per_statement = max(1, _MAX_PARAMETERS // len(names))
    full = _statement(table, per_statement)
    for start in range(0, len(records), per_statement):
        part = records[start : start + per_statement]
        parameters: list[object] = []
        for record in part:
            row = list(values_of(record.__dict__))
            for index, encode in converters:
                row[index] = encode(row[index])
            parameters += row
        sql = full if len(part) == per_statement else _statement(table, len(part))
        connection.exec_driver_sql(sql, tuple(parameters))
