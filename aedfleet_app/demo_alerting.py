"""The AED captain system inside ``aedfleet demo``: pages printed, some of them answered.

The alerting service (:mod:`alerting.service`) needs MQTT 5 and InfluxDB, and the demo
has neither (its embedded amqtt broker speaks MQTT 3.1.1). So :class:`DemoAlerting` runs
what the service runs around the alerting engine, the way the service runs it, fed by the
messages the demo's watcher already receives:

- one temporary SQLite file holds the state store, seeded with the simulated fleet's
  registry (a captain and a backup per cabinet, a coordinator per ten, in Chinese and
  English), and the alarm store;
- the watcher hands every message to :meth:`DemoAlerting.offer`; each pass folds the
  decoded ones into the twins and lets :class:`~alerting.engine.AlertingEngine` observe
  them, then evaluates the deadlines that came, advances the escalations and delivers
  the due messages through the real :class:`~alerting.notifiers.delivery.Deliverer`,
  which renders them with the real :class:`~alerting.render.Renderer`;
- every store call runs on one thread (:meth:`DemoAlerting.call`), never on the loop;
- the real link endpoint (:class:`~alerting.http.AlertingHttp`) serves the signed links
  on loopback, so a link printed in a page opens in a browser while the demo runs.

:class:`TerminalPager` stands in for the email channel and prints one line per message.
Nobody reads those, so :class:`SimulatedCaptains` answers for the captains: every other
critical alarm still raised a few clock minutes after its captain was paged is
acknowledged by POSTing the page's signed acknowledge link, as the captain's phone does
when the button on the link's page is tapped. The rest escalate: at the scaled clock
(x60 by default) the backup is paged 10 seconds after the captain and the coordinator 30.

Quiet hours are off, so the demo's night-time warnings are paged at once rather than
held until morning. Messages wait for the next pass in a bounded buffer; when it is full
the oldest are dropped and counted in the status line (a demo prefers fresh state to a
complete history, and at the demo's rates the buffer never fills).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import secrets
from collections import Counter, deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final, ParamSpec, Self, TypeVar

import aiohttp
from pydantic import SecretStr

from aedfleet.clock import Clock
from aedfleet.contract import CabinetMessage, ContractError, decode_cabinet_message
from aedfleet.db import StateStore
from aedfleet.mqtt import InboundMessage
from aedfleet.registry import Person, Registry, Role
from alerting.config import AlertingSettings, HttpSettings, LinkSettings
from alerting.engine import AlertingEngine, OutgoingMessage
from alerting.http import AlertingHttp
from alerting.links import LinkSigner
from alerting.model import AlarmState, AlarmType, NoticeKind, Severity, Via
from alerting.notifiers.base import Channel, Notice, RenderedNotice
from alerting.notifiers.delivery import Deliverer, DeliveryReport
from alerting.quiet import QuietSettings
from alerting.readiness import FleetReadiness
from alerting.store import AlarmStore

__all__ = [
    "ACK_DELAY",
    "DemoAlerting",
    "PlannedAcknowledgement",
    "SimulatedCaptains",
    "TerminalPager",
    "demo_settings",
    "notice_line",
]

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

ACK_DELAY: Final = timedelta(minutes=4)
"""How long (clock time) after a critical page a simulated captain answers it: well
before the backup's step at 10 minutes, so an acknowledged alarm escalates no further."""
PASS_S: Final = 0.25
"""Wall seconds between passes: 15 clock seconds at x60."""
MAX_BUFFERED: Final = 20_000
LINK_TIMEOUT_S: Final = 10.0
_MARKS: Final = {
    NoticeKind.PAGE: "📟 PAGE",
    NoticeKind.REMINDER: "🔁 REMINDER",
    NoticeKind.RESOLVED: "🟢 RESOLVED",
    NoticeKind.DIGEST: "📰 DIGEST",
}


def clock_time(at: datetime) -> str:
    """A clock instant as the demo's lines show it (UTC, like the traffic view's events)."""
    return f"{at.astimezone(UTC):%H:%M:%S}"


def notice_line(rendered: RenderedNotice, at: datetime) -> str:
    """One terminal line for a delivered message: what, to whom, who was paged before."""
    notice = rendered.notice
    before = ""
    if notice.escalated_after:
        earlier = ", ".join(
            f"{page.name} ({page.role}) {_minutes(at - page.paged_at)} min ago"
            for page in notice.escalated_after
        )
        before = f" [paged before: {earlier}]"
    return (
        f"{clock_time(at)} {_MARKS[notice.kind]} → {notice.recipient.name} "
        f"({notice.role}, {rendered.language}){before}: {rendered.short_text}"
    )


def _minutes(span: timedelta) -> int:
    return max(0, round(span.total_seconds() / 60))


