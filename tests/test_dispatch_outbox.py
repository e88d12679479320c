"""The dispatch outbox, one contract suite against SQLite and PostgreSQL alike."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from aedfleet.contract import DispatchEvent, Event, EventType
from aedfleet.db import migrate
from dispatch.enrichment import build_event
from dispatch.errors import OutboxError
from dispatch.incident import CabinetState, CoalescingPolicy, Notice, observe
from dispatch.outbox import (
    Attempt,
    DeliveryStatus,
    DispatchOutbox,
    NewMessage,
    PendingDelivery,
    Route,
)
from tests.postgres import (  # noqa: F401 - a fixture
    STORE_BACKENDS,
    empty_postgres,
    postgres_database,
)
from tests.schema import metadata

NOW = datetime(2025, 6, 1, 8, 0, tzinfo=UTC)
BOOT = "c" * 32
POLICY = CoalescingPolicy(min_update_interval_s=15)


@pytest.fixture(params=STORE_BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'outbox.sqlite3'}"
    return empty_postgres(request.getfixturevalue("postgres_database"))


@pytest.fixture
def outbox(url: str) -> Iterator[DispatchOutbox]:
    with DispatchOutbox.open(url) as opened:
        yield opened


def steps(cabinet_id: str, kinds: list[EventType]) -> tuple[CabinetState, list[Notice]]:
    """Feed events a minute apart (so none is held): the state and every notice."""
    state: CabinetState | None = None
    notices: list[Notice] = []
    for seq, kind in enumerate(kinds, start=1):
        at = NOW + timedelta(minutes=seq)
        message = Event(v=1, cabinet_id=cabinet_id, boot_id=BOOT, seq=seq, ts=at, event=kind)
        step = observe(state, message, at, POLICY)
        state = step.state
        notices.extend(step.notices)
    assert state is not None
    return state, notices


def messages(
    notices: list[Notice], endpoints: tuple[str, ...] = ("cc", "mqtt")
) -> list[NewMessage]:
    return [
        NewMessage(
            event=build_event(notice, None, None),
            routes=tuple(
                Route(endpoint=name, expires_at=notice.created_at + timedelta(hours=1))
                for name in endpoints
            ),
        )
        for notice in notices
    ]


def attempt(number: int, ok: bool, at: datetime = NOW, status: int | None = None) -> Attempt:
    return Attempt(
        number=number,
        started_at=at,
        duration_ms=12.5,
        ok=ok,
        http_status=status,
        error=None if ok else f"HTTP {status}",
    )


def test_the_migrated_schema_matches_the_dispatch_tables(url: str) -> None:
    migrate(url)
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, metadata) == []
            tables = set(sa.inspect(connection).get_table_names())
    finally:
        engine.dispose()
    assert {
        "dispatch_cabinets",
        "dispatch_messages",
        "dispatch_deliveries",
        "dispatch_attempts",
    } <= tables


def test_an_empty_outbox(outbox: DispatchOutbox) -> None:
    assert outbox.states() == {}
    assert outbox.pending() == []
    assert outbox.recent() == []
    assert outbox.counts() == {}
    assert outbox.message("nope") is None


def test_states_messages_and_deliveries_are_written_together(outbox: DispatchOutbox) -> None:
    state, notices = steps("SZ-1", [EventType.DOOR_OPENED, EventType.DOOR_CLOSED])
    created = outbox.record([state], messages(notices), NOW, POLICY)
    assert [(d.event.event_id, d.endpoint) for d in created] == [
        (notices[0].message_id, "cc"),
        (notices[0].message_id, "mqtt"),
        (notices[1].message_id, "cc"),
        (notices[1].message_id, "mqtt"),
    ]
    ids = [d.delivery_id for d in created]
    assert ids == sorted(ids)
    assert outbox.pending() == created
    assert outbox.states() == {"SZ-1": state}
    stored = outbox.message(notices[1].message_id)
    assert isinstance(stored, DispatchEvent)
    assert stored == created[2].event
    assert outbox.counts() == {
        ("cc", DeliveryStatus.PENDING): 2,
        ("mqtt", DeliveryStatus.PENDING): 2,
    }


def test_a_message_recorded_again_gets_no_new_deliveries(outbox: DispatchOutbox) -> None:
    state, notices = steps("SZ-1", [EventType.DOOR_OPENED])
    first = outbox.record([state], messages(notices), NOW, POLICY)
    again = outbox.record([state], messages(notices), NOW, POLICY)
    assert again == []
    assert outbox.pending() == first


def test_attempts_schedule_retries_and_finish_deliveries(outbox: DispatchOutbox) -> None:
    state, notices = steps("SZ-1", [EventType.DOOR_OPENED])
    cc, mqtt = outbox.record([state], messages(notices), NOW, POLICY)
    retry_at = NOW + timedelta(seconds=3)
    outbox.record_attempts([(cc.delivery_id, attempt(1, ok=False, status=503), retry_at)])
    outbox.record_attempts(
        [
            (cc.delivery_id, attempt(2, ok=True, at=retry_at, status=200), None),
            (mqtt.delivery_id, attempt(1, ok=False), retry_at),
        ]
    )
    [left] = outbox.pending()
    assert left.delivery_id == mqtt.delivery_id
    assert left.attempts == 1
    assert left.next_attempt_at == retry_at
    [newest, oldest] = outbox.recent()
    assert newest.delivery_id == mqtt.delivery_id
    assert oldest.status is DeliveryStatus.DELIVERED
    assert oldest.finished_at == retry_at
    assert oldest.attempts == 2
    assert [(a.number, a.ok, a.http_status) for a in oldest.attempt_log] == [
        (1, False, 503),
        (2, True, 200),
    ]
    assert oldest.attempt_log[0].error == "HTTP 503"
    assert oldest.kind == "alert"
    assert oldest.event_type == "door_opened"
    assert oldest.incident_id == notices[0].incident_id


def test_expired_deliveries_leave_the_queue(outbox: DispatchOutbox) -> None:
    state, notices = steps("SZ-1", [EventType.DOOR_OPENED])
    cc, mqtt = outbox.record([state], messages(notices), NOW, POLICY)
    outbox.expire(cc.delivery_id, NOW + timedelta(hours=1))
    # The record of a failed attempt that arrives after the expiry does not revive it.
    outbox.record_attempts([(cc.delivery_id, attempt(3, ok=False), NOW + timedelta(hours=2))])
    assert [d.delivery_id for d in outbox.pending()] == [mqtt.delivery_id]
    expired = outbox.recent(status=DeliveryStatus.EXPIRED)
    assert [d.delivery_id for d in expired] == [cc.delivery_id]
    assert expired[0].finished_at == NOW + timedelta(hours=1)
    # A delivered one cannot expire.
    outbox.record_attempts([(mqtt.delivery_id, attempt(1, ok=True), None)])
    outbox.expire(mqtt.delivery_id, NOW)
    assert outbox.recent(status=DeliveryStatus.DELIVERED)[0].delivery_id == mqtt.delivery_id


def test_recent_filters_and_limits(outbox: DispatchOutbox) -> None:
    for cabinet_id in ("SZ-1", "SZ-2", "SZ-3"):
        state, notices = steps(cabinet_id, [EventType.DOOR_OPENED, EventType.DOOR_CLOSED])
        outbox.record([state], messages(notices), NOW, POLICY)
    assert len(outbox.recent(limit=100)) == 12
    assert len(outbox.recent(limit=5)) == 5
    assert {d.cabinet_id for d in outbox.recent(limit=100, cabinet_id="SZ-2")} == {"SZ-2"}
    assert {d.endpoint for d in outbox.recent(limit=100, endpoint="mqtt")} == {"mqtt"}
    assert outbox.recent(limit=100, status=DeliveryStatus.DELIVERED) == []
    listed = outbox.recent(limit=100, with_attempts=False)
    assert [d.delivery_id for d in listed] == sorted((d.delivery_id for d in listed), reverse=True)


def test_everything_survives_a_reopen(url: str) -> None:
    state, notices = steps("深圳-南山-0001", [EventType.DOOR_OPENED, EventType.AED_REMOVED])
    with DispatchOutbox.open(url) as first:
        created = first.record([state], messages(notices, ("cc",)), NOW, POLICY)
        first.record_attempts([(created[0].delivery_id, attempt(1, ok=False), NOW)])
    with DispatchOutbox.open(url) as second:
        assert second.states() == {"深圳-南山-0001": state}
        pending: list[PendingDelivery] = second.pending()
        assert [d.event for d in pending] == [d.event for d in created]
        assert pending[0].attempts == 1


def test_states_are_upserted(outbox: DispatchOutbox) -> None:
    first, _ = steps("SZ-1", [EventType.DOOR_OPENED])
    outbox.record([first], [], NOW, POLICY)
    second, _ = steps("SZ-1", [EventType.DOOR_OPENED, EventType.DOOR_CLOSED])
    outbox.record([second], [], NOW, POLICY)
    assert outbox.states() == {"SZ-1": second}


def test_an_unreachable_database_is_an_outbox_error(tmp_path: Path) -> None:
    with pytest.raises(OutboxError, match="5"):
        DispatchOutbox.open("postgresql+psycopg://nobody@127.0.0.1:5/none", timeout_s=2)
    with pytest.raises(OutboxError):
        DispatchOutbox.open("mysql://nowhere/db")
