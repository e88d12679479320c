"""Every SQLite failure of the outbox, from every method, leaves as EdgeOutboxError.

Each failure is a real one of a real database file: a connection closed under the
outbox, a file whose pages are corrupted, a database that has run out of room.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from aedfleet.contract import Channel
from edge_agent.errors import EdgeAgentError
from edge_agent.outbox import EdgeOutboxError, Outbox, OutboxDatabase

PAGE_SIZE = 4_096

OPERATIONS: dict[str, Callable[[Outbox], Awaitable[object]]] = {
    "cannot read the queue depth": lambda outbox: outbox.load(),
    "cannot store a event": lambda outbox: outbox.put(Channel.EVENT, "t", b"e", retain=False),
    "cannot read the queue": lambda outbox: outbox.pending(after_id=0, limit=10),
    "cannot remove 1 acknowledged messages": lambda outbox: outbox.remove([1]),
    "cannot read the shed counts": lambda outbox: outbox.shed_counts(),
    "cannot read setting boot": lambda outbox: outbox.get_setting("boot"),
    "cannot store setting boot": lambda outbox: outbox.set_setting("boot", "2"),
}


def test_the_outbox_error_is_the_edge_agents() -> None:
    assert issubclass(EdgeOutboxError, EdgeAgentError)


@pytest.mark.parametrize("failure", sorted(OPERATIONS))
async def test_a_connection_closed_under_the_outbox_fails_every_method_as_its_error(
    tmp_path: Path, failure: str
) -> None:
    path = tmp_path / "q.sqlite3"
    async with OutboxDatabase(path) as database:
        outbox = database.outbox("cab-1", 10)
        await outbox.put(Channel.EVENT, "t", b"kept", retain=False)
        database.db.close()
        with pytest.raises(EdgeOutboxError) as info:
            await OPERATIONS[failure](outbox)
    assert str(info.value).startswith(f"the outbox at {path}: cab-1: {failure}: ")
    assert "closed database" in str(info.value)


async def test_a_corrupted_file_fails_reads_as_the_outboxs_error(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite3"
    async with OutboxDatabase(path) as database:
        outbox = database.outbox("cab-1", 1_000)
        for number in range(200):
            await outbox.put(Channel.EVENT, "t", bytes(200) + str(number).encode(), retain=False)
    # Page 1 (the header and the schema) stays readable, so the file still opens; the
    # queue's own pages are overwritten, as a failing flash card would.
    with path.open("r+b") as file:
        file.seek(PAGE_SIZE)
        size = path.stat().st_size
        file.write(b"\xa5" * (size - PAGE_SIZE))
    async with OutboxDatabase(path) as database:
        outbox = database.outbox("cab-1", 1_000)
        with pytest.raises(
            EdgeOutboxError, match=r"cab-1: cannot read the queue depth: .*malformed"
        ):
            await outbox.load()
        with pytest.raises(EdgeOutboxError, match=r"cab-1: cannot read the queue: .*malformed"):
            await outbox.pending(after_id=0, limit=10)


async def test_a_full_database_refuses_a_write_and_keeps_what_it_had(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite3"
    async with OutboxDatabase(path) as database:
        outbox = database.outbox("cab-1", 1_000)
        await outbox.put(Channel.EVENT, "t", b"kept", retain=False)
        (pages,) = database.db.execute("PRAGMA page_count").fetchone()
        # The database may not grow: what a full disk does to the next write.
        database.db.execute(f"PRAGMA max_page_count = {pages}")
        with pytest.raises(EdgeOutboxError, match=r"cab-1: cannot store a event: .*full"):
            await outbox.put(Channel.EVENT, "t", bytes(4 * PAGE_SIZE), retain=False)
        with pytest.raises(EdgeOutboxError, match=r"cab-1: cannot store setting boot: .*full"):
            await outbox.set_setting("boot", "x" * 4 * PAGE_SIZE)
        assert outbox.depth == 1
        assert [message.payload for message in await outbox.pending(0, 10)] == [b"kept"]
        await outbox.put(Channel.EVENT, "t", b"fits", retain=False)
        assert outbox.depth == 2


async def test_a_closed_outbox_says_so(tmp_path: Path) -> None:
    database = OutboxDatabase(tmp_path / "q.sqlite3")
    async with database:
        outbox = database.outbox("cab-1", 10)
    with pytest.raises(EdgeOutboxError, match=r"q\.sqlite3 is closed"):
        await outbox.get_setting("boot")