class TerminalPager:
    """Stands in for the email channel in the demo: it "delivers" by printing a line.

    It claims :attr:`Channel.EMAIL` and reaches whoever has an email address (everyone
    in the simulated registry), so the deliverer renders each notice in the recipient's
    language and hands it over exactly as it would to the SMTP notifier. The line shows
    the notice's SMS-sized short text, which ends with its signed link.
    """

    def __init__(self, emit: Callable[[str], None], clock: Clock) -> None:
        self._emit = emit
        self._clock = clock

    @property
    def channel(self) -> Channel:
        return Channel.EMAIL

    def reaches(self, person: Person) -> bool:
        return person.email is not None

    async def send(self, rendered: RenderedNotice, person: Person) -> None:
        self._emit(notice_line(rendered, self._clock.now()))


@dataclass(frozen=True, slots=True)
class PlannedAcknowledgement:
    """A captain's intention to look at a critical page, and the link to tap."""

    due_at: datetime
    alarm_id: int
    alarm_type: AlarmType
    cabinet_id: str
    person_id: str
    name: str
    link: str


class SimulatedCaptains:
    """Captains who answer some of their pages, so that the demo shows both paths. Pure.

    A captain looks at each critical page ``delay`` after it arrived. Of the alarms still
    raised by then, every other one is acknowledged (the first, the third, ...) and the
    others are left to escalate to the backup and the coordinator. Each alarm is
    considered once, at the first page its captain gets about it.
    """

    def __init__(self, delay: timedelta = ACK_DELAY) -> None:
        self.delay = delay
        self._planned: list[PlannedAcknowledgement] = []
        self._considered: set[int] = set()
        self._turn = 0

    def paged(self, notice: Notice, at: datetime) -> None:
        """Take note of a delivered notice; only critical pages to captains matter."""
        if notice.kind is not NoticeKind.PAGE or notice.role is not Role.CAPTAIN:
            return
        for brief in notice.alarms:
            alarm = brief.alarm
            if (
                alarm.severity is not Severity.CRITICAL
                or brief.ack_url is None
                or alarm.alarm_id in self._considered
            ):
                continue
            self._considered.add(alarm.alarm_id)
            self._planned.append(
                PlannedAcknowledgement(
                    due_at=at + self.delay,
                    alarm_id=alarm.alarm_id,
                    alarm_type=alarm.type,
                    cabinet_id=alarm.cabinet_id,
                    person_id=notice.recipient.person_id,
                    name=notice.recipient.name,
                    link=brief.ack_url,
                )
            )

    def due(self, now: datetime) -> list[PlannedAcknowledgement]:
        """The looks whose time has come, oldest first; each is returned once."""
        due = [planned for planned in self._planned if planned.due_at <= now]
        self._planned = [planned for planned in self._planned if planned.due_at > now]
        return sorted(due, key=lambda planned: (planned.due_at, planned.alarm_id))

    def answers(self, still_raised: bool) -> bool:
        """Whether the captain acknowledges an alarm they look at: every other raised one."""
        if not still_raised:
            return False
        self._turn += 1
        return self._turn % 2 == 1


def demo_settings(http_port: int) -> AlertingSettings:
    """The alerting service's defaults, without quiet hours, links on loopback.

    The link secret is new every run: the links are good for this demo only.
    """
    return AlertingSettings(
        links=LinkSettings(
            secrets=(SecretStr(secrets.token_hex(32)),),
            base_url=f"http://127.0.0.1:{http_port}/l/",
        ),
        http=HttpSettings(host="127.0.0.1", port=http_port),
        quiet=QuietSettings(default=None),
    )


@dataclass
class DemoTally:
    """What the demo's alerting did, for the status line and the final summary."""

    delivered: Counter[tuple[NoticeKind, Role]] = field(default_factory=Counter)
    undelivered: int = 0
    acknowledged_by_link: int = 0
    dropped_messages: int = 0
    open_alarms: int = 0
    readiness: FleetReadiness = field(default_factory=FleetReadiness)


