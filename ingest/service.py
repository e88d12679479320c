"""The ingest service: every valid cabinet message into InfluxDB and the state store.

Flow for each batch (bounded by size and by time)::

    MQTT (shared subscription, persistent session, manual acknowledgement)
      -> screen: contract, registry, duplicates  -- refused -> dead-letter topic
      -> InfluxDB (line protocol, retried with backoff until written)
      -> state store twins (one transaction)
      -> sinks (alerting, in process)
      -> PUBACK for every message of the batch

A message is acknowledged only after everything it feeds is durable, so a crash or an
outage loses nothing: the broker redelivers what was not acknowledged, and redelivery
is harmless (points carry the device timestamp and overwrite themselves; twins move
only forward; duplicates are dropped by cabinet, boot id and sequence number). While
InfluxDB is down, unacknowledged deliveries pile up to the MQTT receive maximum and the
broker stops sending: that is the back-pressure, and the broker holds the rest.

Up to :data:`BATCHES_IN_FLIGHT` batches are on their way at once (while InfluxDB indexes
one batch, the next is screened), and they are finished, sinks and PUBACKs, in the order
they were taken. The MQTT side is :class:`aedfleet.mqtt.consumer.ConsumerConnection`,
which hands over every socket read as one list and sends a batch's PUBACKs in one write;
measurements and the profile are in ``docs/benchmarks.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from prometheus_client import start_http_server

from aedfleet.backoff import reconnect_delay
from aedfleet.contract import (
    CabinetMessage,
    ConnectionState,
    Reason,
    Status,
    dead_letter,
    dead_letter_topic,
    encode,
)
from aedfleet.db.state import StateStore, StoreError
from aedfleet.influx.lines import CabinetTags
from aedfleet.influx.writer import InfluxWriteError, InfluxWriter
from aedfleet.mqtt import InboundMessage, MqttError
from aedfleet.mqtt.consumer import ConsumerConnection
from aedfleet.mqtt.subscription import keep_subscribed
from aedfleet.service import listen_failure
from ingest.config import IngestSettings
from ingest.metrics import IngestMetrics
from ingest.ratelimit import RateLimiter
from ingest.screening import Ignored, Refused, screen
from ingest.sequence import SequenceTracker
from ingest.telemetry import to_line

log = logging.getLogger(__name__)

T = TypeVar("T")
SERVICE_NAME = "ingest"
FLEET_FILTER = "aed/v1/#"
BATCHES_IN_FLIGHT = 3
"""Batches written to InfluxDB and the store at once (more only queue in InfluxDB)."""
SCREEN_SLICE = 1_000
"""Messages screened between two turns of the event loop."""


class MessageSink(Protocol):
    """Where accepted messages go after they are stored (alerting plugs in here)."""

    async def accept(self, messages: Sequence[CabinetMessage]) -> None: ...


@dataclass(frozen=True, slots=True)
class _Refusal:
    delivery: InboundMessage
    reason: Reason
    detail: str


@dataclass(frozen=True, slots=True)
class _Commit:
    """A batch on its way: screened, and being written unless nothing was accepted."""

    batch: list[InboundMessage]
    connection_number: int
    accepted: list[CabinetMessage]
    refused: list[_Refusal]
    durable: asyncio.Task[None] | None


class IngestService:
    def __init__(
        self,
        settings: IngestSettings,
        sinks: Sequence[MessageSink] = (),
        metrics: IngestMetrics | None = None,
    ) -> None:
        if settings.mqtt.protocol != "5":
            raise ValueError(
                "the ingest needs MQTT 5 (shared subscriptions, the receive maximum as "
                f"back-pressure); mqtt.protocol is {settings.mqtt.protocol!r}"
            )
        self.settings = settings
        self.metrics = metrics or IngestMetrics()
        self.subscribed = asyncio.Event()
        self.metrics_port: int | None = None
        self._sinks = list(sinks)
        self._inbox: deque[InboundMessage] = deque()
        self._arrived = asyncio.Event()
        self._connection: ConsumerConnection | None = None
        self._connection_number = 0
        self._tracker = SequenceTracker()
        self._tags: dict[str, CabinetTags] = {}
        self._registry_revision: int | None = None
        self._log_limiter = RateLimiter(per_second=1.0, burst=10)
        self._rng = random.Random()
        self._store_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        self._store: StateStore | None = None
        # The batch loop takes a slot before it starts writing a batch, the finish loop
        # returns it: at most BATCHES_IN_FLIGHT batches are being written, and the queue
        # never fills.
        self._slots = asyncio.Semaphore(BATCHES_IN_FLIGHT)
        self._in_flight: asyncio.Queue[_Commit] = asyncio.Queue(BATCHES_IN_FLIGHT)
        self._held_in_flight = 0

    async def run(self) -> None:
        """Run until cancelled."""
        async with contextlib.AsyncExitStack() as cleanup:
            cleanup.callback(self._store_thread.shutdown, wait=True)
            store = await self._in_store_thread(StateStore.open, self.settings.store_url)
            self._store = store
            cleanup.push_async_callback(self._in_store_thread, store.close)
            await self._refresh_registry()
            if self.settings.metrics_port is not None:
                try:
                    server, thread = start_http_server(
                        self.settings.metrics_port,
                        addr=self.settings.metrics_host,
                        registry=self.metrics.registry,
                    )
                except OSError as exc:
                    raise listen_failure(
                        "the ingest's metrics endpoint",
                        self.settings.metrics_host,
                        self.settings.metrics_port,
                        exc,
                    ) from None
                self.metrics_port = int(server.server_port)
                cleanup.callback(thread.join, 5)
                cleanup.callback(server.server_close)
                cleanup.callback(server.shutdown)
            writer = await cleanup.enter_async_context(InfluxWriter(self.settings.influx))
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._link_loop(), name="ingest-link")
                tasks.create_task(self._batch_loop(writer, tasks), name="ingest-batches")
                tasks.create_task(self._finish_loop(), name="ingest-acknowledgements")
                tasks.create_task(self._registry_loop(), name="ingest-registry")

    # -- MQTT ----------------------------------------------------------------------------

    async def _link_loop(self) -> None:
        settings = self.settings
        topic_filter = (
            f"$share/{settings.share_group}/{FLEET_FILTER}"
            if settings.share_group
            else FLEET_FILTER
        )
        await keep_subscribed(
            "ingest",
            self._new_connection,
            topic_filter,
            settings.mqtt.endpoint,
            settings.reconnect,
            self._rng,
            on_up=self._connection_up,
            on_down=self._connection_down,
        )

    def _new_connection(self) -> ConsumerConnection:
        settings = self.settings
        self._connection_number += 1
        return ConsumerConnection(
            settings.mqtt,
            settings.client_id,
            clean_start=False,
            session_expiry_s=settings.session_expiry_s,
            manual_ack=True,
            receive_maximum=settings.receive_maximum,
            max_packet_size=settings.max_packet_size,
            on_messages=self._on_messages,
        )

    def _connection_up(self, connection: ConsumerConnection) -> None:
        self._connection = connection
        self.subscribed.set()

    def _connection_down(self, connection: ConsumerConnection) -> None:
        self.subscribed.clear()
        self._connection = None
        # Deliveries of a closed connection cannot be acknowledged any more; the broker
        # sends them again on the next connection. So the inbox only ever holds those of
        # the current connection, and a batch comes from one connection.
        self._inbox.clear()
        self.metrics.buffer_depth.set(self._held_in_flight)

    def _on_messages(self, messages: list[InboundMessage]) -> None:
        self._inbox.extend(messages)
        self.metrics.received.inc(len(messages))
        self.metrics.buffer_depth.set(len(self._inbox) + self._held_in_flight)
        self._arrived.set()

    def _ack(self, deliveries: Sequence[InboundMessage], connection_number: int) -> None:
        connection = self._connection
        if connection is not None and connection_number == self._connection_number:
            connection.ack_many(deliveries)

    # -- batches -------------------------------------------------------------------------

    async def _batch_loop(self, writer: InfluxWriter, tasks: asyncio.TaskGroup) -> None:
        """Take batches from the inbox, screen them and start making them durable.

        Up to :data:`BATCHES_IN_FLIGHT` batches are written at once, and one more is
        screened meanwhile: while InfluxDB indexes, Python works on the next batch.
        :meth:`_finish_loop` completes them in order.
        """
        limit = self.settings.batch_max_messages
        in_flight = self._in_flight
        while True:
            while not self._inbox:
                self._arrived.clear()
                await self._arrived.wait()
            deadline = time.monotonic() + self.settings.batch_max_delay_s
            while len(self._inbox) < limit:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._arrived.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._arrived.wait(), remaining)
            inbox = self._inbox
            batch = [inbox.popleft() for _ in range(min(limit, len(inbox)))]
            self._held_in_flight += len(batch)
            number = self._connection_number
            accepted, refused, lines = await self._screen_batch(batch)
            await self._slots.acquire()
            durable = (
                tasks.create_task(self._make_durable(lines, accepted, writer)) if accepted else None
            )
            in_flight.put_nowait(_Commit(batch, number, accepted, refused, durable))

    async def _screen_batch(
        self, batch: list[InboundMessage]
    ) -> tuple[list[CabinetMessage], list[_Refusal], list[str]]:
        """Accepted messages, refusals and the accepted messages' lines for InfluxDB."""
        accepted: list[CabinetMessage] = []
        refused: list[_Refusal] = []
        lines: list[str] = []
        received_at = datetime.now(UTC)
        for start in range(0, len(batch), SCREEN_SLICE):
            if start:
                # Let the loop run between slices: InfluxDB's answers and PUBACKs of the
                # batches in flight wait for it, and so would the next write.
                await asyncio.sleep(0)
            screened, slice_refused = self._screen(batch[start : start + SCREEN_SLICE])
            accepted += screened
            refused += slice_refused
            tags = self._tags
            lines += [
                line
                for message in screened
                if (line := to_line(_as_stored(message, received_at), tags[message.cabinet_id]))
                is not None
            ]
        return accepted, refused, lines

    async def _make_durable(
        self, lines: list[str], accepted: list[CabinetMessage], writer: InfluxWriter
    ) -> None:
        store = self._require_store()
        # InfluxDB answers over the network while the store works in its thread, so the
        # two overlap; both must succeed before anything is acknowledged.
        await asyncio.gather(
            self._write_lines(lines, writer),
            self._retry_store(lambda: store.apply_messages(accepted)),
        )

    async def _finish_loop(self) -> None:
        """Complete the batches in the order they were taken: sinks, dead letters, PUBACKs.

        In order, so that a batch is acknowledged only after every earlier one is durable:
        a redelivered message that a later batch drops as a duplicate is acknowledged only
        once the batch that holds its first delivery is written.
        """
        in_flight = self._in_flight
        while True:
            commit = await in_flight.get()
            if commit.durable is not None:
                await commit.durable
            if commit.accepted:
                for sink in self._sinks:
                    await sink.accept(commit.accepted)
            batch = commit.batch
            for refusal in commit.refused:
                if not await self._dead_letter(refusal):
                    # Not parked, so not acknowledged: the broker will deliver it again.
                    batch = [d for d in batch if d is not refusal.delivery]
            self.metrics.batch_size.observe(len(commit.batch))
            self.metrics.written.inc(len(commit.accepted))
            self._ack(batch, commit.connection_number)
            self._held_in_flight -= len(commit.batch)
            self.metrics.buffer_depth.set(len(self._inbox) + self._held_in_flight)
            self._slots.release()

    def _screen(self, batch: list[InboundMessage]) -> tuple[list[CabinetMessage], list[_Refusal]]:
        """Accepted messages, without duplicates, and refusals, in delivery order.

        A message is recorded as seen here, before it is durable, which is safe because
        batches are acknowledged in order (see :meth:`_finish_loop`) and a batch that
        cannot be made durable stops the service.
        """
        accepted: list[CabinetMessage] = []
        refused: list[_Refusal] = []
        tags = self._tags
        record = self._tracker.record
        duplicates = gaps = 0
        for delivery in batch:
            message = screen(delivery.topic, delivery.payload, tags, delivery.user_properties)
            if isinstance(message, Ignored):
                continue
            if isinstance(message, Refused):
                refused.append(_Refusal(delivery, message.reason, message.detail))
                continue
            if not isinstance(message, Status):
                seen = record(message.cabinet_id, message.boot_id, message.seq)
                if seen.duplicate:
                    duplicates += 1
                    continue
                gaps += seen.gap
            accepted.append(message)
        if duplicates:
            self.metrics.duplicates.inc(duplicates)
        if gaps:
            self.metrics.gaps.inc(gaps)
        for refusal in refused:
            self.metrics.invalid.labels(refusal.reason.value).inc()
            self._log_refusal(refusal)
        return accepted, refused

    def _log_refusal(self, refusal: _Refusal) -> None:
        key = refusal.reason.value
        if self._log_limiter.allow(key, time.monotonic()):
            suppressed = self._log_limiter.take_suppressed(key)
            more = f" ({suppressed} more since the last one)" if suppressed else ""
            log.warning(
                "ingest: refused a message on %s: %s: %s%s",
                refusal.delivery.topic[:200],
                key,
                refusal.detail[:300],
                more,
            )

    async def _dead_letter(self, refusal: _Refusal) -> bool:
        connection = self._connection
        if connection is None:
            return False
        delivery = refusal.delivery
        letter = dead_letter(
            refusal.reason,
            refusal.detail,
            delivery.topic,
            delivery.payload,
            service=SERVICE_NAME,
            received_at=datetime.now(UTC),
        )
        try:
            await connection.publish_confirmed(dead_letter_topic(refusal.reason), encode(letter))
        except MqttError as exc:
            log.warning("ingest: could not park a refused message: %s", exc)
            return False
        return True

    async def _write_lines(self, lines: list[str], writer: InfluxWriter) -> None:
        failures = 0
        while True:
            started = time.monotonic()
            try:
                await writer.write(lines)
            except InfluxWriteError as exc:
                self.metrics.write_failures.inc()
                if not exc.retryable:
                    # Lines come from validated messages, so a refusal is a schema bug:
                    # stop rather than acknowledge what was never stored.
                    raise
                delay = reconnect_delay(self.settings.write_retry, failures, self._rng)
                failures += 1
                if self._log_limiter.allow("influx", time.monotonic()):
                    log.warning("ingest: %s; retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                continue
            self.metrics.write_seconds.observe(time.monotonic() - started)
            return

    async def _retry_store(self, work: Callable[[], None]) -> None:
        failures = 0
        while True:
            try:
                await self._in_store_thread(work)
            except StoreError as exc:
                delay = reconnect_delay(self.settings.write_retry, failures, self._rng)
                failures += 1
                log.warning("ingest: state store: %s; retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                continue
            return

    # -- registry ------------------------------------------------------------------------

    async def _registry_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.registry_refresh_s)
            try:
                await self._refresh_registry()
            except StoreError as exc:
                log.warning("ingest: cannot refresh the registry: %s", exc)

    async def _refresh_registry(self) -> None:
        store = self._require_store()
        # This runs on the store thread that the batches wait for: reload only after a
        # change, and only the cabinets (people and assignments do not tag telemetry).
        revision = await self._in_store_thread(store.registry_revision)
        if revision == self._registry_revision:
            return
        cabinets = await self._in_store_thread(store.load_cabinets)
        self._tags = {cabinet.cabinet_id: CabinetTags.from_cabinet(cabinet) for cabinet in cabinets}
        self._registry_revision = revision
        # Long-lived from here on: out of the cycle collector's full passes, which walked
        # them every few batches (measured: 28-30 against 22 µs of CPU a message with
        # ~430,000 such objects; docs/benchmarks.md).
        gc.freeze()

    def _require_store(self) -> StateStore:
        if self._store is None:
            raise RuntimeError("the state store is not open")
        return self._store

    async def _in_store_thread(self, work: Callable[..., T], *args: Any) -> T:
        # The store is synchronous SQLAlchemy; one thread keeps it off the event loop.
        return await asyncio.get_running_loop().run_in_executor(self._store_thread, work, *args)


def _as_stored(message: CabinetMessage, received_at: datetime) -> CabinetMessage:
    """The message as written to InfluxDB.

    A last will carries the time its connection was opened, which sorts it before the
    ``online`` of that same connection; written at the time it arrived instead, the
    ``status`` series reads in the order things happened. (A redelivered will is
    written again a little later: a second identical ``offline`` point, harmless.)
    """
    if isinstance(message, Status) and message.state is ConnectionState.OFFLINE:
        return message.model_copy(update={"ts": max(message.ts, received_at)})
    return message
