"""One contract suite for the state store, run against SQLite and PostgreSQL alike."""

from __future__ import annotations

import itertools
import re
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aedfleet.contract import CabinetMessage, ConnectionState, EventType, Status
from aedfleet.db import StateStore, StoreError, migrate
from aedfleet.registry import (
    AccessMode,
    Assignment,
    Cabinet,
    District,
    Language,
    Person,
    Registry,
    Role,
    SiteType,
)
from aedfleet.twin import Twin
from tests.postgres import (  # noqa: F401 - a fixture
    STORE_BACKENDS,
    empty_postgres,
    postgres_database,
)
from tests.schema import metadata
from tests.test_twin import (
    at,
    birth,
    event,
    fold,
    heartbeat,
    histories,
    keep_status_order,
    status,
)

STORE_TEST = settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


# -- backends ----------------------------------------------------------------------------------


@pytest.fixture(params=STORE_BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty database of the backend under test."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.sqlite3'}"
    return empty_postgres(request.getfixturevalue("postgres_database"))


@pytest.fixture
def store(url: str) -> Iterator[StateStore]:
    with StateStore.open(url) as opened:
        yield opened


# -- registry values ---------------------------------------------------------------------------


def cabinet(cabinet_id: str, name: str = "深圳湾公园 南门", **changes: object) -> Cabinet:
    values: dict[str, object] = {
        "cabinet_id": cabinet_id,
        "name": name,
        "aed_model": "迈瑞 BeneHeart C1A",
        "aed_serial": "SN-001",
        "latitude": 22.5153,
        "longitude": 113.9421,
        "address": "广东省深圳市南山区滨海大道",
        "floor": "1F",
        "indoor_description": "服务中心入口左侧",
        "site_type": SiteType.SCENIC_SPOT,
        "region_code": "440305",
        "owner_unit": "深圳湾公园管理处",
        "access_mode": AccessMode.PIN,
        "availability_hours": "Mo-Su 06:00-23:00",
        "install_date": date(2023, 3, 1),
        "pads_expiry": date(2026, 1, 31),
        "battery_expiry": None,
    }
    return Cabinet.model_validate(values | changes)


def person(person_id: str, name: str = "王小明") -> Person:
    return Person(
        person_id=person_id,
        name=name,
        phone="+86 138 0000 0000",
        email=f"{person_id}@example.cn",
        chat_webhook="https://im.example.cn/hook/abc",
        language=Language.ZH,
    )


def registry() -> Registry:
    return Registry(
        cabinets=(cabinet("SZ-0001"), cabinet("SZ-0002", name="福田站 B 出口"), cabinet("SZ-3")),
        people=(person("wang"), person("li", name="李华"), person("zhao", name="赵敏")),
        assignments=(
            Assignment(cabinet_id="SZ-0001", person_id="zhao", role=Role.COORDINATOR),
            Assignment(cabinet_id="SZ-0001", person_id="li", role=Role.BACKUP, rank=2),
            Assignment(cabinet_id="SZ-0001", person_id="zhao", role=Role.BACKUP, rank=1),
            Assignment(cabinet_id="SZ-0001", person_id="wang", role=Role.CAPTAIN),
            Assignment(cabinet_id="SZ-0002", person_id="li", role=Role.CAPTAIN),
        ),
    )


def by_key(values: Registry) -> Registry:
    return Registry(
        cabinets=tuple(sorted(values.cabinets, key=lambda c: c.cabinet_id)),
        people=tuple(sorted(values.people, key=lambda p: p.person_id)),
        assignments=tuple(
            sorted(values.assignments, key=lambda a: (a.cabinet_id, a.person_id, a.role.value))
        ),
    )


# -- schema --------------------------------------------------------------------------------------


def test_migrated_schema_matches_the_tables(url: str) -> None:
    migrate(url)
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, metadata) == []
    finally:
        engine.dispose()


def test_migrations_are_idempotent(url: str) -> None:
    with StateStore.open(url) as first:
        first.apply_registry(registry())
    migrate(url)
    with StateStore.open(url) as second:
        assert second.load_registry() == by_key(registry())


# -- registry ----------------------------------------------------------------------------------


def test_an_empty_store_has_an_empty_registry(store: StateStore) -> None:
    assert store.load_registry() == Registry()
    assert store.cabinet_ids() == set()
    assert store.cabinet("SZ-0001") is None
    assert store.assignments_for("SZ-0001") == []


