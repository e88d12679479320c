"""Twin rows read and written through the SQLite driver match SQLAlchemy's, both ways."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from enum import Enum
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from sqlalchemy import Engine, delete, insert, select

from aedfleet.contract import CabinetMessage
from aedfleet.db.engine import WRITE, create_store_engine
from aedfleet.db.migration import upgrade
from aedfleet.db.sqlite_twins import TwinRows, select_twins, upsert_twins
from aedfleet.db.tables import twins
from aedfleet.twin import Twin, TwinValues
from tests.test_twin import CABINET, fold, histories

EVERY_SECTION = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    instance = create_store_engine(f"sqlite:///{tmp_path / 'twins.sqlite3'}")
    upgrade(instance)
    yield instance
    instance.dispose()


def folded(history: list[CabinetMessage]) -> Twin:
    twin = fold(history)
    assert twin is not None
    return twin


def with_sqlalchemy(twin: Twin) -> dict[str, object]:
    """The row as SQLAlchemy binds it: its own type processing does every conversion."""
    row: dict[str, object] = {}
    for name, value in twin.__dict__.items():
        if isinstance(value, Enum):
            row[name] = value.value
        elif isinstance(value, tuple):
            row[name] = list(value)
        else:
            row[name] = value
    return row


@EVERY_SECTION
@given(history=histories())
def test_a_row_sqlalchemy_wrote_reads_back_as_the_twins_values(
    engine: Engine, history: list[CabinetMessage]
) -> None:
    twin = folded(history)
    with engine.connect() as connection, connection.begin():
        connection.execute(delete(twins))
        connection.execute(insert(twins), [with_sqlalchemy(twin)])
        held = select_twins(connection, [CABINET, "not-stored"])
    assert held == {CABINET: twin.__dict__}


@EVERY_SECTION
@given(history=histories())
def test_a_row_written_through_the_driver_reads_back_through_sqlalchemy(
    engine: Engine, history: list[CabinetMessage]
) -> None:
    twin = folded(history)
    with engine.connect() as connection:
        connection.execution_options(**WRITE)
        with connection.begin():
            connection.execute(delete(twins))
            upsert_twins(connection, [dict(twin.__dict__)])
            upsert_twins(connection, [dict(twin.__dict__)])  # an upsert, not a second row
            rows = connection.execute(select(twins)).all()
    assert len(rows) == 1
    assert Twin.model_validate(rows[0]._asdict()) == twin


def test_timestamps_in_other_zones_are_stored_as_utc_and_naive_ones_refused(
    engine: Engine,
) -> None:
    moment = datetime(2026, 11, 25, 8, 30, 0, 250, tzinfo=timezone(timedelta(hours=8)))
    values: TwinValues = dict.fromkeys(Twin.model_fields)
    values |= {"cabinet_id": CABINET, "first_seen": moment, "last_seen": moment}
    with engine.connect() as connection, connection.begin():
        upsert_twins(connection, [values])
        stored = select_twins(connection, [CABINET])[CABINET]
        assert stored["first_seen"] == moment
        assert stored["first_seen"].tzinfo is UTC
        with pytest.raises(ValueError, match="naive"):
            upsert_twins(connection, [values | {"last_seen": moment.replace(tzinfo=None)}])


def test_many_cabinets_are_read_in_chunks(engine: Engine) -> None:
    ids = [f"cab-{number:05d}" for number in range(1_234)]
    rows: list[TwinValues] = [
        dict.fromkeys(Twin.model_fields) | {"cabinet_id": cabinet_id, "last_seq": number}
        for number, cabinet_id in enumerate(ids)
    ]
    with engine.connect() as connection, connection.begin():
        upsert_twins(connection, rows)
        held = select_twins(connection, ids[::-1])
    assert sorted(held) == ids
    assert held["cab-01233"]["last_seq"] == 1_233


# -- what TwinRows remembers --------------------------------------------------------------


def twin_values(cabinet_id: str, last_seq: int) -> TwinValues:
    return dict.fromkeys(Twin.model_fields) | {"cabinet_id": cabinet_id, "last_seq": last_seq}


def write_remembering(engine: Engine, rows: TwinRows, values: list[TwinValues]) -> None:
    with engine.connect() as connection:
        connection.execution_options(**WRITE)
        with connection.begin():
            rows.held(connection, [v["cabinet_id"] for v in values])
            upsert_twins(connection, values)
            rows.remember(values)


def held_now(engine: Engine, rows: TwinRows, cabinet_ids: list[str]) -> dict[str, TwinValues]:
    with engine.connect() as connection:
        connection.execution_options(**WRITE)
        with connection.begin():
            return rows.held(connection, cabinet_ids)


def test_remembered_twins_are_not_read_again(engine: Engine) -> None:
    rows = TwinRows()
    written = [twin_values("a", 1), twin_values("b", 2)]
    write_remembering(engine, rows, written)
    held = held_now(engine, rows, ["a", "b"])
    assert held["a"] is written[0]
    assert held["b"] is written[1]


def test_a_write_by_another_connection_is_seen(engine: Engine, tmp_path: Path) -> None:
    rows = TwinRows()
    write_remembering(engine, rows, [twin_values("a", 1)])
    other = create_store_engine(f"sqlite:///{tmp_path / 'twins.sqlite3'}")
    try:
        with other.connect() as connection, connection.begin():
            upsert_twins(connection, [twin_values("a", 7)])
    finally:
        other.dispose()
    assert held_now(engine, rows, ["a"])["a"]["last_seq"] == 7


def test_remembering_is_bounded_least_recently_written_first(engine: Engine) -> None:
    rows = TwinRows(capacity=3)
    write_remembering(engine, rows, [twin_values(name, 1) for name in "abcde"])
    assert len(rows) == 3
    held = held_now(engine, rows, list("abcde"))
    assert sorted(held) == list("abcde")  # the forgotten ones are read from the database


def test_forgetting_trusts_nothing(engine: Engine) -> None:
    rows = TwinRows()
    written = [twin_values("a", 1)]
    write_remembering(engine, rows, written)
    rows.forget()
    held = held_now(engine, rows, ["a"])
    assert held["a"] == written[0]
    assert held["a"] is not written[0]
