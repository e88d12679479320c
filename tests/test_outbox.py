"""The SQLite store-and-forward queue, against real database files."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aedfleet.contract import Channel
from edge_agent.outbox import SHED_RANK, EdgeOutboxError, OutboxDatabase, StoredMessage

STORABLE = sorted(SHED_RANK, key=lambda channel: channel.value)
CAPACITY = 10


def _payload(number: int) -> bytes:
    return f"m{number}".encode()


def _summary(messages: list[StoredMessage]) -> list[tuple[Channel, bytes]]:
    return [(message.channel, message.payload) for message in messages]


async def test_put_then_pending_returns_messages_in_id_order(tmp_path: Path) -> None:
    async with OutboxDatabase(tmp_path / "q.sqlite3") as database:
        outbox = database.outbox("cab-1", CAPACITY)
        await outbox.put(Channel.BIRTH, "t/birth", b"b", retain=True)
        await outbox.put(Channel.HEARTBEAT, "t/hb", b"h", retain=False)
        await outbox.put(Channel.EVENT, "t/ev", b"e", retain=False)

        stored = await outbox.pending(after_id=0, limit=100)

    assert [message.id for message in stored] == sorted(message.id for message in stored)
    assert [(m.channel, m.topic, m.payload, m.retain) for m in stored] == [
        (Channel.BIRTH, "t/birth", b"b", True),
        (Channel.HEARTBEAT, "t/hb", b"h", False),
        (Channel.EVENT, "t/ev", b"e", False),
    ]
    assert outbox.depth == 3


async def test_pending_pages_after_an_id_and_honours_the_limit(tmp_path: Path) -> None:
    async with OutboxDatabase(tmp_path / "q.sqlite3") as database:
        outbox = database.outbox("cab-1", CAPACITY)
        for number in range(5):
            await outbox.put(Channel.EVENT, "t", _payload(number), retain=False)
        everything = await outbox.pending(after_id=0, limit=100)
        first_page = await outbox.pending(after_id=0, limit=2)
        second_page = await outbox.pending(after_id=first_page[-1].id, limit=2)
        last_page = await outbox.pending(after_id=second_page[-1].id, limit=2)
        beyond = await outbox.pending(after_id=everything[-1].id, limit=2)

    assert first_page + second_page + last_page == everything
    assert [message.payload for message in last_page] == [_payload(4)]
    assert beyond == []


async def test_remove_forgets_acknowledged_messages_only(tmp_path: Path) -> None:
    async with OutboxDatabase(tmp_path / "q.sqlite3") as database:
        outbox = database.outbox("cab-1", CAPACITY)
        for number in range(4):
            await outbox.put(Channel.EVENT, "t", _payload(number), retain=False)
        stored = await outbox.pending(after_id=0, limit=100)

        await outbox.remove([stored[0].id, stored[2].id])
        await outbox.remove([])
        left = await outbox.pending(after_id=0, limit=100)

    assert left == [stored[1], stored[3]]
    assert outbox.depth == 2


async def test_remove_does_not_touch_another_cabinets_messages(tmp_path: Path) -> None:
    async with OutboxDatabase(tmp_path / "q.sqlite3") as database:
        first = database.outbox("cab-1", CAPACITY)
        second = database.outbox("cab-2", CAPACITY)
        await first.put(Channel.EVENT, "t", b"1", retain=False)
        await second.put(Channel.EVENT, "t", b"2", retain=False)
        (theirs,) = await second.pending(after_id=0, limit=10)

        await first.remove([theirs.id])

        assert await second.pending(after_id=0, limit=10) == [theirs]
        assert first.depth == 1
        assert second.depth == 1


async def test_remove_handles_more_ids_than_one_sql_statement_takes(tmp_path: Path) -> None:
    async with OutboxDatabase(tmp_path / "q.sqlite3") as database:
        outbox = database.outbox("cab-1", 2_000)
        for number in range(1_203):
            await outbox.put(Channel.HEARTBEAT, "t", _payload(number), retain=False)
        stored = await outbox.pending(after_id=0, limit=2_000)

        await outbox.remove([message.id for message in stored[:-1]])

        assert await outbox.pending(after_id=0, limit=2_000) == stored[-1:]
        assert outbox.depth == 1


async def test_depth_and_shed_total_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite3"
    async with OutboxDatabase(path) as database:
        outbox = database.outbox("cab-1", CAPACITY)
        for number in range(CAPACITY + 3):
            await outbox.put(Channel.HEARTBEAT, "t", _payload(number), retain=False)
        stored = await outbox.pending(after_id=0, limit=100)
        await outbox.remove([stored[0].id])
        assert (outbox.depth, outbox.shed_total) == (CAPACITY - 1, 3)

    async with OutboxDatabase(path) as database:
        reopened = database.outbox("cab-1", CAPACITY)
        assert (reopened.depth, reopened.shed_total) == (0, 0)
        await reopened.load()
        assert (reopened.depth, reopened.shed_total) == (CAPACITY - 1, 3)
        assert await reopened.shed_counts() == {"heartbeat": 3}
        assert await reopened.pending(after_id=0, limit=100) == stored[1:]

        # The loaded depth drives the capacity bound of the new run.
        await reopened.put(Channel.EVENT, "t", b"e1", retain=False)
        await reopened.put(Channel.EVENT, "t", b"e2", retain=False)
        assert (reopened.depth, reopened.shed_total) == (CAPACITY, 4)
        assert len(await reopened.pending(after_id=0, limit=100)) == CAPACITY


async def test_two_cabinets_in_one_file_are_independent(tmp_path: Path) -> None:
    path = tmp_path / "fleet.sqlite3"
    async with OutboxDatabase(path) as database:
        first = database.outbox("cab-1", CAPACITY)
        second = database.outbox("cab-2", CAPACITY)
        for number in range(CAPACITY + 2):
            await first.put(Channel.HEARTBEAT, "t/1", _payload(number), retain=False)
        await second.put(Channel.EVENT, "t/2", b"only", retain=False)
        await first.set_setting("interval", "60")
        await second.set_setting("interval", "300")

        assert [m.payload for m in await second.pending(after_id=0, limit=100)] == [b"only"]
        assert len(await first.pending(after_id=0, limit=100)) == CAPACITY
        assert await first.shed_counts() == {"heartbeat": 2}
        assert await second.shed_counts() == {}
        assert (first.depth, second.depth) == (CAPACITY, 1)

    async with OutboxDatabase(path) as database:
        first = database.outbox("cab-1", CAPACITY)
        second = database.outbox("cab-2", CAPACITY)
        await first.load()
        await second.load()
        assert (first.depth, first.shed_total) == (CAPACITY, 2)
        assert (second.depth, second.shed_total) == (1, 0)
        assert await first.get_setting("interval") == "60"
        assert await second.get_setting("interval") == "300"


async def test_when_full_the_oldest_heartbeat_is_shed_first(tmp_path: Path) -> None:
    async with OutboxDatabase(tmp_path / "q.sqlite3") as database:
        outbox = database.outbox("cab-1", CAPACITY)
        await outbox.put(Channel.EVENT, "t", b"event-0", retain=False)
        await outbox.put(Channel.BIRTH, "t", b"birth-0", retain=True)
        for number in range(CAPACITY - 2):
            await outbox.put(Channel.HEARTBEAT, "t", f"hb-{number}".encode(), retain=False)

        await outbox.put(Channel.SELFTEST, "t", b"selftest-0", retain=False)

        payloads = [m.payload for m in await outbox.pending(after_id=0, limit=100)]
        assert b"hb-0" not in payloads
        assert payloads[:3] == [b"event-0", b"birth-0", b"hb-1"]
        assert payloads[-1] == b"selftest-0"
        assert outbox.depth == CAPACITY
        assert outbox.shed_total == 1
        assert await outbox.shed_counts() == {"heartbeat": 1}


async def test_shedding_goes_heartbeats_then_rank_one_then_events(tmp_path: Path) -> None:
    async with OutboxDatabase(tmp_path / "q.sqlite3") as database:
        outbox = database.outbox("cab-1", CAPACITY)
        for number in range(4):
            await outbox.put(Channel.EVENT, "t", f"event-{number}".encode(), retain=False)
        for number in range(3):
            await outbox.put(Channel.CONSUMABLES, "t", f"cons-{number}".encode(), retain=False)
        for number in range(3):
            await outbox.put(Channel.HEARTBEAT, "t", f"hb-{number}".encode(), retain=False)

        for number in range(7):
            await outbox.put(Channel.SELFTEST, "t", f"selftest-{number}".encode(), retain=False)

        payloads = [m.payload.decode() for m in await outbox.pending(after_id=0, limit=100)]
        assert payloads == [
            "event-1",
            "event-2",
            "event-3",
            *(f"selftest-{number}" for number in range(7)),
        ]
        assert await outbox.shed_counts() == {"heartbeat": 3, "consumables": 3, "event": 1}
        assert outbox.shed_total == 7


async def test_shed_counts_accumulate_per_channel(tmp_path: Path) -> None:
    async with OutboxDatabase(tmp_path / "q.sqlite3") as database:
        outbox = database.outbox("cab-1", CAPACITY)
        assert await outbox.shed_counts() == {}
        for channel in (Channel.HEARTBEAT, Channel.CMD_RESULT, Channel.HEARTBEAT):
            await outbox.put(channel, "t", b"x", retain=False)
        for _ in range(CAPACITY):
            await outbox.put(Channel.EVENT, "t", b"e", retain=False)

        assert await outbox.shed_counts() == {"heartbeat": 2, "cmd_result": 1}
        assert outbox.shed_total == 3


async def test_settings_are_stored_overwritten_and_persisted(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite3"
    async with OutboxDatabase(path) as database:
        outbox = database.outbox("cab-1", CAPACITY)
        assert await outbox.get_setting("heartbeat_interval_s") is None
        await outbox.set_setting("heartbeat_interval_s", "60")
        await outbox.set_setting("heartbeat_interval_s", "120")
        assert await outbox.get_setting("heartbeat_interval_s") == "120"

    async with OutboxDatabase(path) as database:
        outbox = database.outbox("cab-1", CAPACITY)
        assert await outbox.get_setting("heartbeat_interval_s") == "120"
        assert await outbox.get_setting("other") is None


async def test_committed_puts_are_visible_to_another_connection_before_close(
    tmp_path: Path,
) -> None:
    path = tmp_path / "q.sqlite3"
    async with OutboxDatabase(path) as writer:
        outbox = writer.outbox("cab-1", CAPACITY)
        await outbox.put(Channel.EVENT, "t", b"committed", retain=False)

        async with OutboxDatabase(path) as reader:
            seen = reader.outbox("cab-1", CAPACITY)
            await seen.load()
            assert seen.depth == 1
            assert _summary(await seen.pending(after_id=0, limit=10)) == [
                (Channel.EVENT, b"committed")
            ]


_CRASHING_WRITER = """
import asyncio, os, sys
from pathlib import Path
from aedfleet.contract import Channel
from edge_agent.outbox import OutboxDatabase

