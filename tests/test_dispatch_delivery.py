"""Delivery lanes and the attempt journal, against a real outbox and a real receiver."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

from aedfleet.backoff import BackoffSettings
from aedfleet.clock import SystemClock
from aedfleet.contract import Event, EventType
from aedfleet_testing.dispatch_support import HMAC_SECRET, DispatchReceiver
from dispatch.config import EndpointSettings
from dispatch.delivery import AttemptJournal, EndpointPolicy, Lanes
from dispatch.enrichment import build_event
from dispatch.incident import CoalescingPolicy, observe
from dispatch.metrics import DispatchMetrics
from dispatch.outbox import Attempt, DeliveryStatus, DispatchOutbox, NewMessage, Route
from dispatch.sender import HttpTransport
from tests.recorder import eventually

T = TypeVar("T")
BOOT = "9" * 32
FAST = BackoffSettings(initial_s=0.05, max_s=0.2)
POLICY = CoalescingPolicy(min_update_interval_s=0)


def in_thread(work: Callable[[], T]) -> Awaitable[T]:
    return asyncio.get_running_loop().run_in_executor(None, work)


def record_messages(
    outbox: DispatchOutbox, cabinet_id: str, count: int, expire_after_s: float
) -> None:
    """``count`` messages of one cabinet (open, close, …), each due to one endpoint."""
    state = None
    messages: list[NewMessage] = []
    now = datetime.now(UTC)
    for seq in range(1, count + 1):
        kind = EventType.DOOR_OPENED if seq % 2 else EventType.DOOR_CLOSED
        event = Event(v=1, cabinet_id=cabinet_id, boot_id=BOOT, seq=seq, ts=now, event=kind)
        step = observe(state, event, now + timedelta(milliseconds=seq), POLICY)
        state = step.state
        messages.extend(
            NewMessage(
                event=build_event(notice, None, None),
                routes=(Route(endpoint="cc", expires_at=now + timedelta(seconds=expire_after_s)),),
            )
            for notice in step.notices
        )
    assert state is not None
    outbox.record([state], messages, now, POLICY)


@contextlib.asynccontextmanager
async def lanes_on(
    outbox: DispatchOutbox, url: str, metrics: DispatchMetrics
) -> AsyncIterator[Lanes]:
    endpoint = EndpointSettings.model_validate(
        {"name": "cc", "url": url, "auth": {"kind": "hmac", "secret": HMAC_SECRET}}
    )
    async with HttpTransport(endpoint) as transport, asyncio.TaskGroup() as tasks:
        journal = AttemptJournal(outbox, in_thread, FAST, random.Random(1), metrics)
        journal_task = tasks.create_task(journal.run())
        lanes = Lanes(
            {"cc": transport},
            {"cc": EndpointPolicy(FAST, 4)},
            outbox,
            journal,
            in_thread,
            tasks,
            SystemClock(),
            metrics,
            random.Random(2),
            FAST,
        )
        try:
            yield lanes
        finally:
            journal_task.cancel()
            for task in asyncio.all_tasks():
                if task.get_name().startswith("dispatch-lane"):
                    task.cancel()


async def test_a_message_past_its_expiry_is_given_up_and_the_lane_moves_on(
    tmp_path: Path,
) -> None:
    metrics = DispatchMetrics()
    receiver = DispatchReceiver()
    with DispatchOutbox.open(f"sqlite:///{tmp_path / 'outbox.sqlite3'}") as outbox:
        record_messages(outbox, "exp-1", 2, expire_after_s=0.6)
        record_messages(outbox, "exp-2", 1, expire_after_s=60)
        async with lanes_on(outbox, receiver.url(), metrics) as lanes:
            lanes.add(outbox.pending())
            # Down: the first two expire; the third, with an hour to go, waits.
            await eventually(
                lambda: (
                    metrics.registry.get_sample_value(
                        "aedfleet_dispatch_expired_total", {"endpoint": "cc"}
                    )
                    == 2
                ),
                10,
                "nothing expired",
            )
            await receiver.start()
            try:
                await eventually(lambda: len(receiver.arrivals) == 1, 10, "the survivor is late")
            finally:
                await receiver.stop()
            await eventually(lambda: lanes.pending == 0, 10, "lanes still busy")
        records = {r.cabinet_id + "/" + str(r.delivery_id): r for r in outbox.recent(10)}
    expired = sorted(
        (r for r in records.values() if r.status is DeliveryStatus.EXPIRED),
        key=lambda r: r.delivery_id,
    )
    assert [r.cabinet_id for r in expired] == ["exp-1", "exp-1"]
    # The head was retried until it expired; the one behind it never overtook it.
    assert expired[0].attempts >= 2
    assert expired[1].attempts == 0
    assert all(r.finished_at is not None for r in expired)
    assert receiver.arrivals[0].event().cabinet_id == "exp-2"


async def test_the_journal_holds_back_lanes_only_when_full_and_writes_the_rest_at_exit(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'outbox.sqlite3'}"
    gate = asyncio.Event()

    async def gated(work: Callable[[], None]) -> None:
        await gate.wait()
        await in_thread(work)

    with DispatchOutbox.open(url) as outbox:
        record_messages(outbox, "jr-1", 4, expire_after_s=60)
        ids = [d.delivery_id for d in outbox.pending()]
        journal = AttemptJournal(
            outbox,
            gated,
            FAST,
            random.Random(3),
            DispatchMetrics(),
            linger_s=0.01,
            max_unwritten=2,
        )
        runner = asyncio.create_task(journal.run())
        now = datetime.now(UTC)

        def attempt(number: int) -> Attempt:
            return Attempt(number=number, started_at=now, duration_ms=1.0, ok=True)

        await journal.add(ids[0], attempt(1), None)
        await journal.add(ids[1], attempt(1), None)
        # The first two are taken for a write that waits at the gate: room for two more.
        await eventually(lambda: not journal._unwritten, 5, "the batch was not taken")
        await journal.add(ids[2], attempt(1), None)
        await journal.add(ids[3], attempt(1), None)
        third = asyncio.create_task(journal.add(ids[3], attempt(2), None))
        # A full journal clears its room and parks the lane on it; only a taken batch
        # (held at the gate) sets it again.
        await eventually(lambda: not journal._room.is_set(), 5, "a full journal let a lane go on")
        assert not third.done(), "a full journal let a lane go on"
        gate.set()
        await asyncio.wait_for(third, 5)
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
        # Cancelled with entries unwritten: they were written on the way out.
        delivered = outbox.recent(10, status=DeliveryStatus.DELIVERED)
    assert sorted(d.delivery_id for d in delivered) == sorted(ids)
    assert functools.reduce(max, (d.attempts for d in delivered)) == 2
