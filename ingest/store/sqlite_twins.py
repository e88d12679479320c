"""Twin rows on SQLite, read and written through the driver: the ingest's hot path.

SQLAlchemy converts every bound and fetched value in Python, a type decorator and a
string format per timestamp; for the 56 columns of a twin that cost more than folding
the messages (``docs/benchmarks.md``). These functions make the same conversions in one
pass and hand plain tuples to the driver's ``executemany``. They write exactly what
SQLAlchemy writes and read what it reads (the store's contract tests read these rows
back through SQLAlchemy, and the other way round):

- timestamps (:class:`ingest.store.tables.UtcDateTime`): UTC as
  ``YYYY-MM-DD HH:MM:SS.ffffff``, read back with UTC attached;
- dates: ``YYYY-MM-DD``; booleans: 0 and 1;
- the JSON list of fault codes: ``json.dumps`` of the list (SQLAlchemy's serializer),
  NULL for none; read back as a tuple, as :class:`ingest.twin.Twin` holds it;
- enumerations: their string values.

Used inside the store's own transactions only; PostgreSQL keeps SQLAlchemy's path, where
the network round trips, not the conversions, take the time.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, date, datetime
from enum import Enum
from itertools import islice
from typing import Any, Final

from sqlalchemy import JSON, Boolean, Connection, Date, String

from ingest.store.tables import UtcDateTime, twins
from ingest.twin import TwinValues

__all__ = ["select_twins", "upsert_twins"]

# Ids per "IN (...)": well below SQLite's limit on parameters.
_CHUNK: Final = 500

Converter = Callable[[Any], Any]


def _encode_timestamp(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is not UTC:
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()} cannot be stored as UTC")
        value = value.astimezone(UTC)
    # "YYYY-MM-DD HH:MM:SS.ffffff+00:00" without the offset: SQLAlchemy's SQLite format.
    return value.isoformat(" ", "microseconds")[:-6]


def _decode_timestamp(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value).replace(tzinfo=UTC)


def _encode_date(value: date | None) -> str | None:
    return None if value is None else value.isoformat()


def _decode_date(value: str | None) -> date | None:
    return None if value is None else date.fromisoformat(value)


def _decode_boolean(value: int | None) -> bool | None:
    return None if value is None else bool(value)


def _encode_json_list(value: Sequence[str] | None) -> str | None:
    return None if value is None else json.dumps(list(value))


def _decode_json_list(value: str | None) -> tuple[str, ...] | None:
    return None if value is None else tuple(json.loads(value))


def _encode_text(value: object) -> object:
    return value.value if isinstance(value, Enum) else value


def _converters() -> tuple[list[Converter | None], list[Converter | None]]:
    """Per column of ``twins``: how to encode a value, how to decode it (None: as is)."""
    encoders: list[Converter | None] = []
    decoders: list[Converter | None] = []
    for column in twins.columns:
        kind = column.type
        if isinstance(kind, UtcDateTime):
            encoders.append(_encode_timestamp)
            decoders.append(_decode_timestamp)
        elif isinstance(kind, Date):
            encoders.append(_encode_date)
            decoders.append(_decode_date)
        elif isinstance(kind, Boolean):
            encoders.append(None)  # the driver binds True and False as 1 and 0
            decoders.append(_decode_boolean)
        elif isinstance(kind, JSON):
            encoders.append(_encode_json_list)
            decoders.append(_decode_json_list)
        elif isinstance(kind, String):
            encoders.append(_encode_text)
            decoders.append(None)
        else:
            encoders.append(None)
            decoders.append(None)
    return encoders, decoders


_COLUMNS: Final = tuple(column.name for column in twins.columns)
_ENCODERS, _DECODERS = _converters()
_NAMES_LIST: Final = ", ".join(f'"{name}"' for name in _COLUMNS)
# Built from the table's column names and placeholders only, never from values.
_UPSERT: Final = (
    f"INSERT INTO twins ({_NAMES_LIST}) VALUES ({', '.join('?' for _ in _COLUMNS)}) "  # noqa: S608
    "ON CONFLICT (cabinet_id) DO UPDATE SET "
    + ", ".join(f'"{name}" = excluded."{name}"' for name in _COLUMNS if name != "cabinet_id")
)


def _chunks(items: Sequence[str]) -> Iterator[tuple[str, ...]]:
    iterator = iter(items)
    while chunk := tuple(islice(iterator, _CHUNK)):
        yield chunk


def select_twins(connection: Connection, cabinet_ids: Sequence[str]) -> dict[str, TwinValues]:
    """The stored twins of ``cabinet_ids`` by cabinet id, as values."""
    held: dict[str, TwinValues] = {}
    converters = list(zip(_COLUMNS, _DECODERS, strict=True))
    for chunk in _chunks(cabinet_ids):
        marks = ", ".join("?" for _ in chunk)
        query = f"SELECT {_NAMES_LIST} FROM twins WHERE cabinet_id IN ({marks})"  # noqa: S608 - column names and placeholders only
        for row in connection.exec_driver_sql(query, chunk):
            values = {
                name: raw if decode is None else decode(raw)
                for (name, decode), raw in zip(converters, row, strict=True)
            }
            held[values["cabinet_id"]] = values
    return held


def upsert_twins(connection: Connection, changed: Sequence[TwinValues]) -> None:
    """Insert or replace each twin's row, every column, in one ``executemany``."""
    encoders = list(zip(_COLUMNS, _ENCODERS, strict=True))
    rows = [
        tuple(values[name] if encode is None else encode(values[name]) for name, encode in encoders)
        for values in changed
    ]
    if rows:
        connection.exec_driver_sql(_UPSERT, rows)
