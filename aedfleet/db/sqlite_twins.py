"""Twin rows on SQLite, read and written through the driver: the ingest's hot path.

SQLAlchemy converts every bound and fetched value in Python, a type decorator and a
string format per timestamp; for the 56 columns of a twin that cost more than folding
the messages (``docs/benchmarks.md``). These functions make the same conversions in one
pass and hand plain tuples to the driver's ``executemany``. They write exactly what
SQLAlchemy writes and read what it reads (the store's contract tests read these rows
back through SQLAlchemy, and the other way round):

- timestamps (:class:`aedfleet.db.tables.UtcDateTime`): UTC as
  ``YYYY-MM-DD HH:MM:SS.ffffff``, read back with UTC attached;
- dates: ``YYYY-MM-DD``; booleans: 0 and 1;
- the JSON list of fault codes: ``json.dumps`` of the list (SQLAlchemy's serializer),
  NULL for none; read back as a tuple, as :class:`aedfleet.twin.Twin` holds it;
- enumerations: their string values.

Rows are written many to one ``INSERT`` statement: the driver lets go of the GIL for every
step of a statement, and each step so became a wait for the ingest's event loop to hand
it back. :class:`TwinRows` also remembers the twins it wrote, so that a batch reads only
those it does not hold; what it holds is trusted only while ``PRAGMA data_version``
says that no other connection has written the database since (checked inside the write
transaction, whose lock keeps other writers out until it commits).

Used inside the store's own transactions only; PostgreSQL keeps SQLAlchemy's path, where
the network round trips, not the conversions, take the time.
"""

from __future__ import annotations

import json
import sqlite3
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, date, datetime
from enum import Enum
from itertools import islice
from operator import itemgetter
from typing import Any, Final, get_args

from sqlalchemy import JSON, Boolean, Connection, Date, String

from aedfleet.db.tables import UtcDateTime, twins
from aedfleet.twin import Twin, TwinValues

__all__ = ["TwinRows", "select_twins", "upsert_twins"]

# Ids per "IN (...)": well below SQLite's limit on parameters.
_CHUNK: Final = 500
# Parameters per statement: 32,766 since SQLite 3.32, 999 before.
_MAX_PARAMETERS: Final = 32_766 if sqlite3.sqlite_version_info >= (3, 32, 0) else 999

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


def _holds_enumeration(name: str) -> bool:
    annotation = Twin.model_fields[name].annotation
    return any(isinstance(kind, type) and issubclass(kind, Enum) for kind in get_args(annotation))


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
        elif isinstance(kind, String) and _holds_enumeration(column.name):
            encoders.append(_encode_text)
            decoders.append(None)
        else:
            encoders.append(None)
            decoders.append(None)
    return encoders, decoders


_COLUMNS: Final = tuple(column.name for column in twins.columns)
_ENCODERS, _DECODERS = _converters()
_NAMES_LIST: Final = ", ".join(f'"{name}"' for name in _COLUMNS)
_ROW_VALUES: Final = itemgetter(*_COLUMNS)
_ROW_MARKS: Final = "(" + ", ".join("?" for _ in _COLUMNS) + ")"
_ROWS_PER_INSERT: Final = _MAX_PARAMETERS // len(_COLUMNS)
_ON_CONFLICT: Final = " ON CONFLICT (cabinet_id) DO UPDATE SET " + ", ".join(
    f'"{name}" = excluded."{name}"' for name in _COLUMNS if name != "cabinet_id"
)


def _upsert(rows: int) -> str:
    """INSERT … ON CONFLICT for ``rows`` rows (column names and placeholders only)."""
    values = ", ".join(_ROW_MARKS for _ in range(rows))
    return f"INSERT INTO twins ({_NAMES_LIST}) VALUES {values}{_ON_CONFLICT}"  # noqa: S608


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
    """Insert or replace each twin's row, every column, many rows to a statement."""
    # The sections of a twin often share a timestamp object: format each once.
    formatted: dict[datetime, str | None] = {}

    def timestamp(value: datetime | None) -> str | None:
        if value is None:
            return None
        text = formatted.get(value)
        if text is None:
            text = formatted[value] = _encode_timestamp(value)
        return text

    converters = [
        (index, timestamp if encode is _encode_timestamp else encode)
        for index, encode in enumerate(_ENCODERS)
        if encode is not None
    ]
    for start in range(0, len(changed), _ROWS_PER_INSERT):
        parameters: list[object] = []
        for values in changed[start : start + _ROWS_PER_INSERT]:
            row = list(_ROW_VALUES(values))
            for index, encode in converters:
                row[index] = encode(row[index])
            parameters += row
        rows = len(parameters) // len(_COLUMNS)
        connection.exec_driver_sql(_upsert(rows), tuple(parameters))


class TwinRows:
    """The twins of one store on SQLite, with those it last wrote remembered.

    At most ``capacity`` twins are remembered, the least recently written forgotten
    first; a forgotten twin is read from the database again.
    """

    def __init__(self, capacity: int = 50_000) -> None:
        self._capacity = capacity
        self._remembered: OrderedDict[str, TwinValues] = OrderedDict()
        # What the remembered twins are valid for: a driver connection and the database's
        # data_version as that connection saw it.
        self._valid_for: tuple[object, int] | None = None

    def __len__(self) -> int:
        return len(self._remembered)

    def held(self, connection: Connection, cabinet_ids: Sequence[str]) -> dict[str, TwinValues]:
        """The stored twins of ``cabinet_ids``; call inside the write transaction."""
        driver = connection.connection.driver_connection
        version = connection.exec_driver_sql("PRAGMA data_version").scalar_one()
        if self._valid_for is None or self._valid_for != (driver, version):
            # Another connection wrote, or this is another connection (whose
            # data_version counts differently): nothing remembered can be trusted.
            self._remembered.clear()
            self._valid_for = (driver, version)
        remembered = self._remembered
        held: dict[str, TwinValues] = {}
        missing: list[str] = []
        for cabinet_id in cabinet_ids:
            values = remembered.get(cabinet_id)
            if values is None:
                missing.append(cabinet_id)
            else:
                held[cabinet_id] = values
        if missing:
            held.update(select_twins(connection, missing))
        return held

    def forget(self) -> None:
        """Trust nothing remembered (after a transaction that did not commit)."""
        self._remembered.clear()
        self._valid_for = None

    def remember(self, twins: Iterable[TwinValues]) -> None:
        """Keep ``twins`` as stored; call once their transaction has committed.

        The caller hands them over: they must not be changed afterwards.
        """
        remembered = self._remembered
        for values in twins:
            cabinet_id = values["cabinet_id"]
            remembered[cabinet_id] = values
            remembered.move_to_end(cabinet_id)
        while len(remembered) > self._capacity:
            remembered.popitem(last=False)
