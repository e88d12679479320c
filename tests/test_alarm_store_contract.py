"""One contract suite for the alarm store, run against SQLite (WAL, a temp file) and a
PostgreSQL database of this session's own."""

from __future__ import annotations

import itertools
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from hypothesis import HealthCheck, given, settings

from aedfleet.db import StateStore, migrate
from aedfleet.registry import Cabinet, Registry
from alerting.escalation import EscalationPolicies, EscalationState, advance
from alerting.lifecycle import Hysteresis, Raise, Resolve, reconcile
from alerting.model import (
    Alarm,
    AlarmDetail,
    AlarmEventKind,
    AlarmState,
    AlarmType,
    Condition,
    DetailKey,
    Inspection,
    NoticeKind,
    NotificationState,
    Severity,
    Via,
)
from alerting.store import (
    AlarmNotFoundError,
    AlarmStore,
    AlarmStoreError,
    AppliedChanges,
    TransitionRefusedError,
)
from alerting.tables import alarms
from tests.postgres import (  # noqa: F401 - a fixture
    STORE_BACKENDS,
    empty_postgres,
    postgres_database,
)
from tests.schema import metadata
from tests.test_alarm_lifecycle import SOME_TYPES, STEPS, MemoryAlarms

STORE_TEST = settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
T0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
POLICIES = EscalationPolicies()
HYSTERESIS = Hysteresis()
ALERTING_TABLES = frozenset(
    {
        "alarms",
        "alarm_events",
        "escalations",
        "notifications",
        "notification_alarms",
        "notification_attempts",
        "silences",
        "inspections",
        "rule_facts",
    }
)


# -- backends ----------------------------------------------------------------------------------


