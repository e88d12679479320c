"""Time as the services see it, injected so that rules and simulations can be tested.

``SystemClock`` is the real one. ``ScaledClock`` runs faster than wall time so that a
simulated fleet lives through days of self-tests and expiry dates within minutes.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware in UTC."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's time."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class ScaledClock:
    """Clock time starts at ``start`` and advances ``scale`` times faster than wall time."""

    def __init__(self, start: datetime, scale: float) -> None:
        if scale <= 0:
            raise ValueError("clock scale must be positive")
        if start.tzinfo is None:
            raise ValueError("clock start must be timezone-aware")
        self.scale = scale
        self._start = start.astimezone(UTC)
        self._wall_origin = time.monotonic()

    def now(self) -> datetime:
        elapsed = (time.monotonic() - self._wall_origin) * self.scale
        return self._start + timedelta(seconds=elapsed)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds / self.scale)
