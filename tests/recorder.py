"""A test subscriber with a persistent session that reconnects across broker restarts."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from types import TracebackType
from typing import Self

from aedfleet.mqtt import (
    InboundMessage,
    KeepAliveTicker,
    MqttConnection,
    MqttError,
    MqttSettings,
)


async def eventually(
    condition: Callable[[], bool], timeout_s: float, what: str, every_s: float = 0.01
) -> None:
    """Wait until ``condition()`` holds, failing with ``what`` after ``timeout_s``.

    Conditions that query a server (InfluxDB, the store) poll less often (``every_s``).
    """
    async with asyncio.timeout(timeout_s):
        # The conditions are arbitrary predicates over recorded state, so poll them.
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(every_s)
    if not condition():
        raise AssertionError(what)


class Recorder:
    def __init__(
        self, settings: MqttSettings, ticker: KeepAliveTicker, topic_filter: str, name: str
    ) -> None:
        self.settings = settings
        self.messages: list[InboundMessage] = []
        self._ticker = ticker
        self._filter = topic_filter
        self._name = name
        self._task: asyncio.Task[None] | None = None
        self.subscribed = asyncio.Event()
        self.subscriptions = 0

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self._run())
        async with asyncio.timeout(10):
            await self.subscribed.wait()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def on(self, topic_suffix: str) -> list[InboundMessage]:
        return [m for m in self.messages if m.topic.endswith(topic_suffix)]

    async def _run(self) -> None:
        while True:
            connection = MqttConnection(
                self.settings,
                self._name,
                self._ticker,
                clean_start=False,
                session_expiry_s=600,
                on_message=self.messages.append,
            )
            try:
                await connection.connect()
                await connection.subscribe(self._filter, qos=1)
            except MqttError:
                connection.abort()
                await asyncio.sleep(0.05)
                continue
            self.subscriptions += 1
            self.subscribed.set()
            try:
                await connection.wait_closed()
            finally:
                connection.abort()
