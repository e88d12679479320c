"""The alerting service: the engine, the scheduler, the notifiers and the HTTP endpoint.

- Messages come in through :meth:`AlertingService.accept`, a sink of the ingest: the
  ``aedfleet alerting`` process (:mod:`aedfleet_app.alerting_process`) runs the ingest
  pipeline with this service on its seam, which hands over every batch of accepted
  messages after the twins are written and before the batch is acknowledged to the
  broker, so a crash re-delivers what alerting had not finished (its steps are
  idempotent). :attr:`AlertingService.started` tells when it can take them.
- APScheduler runs the time-driven work: every ``scheduler.tick_s`` the cabinets whose
  deadlines came are evaluated and due escalations advanced; the digests, the
  readiness snapshot and the registry refresh run on their own intervals.
- The delivery loop sends what the outbox holds, woken by new pages and every tick, with
  at most ``scheduler.max_parallel_deliveries`` messages in flight.
- Every store call runs on one thread (:meth:`AlertingService.call`), never on the loop.

A restart resumes from the store: alarms, escalations (with their due times) and the
notification outbox are there, and the first sweep evaluates every cabinet at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC
from typing import ParamSpec, TypeVar

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from aedfleet.clock import Clock, SystemClock
from aedfleet.contract import CabinetMessage
from aedfleet.db import StateStore
from aedfleet.influx.writer import InfluxError, InfluxSettings, InfluxWriter
from alerting.config import AlertingSettings
from alerting.engine import AlertingEngine, OutgoingMessage
from alerting.http import AlertingHttp
from alerting.links import LinkSigner
from alerting.notifiers.delivery import Deliverer
from alerting.notifiers.setup import notifiers_for
from alerting.store import AlarmStore

log = logging.getLogger(__name__)
# A tick that finds the previous one still running is skipped on purpose (the work is
# idempotent and the next tick catches up); APScheduler would warn about each.
logging.getLogger("apscheduler.scheduler").setLevel(logging.ERROR)

P = ParamSpec("P")
T = TypeVar("T")
MAX_BUFFERED_LINES = 200_000


class AlertingService:
    def __init__(
        self,
        settings: AlertingSettings,
        *,
        store_url: str,
        influx: InfluxSettings,
        clock: Clock | None = None,
        deliverer: Deliverer | None = None,
    ) -> None:
        self.settings = settings
        self.store_url = store_url
        self.influx = influx
        self.clock = clock or SystemClock()
        self.started = asyncio.Event()
        self.http_port: int | None = None
        self._deliverer = deliverer
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="alerting-store")
        self._engine: AlertingEngine | None = None
        self._wake = asyncio.Event()
        self._lines: list[str] = []

    async def call(self, work: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``work`` on the store thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, functools.partial(work, *args, **kwargs))

    async def call_now(self, work: Callable[..., T], /, *args: object) -> T:
        """Run ``work(*args, now)`` on the store thread, reading the clock when it starts:
        work queued behind a long evaluation must not act on the time it was queued at."""
        return await self.call(lambda: work(*args, self.clock.now()))

    @property
    def engine(self) -> AlertingEngine:
        if self._engine is None:
            raise RuntimeError("the alerting service is not running")
        return self._engine

    async def accept(self, messages: Sequence[CabinetMessage]) -> None:
        """The ingest's seam: alerting sees every accepted message, after the twins."""
        await self.call_now(self.engine.observe, messages)
        await self._escalate()

    async def run(self) -> None:
        """Run until cancelled."""
        settings = self.settings
        async with contextlib.AsyncExitStack() as stack:
            stack.callback(self._thread.shutdown, wait=True)
            url = self.store_url
            state = await self.call(StateStore.open, url)
            stack.push_async_callback(self.call, state.close)
            alarms = await self.call(AlarmStore.open, url, policies=settings.escalation)
            stack.push_async_callback(self.call, alarms.close)
            signer = LinkSigner(
                [secret.get_secret_value().encode() for secret in settings.links.secrets],
                settings.links.base_url,
                settings.links.ttl,
            )
            engine = AlertingEngine(settings, state, alarms, signer)
            self._engine = engine
            await self.call(engine.start, self.clock.now())
            log.info("alerting: evaluated %d cabinets at start", len(engine.cabinet_ids))
            deliverer = self._deliverer
            if deliverer is None:
                notifiers = await stack.enter_async_context(notifiers_for(settings.notify))
                deliverer = Deliverer.configured(notifiers, settings.notify, clock=self.clock)
            writer = await stack.enter_async_context(InfluxWriter(self.influx))
            http = await stack.enter_async_context(
                AlertingHttp(
                    settings.http,
                    engine=engine,
                    alarms=alarms,
                    call=self.call,
                    signer=signer,
                    silence_limits=settings.silences,
                    clock=self.clock,
                    time_zone=settings.notify.render.time_zone,
                    map_url_template=settings.notify.render.map_url_template,
                )
            )
            self.http_port = http.port
            scheduler = self._scheduler()
            scheduler.start()
            stack.callback(scheduler.shutdown, wait=False)
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._delivery_loop(deliverer), name="alerting-delivery")
                tasks.create_task(self._points_loop(writer), name="alerting-points")
                self.started.set()

    # -- scheduled work ------------------------------------------------------------------

    def _scheduler(self) -> AsyncIOScheduler:
        timing = self.settings.scheduler
        scheduler = AsyncIOScheduler(timezone=UTC)
        jobs: list[tuple[Callable[[], object], float, str]] = [
            (self._tick, timing.tick_s, "deadlines and escalations"),
            (self._digests, timing.digest_check_s, "daily digests"),
            (self._snapshot, timing.readiness_snapshot_s, "readiness snapshot"),
            (self._refresh_registry, timing.registry_refresh_s, "registry refresh"),
        ]
        for job, interval_s, name in jobs:
            scheduler.add_job(
                _logged(job, name),
                IntervalTrigger(seconds=interval_s, timezone=UTC),
                name=name,
                max_instances=1,
                coalesce=True,
                misfire_grace_time=None,
            )
        return scheduler

    async def _tick(self) -> None:
        await self.call_now(self.engine.evaluate_due)
        await self._escalate()

    async def _escalate(self) -> None:
        await self.call_now(self.engine.escalate)
        self._wake.set()

    async def _digests(self) -> None:
        if await self.call_now(self.engine.record_digests):
            self._wake.set()

    async def _snapshot(self) -> None:
        await self.call_now(self.engine.snapshot_lines)

    async def _refresh_registry(self) -> None:
        await self.call(self.engine.refresh_registry)

    # -- delivery ------------------------------------------------------------------------

    async def _delivery_loop(self, deliverer: Deliverer) -> None:
        limit = asyncio.Semaphore(self.settings.scheduler.max_parallel_deliveries)
        in_flight: set[int] = set()
        async with asyncio.TaskGroup() as sends:
            while True:
                await self._wake.wait()
                self._wake.clear()
                messages = await self.call_now(self.engine.due_messages)
                for message in messages:
                    if in_flight.intersection(message.notification_ids):
                        continue  # still being sent from the previous round
                    in_flight.update(message.notification_ids)
                    await limit.acquire()
                    sends.create_task(self._send(deliverer, message, limit, in_flight))

    async def _send(
        self,
        deliverer: Deliverer,
        message: OutgoingMessage,
        limit: asyncio.Semaphore,
        in_flight: set[int],
    ) -> None:
        try:
            report = await deliverer.deliver(message.notice)
            await self.call_now(self.engine.delivered, message, report)
            if report.delivered:
                log.info(
                    "alerting: %s %s delivered to %s by %s",
                    message.notice.kind,
                    message.notice.notice_id,
                    message.notice.recipient.person_id,
                    report.channel,
                )
            else:
                log.warning(
                    "alerting: %s %s to %s not delivered: %s",
                    message.notice.kind,
                    message.notice.notice_id,
                    message.notice.recipient.person_id,
                    report.error,
                )
        finally:
            in_flight.difference_update(message.notification_ids)
            limit.release()

    # -- InfluxDB points -----------------------------------------------------------------

    async def _points_loop(self, writer: InfluxWriter) -> None:
        while True:
            await asyncio.sleep(1.0)
            self._lines.extend(await self.call(self.engine.take_lines))
            if not self._lines:
                continue
            if len(self._lines) > MAX_BUFFERED_LINES:
                dropped = len(self._lines) - MAX_BUFFERED_LINES
                log.warning("alerting: InfluxDB unreachable; dropped %d oldest points", dropped)
                del self._lines[:dropped]
            try:
                await writer.write(self._lines)
            except InfluxError as exc:
                log.warning("alerting: points not written yet (%s); will retry", exc)
                continue
            self._lines = []


def _logged(job: Callable[[], object], name: str) -> Callable[[], object]:
    """The job, logging a failure with its name (APScheduler would log a bare traceback)."""

    @functools.wraps(job)
    async def run() -> None:
        try:
            result = job()
            if asyncio.iscoroutine(result):
                await result
        except asyncio.CancelledError:
            # The scheduler cancels a job still running when the service stops; the job
            # is idempotent and runs again after a restart, so this is no failure (and
            # APScheduler would log it as one).
            log.debug("alerting: scheduled %s stopped with the service", name)
        except Exception:
            log.exception("alerting: scheduled %s failed; it runs again next time", name)

    return run
