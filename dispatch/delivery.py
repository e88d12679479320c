"""Delivery lanes: every pending delivery attempted until delivered or expired, in order.

There is one *lane* per (endpoint, cabinet): a FIFO of that cabinet's deliveries to that
endpoint, in ``delivery_id`` order, worked by one task that exists while the lane is not
empty. The head of a lane is attempted; on failure it waits (exponential backoff with
full jitter, :func:`aedfleet.backoff.reconnect_delay`) and is attempted again, and
nothing behind it goes first, so a command centre sees each cabinet's messages in the
order they happened. Lanes of different cabinets are independent: one cabinet's stuck
message delays no other cabinet. An endpoint's requests in flight are bounded by its
``max_concurrent``.

A message whose expiry passes is given up (``expired``) and the lane moves on. Every
attempt is written to the outbox through :class:`AttemptJournal`, in the background and
in batches, so recording never delays a delivery.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from aedfleet.backoff import BackoffSettings, reconnect_delay
from aedfleet.clock import Clock
from dispatch.errors import DeliveryError, OutboxError
from dispatch.metrics import DispatchMetrics
from dispatch.outbox import Attempt, DispatchOutbox, PendingDelivery
from dispatch.sender import Transport

log = logging.getLogger(__name__)

EXIT_WRITE_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class EndpointPolicy:
    retry: BackoffSettings
    max_concurrent: int


@dataclass(frozen=True, slots=True)
class _Entry:
    delivery_id: int
    attempt: Attempt
    next_attempt_at: datetime | None


class AttemptJournal:
    """Records attempts in the outbox from a background loop, in batches.

    A lane does not wait for the record of its attempt: it acts on what it knows in
    memory, and the record is for restarts and for people (``dispatch list``, the API).
    Attempts that finish within ``linger_s`` of each other share one transaction, so a
    burst of door events costs a few writes, not one per attempt. The queue is bounded:
    beyond ``max_unwritten`` entries (the outbox unreachable for long), :meth:`add` waits
    for the journal to catch up, so lanes slow down rather than memory growing. What is
    unwritten when the service stops is written on the way out.

    A delivery whose success was not yet recorded when the process died is attempted
    again after the restart; its idempotency key lets the receiver drop the repeat.
    """

    def __init__(
        self,
        outbox: DispatchOutbox,
        in_thread: Callable[[Callable[[], None]], Awaitable[None]],
        retry: BackoffSettings,
        rng: random.Random,
        metrics: DispatchMetrics,
        linger_s: float = 0.05,
        max_unwritten: int = 10_000,
    ) -> None:
        self._outbox = outbox
        self._in_thread = in_thread
        self._retry = retry
        self._rng = rng
        self._metrics = metrics
        self._linger_s = linger_s
        self._max_unwritten = max_unwritten
        self._unwritten: list[_Entry] = []
        self._arrived = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()

    async def add(self, delivery_id: int, attempt: Attempt, next_at: datetime | None) -> None:
        """Queue an attempt's record; waits only while the journal is full."""
        while len(self._unwritten) >= self._max_unwritten:
            self._room.clear()
            await self._room.wait()
        self._unwritten.append(_Entry(delivery_id, attempt, next_at))
        self._arrived.set()

    async def run(self) -> None:
        """Commit what is waiting, batch after batch, until cancelled."""
        writing: asyncio.Task[None] | None = None
        try:
            while True:
                await self._arrived.wait()
                await asyncio.sleep(self._linger_s)
                self._arrived.clear()
                batch, self._unwritten = self._unwritten, []
                self._room.set()
                if batch:
                    # Shielded: a stop lets the write under way finish (below).
                    writing = asyncio.create_task(self._commit_retrying(batch))
                    await asyncio.shield(writing)
                    writing = None
        finally:
            if writing is not None:
                await self._finish(writing)
            if self._unwritten:
                self._write_on_exit()

    async def _finish(self, writing: asyncio.Task[None]) -> None:
        """Wait a little for the write under way when the service stops."""
        done, _ = await asyncio.wait({writing}, timeout=EXIT_WRITE_TIMEOUT_S)
        if not done:
            writing.cancel()
            log.warning("dispatch: a batch of attempts was not recorded at exit")

    async def _commit_retrying(self, batch: list[_Entry]) -> None:
        failures = 0
        while True:
            try:
                await self._in_thread(functools.partial(self._commit, batch))
            except OutboxError as exc:
                self._metrics.outbox_failures.inc()
                delay = reconnect_delay(self._retry, failures, self._rng)
                failures += 1
                log.warning("dispatch: cannot record attempts: %s; retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)
            else:
                return

    def _write_on_exit(self) -> None:
        # Shutting down: one last synchronous write of what is left, so that a clean stop
        # leaves a complete record. A failure now is logged; the deliveries concerned are
        # attempted again after the restart.
        try:
            self._commit(self._unwritten)
        except OutboxError as exc:
            log.warning("dispatch: %d attempts not recorded at exit: %s", len(self._unwritten), exc)
        self._unwritten = []

    def _commit(self, entries: list[_Entry]) -> None:
        self._outbox.record_attempts(
            [(entry.delivery_id, entry.attempt, entry.next_attempt_at) for entry in entries]
        )


class Lanes:
    """Works every pending delivery; add deliveries with :meth:`add`."""

    def __init__(
        self,
        transports: Mapping[str, Transport],
        policies: Mapping[str, EndpointPolicy],
        outbox: DispatchOutbox,
        journal: AttemptJournal,
        in_thread: Callable[[Callable[[], None]], Awaitable[None]],
        tasks: asyncio.TaskGroup,
        clock: Clock,
        metrics: DispatchMetrics,
        rng: random.Random,
        store_retry: BackoffSettings,
    ) -> None:
        self._transports = transports
        self._policies = policies
        self._outbox = outbox
        self._journal = journal
        self._in_thread = in_thread
        self._tasks = tasks
        self._clock = clock
        self._metrics = metrics
        self._rng = rng
        self._store_retry = store_retry
        self._limits = {
            name: asyncio.Semaphore(policy.max_concurrent) for name, policy in policies.items()
        }
        self._lanes: dict[tuple[str, str], deque[PendingDelivery]] = {}
        self._known: set[int] = set()
        self._pending: dict[str, int] = dict.fromkeys(transports, 0)
        for name in transports:
            metrics.pending.labels(name).set(0)

    @property
    def pending(self) -> int:
        return len(self._known)

    def add(self, deliveries: Iterable[PendingDelivery]) -> None:
        """Queue deliveries behind those of the same lane; starts idle lanes at once."""
        for delivery in deliveries:
            if delivery.delivery_id in self._known:
                continue
            if delivery.endpoint not in self._transports:
                # Configured once, since removed: its rows stay pending for `dispatch list`.
                log.warning(
                    "dispatch: delivery %d is for endpoint %r, which is not configured",
                    delivery.delivery_id,
                    delivery.endpoint,
                )
                continue
            self._known.add(delivery.delivery_id)
            self._count(delivery.endpoint, +1)
            key = (delivery.endpoint, delivery.cabinet_id)
            lane = self._lanes.get(key)
            if lane is None:
                lane = self._lanes[key] = deque()
                self._tasks.create_task(self._work(key, lane), name=f"dispatch-lane-{key[0]}")
            lane.append(delivery)

    def _count(self, endpoint: str, change: int) -> None:
        self._pending[endpoint] = self._pending.get(endpoint, 0) + change
        self._metrics.pending.labels(endpoint).set(self._pending[endpoint])

    def _finish(self, lane: deque[PendingDelivery]) -> None:
        done = lane.popleft()
        self._known.discard(done.delivery_id)
        self._count(done.endpoint, -1)

    async def _work(self, key: tuple[str, str], lane: deque[PendingDelivery]) -> None:
        try:
            while lane:
                head = lane[0]
                now = self._clock.now()
                if now >= head.expires_at:
                    await self._expire(head, now)
                    self._finish(lane)
                    continue
                wait_s = (min(head.next_attempt_at, head.expires_at) - now).total_seconds()
                if wait_s > 0:
                    await self._clock.sleep(wait_s)
                    continue
                after = await self._attempt(head)
                if after is None:
                    self._finish(lane)
                else:
                    lane[0] = after
        finally:
            if self._lanes.get(key) is lane:
                del self._lanes[key]

    async def _expire(self, delivery: PendingDelivery, now: datetime) -> None:
        outbox = self._outbox
        failures = 0
        while True:
            try:
                await self._in_thread(lambda: outbox.expire(delivery.delivery_id, now))
                break
            except OutboxError as exc:
                self._metrics.outbox_failures.inc()
                delay = reconnect_delay(self._store_retry, failures, self._rng)
                failures += 1
                log.warning(
                    "dispatch: cannot expire a delivery: %s; retrying in %.1f s", exc, delay
                )
                await asyncio.sleep(delay)
        self._metrics.expired.labels(delivery.endpoint).inc()
        log.warning(
            "dispatch: gave up on message %s to %s: expired after %d attempts",
            delivery.event.event_id,
            delivery.endpoint,
            delivery.attempts,
        )

    async def _attempt(self, delivery: PendingDelivery) -> PendingDelivery | None:
        """Attempt ``delivery``; returns it as it stands after a failure, None once delivered."""
        transport = self._transports[delivery.endpoint]
        started = self._clock.now()
        clock_started = time.perf_counter()
        async with self._limits[delivery.endpoint]:
            try:
                status = await transport.send(delivery.event, started)
                error: DeliveryError | None = None
            except DeliveryError as exc:
                status, error = exc.status, exc
        duration_ms = (time.perf_counter() - clock_started) * 1000
        number = delivery.attempts + 1
        attempt = Attempt(
            number=number,
            started_at=started,
            duration_ms=duration_ms,
            ok=error is None,
            http_status=status,
            error=None if error is None else error.detail[:500],
        )
        if error is None:
            self._metrics.attempts.labels(delivery.endpoint, "delivered").inc()
            self._metrics.delivered.labels(delivery.endpoint).inc()
            finished = self._clock.now()
            self._metrics.delivery_seconds.labels(delivery.endpoint).observe(
                max(0.0, (finished - delivery.created_at).total_seconds())
            )
            await self._journal.add(delivery.delivery_id, attempt, None)
            return None
        self._metrics.attempts.labels(delivery.endpoint, "failed").inc()
        delay = reconnect_delay(
            self._policies[delivery.endpoint].retry, delivery.attempts, self._rng
        )
        next_at = self._clock.now() + timedelta(seconds=delay)
        if number == 1 or number % 10 == 0:
            log.warning(
                "dispatch: attempt %d of %s failed: %s; next in %.1f s",
                number,
                delivery.event.event_id,
                error,
                delay,
            )
        await self._journal.add(delivery.delivery_id, attempt, next_at)
        return delivery.model_copy(update={"attempts": number, "next_attempt_at": next_at})
