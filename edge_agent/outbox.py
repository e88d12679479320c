"""The on-disk store-and-forward queue: nothing leaves the cabinet without being stored.

Every outgoing message is committed to SQLite (WAL) before it is handed to MQTT and is
removed only after the broker's PUBACK. The queue is bounded: when it is full the oldest
message of the most expendable kind goes first (heartbeats, then state reports that a
later one supersedes, then events and self-tests), so an event or self-test is never
shed while a heartbeat remains; every shed message is counted by channel, persisted, and
logged.

One database file can hold the queues of many cabinets (the simulator runs thousands
in one process); a real cabinet has one file of its own. All SQLite work runs on one
dedicated thread, keeping blocking disk I/O off the event loop and serialising access.
Every sqlite3 error, from any method, leaves as :class:`EdgeOutboxError` naming the file.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from aedfleet.contract import Channel
from edge_agent.errors import EdgeAgentError

log = logging.getLogger(__name__)

T = TypeVar("T")

SHED_RANK: dict[Channel, int] = {
    Channel.HEARTBEAT: 0,
    Channel.BIRTH: 1,
    Channel.CONSUMABLES: 1,
    Channel.CMD_RESULT: 1,
    Channel.EVENT: 2,
    Channel.SELFTEST: 2,
}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    cabinet_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    shed_rank INTEGER NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    retain INTEGER NOT NULL,
    stored_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_by_cabinet ON outbox (cabinet_id, id);
CREATE INDEX IF NOT EXISTS outbox_by_rank ON outbox (cabinet_id, shed_rank, id);
CREATE TABLE IF NOT EXISTS shed (
    cabinet_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (cabinet_id, channel)
);
CREATE TABLE IF NOT EXISTS setting (
    cabinet_id TEXT NOT NULL,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (cabinet_id, name)
);
"""


class EdgeOutboxError(EdgeAgentError):
    """The on-disk queue cannot be opened, read or written."""


class OutboxSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    path: Path = Field(
        default=Path("aedfleet-outbox.sqlite3"),
        description="The SQLite file, relative to the working directory unless absolute; its "
        "folder must exist",
    )
    capacity: int = Field(
        default=10_000,
        ge=10,
        description="Messages held per cabinet; when full, the oldest of the most expendable "
        "kind is shed (heartbeats first, events and self-tests last)",
    )
    synchronous: Literal["FULL", "NORMAL"] = Field(
        default="FULL",
        description="FULL survives a power cut; NORMAL only a process crash, but is faster",
    )


@dataclass(frozen=True, slots=True)
class StoredMessage:
    id: int
    channel: Channel
    topic: str
    payload: bytes
    retain: bool


class OutboxDatabase:
    """An SQLite file holding one or more cabinets' queues; an async context manager."""

    def __init__(self, path: Path, synchronous: Literal["FULL", "NORMAL"] = "FULL") -> None:
        self.path = path
        self._synchronous = synchronous
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox")
        self._db: sqlite3.Connection | None = None

    async def __aenter__(self) -> Self:
        await self._run(self._open, "cannot open")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            await self._run(self._close, "cannot close")
        finally:
            self._executor.shutdown(wait=True)

    def outbox(self, cabinet_id: str, capacity: int) -> Outbox:
        return Outbox(self, cabinet_id, capacity)

    async def _run(self, work: Callable[[], T], failure: str) -> T:
        """Run ``work`` on the database thread; a sqlite3 error becomes
        :class:`EdgeOutboxError` saying ``failure`` (what could not be done) and why."""
        try:
            future = asyncio.get_running_loop().run_in_executor(self._executor, work)
        except RuntimeError:
            raise EdgeOutboxError(f"the outbox at {self.path} is closed") from None
        try:
            return await future
        except sqlite3.Error as exc:
            raise EdgeOutboxError(f"the outbox at {self.path}: {failure}: {exc}") from None

    def _open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EdgeOutboxError(f"cannot open the outbox at {self.path}: {exc}") from None
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={self._synchronous}")
            db.executescript(_SCHEMA)
        except sqlite3.Error:
            db.close()
            raise
        self._db = db

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise EdgeOutboxError(f"the outbox at {self.path} is not open")
        return self._db