@pytest.fixture(params=STORE_BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty database of the backend under test."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'alarms.sqlite3'}"
    return empty_postgres(request.getfixturevalue("postgres_database"))


@pytest.fixture
def store(url: str) -> Iterator[AlarmStore]:
    with AlarmStore.open(url) as opened:
        yield opened


def postgres_only(url: str) -> None:
    if not url.startswith("postgresql"):
        pytest.skip("PostgreSQL only: SQLite's write lock admits one writer at a time")


# -- values ------------------------------------------------------------------------------------


def minutes(count: float) -> datetime:
    return T0 + timedelta(minutes=count)


def condition(
    cabinet_id: str = "SZ-0001",
    alarm_type: AlarmType = AlarmType.TEMPERATURE,
    severity: Severity = Severity.WARNING,
    detail: AlarmDetail | None = None,
) -> Condition:
    return Condition(
        cabinet_id=cabinet_id, type=alarm_type, severity=severity, since=T0, detail=detail
    )


def above(high_c: float) -> AlarmDetail:
    return AlarmDetail(key=DetailKey.ABOVE_STORAGE_RANGE, low_c=-20, high_c=high_c)


def evaluate(
    store: AlarmStore, found: list[Condition], now: datetime, cabinet_id: str = "SZ-0001"
) -> AppliedChanges:
    """What the service does for one cabinet: reconcile its conditions, apply the changes."""
    active = store.active_alarms([cabinet_id])[cabinet_id]
    return store.apply(cabinet_id, reconcile(active, found, now, HYSTERESIS), now)


def raised(store: AlarmStore, found: Condition, now: datetime = T0) -> Alarm:
    applied = store.apply(found.cabinet_id, [Raise(condition=found)], now)
    assert len(applied.raised) == 1
    return applied.raised[0]


def page(store: AlarmStore, alarm: Alarm, key: str, person: str = "wang", at: datetime = T0) -> int:
    notification_id = store.record_notice(
        key, person, NoticeKind.PAGE, [alarm.alarm_id], ["email"], at, at
    )
    assert notification_id is not None
    return notification_id


def cabinet(cabinet_id: str, **changes: object) -> Cabinet:
    values: dict[str, object] = {
        "cabinet_id": cabinet_id,
        "name": "深圳湾公园 南门",
        "latitude": 22.5153,
        "longitude": 113.9421,
        "pads_expiry": date(2026, 1, 31),
        "battery_expiry": date(2027, 6, 30),
    }
    return Cabinet.model_validate(values | changes)


def wait_until(condition_holds: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll ``condition_holds`` (a database query) until it holds, or fail after a while."""
    deadline = time.monotonic() + timeout_s
    while not condition_holds():
        if time.monotonic() > deadline:
            raise AssertionError(what)
        time.sleep(0.02)


# -- schema ----------------------------------------------------------------------------------------


def _table_of(difference: Any) -> str:
    """The table an alembic autogenerate difference is about."""
    if isinstance(difference, list):  # column modifications: (op, schema, table, column, ...)
        return str(difference[0][2])
    operation, subject = difference[0], difference[1]
    if operation in {"add_table", "remove_table"}:
        return str(subject.name)
    if operation in {"add_column", "remove_column"}:
        return str(difference[2])
    return str(subject.table.name)


def test_migrated_alerting_tables_match_their_definitions(url: str) -> None:
    migrate(url)
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            assert set(sa.inspect(connection).get_table_names()) >= ALERTING_TABLES
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            drift = [
                d for d in compare_metadata(context, metadata) if _table_of(d) in ALERTING_TABLES
            ]
            indexes = {i["name"]: i for i in sa.inspect(connection).get_indexes("alarms")}
    finally:
        engine.dispose()
    assert set(metadata.tables) >= ALERTING_TABLES
    assert drift == []
    assert indexes["uq_alarms_active"]["unique"]


def test_the_state_store_and_the_alarm_store_share_one_database(url: str) -> None:
    with StateStore.open(url) as state:
        state.apply_registry(Registry(cabinets=(cabinet("SZ-0001"),)))
    with AlarmStore.open(url) as first:
        first.facts.save({"SZ-0001": "{}"})
    migrate(url)
    with AlarmStore.open(url) as second, StateStore.open(url) as state:
        assert second.facts.load(["SZ-0001"]) == {"SZ-0001": "{}"}
        assert state.cabinet_ids() == {"SZ-0001"}


# -- the lifecycle, stored -------------------------------------------------------------------------


def test_an_alarm_lives_raised_updated_cleared_and_resolved(store: AlarmStore) -> None:
    applied = evaluate(store, [condition(detail=above(9))], T0)
    assert applied.already_raised == applied.changed == applied.resolved == ()
    (alarm,) = applied.raised
    assert (alarm.type, alarm.severity, alarm.state, alarm.raised_at) == (
        AlarmType.TEMPERATURE,
        Severity.WARNING,
        AlarmState.RAISED,
        T0,
    )
    assert [state.alarm_id for state in applied.escalations] == [alarm.alarm_id]
    assert store.escalation(alarm.alarm_id) == applied.escalations[0]

    assert evaluate(store, [condition(detail=above(9))], minutes(1)) == AppliedChanges()
    evaluate(store, [condition(detail=above(12))], minutes(2))
    evaluate(store, [condition(severity=Severity.HIGH, detail=above(-2))], minutes(3))
    evaluate(store, [], minutes(4))
    evaluate(store, [condition(severity=Severity.HIGH, detail=above(-2))], minutes(5))
    cleared = evaluate(store, [], minutes(6))
    assert cleared.changed[0].clear_since == minutes(6)
    assert evaluate(store, [], minutes(7)) == AppliedChanges()
    resolved = evaluate(store, [], minutes(8))

    (final,) = resolved.resolved
    assert (final.state, final.resolved_at, final.resolved_by, final.resolved_via) == (
        AlarmState.RESOLVED,
        minutes(8),
        None,
        Via.AUTO,
    )
    assert store.alarm(alarm.alarm_id) == final
    assert store.active_alarms(["SZ-0001", "SZ-9"]) == {"SZ-0001": {}, "SZ-9": {}}
    history = store.history(alarm.alarm_id)
    assert [(e.kind, e.at, e.severity, e.detail) for e in history] == [
        (AlarmEventKind.RAISED, T0, Severity.WARNING, above(9)),
        (AlarmEventKind.DETAIL_CHANGED, minutes(2), Severity.WARNING, above(12)),
        (AlarmEventKind.SEVERITY_CHANGED, minutes(3), Severity.HIGH, above(-2)),
        (AlarmEventKind.CLEAR_SEEN, minutes(4), Severity.HIGH, above(-2)),
        (AlarmEventKind.CLEAR_CANCELLED, minutes(5), Severity.HIGH, above(-2)),
        (AlarmEventKind.CLEAR_SEEN, minutes(6), Severity.HIGH, above(-2)),
        (AlarmEventKind.RESOLVED, minutes(8), Severity.HIGH, above(-2)),
    ]
    assert {(e.by, e.via) for e in history} == {(None, Via.AUTO)}
    escalation = store.escalation(alarm.alarm_id)
    assert escalation is not None
    assert escalation.finished
    assert store.history(999_999) == []
    assert store.alarm(999_999) is None


def test_alarms_are_listed_newest_first_by_state_and_cabinet(store: AlarmStore) -> None:
    first = raised(store, condition("A", AlarmType.OFFLINE), minutes(1))
    second = raised(store, condition("B", AlarmType.OFFLINE), minutes(2))
    third = raised(store, condition("A", AlarmType.TAMPER), minutes(3))
    store.resolve(second.alarm_id, "wang", Via.CLI, minutes(4))
    assert [a.alarm_id for a in store.alarms()] == [third.alarm_id, second.alarm_id, first.alarm_id]
    assert [a.alarm_id for a in store.alarms(state=AlarmState.RAISED)] == [
        third.alarm_id,
        first.alarm_id,
    ]
    assert [a.alarm_id for a in store.alarms(cabinet_id="B")] == [second.alarm_id]
    assert [a.alarm_id for a in store.alarms(limit=1)] == [third.alarm_id]
    active = store.active_alarms(["A", "B"])
    assert set(active["A"]) == {AlarmType.OFFLINE, AlarmType.TAMPER}
    assert active["B"] == {}


def test_the_last_alarm_raised_per_type_counts_resolved_alarms(store: AlarmStore) -> None:
    door = AlarmType.DOOR_OPENED
    assert store.last_raised_for("SZ-0001", [door]) == {}
    first = raised(store, condition(alarm_type=door))
    store.apply("SZ-0001", [Resolve(alarm_id=first.alarm_id, type=door)], minutes(1))
    later = condition(alarm_type=door).model_copy(update={"since": minutes(5)})
    raised(store, later, minutes(5))
    raised(store, condition("SZ-0002", door).model_copy(update={"since": minutes(9)}))
    raised(store, condition())
    assert store.last_raised_for("SZ-0001", [door, AlarmType.AED_REMOVED]) == {door: minutes(5)}
    assert store.last_raised_for("SZ-0001", []) == {}


def test_a_second_raise_returns_the_active_alarm_and_records_nothing(store: AlarmStore) -> None:
    first = raised(store, condition())
    again = store.apply("SZ-0001", [Raise(condition=condition(severity=Severity.HIGH))], minutes(1))
    assert again == AppliedChanges(already_raised=(first,))
    assert len(store.history(first.alarm_id)) == 1
    assert store.alarm(first.alarm_id) == first


def test_the_database_allows_one_active_alarm_per_cabinet_and_type(
    store: AlarmStore, url: str
) -> None:
    first = raised(store, condition())
    engine = sa.create_engine(url)
    row = {
        "cabinet_id": "SZ-0001",
        "type": AlarmType.TEMPERATURE.value,
        "severity": Severity.HIGH.value,
        "state": AlarmState.ACKNOWLEDGED.value,
        "detail": None,
        "condition_since": T0,
        "raised_at": T0,
    }
    try:
        with pytest.raises(sa.exc.IntegrityError), engine.begin() as connection:
            connection.execute(alarms.insert(), row)
        store.resolve(first.alarm_id, "wang", Via.CLI, minutes(1))
        with engine.begin() as connection:  # a resolved alarm no longer counts
            connection.execute(alarms.insert(), row | {"state": AlarmState.RESOLVED.value})
            connection.execute(alarms.insert(), row)
    finally:
        engine.dispose()


def test_a_detail_is_stored_as_facts_and_an_older_versions_words_read_as_none(
    store: AlarmStore, url: str
) -> None:
    since = AlarmDetail(key=DetailKey.DOOR_OPEN, at=T0)
    first = raised(store, condition(alarm_type=AlarmType.DOOR_OPENED, detail=since))
    assert store.alarm(first.alarm_id) == first
    assert first.detail == since
    engine = sa.create_engine(url)
    try:
        with engine.begin() as connection:
            stored = connection.execute(
                sa.text("SELECT detail FROM alarms WHERE alarm_id = :id"), {"id": first.alarm_id}
            ).scalar_one()
            assert stored == '{"key":"door_open","at":"2025-03-01T08:00:00Z"}'
            connection.execute(
                sa.text("UPDATE alarms SET detail = :words WHERE alarm_id = :id"),
                {"words": "door open since 2025-03-01 08:00 UTC", "id": first.alarm_id},
            )
    finally:
        engine.dispose()
    assert store.alarm(first.alarm_id) == first.model_copy(update={"detail": None})


def test_a_manual_resolve_of_a_holding_condition_raises_a_new_alarm(store: AlarmStore) -> None:
    first = raised(store, condition())
    store.resolve(first.alarm_id, "wang", Via.CLI, minutes(1))
    applied = evaluate(store, [condition()], minutes(2))
    (second,) = applied.raised
    assert second.alarm_id != first.alarm_id


def test_changes_are_checked_against_the_cabinet(store: AlarmStore) -> None:
    other = raised(store, condition("B"))
    with pytest.raises(AlarmStoreError, match="is about cabinet 'B', not 'A'"):
        store.apply("A", reconcile({AlarmType.TEMPERATURE: other}, [], T0, HYSTERESIS), T0)
    with pytest.raises(
        AlarmStoreError, match="of cabinet 'B' cannot raise an alarm of cabinet 'A'"
    ):
        store.apply("A", [Raise(condition=condition("B", AlarmType.OFFLINE))], T0)
    missing = reconcile(
        {AlarmType.TEMPERATURE: other.model_copy(update={"alarm_id": 4242})}, [], T0, HYSTERESIS
    )
    with pytest.raises(AlarmNotFoundError, match="4242"):
        store.apply("B", missing, T0)
    assert store.alarms(cabinet_id="A") == []


@pytest.mark.parametrize("shared", [True, False], ids=["one-store", "two-stores"])
def test_concurrent_raises_make_one_alarm(url: str, shared: bool) -> None:
    cabinets = [f"race-{number:02d}" for number in range(12)]
    types = (AlarmType.DOOR_OPENED, AlarmType.OFFLINE, AlarmType.TEMPERATURE)
    with AlarmStore.open(url) as first, AlarmStore.open(url) as other:
        second = first if shared else other
        start = threading.Barrier(2)

        def work(store: AlarmStore, order: list[str]) -> dict[str, AppliedChanges]:
            start.wait(timeout=30)
            return {
                cabinet_id: store.apply(
                    cabinet_id, [Raise(condition=condition(cabinet_id, t)) for t in types], T0
                )
                for cabinet_id in order
            }

        with ThreadPoolExecutor(max_workers=2) as pool:
            futures = [
                pool.submit(work, first, cabinets),
                pool.submit(work, second, cabinets[::-1]),
            ]
            results = [future.result(timeout=60) for future in futures]

        stored = first.alarms(limit=1000)
        assert Counter((a.cabinet_id, a.type) for a in stored) == Counter(
            itertools.product(cabinets, types)
        )
        for cabinet_id in cabinets:
            mine, theirs = (result[cabinet_id] for result in results)
            assert len(mine.raised) + len(theirs.raised) == len(types)
            assert sorted(a.alarm_id for a in (*mine.raised, *theirs.raised)) == sorted(
                a.alarm_id for a in (*mine.already_raised, *theirs.already_raised)
            )
        for alarm in stored:
            assert [e.kind for e in first.history(alarm.alarm_id)] == [AlarmEventKind.RAISED]
            assert first.escalation(alarm.alarm_id) is not None


def test_a_raise_waiting_for_a_concurrent_one_gets_the_winners_alarm(
    store: AlarmStore, url: str
) -> None:
    """The loser of a race blocks on the winner's uncommitted row, then takes it."""
    postgres_only(url)
    engine = sa.create_engine(url)
    try:
        with engine.connect() as winner, ThreadPoolExecutor(max_workers=1) as pool:
            transaction = winner.begin()
            winner_id = winner.execute(
                alarms.insert().returning(alarms.c.alarm_id),
                {
                    "cabinet_id": "SZ-0001",
                    "type": AlarmType.TEMPERATURE.value,
                    "severity": Severity.WARNING.value,
                    "state": AlarmState.RAISED.value,
                    "detail": None,
                    "condition_since": T0,
                    "raised_at": T0,
                },
            ).scalar_one()
            loser = pool.submit(store.apply, "SZ-0001", [Raise(condition=condition())], T0)

            def blocked() -> bool:
                with engine.connect() as probe:
                    waiting = probe.exec_driver_sql(
                        "SELECT count(*) FROM pg_stat_activity"
                        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                    ).scalar_one()
                return bool(waiting)

            wait_until(blocked, 10, "the second raise never waited for the first")
            transaction.commit()
            applied = loser.result(timeout=30)
    finally:
        engine.dispose()
    assert applied.raised == ()
    assert [a.alarm_id for a in applied.already_raised] == [winner_id]
    assert store.history(winner_id) == []  # the loser recorded nothing
    assert store.escalation(winner_id) is None


# -- acknowledging and resolving -------------------------------------------------------------------


def test_acknowledging_is_idempotent_and_stops_everything(store: AlarmStore) -> None:
    alarm = raised(store, condition(severity=Severity.CRITICAL))
    waiting = page(store, alarm, "quiet-hours", at=T0)
    acked = store.acknowledge(alarm.alarm_id, "wang", Via.LINK, minutes(3))
    again = store.acknowledge(alarm.alarm_id, "li", Via.API, minutes(4))

    assert again == acked == store.alarm(alarm.alarm_id)
    assert (acked.state, acked.acknowledged_by, acked.acknowledged_at) == (
        AlarmState.ACKNOWLEDGED,
        "wang",
        minutes(3),
    )
    assert [(e.kind, e.by, e.via) for e in store.history(alarm.alarm_id)][1:] == [
        (AlarmEventKind.ACKNOWLEDGED, "wang", Via.LINK)
    ]
    escalation = store.escalation(alarm.alarm_id)
    assert escalation is not None
    assert escalation.finished
    assert store.claim_due(minutes(1000)) == []
    notice = store.notification(waiting)
    assert notice is not None
    assert notice.state is NotificationState.CANCELLED
    assert store.pending_notices(minutes(1000)) == []
    assert (
        store.record_notice("later", "li", NoticeKind.PAGE, [alarm.alarm_id], ["sms"], T0, T0)
        is None
    )


def test_refused_and_unknown_acknowledgements(store: AlarmStore) -> None:
    alarm = raised(store, condition())
    with pytest.raises(TransitionRefusedError, match="only a person acknowledges"):
        store.acknowledge(alarm.alarm_id, "system", Via.AUTO, minutes(1))
    store.resolve(alarm.alarm_id, "wang", Via.CLI, minutes(1))
    with pytest.raises(TransitionRefusedError, match="resolved alarm cannot be acknowledged"):
        store.acknowledge(alarm.alarm_id, "wang", Via.LINK, minutes(2))
    with pytest.raises(AlarmNotFoundError) as missing:
        store.acknowledge(31337, "wang", Via.LINK, minutes(2))
    assert missing.value.alarm_id == 31337
    with pytest.raises(AlarmNotFoundError):
        store.resolve(31337, "wang", Via.LINK, minutes(2))


def test_resolving_by_hand_keeps_the_first_resolution_and_the_resolved_notice(
    store: AlarmStore,
) -> None:
    alarm = raised(store, condition())
    pending = page(store, alarm, "p1")
    resolved = store.resolve(alarm.alarm_id, "wang", Via.CLI, minutes(5))
    assert store.resolve(alarm.alarm_id, "li", Via.API, minutes(6)) == resolved
    assert (resolved.resolved_by, resolved.resolved_via, resolved.resolved_at) == (
        "wang",
        Via.CLI,
        minutes(5),
    )
    news = store.record_notice(
        "resolved", "wang", NoticeKind.RESOLVED, [alarm.alarm_id], ["email"], minutes(5), minutes(5)
    )
    assert news is not None
    assert store.cancel_notices_for(alarm.alarm_id, minutes(6)) == 0
    assert [(n.notification_id, n.state) for n in store.notifications(alarm.alarm_id)] == [
        (pending, NotificationState.CANCELLED),
        (news, NotificationState.PENDING),
    ]


# -- escalations ---------------------------------------------------------------------------------


def work_escalations(store: AlarmStore, now: datetime) -> list[tuple[int, str]]:
    """What the service's escalation job does: claim, advance, record the pages, save."""
    recorded: list[tuple[int, str]] = []
    for alarm, state in store.claim_due(now, limit=1000):
        pages, after = advance(alarm, state, POLICIES.for_severity(state.severity), now)
        for decided in pages:
            notification_id = store.record_notice(
                decided.key, decided.role.value, decided.kind, [alarm.alarm_id], ["email"], now, now
            )
            if notification_id is not None:
                recorded.append((alarm.alarm_id, decided.key))
        assert store.save_escalation(after)
    return recorded


def test_a_stored_escalation_pages_on_time_and_stops_on_acknowledgement(
    store: AlarmStore,
) -> None:
    alarm = raised(store, condition(severity=Severity.CRITICAL))
    key = f"{alarm.alarm_id}:page:0"
    assert work_escalations(store, T0) == [(alarm.alarm_id, f"{key}:0:captain")]
    assert work_escalations(store, minutes(9)) == []
    assert work_escalations(store, minutes(35)) == [
        (alarm.alarm_id, f"{key}:1:backup"),
        (alarm.alarm_id, f"{key}:2:coordinator"),
    ]
    store.acknowledge(alarm.alarm_id, "wang", Via.LINK, minutes(40))
    assert work_escalations(store, minutes(600)) == []
    assert [n.person_id for n in store.notifications(alarm.alarm_id)] == [
        "captain",
        "backup",
        "coordinator",
    ]


def test_an_upgrade_restarts_the_escalation_a_downgrade_does_not(store: AlarmStore) -> None:
    alarm = raised(store, condition(severity=Severity.WARNING))
    work_escalations(store, T0)
    upgraded = evaluate(store, [condition(severity=Severity.CRITICAL)], minutes(5))
    (restarted,) = upgraded.escalations
    # The warning's page went out (round 0); its daily reminder (round 1) was next.
    assert (restarted.severity, restarted.first_round, restarted.due_at) == (
        Severity.CRITICAL,
        2,
        minutes(5),
    )
    assert store.escalation(alarm.alarm_id) == restarted
    assert work_escalations(store, minutes(5)) == [
        (alarm.alarm_id, f"{alarm.alarm_id}:page:2:0:captain")
    ]
    downgraded = evaluate(store, [condition(severity=Severity.HIGH)], minutes(6))
    assert downgraded.escalations == ()
    escalation = store.escalation(alarm.alarm_id)
    assert escalation is not None
    assert (escalation.severity, escalation.due_at) == (Severity.CRITICAL, minutes(15))


def test_claims_are_leased(store: AlarmStore) -> None:
    first = raised(store, condition("A"))
    second = raised(store, condition("B"), minutes(1))
    claimed = store.claim_due(minutes(2), lease=timedelta(minutes=1))
    assert [(a.alarm_id, s.alarm_id) for a, s in claimed] == [
        (first.alarm_id, first.alarm_id),
        (second.alarm_id, second.alarm_id),
    ]
    assert store.claim_due(minutes(2.5)) == []
    again = store.claim_due(minutes(3), limit=1)  # the lease ran out: the worker died
    assert [a.alarm_id for a, _ in again] == [first.alarm_id]
    assert store.save_escalation(again[0][1])  # saving ends the claim, not the lease
    assert [a.alarm_id for a, _ in store.claim_due(minutes(3.5))] == [
        first.alarm_id,
        second.alarm_id,
    ]


def test_an_older_escalation_state_never_overwrites_a_newer_one(store: AlarmStore) -> None:
    alarm = raised(store, condition(severity=Severity.CRITICAL))
    ((claimed_alarm, claimed),) = store.claim_due(T0)
    _, advanced = advance(claimed_alarm, claimed, POLICIES.critical, T0)
    assert store.save_escalation(advanced)
    assert not store.save_escalation(claimed)
    assert store.escalation(alarm.alarm_id) == advanced
    store.acknowledge(alarm.alarm_id, "wang", Via.LINK, minutes(1))
    _, later = advance(claimed_alarm, advanced, POLICIES.critical, minutes(10))
    assert store.save_escalation(later)  # a worker that missed the acknowledgement
    saved = store.escalation(alarm.alarm_id)
    assert saved is not None
    assert saved.due_at is None
    with pytest.raises(AlarmNotFoundError):
        store.save_escalation(later.model_copy(update={"alarm_id": 999}))


def test_concurrent_workers_claim_each_escalation_once(url: str) -> None:
    with AlarmStore.open(url) as first, AlarmStore.open(url) as second:
        for number in range(30):
            first.apply(
                f"claim-{number:02d}", [Raise(condition=condition(f"claim-{number:02d}"))], T0
            )
        start = threading.Barrier(2)

        def work(store: AlarmStore) -> list[int]:
            start.wait(timeout=30)
            mine: list[int] = []
            while batch := store.claim_due(minutes(1), limit=4):
                mine += [alarm.alarm_id for alarm, _ in batch]
            return mine

        with ThreadPoolExecutor(max_workers=2) as pool:
            futures = [pool.submit(work, first), pool.submit(work, second)]
            claimed = [future.result(timeout=60) for future in futures]
    everything = claimed[0] + claimed[1]
    assert len(everything) == len(set(everything)) == 30


# -- notifications -------------------------------------------------------------------------------


def test_a_decision_is_recorded_once(store: AlarmStore) -> None:
    alarm = raised(store, condition())
    first = page(store, alarm, "1:page:0:0:captain")
    duplicate = store.record_notice(
        "1:page:0:0:captain",
        "wang",
        NoticeKind.PAGE,
        [alarm.alarm_id],
        ["sms"],
        minutes(9),
        minutes(9),
    )
    assert duplicate is None
    other_person = page(store, alarm, "1:page:0:0:captain", person="li")
    assert len({first, other_person}) == 2
    assert len(store.notifications(alarm.alarm_id)) == 2


def test_pending_notices_wait_for_their_release(store: AlarmStore) -> None:
    alarm = raised(store, condition())
    later = store.record_notice(
        "b", "wang", NoticeKind.PAGE, [alarm.alarm_id], ["email", "sms"], T0, minutes(30)
    )
    now = store.record_notice(
        "a", "wang", NoticeKind.PAGE, [alarm.alarm_id], ["chat"], T0, minutes(1)
    )
    assert [n.notification_id for n in store.pending_notices(T0)] == []
    assert [n.notification_id for n in store.pending_notices(minutes(1))] == [now]
    due = store.pending_notices(minutes(30))
    assert [n.notification_id for n in due] == [now, later]
    assert due[1].channel_plan == ("email", "sms")
    assert (due[1].page_key, due[1].person_id, due[1].kind, due[1].alarm_ids) == (
        "b",
        "wang",
        NoticeKind.PAGE,
        (alarm.alarm_id,),
    )
    assert [n.notification_id for n in store.pending_notices(minutes(30), limit=1)] == [now]


def test_delivery_attempts_and_outcomes_are_recorded(store: AlarmStore) -> None:
    alarm = raised(store, condition())
    delivered = page(store, alarm, "d")
    failed = page(store, alarm, "f")
    store.record_attempt(delivered, "chat", minutes(1), ok=False, error="HTTP 503")
    store.record_attempt(delivered, "email", minutes(2), ok=True)
    store.mark_delivered(delivered, "email", minutes(2))
    store.mark_delivered(delivered, "sms", minutes(3))  # the first delivery counts
    store.record_attempt(failed, "sms", minutes(1), ok=False, error="no such number")
    store.mark_failed(failed, minutes(1), "every channel failed")
    store.mark_failed(delivered, minutes(4), "too late")  # a delivered one stays delivered

    sent = store.notification(delivered)
    assert sent is not None
    assert (sent.state, sent.delivered_at, sent.delivered_channel) == (
        NotificationState.DELIVERED,
        minutes(2),
        "email",
    )
    assert [(a.channel, a.ok, a.error) for a in sent.attempts] == [
        ("chat", False, "HTTP 503"),
        ("email", True, None),
    ]
    lost = store.notification(failed)
    assert lost is not None
    assert (lost.state, lost.failed_at, lost.error) == (
        NotificationState.FAILED,
        minutes(1),
        "every channel failed",
    )
    assert store.pending_notices(minutes(10)) == []
    assert store.notification(4242) is None
    acts: list[Callable[[], None]] = [
        lambda: store.record_attempt(4242, "sms", T0, ok=True),
        lambda: store.mark_delivered(4242, "sms", T0),
        lambda: store.mark_failed(4242, T0, "x"),
    ]
    for act in acts:
        with pytest.raises(AlarmStoreError, match="no notification has the id 4242"):
            act()


def test_an_acknowledgement_withdraws_its_alarm_from_grouped_notices(store: AlarmStore) -> None:
    door = raised(store, condition("A", AlarmType.DOOR_OPENED, Severity.CRITICAL))
    heat = raised(store, condition("A", AlarmType.TEMPERATURE))
    both = store.record_notice(
        "group", "wang", NoticeKind.PAGE, [heat.alarm_id, door.alarm_id], ["email"], T0, minutes(60)
    )
    assert both is not None

    store.acknowledge(door.alarm_id, "wang", Via.LINK, minutes(1))
    grouped = store.notification(both)
    assert grouped is not None
    assert (grouped.state, grouped.alarm_ids, grouped.withdrawn_alarm_ids) == (
        NotificationState.PENDING,
        (heat.alarm_id,),
        (door.alarm_id,),
    )
    assert store.cancel_notices_for(heat.alarm_id, minutes(2)) == 1
    cancelled = store.notification(both)
    assert cancelled is not None
    assert cancelled.state is NotificationState.CANCELLED
    assert [n.notification_id for n in store.notifications(door.alarm_id)] == [both]
    with pytest.raises(AlarmNotFoundError):
        store.cancel_notices_for(4242, minutes(2))


def test_notices_about_alarms_no_longer_raised_are_refused(store: AlarmStore) -> None:
    live = raised(store, condition("A"))
    acked = raised(store, condition("B"))
    store.acknowledge(acked.alarm_id, "wang", Via.LINK, T0)
    mixed = store.record_notice(
        "m", "wang", NoticeKind.REMINDER, [acked.alarm_id, live.alarm_id], ["email"], T0, T0
    )
    assert mixed is not None
    recorded = store.notification(mixed)
    assert recorded is not None
    assert recorded.alarm_ids == (live.alarm_id,)
    for kind in (NoticeKind.PAGE, NoticeKind.REMINDER, NoticeKind.DIGEST):
        assert (
            store.record_notice(f"x-{kind}", "wang", kind, [acked.alarm_id], ["email"], T0, T0)
            is None
        )
    with pytest.raises(AlarmNotFoundError):
        store.record_notice("y", "wang", NoticeKind.PAGE, [live.alarm_id, 4242], ["email"], T0, T0)
    with pytest.raises(AlarmStoreError, match="names no alarm"):
        store.record_notice("z", "wang", NoticeKind.PAGE, [], ["email"], T0, T0)


# -- silences --------------------------------------------------------------------------------------


def test_silences_are_stored_listed_and_ended(store: AlarmStore) -> None:
    night = store.silences.add(
        cabinet_id="SZ-0001",
        starts_at=minutes(0),
        ends_at=minutes(60),
        reason="更换电池",
        created_by="wang",
    )
    region = store.silences.add(
        region_code="440305",
        alarm_type=AlarmType.OFFLINE,
        starts_at=minutes(30),
        ends_at=minutes(90),
        reason="network works",
        created_by="li",
    )
    assert (night.cabinet_id, night.region_code, night.alarm_type, night.reason) == (
        "SZ-0001",
        None,
        None,
        "更换电池",
    )
    assert store.silences.all() == [night, region]
    assert store.silences.all(active_at=minutes(10)) == [night]
    assert store.silences.all(active_at=minutes(60)) == [region]
    assert store.silences.all(active_at=minutes(90)) == []

    ended = store.silences.end(night.silence_id, minutes(20))
    assert ended.ends_at == minutes(20)
    assert store.silences.all(active_at=minutes(20)) == []
    future = store.silences.end(region.silence_id, minutes(10))  # not begun: ends before it does
    assert future.ends_at == future.starts_at == minutes(30)
    assert store.silences.all() == [ended, future]
    assert store.silences.end(night.silence_id, minutes(50)) == ended


def test_invalid_silences_are_refused(store: AlarmStore) -> None:
    with pytest.raises(AlarmStoreError, match="must name a cabinet, a region or an alarm type"):
        store.silences.add(starts_at=T0, ends_at=minutes(1), reason="x", created_by="wang")
    with pytest.raises(AlarmStoreError, match="must end after it starts"):
        store.silences.add(cabinet_id="A", starts_at=T0, ends_at=T0, reason="x", created_by="wang")
    with pytest.raises(AlarmStoreError, match="no silence has the id 7"):
        store.silences.end(7, T0)


# -- inspections -----------------------------------------------------------------------------------


def inspection(cabinet_id: str, at: datetime, **changes: object) -> Inspection:
    values: dict[str, object] = {
        "cabinet_id": cabinet_id,
        "person_id": "wang",
        "at": at,
        "ready_light_ok": True,
        "pads_expiry": None,
        "battery_expiry": None,
        "cabinet_intact_and_clean": True,
        "alarm_works": True,
        "note": "一切正常",
        "photo_url": "https://photos.example.cn/sz-0001.jpg",
    }
    return Inspection.model_validate(values | changes)


def test_an_inspection_updates_the_registry_expiry_dates_it_read(
    store: AlarmStore, url: str
) -> None:
    with StateStore.open(url) as state:
        state.apply_registry(Registry(cabinets=(cabinet("SZ-0001"), cabinet("SZ-0002"))))
        new_pads = store.inspections.record(
            inspection(
                "SZ-0001",
                minutes(1),
                pads_expiry=date(2027, 3, 1),
                battery_expiry=date(2027, 6, 30),
            )
        )
        unchanged = store.inspections.record(inspection("SZ-0001", minutes(2)))
        new_battery = store.inspections.record(
            inspection("SZ-0002", minutes(3), battery_expiry=date(2029, 1, 1), alarm_works=False)
        )
        assert (new_pads.pads_expiry_updated, new_pads.battery_expiry_updated) == (True, False)
        assert (unchanged.pads_expiry_updated, unchanged.battery_expiry_updated) == (False, False)
        assert (new_battery.pads_expiry_updated, new_battery.battery_expiry_updated) == (
            False,
            True,
        )
        assert (
            len({new_pads.inspection_id, unchanged.inspection_id, new_battery.inspection_id}) == 3
        )
        assert state.cabinet("SZ-0001") == cabinet("SZ-0001", pads_expiry=date(2027, 3, 1))
        assert state.cabinet("SZ-0002") == cabinet("SZ-0002", battery_expiry=date(2029, 1, 1))
    assert store.inspections.last(["SZ-0001", "SZ-0002", "SZ-0003"]) == {
        "SZ-0001": minutes(2),
        "SZ-0002": minutes(3),
    }


def test_an_unregistered_cabinet_cannot_be_inspected(store: AlarmStore) -> None:
    with pytest.raises(AlarmStoreError, match="'SZ-404' is not in the registry"):
        store.inspections.record(inspection("SZ-404", T0))
    assert store.inspections.last(["SZ-404"]) == {}


# -- facts -----------------------------------------------------------------------------------------


def test_facts_are_stored_as_given(store: AlarmStore) -> None:
    store.facts.save({})
    store.facts.save({"A": '{"door": "open"}', "B": "{}"})
    store.facts.save({"A": '{"门": "关"}'})
    assert store.facts.load(["A", "B", "C"]) == {"A": '{"门": "关"}', "B": "{}"}
    assert store.facts.load([]) == {}


# -- random histories through the real store ------------------------------------------------

_cabinet_numbers = itertools.count()


def _comparable(alarm: Alarm) -> dict[str, object]:
    return alarm.model_dump(exclude={"alarm_id", "cabinet_id"})


@STORE_TEST
@given(steps=STEPS)
def test_the_store_follows_the_pure_lifecycle(
    store: AlarmStore, steps: list[tuple[str, object]]
) -> None:
    """The same random history through the store and through the in-memory model ends
    alike, pages alike, never holds two active alarms of a type, and never pages an
    acknowledged alarm."""
    cabinet_id = f"fuzz-{next(_cabinet_numbers)}"
    memory = MemoryAlarms()
    now = T0
    stored_pages: list[tuple[int, tuple[int, str]]] = []
    for action, argument in steps:
        ranked = sorted(a.alarm_id for a in store.alarms(cabinet_id=cabinet_id, limit=1000))
        ids = dict(enumerate(ranked, start=1))  # the model numbers alarms 1, 2, ... as raised
        active = sorted(memory.active(cabinet_id).values(), key=lambda a: a.alarm_id)
        if action == "wait":
            assert isinstance(argument, int)
            now += timedelta(seconds=argument * 15)
        elif action in {"acknowledge", "resolve"} and active:
            assert isinstance(argument, int)
            chosen = active[argument % len(active)].alarm_id
            if action == "acknowledge":
                memory.acknowledge(chosen, now)
                store.acknowledge(ids[chosen], "wang", Via.LINK, now)
            else:
                memory.resolve(chosen, now)
                store.resolve(ids[chosen], "li", Via.CLI, now)
        elif action == "evaluate":
            assert isinstance(argument, dict)
            found = [condition(cabinet_id, t, s, d) for t, (s, d) in argument.items()]
            memory.apply(reconcile(memory.active(cabinet_id), found, now, HYSTERESIS), now)
            evaluate(store, found, now, cabinet_id)
        tick = memory.tick
        memory.escalate(now)
        stored_pages += [(tick, page) for page in work_escalations(store, now)]

        listed = store.alarms(cabinet_id=cabinet_id, limit=1000)
        active_types = [a.type for a in listed if a.active]
        assert len(active_types) == len(set(active_types)), "two active alarms of a type"
        assert sorted((_comparable(a) for a in listed), key=str) == sorted(
            (_comparable(a) for a in memory.alarms.values()), key=str
        )
        assert set(active_types) <= set(SOME_TYPES)

    ranked = sorted(a.alarm_id for a in store.alarms(cabinet_id=cabinet_id, limit=1000))
    rank = {alarm_id: index for index, alarm_id in enumerate(ranked, start=1)}
    stored_pages = [entry for entry in stored_pages if entry[1][0] in rank]
    for alarm_id in rank:  # leave nothing escalating for the next example's cabinet
        store.resolve(alarm_id, "tester", Via.CLI, now)
    from_store = sorted(
        (tick, rank[alarm_id], key.split(":", 1)[1]) for tick, (alarm_id, key) in stored_pages
    )
    from_memory = sorted((tick, p.alarm_id, p.key.split(":", 1)[1]) for tick, p in memory.pages)
    assert from_store == from_memory
    for tick, (stored_id, key) in stored_pages:  # nobody paged about an acknowledged alarm
        acked_at = memory.acknowledged_at.get(rank[stored_id])
        assert acked_at is None or tick < acked_at, f"{key} paged after the acknowledgement"


# -- errors ------------------------------------------------------------------------------------


def test_an_unreachable_server_is_an_alarm_store_error() -> None:
    with pytest.raises(AlarmStoreError, match=re.escape("127.0.0.1:1")):
        AlarmStore.open("postgresql+psycopg://postgres@127.0.0.1:1/nothing", timeout_s=2)


@pytest.mark.parametrize("bad_url", ["sqlite://", "mysql://u@h/db", "not a url"])
def test_unsupported_urls_are_alarm_store_errors(bad_url: str) -> None:
    with pytest.raises(AlarmStoreError):
        AlarmStore.open(bad_url)


def test_escalation_states_round_trip(store: AlarmStore) -> None:
    alarm = raised(store, condition(severity=Severity.INFO))
    digest = store.escalation(alarm.alarm_id)
    assert digest == EscalationState(
        alarm_id=alarm.alarm_id,
        severity=Severity.INFO,
        started_at=T0,
        round=0,
        next_step=0,
        due_at=None,
    )
    assert store.claim_due(minutes(10_000)) == []
    assert store.escalation(4242) is None
