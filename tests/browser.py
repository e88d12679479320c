"""Browser-test support: Debian's Chromium driven by Playwright, and a captain's phone.

Playwright runs without downloading a browser of its own: it launches the system's
``/usr/bin/chromium`` (``scripts/setup.sh`` installs it with ``fonts-noto-cjk``, so the
Chinese pages render with real glyphs). The flags keep Chromium from reaching out to
Google's services and from needing a sandbox or a GPU in a container.

:class:`LinkPages` is the alerting service's link endpoint as a captain's phone reaches
it: a real :class:`~alerting.http.AlertingHttp` on a free loopback port over a real
:class:`~alerting.engine.AlertingEngine` and SQLite stores, seeded with the simulated
fleet's registry. Its clock stands still unless a test moves it, so a link expires
exactly when the test says.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Final, ParamSpec, Self, TypeVar

from playwright.async_api import (
    Browser,
    BrowserContext,
    Page,
    ViewportSize,
    async_playwright,
)
from pydantic import SecretStr
from sqlalchemy import create_engine, select

from aedfleet.contract import CabinetMessage, EventType
from aedfleet.db.state import StateStore
from aedfleet.registry import Cabinet
from aedfleet_testing.tiers import BROWSER, require_tier
from alerting.config import AlertingSettings, HttpSettings, LinkSettings
from alerting.engine import AlertingEngine
from alerting.http import AlertingHttp
from alerting.links import LinkAction, LinkSigner
from alerting.model import Alarm, AlarmType
from alerting.store import AlarmStore
from alerting.tables import inspections
from firmware_sim.registry import simulated_registry
from firmware_sim.scenario import FleetDefaults, Scenario
from tests.alerting_rules_support import T0, birth, event, heartbeat, selftest

P = ParamSpec("P")
T = TypeVar("T")

CHROMIUM: Final = Path("/usr/bin/chromium")
CHROMIUM_ARGS: Final = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
# An ordinary phone held upright (iPhone 12 to 15 in CSS pixels).
PHONE_VIEWPORT: Final = ViewportSize(width=390, height=844)
CLOSE_TIMEOUT_S: Final = 30.0
LINK_TTL: Final = timedelta(days=3)
# The simulated registry's cabinet 1 ("cab-0001", the id the rules' message builders
# use) has a captain who reads Chinese and a backup who reads English.
CABINET_ID: Final = "cab-0001"
FLEET: Final = Scenario(seed=7, fleet=FleetDefaults(size=2, id_prefix="cab-"))


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """The system's Chromium, headless; closed (with Playwright's driver) on exit."""
    require_tier(BROWSER)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=list(CHROMIUM_ARGS), timeout=30_000
        )
        try:
            yield browser
        finally:
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await browser.close()


@contextlib.asynccontextmanager
async def phone(browser: Browser, locale: str) -> AsyncIterator[BrowserContext]:
    """A fresh phone (no cookies, no cache) whose browser prefers ``locale``."""
    context = await browser.new_context(
        viewport=PHONE_VIEWPORT,
        is_mobile=True,
        has_touch=True,
        device_scale_factor=2,
        locale=locale,
    )
    # Waits fail within seconds rather than at the test's timeout.
    context.set_default_timeout(10_000)
    try:
        yield context
    finally:
        async with asyncio.timeout(CLOSE_TIMEOUT_S):
            await context.close()


async def fonts_rendering(context: BrowserContext, page: Page, selector: str) -> dict[str, int]:
    """The fonts Chromium drew the element's text with: family name → glyphs drawn.

    A glyph no installed font has is drawn as a box by the page's first font, so a
    Chinese text drawn by a Latin font (DejaVu Sans here) shows as tofu on screen.
    """
    session = await context.new_cdp_session(page)
    try:
        await session.send("DOM.enable")
        await session.send("CSS.enable")
        document = await session.send("DOM.getDocument")
        node = await session.send(
            "DOM.querySelector", {"nodeId": document["root"]["nodeId"], "selector": selector}
        )
        found = await session.send("CSS.getPlatformFontsForNode", {"nodeId": node["nodeId"]})
    finally:
        await session.detach()
    drawn: dict[str, int] = {}
    for font in found["fonts"]:
        drawn[font["familyName"]] = drawn.get(font["familyName"], 0) + font["glyphCount"]
    return drawn


class StillClock:
    """A clock that stands still until :meth:`advance` moves it."""

    def __init__(self, start: datetime) -> None:
        self.current = start

    def now(self) -> datetime:
        return self.current

    async def sleep(self, seconds: float) -> None:
        self.current += timedelta(seconds=seconds)

    def advance(self, by: timedelta) -> None:
        self.current += by


class LinkPages:
    """The link endpoint over a real engine and SQLite stores; an async context manager.

    Every store call runs on one thread of its own, as in the alerting service.
    """

    def __init__(self, directory: Path, now: datetime = T0) -> None:
        self.store_url = f"sqlite:///{directory / 'store.sqlite3'}"
        self.clock = StillClock(now)
        self.port: int | None = None
        self._secret = b"browser-test-link-secret-of-32-bytes-or-more"
        self._signer = LinkSigner([self._secret], "http://127.0.0.1/l/", LINK_TTL)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pages-store")
        self._stack = contextlib.AsyncExitStack()
        self._engine: AlertingEngine | None = None
        self._state: StateStore | None = None
        self._alarms: AlarmStore | None = None

    async def call(self, work: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, functools.partial(work, *args, **kwargs))

    async def __aenter__(self) -> Self:
        try:
            await self._start(self._stack)
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def _start(self, stack: contextlib.AsyncExitStack) -> None:
        stack.callback(self._thread.shutdown, wait=True)
        state = await self.call(StateStore.open, self.store_url)
        stack.push_async_callback(self.call, state.close)
        await self.call(state.apply_registry, simulated_registry(FLEET))
        alarms = await self.call(AlarmStore.open, self.store_url)
        stack.push_async_callback(self.call, alarms.close)
        settings = AlertingSettings(
            links=LinkSettings(secrets=(SecretStr(self._secret.decode()),), ttl=LINK_TTL),
            http=HttpSettings(port=0),
        )
        engine = AlertingEngine(settings, state, alarms, self._signer)
        await self.call(engine.start, self.clock.now())
        http = await stack.enter_async_context(
            AlertingHttp(
                settings.http,
                engine=engine,
                alarms=alarms,
                call=self.call,
                signer=self._signer,
                silence_limits=settings.silences,
                clock=self.clock,
            )
        )
        self.port = http.port
        self._engine = engine
        self._state = state
        self._alarms = alarms

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._stack.aclose()

    @property
    def engine(self) -> AlertingEngine:
        if self._engine is None:
            raise RuntimeError("the link pages are not serving")
        return self._engine

    def link(
        self,
        action: LinkAction,
        target: int | str,
        person_id: str,
        signed_at: datetime | None = None,
    ) -> str:
        """The URL a message would carry, signed at ``signed_at`` (the clock's now)."""
        token = self._signer.token(action, target, person_id, signed_at or self.clock.now())
        return f"http://127.0.0.1:{self.port}/l/{token}"

    async def feed(self, messages: Sequence[CabinetMessage]) -> None:
        """What the ingest does with accepted messages: twins first, then alerting."""
        if self._state is None:
            raise RuntimeError("the link pages are not serving")
        await self.call(self._state.apply_messages, messages)
        await self.call(self.engine.observe, messages, self.clock.now())

    async def failed_selftest(self) -> Alarm:
        """Cabinet 1 reports a failed self-test; the alarm it raises."""
        now = self.clock.now()
        await self.feed(
            [
                birth(0, 1, now - timedelta(seconds=3)),
                heartbeat(0, 2, now - timedelta(seconds=2)),
                selftest(0, 3, now - timedelta(seconds=1), passed=False, codes=("E12",)),
            ]
        )
        if self._alarms is None:
            raise RuntimeError("the link pages are not serving")
        alarms = await self.call(self._alarms.alarms, None, CABINET_ID)
        return next(alarm for alarm in alarms if alarm.type is AlarmType.SELFTEST_FAILED)

    async def door_left_open(self, opened: datetime) -> Alarm:
        """Cabinet 1, in Shenzhen (its birth names Asia/Shanghai), has had its door open
        since ``opened``; the alarm it raises."""
        await self.feed(
            [
                birth(0, 1, opened - timedelta(seconds=2), time_zone="Asia/Shanghai"),
                heartbeat(0, 2, opened - timedelta(seconds=1)),
                event(0, 3, opened, EventType.DOOR_OPENED),
            ]
        )
        return await self._alarm_of(AlarmType.DOOR_OPENED)

    async def _alarm_of(self, alarm_type: AlarmType) -> Alarm:
        if self._alarms is None:
            raise RuntimeError("the link pages are not serving")
        alarms = await self.call(self._alarms.alarms, None, CABINET_ID)
        return next(alarm for alarm in alarms if alarm.type is alarm_type)

    async def alarm(self, alarm_id: int) -> Alarm:
        found = await self.call(self.engine.alarm, alarm_id)
        if found is None:
            raise AssertionError(f"alarm {alarm_id} is not in the store")
        return found

    async def registered_cabinet(self, cabinet_id: str) -> Cabinet:
        """The cabinet as the registry in the database now has it."""
        if self._state is None:
            raise RuntimeError("the link pages are not serving")
        found = await self.call(self._state.cabinet, cabinet_id)
        if found is None:
            raise AssertionError(f"cabinet {cabinet_id} is not in the registry")
        return found

    async def inspections(self, cabinet_id: str) -> list[dict[str, Any]]:
        """Every inspection recorded for the cabinet, as rows."""

        def read() -> list[dict[str, Any]]:
            engine = create_engine(self.store_url)
            try:
                with engine.connect() as connection:
                    rows = connection.execute(
                        select(inspections).where(inspections.c.cabinet_id == cabinet_id)
                    )
                    return [dict(row._mapping) for row in rows]
            finally:
                engine.dispose()

        return await self.call(read)


def tampered(url: str) -> str:
    """The link with one character of its signed payload changed."""
    head, _, token = url.rpartition("/")
    position = 6  # inside the expiry field, well before the signature
    replacement = "A" if token[position] != "A" else "B"
    return f"{head}/{token[:position]}{replacement}{token[position + 1 :]}"