def test_the_registry_round_trips_with_chinese_text(store: StateStore) -> None:
    store.apply_registry(registry())

    assert store.load_registry() == by_key(registry())
    assert store.load_cabinets() == by_key(registry()).cabinets
    assert store.cabinet_ids() == {"SZ-0001", "SZ-0002", "SZ-3"}
    assert store.cabinet("SZ-0002") == cabinet("SZ-0002", name="福田站 B 出口")
    duty = store.assignments_for("SZ-0001")
    assert [(a.role, a.person_id) for a, _ in duty] == [
        (Role.CAPTAIN, "wang"),
        (Role.BACKUP, "zhao"),
        (Role.BACKUP, "li"),
        (Role.COORDINATOR, "zhao"),
    ]
    assert [p.name for _, p in duty] == ["王小明", "赵敏", "李华", "赵敏"]


def test_records_come_back_in_code_point_order_on_every_backend(store: StateStore) -> None:
    ids = ["b-2", "B_1", "a_1", "a-1", "深圳-1", "Z"]
    store.apply_registry(Registry(cabinets=tuple(cabinet(i) for i in ids)))
    store.apply_messages([m for i in ids for m in for_cabinet([heartbeat(0, 2, at(2))], i)])
    assert [c.cabinet_id for c in store.load_registry().cabinets] == sorted(ids)
    assert [t.cabinet_id for t in store.twins()] == sorted(ids)


def test_an_assignment_may_name_records_stored_earlier(store: StateStore) -> None:
    store.apply_registry(registry())
    later = Assignment(cabinet_id="SZ-3", person_id="wang", role=Role.CAPTAIN)
    store.apply_registry(Registry(assignments=(later,)))
    assert [a for a, _ in store.assignments_for("SZ-3")] == [later]


def test_upserts_change_exactly_the_given_records(store: StateStore) -> None:
    store.apply_registry(registry())
    moved = cabinet("SZ-0002", name="福田站 C 出口", latitude=22.54, pads_expiry=None)
    added = cabinet("SZ-0004", name="南山图书馆")
    promoted = Assignment(cabinet_id="SZ-0001", person_id="li", role=Role.BACKUP, rank=0)
    renamed = person("wang", name="王大明")

    store.apply_registry(
        Registry(cabinets=(moved, added), people=(renamed,), assignments=(promoted,))
    )

    original = registry()
    expected = Registry(
        cabinets=(original.cabinets[0], moved, original.cabinets[2], added),
        people=(renamed, *original.people[1:]),
        assignments=(
            *(a for a in original.assignments if (a.person_id, a.role) != ("li", Role.BACKUP)),
            promoted,
        ),
    )
    assert store.load_registry() == by_key(expected)


def test_a_bad_assignment_leaves_the_whole_batch_unapplied(store: StateStore) -> None:
    store.apply_registry(registry())
    before = store.load_registry()
    revision_before = store.registry_revision()
    batch = Registry(
        cabinets=(cabinet("SZ-0009"), cabinet("SZ-0001", name="改名")),
        people=(person("qian"),),
        assignments=(
            Assignment(cabinet_id="SZ-0009", person_id="qian", role=Role.CAPTAIN),
            Assignment(cabinet_id="SZ-0009", person_id="nobody", role=Role.BACKUP),
            Assignment(cabinet_id="SZ-9999", person_id="wang", role=Role.BACKUP),
        ),
    )

    with pytest.raises(StoreError, match="unknown person 'nobody'") as raised:
        store.apply_registry(batch)

    assert "unknown cabinet 'SZ-9999'" in str(raised.value)
    assert store.load_registry() == before
    assert store.registry_revision() == revision_before


def test_a_batch_repeating_a_key_is_refused(store: StateStore) -> None:
    batch = Registry(cabinets=(cabinet("SZ-0001"), cabinet("SZ-0001", name="另一个")))
    with pytest.raises(StoreError, match="repeats the cabinets 'SZ-0001'"):
        store.apply_registry(batch)
    assert store.load_registry() == Registry()