async def main() -> None:
    database = OutboxDatabase(Path(sys.argv[1]))
    await database.__aenter__()
    outbox = database.outbox("cab-1", 10)
    await outbox.put(Channel.EVENT, "t", b"before-crash", False)
    await outbox.put(Channel.HEARTBEAT, "t", b"hb", False)
    os._exit(0)  # no close, no checkpoint: the process dies with the WAL still open

asyncio.run(main())
"""


async def test_puts_survive_a_process_that_dies_without_closing(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite3"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _CRASHING_WRITER, str(path), stderr=subprocess.PIPE
    )
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, stderr.decode()

    async with OutboxDatabase(path) as database:
        outbox = database.outbox("cab-1", CAPACITY)
        await outbox.load()
        assert outbox.depth == 2
        assert _summary(await outbox.pending(after_id=0, limit=10)) == [
            (Channel.EVENT, b"before-crash"),
            (Channel.HEARTBEAT, b"hb"),
        ]


async def test_using_a_database_before_opening_it_raises_outbox_error(tmp_path: Path) -> None:
    database = OutboxDatabase(tmp_path / "q.sqlite3")
    outbox = database.outbox("cab-1", CAPACITY)
    with pytest.raises(EdgeOutboxError, match=r"q\.sqlite3 is not open"):
        await outbox.pending(after_id=0, limit=10)
    async with database:  # the failed call leaves the database usable
        assert await outbox.pending(after_id=0, limit=10) == []


async def test_an_unopenable_path_raises_outbox_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "not-a-db"
    path.mkdir()
    with pytest.raises(EdgeOutboxError, match="not-a-db"):
        async with OutboxDatabase(path):
            pass


# -- the capacity bound as a property ------------------------------------------------

_PUT = st.tuples(st.just("put"), st.sampled_from(STORABLE))
_ACK = st.tuples(st.just("ack"), st.integers(min_value=1, max_value=4))
_OPERATIONS = st.lists(st.one_of(_PUT, _PUT, _PUT, _ACK), min_size=1, max_size=60)
Operation = tuple[str, Channel] | tuple[str, int]


async def _check_shedding(path: Path, capacity: int, operations: list[Operation]) -> None:
    async with OutboxDatabase(path, synchronous="NORMAL") as database:
        outbox = database.outbox("cab-1", capacity)
        before: list[StoredMessage] = []
        shed: Counter[str] = Counter()
        expected: list[bytes] = []  # every message not shed nor acknowledged, oldest first
        for number, (kind, argument) in enumerate(operations):
            if kind == "ack":
                assert isinstance(argument, int)
                acked = before[:argument]
                await outbox.remove([message.id for message in acked])
                expected = expected[len(acked) :]
            else:
                assert isinstance(argument, Channel)
                await outbox.put(argument, "t", _payload(number), retain=False)
                expected.append(_payload(number))
            after = await outbox.pending(after_id=0, limit=capacity + 10)

            assert outbox.depth == len(after) <= capacity
            after_ids = {message.id for message in after}
            gone = [m for m in before if m.id not in after_ids]
            if kind == "put":
                assert isinstance(argument, Channel)
                lowest_rank_before = min((SHED_RANK[m.channel] for m in before), default=3)
                if len(before) == capacity and SHED_RANK[argument] < lowest_rank_before:
                    # Nothing queued is as expendable as the newcomer: it is the one shed.
                    assert not gone
                    shed[argument.value] += 1
                    expected.remove(_payload(number))
                for victim in gone:
                    shed[victim.channel.value] += 1
                    # Only the most expendable kind present at that moment is ever shed.
                    assert SHED_RANK[victim.channel] == lowest_rank_before
                    assert victim.id == min(
                        m.id for m in before if SHED_RANK[m.channel] == lowest_rank_before
                    )
                    if SHED_RANK[victim.channel] == 2:
                        assert all(SHED_RANK[m.channel] == 2 for m in before)
                victims = {m.payload for m in gone}
                expected = [payload for payload in expected if payload not in victims]
            assert [message.payload for message in after] == expected
            before = after

        assert await outbox.shed_counts() == dict(shed)
        assert outbox.shed_total == sum(shed.values())


@settings(max_examples=50, deadline=None)
@given(capacity=st.integers(min_value=1, max_value=6), operations=_OPERATIONS)
def test_the_bound_holds_and_events_go_last(capacity: int, operations: list[Operation]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        asyncio.run(_check_shedding(Path(folder) / "q.sqlite3", capacity, operations))
