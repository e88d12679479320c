"""The state store: the fleet registry and every cabinet's twin, in SQLite or PostgreSQL.

Synchronous by design (SQLAlchemy Core); the ingest service calls it from a worker
thread. The store is safe to share between threads and between processes writing the
same database: every write is one transaction, and twins are updated read-modify-write
under a lock (the affected rows on PostgreSQL, the database on SQLite), with the pure
:func:`aedfleet.twin.fold` doing the modify.

Only :mod:`aedfleet.registry` values, :class:`aedfleet.twin.Twin` and
:class:`StoreError` cross this interface; SQLAlchemy stays inside.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import date, datetime
from enum import Enum
from itertools import islice
from typing import Any, Final, TypeVar

from pydantic import BaseModel, ValidationError
from sqlalchemy import ColumnElement, Connection, Engine, Table, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import Insert

from aedfleet.contract import CabinetMessage
from aedfleet.db import sqlite_records, sqlite_twins
from aedfleet.db.base import DatabaseStore, open_migrated
from aedfleet.db.engine import DEFAULT_TIMEOUT_S
from aedfleet.db.errors import StoreError
from aedfleet.db.tables import assignments, cabinets, districts, people, registry_revision, twins
from aedfleet.registry import Assignment, Cabinet, District, Person, Registry, Role
from aedfleet.twin import EMPTY_TWIN_VALUES, Twin, TwinValues, fold

__all__ = ["StateStore", "StoreError"]

# Ids per "IN (...)" query: well below SQLite's and PostgreSQL's limits on parameters.
_CHUNK: Final = 500
_ROLE_ORDER: Final = {role: index for index, role in enumerate(Role)}

M = TypeVar("M", bound=BaseModel)


_PLAIN: Final = frozenset({str, int, float, bool, date, datetime, type(None)})


def _column_value(value: object) -> object:
    """A model's field value as the database column holds it."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, str | int | float | date | datetime):
        return value
    if isinstance(value, tuple):
        return list(value)
    return str(value)  # URLs and other string-like values


def _row(model: BaseModel) -> dict[str, object]:
    """The model's fields as column values (the hot path of bulk writes)."""
    return {
        name: value if type(value) in _PLAIN else _column_value(value)
        for name, value in model.__dict__.items()
    }


def _model(kind: type[M], row: Mapping[str, Any]) -> M:
    try:
        return kind.model_validate(row)
    except ValidationError as exc:
        raise StoreError(f"stored {kind.__name__.lower()} is invalid: {exc}") from None


def _in_code_point_order(connection: Connection, *columns: ColumnElement[str]) -> list[Any]:
    """ORDER BY terms that sort text as Python's sorted() does, on either backend.

    SQLite compares text by code point already; PostgreSQL's "C" collation does too.
    """
    if connection.dialect.name == "postgresql":
        return [column.collate("C") for column in columns]
    return list(columns)


def _duplicates(keys: Iterable[object]) -> list[object]:
    seen: set[object] = set()
    repeated: dict[object, None] = {}
    for key in keys:
        if key in seen:
            repeated[key] = None
        seen.add(key)
    return list(repeated)


def _listing(items: Sequence[str], limit: int = 10) -> str:
    more = len(items) - limit
    return ", ".join(items[:limit]) + (f" and {more} more" if more > 0 else "")