class Outbox:
    """One cabinet's queue inside an :class:`OutboxDatabase`."""

    def __init__(self, database: OutboxDatabase, cabinet_id: str, capacity: int) -> None:
        self._database = database
        self.cabinet_id = cabinet_id
        self.capacity = capacity
        # Written only on the database thread, so that queued puts see each other's counts.
        self.depth = 0
        self.shed_total = 0

    async def load(self) -> None:
        """Read the queue depth and shed counters left by an earlier run."""

        def work() -> None:
            db = self._database.db
            (depth,) = db.execute(
                "SELECT count(*) FROM outbox WHERE cabinet_id = ?", (self.cabinet_id,)
            ).fetchone()
            (shed,) = db.execute(
                "SELECT coalesce(sum(count), 0) FROM shed WHERE cabinet_id = ?",
                (self.cabinet_id,),
            ).fetchone()
            self.depth, self.shed_total = int(depth), int(shed)

        await self._database._run(work, f"{self.cabinet_id}: cannot read the queue depth")

    async def put(self, channel: Channel, topic: str, payload: bytes, retain: bool) -> None:
        """Store a message durably, shedding the most expendable one when full.

        When the queue holds nothing as expendable as the new message (a heartbeat
        arriving to a queue full of events), the new message is the one shed.
        """
        rank = SHED_RANK.get(channel)
        if rank is None:
            raise EdgeOutboxError(
                f"{channel.value} messages are live connection state, never stored"
            )

        def work() -> list[str]:
            db = self._database.db
            shed: list[str] = []
            with _transaction(db):
                depth = self.depth
                while depth >= self.capacity:
                    victim = db.execute(
                        "SELECT id, channel, shed_rank FROM outbox WHERE cabinet_id = ? "
                        "ORDER BY shed_rank, id LIMIT 1",
                        (self.cabinet_id,),
                    ).fetchone()
                    if victim is None or victim[2] > rank:
                        self._count_shed(db, channel.value)
                        return [channel.value]
                    db.execute("DELETE FROM outbox WHERE id = ?", (victim[0],))
                    self._count_shed(db, victim[1])
                    shed.append(victim[1])
                    depth -= 1
                db.execute(
                    "INSERT INTO outbox (cabinet_id, channel, shed_rank, topic, payload, retain,"
                    " stored_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (self.cabinet_id, channel.value, rank, topic, payload, retain, time.time()),
                )
            self.depth = depth + 1
            return shed

        shed = await self._database._run(work, f"{self.cabinet_id}: cannot store a {channel.value}")
        if shed:
            level = logging.INFO if set(shed) == {Channel.HEARTBEAT.value} else logging.ERROR
            log.log(
                level,
                "%s: outbox full (%d messages), shed the oldest %s",
                self.cabinet_id,
                self.capacity,
                ", ".join(shed),
            )

    def _count_shed(self, db: sqlite3.Connection, channel: str) -> None:
        db.execute(
            "INSERT INTO shed (cabinet_id, channel, count) VALUES (?, ?, 1) "
            "ON CONFLICT (cabinet_id, channel) DO UPDATE SET count = count + 1",
            (self.cabinet_id, channel),
        )
        self.shed_total += 1

    async def pending(self, after_id: int, limit: int) -> list[StoredMessage]:
        """Stored messages with id greater than ``after_id``, oldest first."""

        def work() -> list[StoredMessage]:
            rows = self._database.db.execute(
                "SELECT id, channel, topic, payload, retain FROM outbox "
                "WHERE cabinet_id = ? AND id > ? ORDER BY id LIMIT ?",
                (self.cabinet_id, after_id, limit),
            ).fetchall()
            return [
                StoredMessage(row[0], Channel(row[1]), row[2], bytes(row[3]), bool(row[4]))
                for row in rows
            ]

        return await self._database._run(work, f"{self.cabinet_id}: cannot read the queue")

    async def remove(self, ids: Sequence[int]) -> None:
        """Forget messages the broker has acknowledged."""
        if not ids:
            return
        id_list = list(ids)

        def work() -> None:
            db = self._database.db
            with _transaction(db):
                removed = 0
                for start in range(0, len(id_list), 500):
                    chunk = id_list[start : start + 500]
                    marks = ",".join("?" * len(chunk))
                    removed += db.execute(
                        f"DELETE FROM outbox WHERE cabinet_id = ? AND id IN ({marks})",  # noqa: S608
                        (self.cabinet_id, *chunk),
                    ).rowcount
            self.depth -= removed

        await self._database._run(
            work, f"{self.cabinet_id}: cannot remove {len(id_list)} acknowledged messages"
        )

    async def shed_counts(self) -> dict[str, int]:
        def work() -> dict[str, int]:
            rows = self._database.db.execute(
                "SELECT channel, count FROM shed WHERE cabinet_id = ?", (self.cabinet_id,)
            ).fetchall()
            return {str(channel): int(count) for channel, count in rows}

        return await self._database._run(work, f"{self.cabinet_id}: cannot read the shed counts")

    async def get_setting(self, name: str) -> str | None:
        def work() -> str | None:
            row = self._database.db.execute(
                "SELECT value FROM setting WHERE cabinet_id = ? AND name = ?",
                (self.cabinet_id, name),
            ).fetchone()
            return None if row is None else str(row[0])

        return await self._database._run(work, f"{self.cabinet_id}: cannot read setting {name}")

    async def set_setting(self, name: str, value: str) -> None:
        def work() -> None:
            self._database.db.execute(
                "INSERT INTO setting (cabinet_id, name, value) VALUES (?, ?, ?) "
                "ON CONFLICT (cabinet_id, name) DO UPDATE SET value = excluded.value",
                (self.cabinet_id, name, value),
            )

        await self._database._run(work, f"{self.cabinet_id}: cannot store setting {name}")


@contextlib.contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    """BEGIN IMMEDIATE … COMMIT, rolled back on error (the connection is in autocommit)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        # SQLite has already rolled back after some errors (a full disk, an I/O error);
        # a second ROLLBACK would fail and hide the error that matters.
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