def test_the_registry_revision_moves_with_every_change_to_the_registry(
    store: StateStore, url: str
) -> None:
    revisions = [store.registry_revision()]
    store.apply_registry(registry())
    revisions.append(store.registry_revision())
    store.apply_registry(Registry(cabinets=(cabinet("SZ-0002", name="福田站 C 出口"),)))
    revisions.append(store.registry_revision())
    store.apply_registry(Registry(people=(person("wang", name="王大明"),)))
    revisions.append(store.registry_revision())
    promoted = Assignment(cabinet_id="SZ-0001", person_id="li", role=Role.BACKUP, rank=0)
    store.apply_registry(Registry(assignments=(promoted,)))
    revisions.append(store.registry_revision())
    # An operator's SQL, past the store: the triggers see it too.
    engine = sa.create_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(sa.text("DELETE FROM assignments WHERE person_id = 'zhao'"))
    finally:
        engine.dispose()
    revisions.append(store.registry_revision())

    assert revisions == sorted(set(revisions)), revisions


def test_districts_are_stored_replaced_and_move_the_revision(store: StateStore) -> None:
    longhua = District(region_code="440309", name="龙华区", population=2_528_872)
    futian = District(region_code="440304", name="福田区", population=1_553_225, target_per_100k=40)
    store.apply_registry(registry())
    before = store.registry_revision()

    store.apply_registry(Registry(districts=(longhua, futian)))
    after_add = store.registry_revision()
    grown = longhua.model_copy(update={"population": 2_600_000, "target_per_100k": 35.5})
    store.apply_registry(Registry(districts=(grown,)))

    loaded = store.load_registry()
    assert loaded.districts == (futian, grown)
    assert loaded.cabinets == by_key(registry()).cabinets
    assert before < after_add < store.registry_revision()


def test_a_batch_repeating_a_district_is_refused(store: StateStore) -> None:
    longhua = District(region_code="440309", name="龙华区", population=1)
    with pytest.raises(StoreError, match="repeats the districts '440309'"):
        store.apply_registry(Registry(districts=(longhua, longhua)))
    assert store.load_registry() == Registry()


def test_the_registry_revision_stays_while_only_twins_change(store: StateStore) -> None:
    store.apply_registry(registry())
    revision = store.registry_revision()

    store.apply_messages(for_cabinet([heartbeat(0, 2, at(2))], "SZ-0001"))
    store.load_registry()

    assert store.twin("SZ-0001") is not None
    assert store.registry_revision() == revision


# -- twins ---------------------------------------------------------------------------------------

_cabinet_numbers = itertools.count()


def for_cabinet(messages: Sequence[CabinetMessage], cabinet_id: str) -> list[CabinetMessage]:
    return [message.model_copy(update={"cabinet_id": cabinet_id}) for message in messages]


def in_batches(
    messages: Sequence[CabinetMessage], cuts: Sequence[int]
) -> list[list[CabinetMessage]]:
    bounds = [0, *sorted({cut % (len(messages) + 1) for cut in cuts}), len(messages)]
    return [list(messages[start:end]) for start, end in itertools.pairwise(bounds)]


def test_an_unknown_cabinet_has_no_twin(store: StateStore) -> None:
    store.apply_messages([])
    assert store.twin("SZ-0001") is None
    assert store.twins() == []
    assert store.twins_of(["SZ-0001"]) == {}


@STORE_TEST
@given(history=histories(), cuts=st.lists(st.integers(0, 200), max_size=5))
def test_stored_twins_are_the_pure_fold(
    store: StateStore, history: list[CabinetMessage], cuts: list[int]
) -> None:
    cabinet_id = f"fold-{next(_cabinet_numbers)}"
    messages = for_cabinet(history, cabinet_id)
    for batch in in_batches(messages, cuts):
        store.apply_messages(batch)
    assert store.twin(cabinet_id) == fold(messages)
    expected = fold(messages)
    assert store.twins_of([cabinet_id, "never-heard"]) == (
        {} if expected is None else {cabinet_id: expected}
    )


@STORE_TEST
@given(history=histories(), data=st.data())
def test_reordered_and_redelivered_batches_end_in_the_in_order_twin(
    store: StateStore, history: list[CabinetMessage], data: st.DataObject
) -> None:
    cabinet_id = f"reorder-{next(_cabinet_numbers)}"
    messages = for_cabinet(history, cabinet_id)
    shuffled = keep_status_order(messages, data.draw(st.permutations(messages)))
    redelivered = data.draw(st.lists(st.sampled_from(messages), max_size=6))
    cuts = data.draw(st.lists(st.integers(0, 200), max_size=5))
    for batch in in_batches(shuffled, cuts):
        store.apply_messages(batch)
    store.apply_messages([m for m in redelivered if not isinstance(m, Status)])
    assert store.twin(cabinet_id) == fold(messages)