def _chunks(items: Sequence[str], size: int = _CHUNK) -> Iterator[list[str]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


class StateStore(DatabaseStore):
    """The registry and the twins of one database. Create it with :meth:`open`."""

    def __init__(self, *, _engine: Engine) -> None:
        super().__init__(_engine)
        self._upsert_cache: dict[str, Insert] = {}
        self._twin_rows = sqlite_twins.TwinRows()
        self._sqlite_twins_lock = threading.Lock()

    @classmethod
    def open(cls, url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> StateStore:
        """Connect to ``sqlite:///path`` or ``postgresql+psycopg://...`` and migrate it.

        ``timeout_s`` bounds connecting and every wait for a lock.
        """
        return cls(_engine=open_migrated(url, timeout_s))

    # -- plumbing ------------------------------------------------------------------------

    def _upsert(self, connection: Connection, table: Table) -> Insert:
        """INSERT … ON CONFLICT (primary key) DO UPDATE every other column."""
        cached = self._upsert_cache.get(table.name)
        if cached is not None:
            return cached
        key = [column.name for column in table.primary_key]
        statement: postgresql.Insert | sqlite.Insert
        if connection.dialect.name == "postgresql":
            statement = postgresql.insert(table)
        else:
            statement = sqlite.insert(table)
        others = {c.name: statement.excluded[c.name] for c in table.columns if c.name not in key}
        upsert = statement.on_conflict_do_update(index_elements=key, set_=others)
        self._upsert_cache[table.name] = upsert
        return upsert

    # -- registry ------------------------------------------------------------------------

    def load_cabinets(self) -> tuple[Cabinet, ...]:
        """Every cabinet, ordered by id (without the people and assignments)."""
        with self._reading("load the cabinets") as connection:
            return self._cabinets(connection)

    def _cabinets(self, connection: Connection) -> tuple[Cabinet, ...]:
        rows = connection.execute(
            select(cabinets).order_by(*_in_code_point_order(connection, cabinets.c.cabinet_id))
        )
        return tuple(_model(Cabinet, row._asdict()) for row in rows)

    def registry_revision(self) -> int:
        """A number that moves whenever a cabinet, person or assignment changes.

        Cheap to read: a service caching the registry reloads it only when this moved.
        Read it before loading, so that a change made meanwhile is loaded next time.
        """
        with self._reading("read the registry revision") as connection:
            return int(connection.execute(select(registry_revision.c.revision)).scalar_one())

    def load_registry(self) -> Registry:
        """Every cabinet, person, assignment and district, ordered by key."""
        with self._reading("load the registry") as connection:
            found_cabinets = self._cabinets(connection)
            people_rows = connection.execute(
                select(people).order_by(*_in_code_point_order(connection, people.c.person_id))
            )
            found_people = tuple(_model(Person, row._asdict()) for row in people_rows)
            assignment_rows = connection.execute(
                select(assignments).order_by(
                    *_in_code_point_order(connection, *assignments.primary_key.columns)
                )
            )
            found_assignments = tuple(_model(Assignment, row._asdict()) for row in assignment_rows)
            district_rows = connection.execute(
                select(districts).order_by(
                    *_in_code_point_order(connection, districts.c.region_code)
                )
            )
            found_districts = tuple(_model(District, row._asdict()) for row in district_rows)
        return Registry(
            cabinets=found_cabinets,
            people=found_people,
            assignments=found_assignments,
            districts=found_districts,
        )

    def apply_registry(self, upserts: Registry) -> None:
        """Insert or update exactly the given records, all in one transaction or none.

        Raises :class:`StoreError` naming the offending ids when the batch repeats a key
        or an assignment names a cabinet or person that is neither in the batch nor stored.
        """
        _check_unique(upserts)
        with self._writing("apply the registry") as connection:
            self._check_references(connection, upserts)
            for table, records in (
                (cabinets, upserts.cabinets),
                (people, upserts.people),
                (assignments, upserts.assignments),
                (districts, upserts.districts),
            ):
                if not records:
                    continue
                if connection.dialect.name == "sqlite":
                    sqlite_records.upsert_records(connection, table, records)
                else:
                    connection.execute(
                        self._upsert(connection, table), [_row(record) for record in records]
                    )

    def _check_references(self, connection: Connection, upserts: Registry) -> None:
        given_cabinets = {cabinet.cabinet_id for cabinet in upserts.cabinets}
        given_people = {person.person_id for person in upserts.people}
        stored_cabinets = _existing(
            connection,
            cabinets.c.cabinet_id,
            {a.cabinet_id for a in upserts.assignments} - given_cabinets,
        )
        stored_people = _existing(
            connection,
            people.c.person_id,
            {a.person_id for a in upserts.assignments} - given_people,
        )
        known_cabinets = given_cabinets | stored_cabinets
        known_people = given_people | stored_people
        problems = [
            f"assignment ({a.cabinet_id!r}, {a.person_id!r}, {a.role.value}) names unknown {what}"
            for a in upserts.assignments
            for what, known in (
                (f"cabinet {a.cabinet_id!r}", a.cabinet_id in known_cabinets),
                (f"person {a.person_id!r}", a.person_id in known_people),
            )
            if not known
        ]
        if problems:
            raise StoreError(f"registry not applied: {_listing(problems)}")

    def cabinet_ids(self) -> set[str]:
        with self._reading("list the cabinets") as connection:
            return set(connection.scalars(select(cabinets.c.cabinet_id)))

    def cabinet(self, cabinet_id: str) -> Cabinet | None:
        with self._reading(f"read cabinet {cabinet_id!r}") as connection:
            row = connection.execute(
                select(cabinets).where(cabinets.c.cabinet_id == cabinet_id)
            ).first()
        return None if row is None else _model(Cabinet, row._asdict())

    def assignments_for(self, cabinet_id: str) -> list[tuple[Assignment, Person]]:
        """Who looks after a cabinet: captains, then backups by rank, then coordinators."""
        with self._reading(f"read the assignments of cabinet {cabinet_id!r}") as connection:
            rows = connection.execute(
                select(assignments, people)
                .join(people, people.c.person_id == assignments.c.person_id)
                .where(assignments.c.cabinet_id == cabinet_id)
            ).all()
        pairs = [
            (
                _model(Assignment, {c.name: row._mapping[c] for c in assignments.columns}),
                _model(Person, {c.name: row._mapping[c] for c in people.columns}),
            )
            for row in rows
        ]
        return sorted(
            pairs, key=lambda pair: (_ROLE_ORDER[pair[0].role], pair[0].rank, pair[0].person_id)
        )

    # -- twins -----------------------------------------------------------------------------

    def apply_messages(self, messages: Sequence[CabinetMessage]) -> None:
        """Fold a batch of messages into the twins, in one transaction.

        Safe with several writers: on PostgreSQL the affected twin rows are locked
        (``SELECT … FOR UPDATE``, in cabinet id order, after inserting the missing ones so
        that they can be locked too); on SQLite the transaction takes the write lock first.
        Each twin is folded as plain values (:func:`aedfleet.twin.fold`), and only those
        that changed are written back; on SQLite through :mod:`aedfleet.db.sqlite_twins`,
        which also remembers the twins it wrote so that the next batch need not read them.
        """
        if not messages:
            return
        by_cabinet: dict[str, list[CabinetMessage]] = defaultdict(list)
        for message in messages:
            by_cabinet[message.cabinet_id].append(message)
        cabinet_ids = sorted(by_cabinet)
        action = f"apply {len(messages)} messages to the twins"
        if self._engine.dialect.name != "sqlite":
            with self._writing(action) as connection:
                folded = _folded(self._lock_twins(connection, cabinet_ids), by_cabinet)
                changed = [after for before, after in folded if after != before]
                if changed:
                    connection.execute(
                        self._upsert(connection, twins), [_twin_row(values) for values in changed]
                    )
            return
        # One thread at a time in this store: what TwinRows remembers is written and
        # trusted under the same lock (other processes are kept out by SQLite's).
        with self._sqlite_twins_lock:
            try:
                with self._writing(action) as connection:
                    # The transaction holds SQLite's write lock: no other writer until commit.
                    folded = _folded(self._twin_rows.held(connection, cabinet_ids), by_cabinet)
                    sqlite_twins.upsert_twins(
                        connection, [after for before, after in folded if after != before]
                    )
                    self._twin_rows.remember(after for _, after in folded)
            except BaseException:
                self._twin_rows.forget()  # remembered, but perhaps never committed
                raise

    def _lock_twins(self, connection: Connection, cabinet_ids: list[str]) -> dict[str, TwinValues]:
        """The stored twins of ``cabinet_ids`` as values, locked for this transaction
        (PostgreSQL)."""
        # A row that does not exist cannot be locked: create it first. In id order, like
        # the locks below, so that concurrent batches cannot deadlock.
        connection.execute(
            postgresql.insert(twins).on_conflict_do_nothing(index_elements=["cabinet_id"]),
            [{"cabinet_id": cabinet_id} for cabinet_id in cabinet_ids],
        )
        held: dict[str, TwinValues] = {}
        for chunk in _chunks(cabinet_ids):
            # Lock in the order of sorted(cabinet_ids): one lock order for every batch.
            query = (
                select(twins)
                .where(twins.c.cabinet_id.in_(chunk))
                .order_by(*_in_code_point_order(connection, twins.c.cabinet_id))
                .with_for_update()
            )
            for row in connection.execute(query):
                values = row._asdict()
                codes = values["selftest_fault_codes"]
                if codes is not None:
                    values["selftest_fault_codes"] = tuple(codes)
                held[values["cabinet_id"]] = values
        return held

    def twin(self, cabinet_id: str) -> Twin | None:
        with self._reading(f"read the twin of cabinet {cabinet_id!r}") as connection:
            row = connection.execute(select(twins).where(twins.c.cabinet_id == cabinet_id)).first()
        return None if row is None else _twin(row._asdict())

    def twins_of(self, cabinet_ids: Iterable[str]) -> dict[str, Twin]:
        """The twins of these cabinets, by cabinet id (cabinets never heard from left out),
        in one query per few hundred ids rather than one per cabinet."""
        wanted = sorted(set(cabinet_ids))
        found: dict[str, Twin] = {}
        with self._reading(f"read the twins of {len(wanted)} cabinets") as connection:
            for chunk in _chunks(wanted):
                for row in connection.execute(select(twins).where(twins.c.cabinet_id.in_(chunk))):
                    twin = _twin(row._asdict())
                    if twin is not None:
                        found[twin.cabinet_id] = twin
        return found

    def twins(self) -> list[Twin]:
        """Every twin, ordered by cabinet id."""
        with self._reading("read the twins") as connection:
            rows = connection.execute(
                select(twins).order_by(*_in_code_point_order(connection, twins.c.cabinet_id))
            )
            found = [_twin(row._asdict()) for row in rows]
        return [twin for twin in found if twin is not None]


_EMPTY_TWIN_FIELDS: Final = frozenset(Twin.model_fields) - {"cabinet_id"}


def _twin(row: Mapping[str, Any]) -> Twin | None:
    """The twin of a row; None for a row created only to be locked, never filled."""
    if all(row[name] is None for name in _EMPTY_TWIN_FIELDS):
        return None
    return _model(Twin, row)


def _folded(
    held: Mapping[str, TwinValues], by_cabinet: Mapping[str, list[CabinetMessage]]
) -> list[tuple[TwinValues | None, TwinValues]]:
    """(before, after) of each cabinet's twin, the batch folded into a copy of ``held``."""
    folded: list[tuple[TwinValues | None, TwinValues]] = []
    for cabinet_id, messages in sorted(by_cabinet.items()):
        before = held.get(cabinet_id)
        after = dict(before) if before is not None else _empty_twin(cabinet_id)
        fold(after, messages)
        folded.append((before, after))
    return folded


def _empty_twin(cabinet_id: str) -> TwinValues:
    values: TwinValues = dict(EMPTY_TWIN_VALUES)
    values["cabinet_id"] = cabinet_id
    return values


def _twin_row(values: TwinValues) -> dict[str, object]:
    """A twin's values as the columns hold them: enumerations as strings, a list of codes."""
    row: dict[str, object] = {}
    for name, value in values.items():
        if isinstance(value, Enum):
            row[name] = value.value
        elif isinstance(value, tuple):
            row[name] = list(value)
        else:
            row[name] = value
    return row


def _check_unique(upserts: Registry) -> None:
    keys: list[tuple[str, list[object]]] = [
        ("cabinets", [c.cabinet_id for c in upserts.cabinets]),
        ("people", [p.person_id for p in upserts.people]),
        ("assignments", [(a.cabinet_id, a.person_id, a.role.value) for a in upserts.assignments]),
        ("districts", [d.region_code for d in upserts.districts]),
    ]
    for what, ids in keys:
        repeated = _duplicates(ids)
        if repeated:
            shown = _listing([repr(key) for key in repeated])
            raise StoreError(f"registry not applied: the batch repeats the {what} {shown}")


def _existing(connection: Connection, column: Any, ids: set[str]) -> set[str]:
    """Which of ``ids`` are stored in ``column``."""
    found: set[str] = set()
    for chunk in _chunks(sorted(ids)):
        found.update(connection.scalars(select(column).where(column.in_(chunk))))
    return found