class DemoAlerting:
    """The alerting engine, its stores, delivery and link endpoint, for the demo.

    Use as an async context manager, feed it with :meth:`offer` and run :meth:`run`
    alongside the fleet; :meth:`status` and :meth:`summary` report.
    """

    def __init__(
        self,
        settings: AlertingSettings,
        registry: Registry,
        store_url: str,
        clock: Clock,
        emit: Callable[[str], None],
        *,
        captains: SimulatedCaptains | None = None,
        pass_s: float = PASS_S,
    ) -> None:
        self.settings = settings
        self.tally = DemoTally()
        self.ready = asyncio.Event()
        self._registry = registry
        self._store_url = store_url
        self._clock = clock
        self._emit = emit
        self._captains = captains or SimulatedCaptains()
        self._pass_s = pass_s
        self._buffer: deque[CabinetMessage] = deque(maxlen=MAX_BUFFERED)
        self._intake_open = True
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="demo-alerting")
        self._stack = contextlib.AsyncExitStack()
        self._engine: AlertingEngine | None = None
        self._alarms: AlarmStore | None = None
        self._state: StateStore | None = None
        self._deliverer: Deliverer | None = None
        self._session: aiohttp.ClientSession | None = None
        self.http_port: int | None = None

    async def call(self, work: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``work`` on the store thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, functools.partial(work, *args, **kwargs))

    async def __aenter__(self) -> Self:
        stack = self._stack
        await stack.__aenter__()
        try:
            stack.callback(self._thread.shutdown, wait=True)
            state = await self.call(StateStore.open, self._store_url)
            stack.push_async_callback(self.call, state.close)
            await self.call(state.apply_registry, self._registry)
            alarms = await self.call(
                AlarmStore.open, self._store_url, policies=self.settings.escalation
            )
            stack.push_async_callback(self.call, alarms.close)
            links = self.settings.links
            signer = LinkSigner(
                [secret.get_secret_value().encode() for secret in links.secrets],
                links.base_url,
                links.ttl,
            )
            engine = AlertingEngine(self.settings, state, alarms, signer)
            await self.call(engine.start, self._clock.now())
            http = await stack.enter_async_context(
                AlertingHttp(
                    self.settings.http,
                    engine=engine,
                    alarms=alarms,
                    call=self.call,
                    signer=signer,
                    silence_limits=self.settings.silences,
                    clock=self._clock,
                    time_zone=self.settings.notify.render.time_zone,
                )
            )
            self._session = await stack.enter_async_context(
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=LINK_TIMEOUT_S))
            )
        except BaseException:
            await stack.aclose()
            raise
        self._state, self._alarms, self._engine = state, alarms, engine
        self.http_port = http.port
        self._deliverer = Deliverer.configured(
            [TerminalPager(self._emit, self._clock)], self.settings.notify, clock=self._clock
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    # -- messages in ---------------------------------------------------------------------

    def offer(self, message: InboundMessage) -> None:
        """The watcher's callback: keep a cabinet's message for the next pass.

        A message the contract refuses is left out; the traffic view reports it.
        """
        if not self._intake_open:
            return
        try:
            decoded = decode_cabinet_message(message.topic, message.payload)
        except ContractError:
            return
        if len(self._buffer) == self._buffer.maxlen:
            self.tally.dropped_messages += 1
        self._buffer.append(decoded)

    # -- the loop ------------------------------------------------------------------------

    async def run(self, duration_s: float | None = None) -> None:
        """Pass after pass for ``duration_s`` wall seconds (None: until cancelled).

        Then it takes no more messages: the demo's end is not the cabinets going
        offline, which their last wills would report as the fleet shuts down.
        """
        self.ready.set()
        deadline = asyncio.timeout(duration_s)
        try:
            async with deadline:
                while True:
                    await self.run_pass()
                    await asyncio.sleep(self._pass_s)
        except TimeoutError:
            if not deadline.expired():
                log.exception("demo: the alerting loop crashed")
                raise
        except Exception:
            log.exception("demo: the alerting loop crashed")
            raise
        finally:
            self._intake_open = False

    async def run_pass(self) -> None:
        """Observe what came in, evaluate, escalate, deliver, and let captains answer."""
        batch = list(self._buffer)
        self._buffer.clear()
        now = self._clock.now()
        messages, open_alarms, readiness = await self.call(self._decide, batch, now)
        self.tally.open_alarms, self.tally.readiness = open_alarms, readiness
        for message in messages:
            await self._deliver(message)
        await self._answer_pages()

    def _decide(
        self, batch: Sequence[CabinetMessage], now: datetime
    ) -> tuple[list[OutgoingMessage], int, FleetReadiness]:
        """One pass of the service's store work, on the store thread: the messages to
        send, the number of open alarms and the fleet's readiness."""
        engine, state, alarms = self._parts()
        if batch:
            state.apply_messages(batch)
            engine.observe(batch, now)
        engine.evaluate_due(now)
        engine.escalate(now)
        due = engine.due_messages(now)
        open_alarms = sum(len(held) for held in alarms.active_alarms(engine.cabinet_ids).values())
        # The service writes these to InfluxDB; the demo has none.
        engine.take_lines()
        return due, open_alarms, engine.fleet_readiness()

    async def _deliver(self, message: OutgoingMessage) -> None:
        deliverer = self._deliverer
        engine, _, _ = self._parts()
        if deliverer is None:
            raise RuntimeError("the demo's alerting is not open")
        report: DeliveryReport = await deliverer.deliver(message.notice)
        now = self._clock.now()
        await self.call(engine.delivered, message, report, now)
        notice = message.notice
        if report.delivered:
            self.tally.delivered[notice.kind, notice.role] += 1
            self._captains.paged(notice, now)
        else:
            self.tally.undelivered += 1
            self._emit(
                f"{clock_time(now)} ⚠ {notice.kind} to {notice.recipient.name} not delivered: "
                f"{report.error}"
            )

    async def _answer_pages(self) -> None:
        engine, _, _ = self._parts()
        for planned in self._captains.due(self._clock.now()):
            alarm = await self.call(engine.alarm, planned.alarm_id)
            raised = alarm is not None and alarm.state is AlarmState.RAISED
            if self._captains.answers(raised):
                await self._follow_link(planned)

    async def _follow_link(self, planned: PlannedAcknowledgement) -> None:
        """POST the acknowledge link, as the button on the link's page does."""
        engine, _, _ = self._parts()
        session = self._session
        if session is None:
            raise RuntimeError("the demo's alerting is not open")
        at = clock_time(self._clock.now())
        try:
            async with session.post(planned.link) as response:
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            self._emit(f"{at} ⚠ {planned.name} could not open the acknowledge link: {exc!r}")
            return
        alarm = await self.call(engine.alarm, planned.alarm_id)
        if (
            status != 200
            or alarm is None
            or alarm.acknowledged_by != planned.person_id
            or alarm.acknowledged_via is not Via.LINK
        ):
            self._emit(
                f"{at} ⚠ {planned.name} tapped the acknowledge link of alarm "
                f"{planned.alarm_id}, but it was not acknowledged (HTTP {status})"
            )
            return
        self.tally.acknowledged_by_link += 1
        self._emit(
            f"{at} ✅ {planned.name} acknowledged alarm {planned.alarm_id} "
            f"({planned.alarm_type} at {planned.cabinet_id}) via link"
        )

    def _parts(self) -> tuple[AlertingEngine, StateStore, AlarmStore]:
        if self._engine is None or self._state is None or self._alarms is None:
            raise RuntimeError("the demo's alerting is not open")
        return self._engine, self._state, self._alarms

    # -- reporting -----------------------------------------------------------------------

    def status(self) -> str:
        """A short status for the demo's periodic line, as of the last pass."""
        tally = self.tally
        pages = sum(
            count for (kind, _), count in tally.delivered.items() if kind is NoticeKind.PAGE
        )
        dropped = f", {tally.dropped_messages} messages dropped" if tally.dropped_messages else ""
        return (
            f"alerting: {tally.open_alarms} open alarms, {pages} pages, "
            f"{tally.readiness.ready}/{tally.readiness.total} ready{dropped}"
        )

    async def summary(self) -> list[str]:
        """The final summary: alarms by type, notices by role, answers, readiness."""
        engine, _, alarms = self._parts()
        every = await self.call(alarms.alarms, limit=1_000_000)
        readiness = await self.call(engine.fleet_readiness)
        by_type = Counter(alarm.type for alarm in every)
        acknowledged = sum(alarm.acknowledged_at is not None for alarm in every)
        resolved = sum(alarm.state is AlarmState.RESOLVED for alarm in every)
        delivered = self.tally.delivered

        def by_role(kind: NoticeKind) -> str:
            counts = [(role, delivered[kind, role]) for role in Role if delivered[kind, role]]
            total = sum(count for _, count in counts)
            parts = ", ".join(f"{role} {count}" for role, count in counts)
            return f"{total}" + (f" ({parts})" if parts else "")

        types = ", ".join(f"{kind} {count}" for kind, count in by_type.most_common())
        reasons = ", ".join(
            f"{reason} {count}"
            for reason, count in sorted(
                readiness.not_ready_by_reason.items(), key=lambda item: (-item[1], item[0])
            )
        )
        return [
            "== AED captains ==",
            f"alarms raised: {len(every)}" + (f" ({types})" if types else ""),
            f"pages sent: {by_role(NoticeKind.PAGE)}",
            f"reminders {by_role(NoticeKind.REMINDER)}, resolution notices "
            f"{by_role(NoticeKind.RESOLVED)}, digests {by_role(NoticeKind.DIGEST)}"
            + (f", undelivered {self.tally.undelivered}" if self.tally.undelivered else ""),
            f"acknowledged: {acknowledged} ({self.tally.acknowledged_by_link} by simulated "
            f"captains via link); resolved: {resolved}; still open: {len(every) - resolved}",
            f"fleet readiness: {readiness.ready}/{readiness.total} ready"
            + (f" (not ready: {reasons})" if reasons else ""),
        ]