def test_a_batch_updates_every_cabinet_it_names(store: StateStore) -> None:
    first = for_cabinet([heartbeat(0, 2, at(2)), event(0, 3, at(3), EventType.DOOR_OPENED)], "A")
    second = for_cabinet([heartbeat(0, 7, at(7), battery_pct=12.5)], "B")
    store.apply_messages([first[0], second[0], first[1]])
    assert store.twins() == [fold(first), fold(second)]
    assert store.twin("B") == fold(second)


def test_a_stale_last_will_is_ignored_in_the_store(store: StateStore) -> None:
    store.apply_messages([status(0, 2, at(20), ConnectionState.ONLINE)])
    store.apply_messages([status(0, 1, at(10), ConnectionState.OFFLINE)])
    twin = store.twin("cab-0001")
    assert twin is not None
    assert (twin.online, twin.status_seq) == (True, 2)


def _worker_histories(round_: int, cabinets: int) -> tuple[list[CabinetMessage], ...]:
    """A birth per cabinet, then what two workers apply: heartbeats and events.

    Each worker gets the messages newest first, so a lost update (a worker writing a twin
    it read before the other worker's commit) would be lost for good, not healed by a
    later, newer message.
    """
    births: list[CabinetMessage] = []
    beats: list[CabinetMessage] = []
    events: list[CabinetMessage] = []
    kinds = itertools.cycle(
        [EventType.DOOR_OPENED, EventType.AED_REMOVED, EventType.POWER_LOST, EventType.TAMPER]
    )
    for number in range(cabinets):
        cabinet_id = f"fleet-{round_}-{number:03d}"
        births += for_cabinet([birth(0, 1, at(1))], cabinet_id)
        for seq in range(2, 32):
            if seq % 2:
                events += for_cabinet([event(0, seq, at(seq), next(kinds))], cabinet_id)
            else:
                beats += for_cabinet([heartbeat(0, seq, at(seq), battery_pct=seq)], cabinet_id)
    newest_first = sorted(beats, key=lambda m: -m.seq), sorted(events, key=lambda m: -m.seq)
    return births, *newest_first


def _work(start: threading.Barrier, store: StateStore, batches: list[list[CabinetMessage]]) -> None:
    start.wait(timeout=30)
    for batch in batches:
        store.apply_messages(batch)


@pytest.mark.parametrize("shared", [True, False], ids=["one-store", "two-stores"])
def test_concurrent_writers_end_with_the_sequential_twins(url: str, shared: bool) -> None:
    with StateStore.open(url) as first, StateStore.open(url) as other:
        second = first if shared else other
        for round_ in range(4):
            births, *halves = _worker_histories(round_, cabinets=8)
            if round_ % 2:  # the twins exist before the workers start
                first.apply_messages(births)
            else:  # the workers race to create them
                births = []
            # Batches of one message per cabinet: every batch touches every cabinet.
            batches = [[half[i : i + 8] for i in range(0, len(half), 8)] for half in halves]
            start = threading.Barrier(2)
            with ThreadPoolExecutor(max_workers=2) as pool:
                futures = [
                    pool.submit(_work, start, first, batches[0]),
                    pool.submit(_work, start, second, batches[1]),
                ]
                for future in futures:
                    future.result(timeout=60)

            sequential: dict[str, Twin | None] = {}
            for message in sorted([*births, *halves[0], *halves[1]], key=lambda m: m.seq):
                cabinet_id = message.cabinet_id
                sequential[cabinet_id] = fold([message], sequential.get(cabinet_id))
            stored = [twin for twin in first.twins() if twin.cabinet_id in sequential]
            assert stored == [sequential[key] for key in sorted(sequential)]


# -- errors ------------------------------------------------------------------------------------


def test_an_unreachable_server_is_a_store_error() -> None:
    with pytest.raises(StoreError, match=re.escape("127.0.0.1:1")):
        StateStore.open("postgresql+psycopg://postgres@127.0.0.1:1/nothing", timeout_s=2)


@pytest.mark.parametrize(
    "bad_url", ["sqlite://", "sqlite:///:memory:", "mysql://u@h/db", "not a url"]
)
def test_unsupported_urls_are_store_errors(bad_url: str) -> None:
    with pytest.raises(StoreError):
        StateStore.open(bad_url)
