"""The dispatch service: cabinet door events to command centres, at once and exactly once.

Its own process, broker connection and subscription, so that a door event never queues
behind telemetry: it subscribes to ``aed/v1/+/event`` alone (with a fixed client id, a
persistent session and manual acknowledgement at QoS 1), while the ingest, elsewhere,
drains whatever backlog of heartbeats the fleet has built up. Flow for each batch of
events (whatever has arrived, up to ``batch_max_events``)::

    MQTT event  -> coalesce (pure, dispatch.incident)          -- per cabinet, in memory
                -> enrich: registry (in-memory cache) + twin (one row of the state store)
                -> outbox: states, messages, one delivery per endpoint (ONE transaction)
                -> PUBACK for the batch
                -> lanes: attempt each delivery now; retry with backoff until delivered
                   or expired, in order per (endpoint, cabinet)

Held updates (the rate limit of an incident) go out from the flush loop when due. The
outbox is in the state store, or in a database of its own (``outbox_url``): on SQLite
that keeps door events from waiting for the ingest's write lock.

Two store threads keep blocking database calls off the event loop: the *hot* one does
only what a door event waits for (the twin read and the outbox write); the *cold* one
records attempts, refreshes the registry and answers the API, so none of that delays
the next door event.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from aedfleet.backoff import reconnect_delay
from aedfleet.clock import Clock, SystemClock
from aedfleet.contract import (
    Channel,
    ContractError,
    Event,
    Reason,
    dead_letter,
    dead_letter_topic,
    decode_cabinet_message,
    encode,
    identity_problem,
    parse_topic,
    subscription,
)
from aedfleet.db.state import StateStore, StoreError
from aedfleet.mqtt import (
    InboundMessage,
    KeepAliveTicker,
    MqttConnection,
    MqttError,
    MqttNotConnectedError,
)
from aedfleet.mqtt.subscription import keep_subscribed
from aedfleet.twin import Twin
from dispatch.api import ApiServer
from dispatch.config import MQTT_ENDPOINT, DispatchSettings
from dispatch.delivery import AttemptJournal, EndpointPolicy, Lanes
from dispatch.enrichment import Particulars, RegistryCache, build_event, contact_of
from dispatch.errors import OutboxError
from dispatch.incident import CabinetState, Notice, due_at, flush, observe
from dispatch.metrics import DispatchMetrics
from dispatch.outbox import (
    DeliveryRecord,
    DeliveryStatus,
    DispatchOutbox,
    NewMessage,
    PendingDelivery,
    Route,
)
from dispatch.sender import HttpTransport, MqttTransport, Transport

log = logging.getLogger(__name__)

T = TypeVar("T")
EVENT_FILTER = subscription(Channel.EVENT)


@dataclass(frozen=True, slots=True)
class _Delivery:
    message: InboundMessage
    connection: int
    arrived: float
    """time.monotonic() when it came from the broker."""


@dataclass(frozen=True, slots=True)
class _Refusal:
    delivery: _Delivery
    reason: Reason
    detail: str


class DispatchService:
    def __init__(
        self,
        settings: DispatchSettings,
        *,
        clock: Clock | None = None,
        metrics: DispatchMetrics | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or DispatchMetrics()
        self.subscribed = asyncio.Event()
        self.ready = asyncio.Event()
        """Set once the outbox is open and the pending deliveries are queued."""
        self.api_port: int | None = None
        self._clock = clock or SystemClock()
        self._rng = rng or random.Random()
        self._inbox: deque[_Delivery] = deque()
        self._arrived = asyncio.Event()
        self._connection: MqttConnection | None = None
        self._connection_number = 0
        self._states: dict[str, CabinetState] = {}
        self._due: dict[str, datetime] = {}
        self._due_changed = asyncio.Event()
        self._recording = asyncio.Lock()
        self._cache = RegistryCache()
        self._unregistered: set[str] = set()
        self._registry_revision: int | None = None
        self._hot = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dispatch-hot")
        self._cold = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dispatch-cold")
        self._outbox: DispatchOutbox | None = None
        self._store: StateStore | None = None
        self._lanes: Lanes | None = None

    # -- running -------------------------------------------------------------------------

    async def run(self) -> None:
        """Run until cancelled."""
        settings = self.settings
        async with contextlib.AsyncExitStack() as cleanup:
            cleanup.callback(self._cold.shutdown, wait=True)
            cleanup.callback(self._hot.shutdown, wait=True)
            outbox = await self._in_hot(
                functools.partial(
                    DispatchOutbox.open,
                    settings.outbox_store_url,
                    durability=settings.outbox_durability,
                )
            )
            self._outbox = outbox
            cleanup.push_async_callback(self._in_hot, outbox.close)
            store = await self._in_hot(StateStore.open, settings.store_url)
            self._store = store
            cleanup.push_async_callback(self._in_hot, store.close)
            await self._refresh_registry()
            self._states = await self._in_hot(outbox.states)
            self._due = {
                cabinet: due
                for cabinet, state in self._states.items()
                if (due := due_at(state, settings.coalescing)) is not None
            }
            pending = await self._in_hot(outbox.pending)
            ticker = await cleanup.enter_async_context(KeepAliveTicker())
            transports: dict[str, Transport] = {}
            policies: dict[str, EndpointPolicy] = {}
            for endpoint in settings.endpoints:
                transports[endpoint.name] = await cleanup.enter_async_context(
                    HttpTransport(endpoint)
                )
                policies[endpoint.name] = EndpointPolicy(endpoint.retry, endpoint.max_concurrent)
            if settings.republish.enabled:
                transports[MQTT_ENDPOINT] = MqttTransport(
                    lambda: self._connection, self.subscribed, settings.mqtt.connect_timeout_s
                )
                policies[MQTT_ENDPOINT] = EndpointPolicy(settings.republish.retry, 64)
            if settings.api_port is not None:
                api = ApiServer(
                    settings.api_host,
                    settings.api_port,
                    self.metrics,
                    self._list_deliveries,
                    self._health,
                )
                await cleanup.enter_async_context(api)
                self.api_port = api.port
            async with asyncio.TaskGroup() as tasks:
                journal = AttemptJournal(
                    outbox, self._in_cold, settings.store_retry, self._rng, self.metrics
                )
                tasks.create_task(journal.run(), name="dispatch-journal")
                lanes = Lanes(
                    transports,
                    policies,
                    outbox,
                    journal,
                    self._in_cold,
                    tasks,
                    self._clock,
                    self.metrics,
                    self._rng,
                    settings.store_retry,
                )
                self._lanes = lanes
                lanes.add(pending)
                if pending:
                    log.info("dispatch: %d deliveries pending from before", len(pending))
                self.ready.set()
                tasks.create_task(self._link_loop(ticker), name="dispatch-link")
                tasks.create_task(self._event_loop(), name="dispatch-events")
                tasks.create_task(self._flush_loop(), name="dispatch-flush")
                tasks.create_task(self._registry_loop(), name="dispatch-registry")

    # -- MQTT ----------------------------------------------------------------------------

    async def _link_loop(self, ticker: KeepAliveTicker) -> None:
        settings = self.settings

        def new_connection() -> MqttConnection:
            self._connection_number += 1
            return MqttConnection(
                settings.mqtt,
                settings.client_id,
                ticker,
                clean_start=False,
                session_expiry_s=settings.session_expiry_s,
                manual_ack=True,
                receive_maximum=settings.receive_maximum,
                on_message=functools.partial(self._on_message, connection=self._connection_number),
            )

        await keep_subscribed(
            "dispatch",
            new_connection,
            EVENT_FILTER,
            settings.mqtt.endpoint,
            settings.reconnect,
            self._rng,
            on_up=self._connection_up,
            on_down=self._connection_down,
        )

    def _connection_up(self, connection: MqttConnection) -> None:
        self._connection = connection
        self.subscribed.set()

    def _connection_down(self, connection: MqttConnection) -> None:
        self.subscribed.clear()
        self._connection = None
        # Deliveries of a closed connection cannot be acknowledged any more; the broker
        # sends them again on the next connection.
        number = self._connection_number
        self._inbox = deque(d for d in self._inbox if d.connection != number)

    def _on_message(self, message: InboundMessage, connection: int) -> None:
        # Bounded by the receive maximum: the broker sends no more unacknowledged events.
        self._inbox.append(_Delivery(message, connection, time.monotonic()))
        self.metrics.received.inc()
        self._arrived.set()

    def _ack(self, deliveries: Sequence[_Delivery]) -> None:
        connection = self._connection
        if connection is None:
            return
        for delivery in deliveries:
            if delivery.connection == self._connection_number:
                connection.ack(delivery.message)

    # -- events --------------------------------------------------------------------------

    async def _event_loop(self) -> None:
        limit = self.settings.batch_max_events
        while True:
            while not self._inbox:
                self._arrived.clear()
                await self._arrived.wait()
            batch = [self._inbox.popleft() for _ in range(min(limit, len(self._inbox)))]
            await self._handle(batch)

    async def _handle(self, batch: list[_Delivery]) -> None:
        policy = self.settings.coalescing
        refusals: list[_Refusal] = []
        async with self._recording:
            now = self._clock.now()
            events: list[tuple[_Delivery, Event]] = []
            for delivery in batch:
                decoded = self._decode(delivery, now)
                if isinstance(decoded, _Refusal):
                    refusals.append(decoded)
                elif decoded is not None:
                    events.append((delivery, decoded))
            if self.settings.unregistered_cabinets == "refuse":
                events = await self._registered_only(events, refusals)
            changed: dict[str, CabinetState] = {}
            notices: list[Notice] = []
            for _, event in events:
                before = self._states.get(event.cabinet_id)
                step = observe(before, event, now, policy)
                self.metrics.handled.labels(step.outcome.value).inc()
                if step.state != before:
                    self._states[event.cabinet_id] = step.state
                    changed[event.cabinet_id] = step.state
                notices.extend(step.notices)
            created = await self._record(list(changed.values()), notices, now)
        self._start(created)
        unparked = {id(delivery) for delivery in await self._park(refusals, now)}
        self._ack([delivery for delivery in batch if id(delivery) not in unparked])
        recorded = time.monotonic()
        for delivery in batch:
            self.metrics.handling_seconds.observe(recorded - delivery.arrived)

    def _decode(self, delivery: _Delivery, now: datetime) -> Event | _Refusal | None:
        message = delivery.message
        if message.user_properties:
            with contextlib.suppress(ContractError):  # a bad topic is told apart below
                cabinet_id, _ = parse_topic(message.topic)
                if problem := identity_problem(cabinet_id, message.user_properties):
                    return _Refusal(delivery, Reason.IDENTITY_MISMATCH, problem)
        try:
            decoded = decode_cabinet_message(message.topic, message.payload)
        except ContractError as exc:
            self.metrics.handled.labels("invalid").inc()
            log.debug("dispatch: ignored an invalid event on %s: %s", message.topic[:200], exc)
            return None
        if not isinstance(decoded, Event):
            self.metrics.handled.labels("not_dispatched").inc()
            return None
        # Age on arrival: now, less the time the delivery has waited here since.
        waited_s = time.monotonic() - delivery.arrived
        age_s = (now - decoded.ts).total_seconds() - waited_s
        self.metrics.event_age_seconds.observe(max(0.0, age_s))
        return decoded

    async def _registered_only(
        self, events: list[tuple[_Delivery, Event]], refusals: list[_Refusal]
    ) -> list[tuple[_Delivery, Event]]:
        """The events of cabinets the registry knows; the others join ``refusals``.

        A cabinet whose registration cannot be read (the store is down) counts as
        registered: a door opening is not held back on a doubt."""
        unseen = {
            event.cabinet_id
            for _, event in events
            if self._cache.get(event.cabinet_id) is None
            and event.cabinet_id not in self._unregistered
        }
        if unseen:
            await self._in_hot(self._look_up, unseen)
        kept = []
        for delivery, event in events:
            if event.cabinet_id in self._unregistered:
                detail = (
                    f"cabinet {event.cabinet_id!r} is not in the fleet registry; "
                    "not dispatched (unregistered_cabinets = refuse)"
                )
                refusals.append(_Refusal(delivery, Reason.UNKNOWN_CABINET, detail))
            else:
                kept.append((delivery, event))
        return kept

    def _look_up(self, cabinet_ids: set[str]) -> None:
        """Learn whether the registry knows these cabinets (store thread)."""
        for cabinet_id in cabinet_ids:
            self._particulars(cabinet_id)

    async def _park(self, refusals: list[_Refusal], now: datetime) -> list[_Delivery]:
        """Dead-letter the refused events; returns those the broker did not take, which
        stay unacknowledged so that they come again after a reconnection."""
        unparked = []
        for refusal in refusals:
            message = refusal.delivery.message
            self.metrics.refused.labels(refusal.reason.value).inc()
            log.warning("dispatch: refused an event on %s: %s", message.topic, refusal.detail)
            letter = dead_letter(
                refusal.reason,
                refusal.detail,
                message.topic,
                message.payload,
                service="dispatch",
                received_at=now,
            )
            connection = self._connection
            try:
                if connection is None:
                    raise MqttNotConnectedError("dispatch: not connected")
                await connection.publish_confirmed(
                    dead_letter_topic(refusal.reason), encode(letter)
                )
            except MqttError as exc:
                self.metrics.dead_letter_failures.inc()
                log.warning("dispatch: could not park a refused event: %s", exc)
                unparked.append(refusal.delivery)
        return unparked

    async def _flush_loop(self) -> None:
        """Sends the held updates of incidents when their rate limit allows."""
        policy = self.settings.coalescing
        while True:
            self._due_changed.clear()
            if not self._due:
                await self._due_changed.wait()
                continue
            wait_s = (min(self._due.values()) - self._clock.now()).total_seconds()
            if wait_s > 0:
                await self._sleep_or_wake(wait_s)
                continue
            async with self._recording:
                now = self._clock.now()
                changed: list[CabinetState] = []
                notices: list[Notice] = []
                for cabinet_id, due in list(self._due.items()):
                    if due > now:
                        continue
                    step = flush(self._states[cabinet_id], now, policy)
                    self._states[cabinet_id] = step.state
                    changed.append(step.state)
                    notices.extend(step.notices)
                created = await self._record(changed, notices, now)
            self._start(created)

    async def _sleep_or_wake(self, seconds: float) -> None:
        sleeper = asyncio.create_task(self._clock.sleep(seconds))
        waker = asyncio.create_task(self._due_changed.wait())
        try:
            await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sleeper, waker):
                task.cancel()
            await asyncio.gather(sleeper, waker, return_exceptions=True)

    def _start(self, created: list[PendingDelivery]) -> None:
        if created and self._lanes is not None:
            self._lanes.add(created)

    # -- the outbox ----------------------------------------------------------------------

    async def _record(
        self, states: list[CabinetState], notices: list[Notice], now: datetime
    ) -> list[PendingDelivery]:
        """Write states and messages until the outbox takes them; returns the deliveries."""
        if not states and not notices:
            return []
        outbox = self._require(self._outbox)
        policy = self.settings.coalescing
        failures = 0
        while True:
            started = asyncio.get_running_loop().time()
            try:
                messages, created = await self._in_hot(
                    self._write_outbox, outbox, states, notices, now
                )
            except OutboxError as exc:
                self.metrics.outbox_failures.inc()
                delay = reconnect_delay(self.settings.store_retry, failures, self._rng)
                failures += 1
                log.warning("dispatch: %s; retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                continue
            self.metrics.record_seconds.observe(asyncio.get_running_loop().time() - started)
            break
        for message in messages:
            self.metrics.messages.labels(message.event.kind.value).inc()
            if not message.event.registered:
                self.metrics.unregistered.inc()
        changed = False
        for state in states:
            due = due_at(state, policy)
            if due != self._due.get(state.cabinet_id):
                changed = True
                if due is None:
                    del self._due[state.cabinet_id]
                else:
                    self._due[state.cabinet_id] = due
        if changed:
            # Wake the flush loop only when its schedule moved (never for a lone alert).
            self._due_changed.set()
        return created

    def _write_outbox(
        self,
        outbox: DispatchOutbox,
        states: list[CabinetState],
        notices: list[Notice],
        now: datetime,
    ) -> tuple[list[NewMessage], list[PendingDelivery]]:
        """Build the messages and record everything (store thread: one hop per batch)."""
        messages = self._messages(notices)
        return messages, outbox.record(states, messages, now, self.settings.coalescing)

    def _messages(self, notices: list[Notice]) -> list[NewMessage]:
        """The messages of ``notices``, with particulars and readiness (store thread)."""
        messages = []
        for notice in notices:
            particulars = self._particulars(notice.cabinet_id)
            event = build_event(notice, particulars, self._twin(notice.cabinet_id))
            messages.append(NewMessage(event=event, routes=self._routes(event.sent_at)))
        return messages

    def _routes(self, created_at: datetime) -> tuple[Route, ...]:
        settings = self.settings
        routes = [
            Route(
                endpoint=endpoint.name,
                expires_at=created_at + timedelta(seconds=endpoint.expire_after_s),
            )
            for endpoint in settings.endpoints
        ]
        if settings.republish.enabled:
            routes.append(
                Route(
                    endpoint=MQTT_ENDPOINT,
                    expires_at=created_at + timedelta(seconds=settings.republish.expire_after_s),
                )
            )
        return tuple(routes)

    def _particulars(self, cabinet_id: str) -> Particulars | None:
        cached = self._cache.get(cabinet_id)
        if cached is not None or cabinet_id in self._unregistered:
            return cached
        # Registered since the last refresh, or not at all: ask once until the next one.
        store = self._require(self._store)
        try:
            cabinet = store.cabinet(cabinet_id)
            duty = store.assignments_for(cabinet_id) if cabinet else []
        except StoreError as exc:
            log.warning("dispatch: registry unavailable for %s: %s", cabinet_id, exc)
            return None
        if cabinet is None:
            self._unregistered.add(cabinet_id)
            return None
        particulars = Particulars(cabinet=cabinet, contact=contact_of(duty))
        self._cache.add(particulars)
        return particulars

    def _twin(self, cabinet_id: str) -> Twin | None:
        try:
            with self.metrics.readiness_seconds.time():
                return self._require(self._store).twin(cabinet_id)
        except StoreError as exc:
            # The message goes out without readiness rather than not at all.
            log.warning("dispatch: readiness of %s unavailable: %s", cabinet_id, exc)
            return None

    # -- registry ------------------------------------------------------------------------

    async def _registry_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.registry_refresh_s)
            try:
                await self._refresh_registry()
            except StoreError as exc:
                log.warning("dispatch: cannot refresh the registry: %s", exc)

    async def _refresh_registry(self) -> None:
        store = self._require(self._store)
        # Building every cabinet's model holds the GIL from the cold thread, which delays
        # the door events in hand (~100 ms at 3,000 cabinets): only after a change.
        revision = await self._in_cold(store.registry_revision)
        if revision == self._registry_revision:
            return
        registry = await self._in_cold(store.load_registry)
        self._cache.replace(registry)
        self._unregistered = set()
        self._registry_revision = revision
        # The registry is most of this process's long-lived objects, and a full cycle
        # collection walking them held door events ~90 ms: keep them out of its way.
        gc.freeze()

    # -- API -----------------------------------------------------------------------------

    async def _list_deliveries(
        self,
        limit: int,
        cabinet_id: str | None,
        endpoint: str | None,
        status: DeliveryStatus | None,
    ) -> list[DeliveryRecord]:
        outbox = self._require(self._outbox)
        return await self._in_cold(
            functools.partial(
                outbox.recent, limit, cabinet_id=cabinet_id, endpoint=endpoint, status=status
            )
        )

    def _health(self) -> dict[str, Any]:
        return {
            "subscribed": self.subscribed.is_set(),
            "pending": self._lanes.pending if self._lanes else 0,
            "inbox": len(self._inbox),
            "registered_cabinets": len(self._cache),
        }

    # -- plumbing ------------------------------------------------------------------------

    @staticmethod
    def _require(value: T | None) -> T:
        if value is None:
            raise RuntimeError("the dispatch service is not running")
        return value

    async def _in_hot(self, work: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._hot, work, *args)

    async def _in_cold(self, work: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._cold, work, *args)
