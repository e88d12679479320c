"""What crosses an MQTT adapter's interface besides settings and errors."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Will:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


@dataclass(frozen=True, slots=True)
class InboundMessage:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    mid: int = 0
    user_properties: tuple[tuple[str, str], ...] = ()
    """MQTT 5 User Property pairs in the order sent; empty in MQTT 3.1.1."""


async def await_answer(waiter: asyncio.Future[T], timeout_s: float) -> T:
    """Wait for a broker's answer (PUBACK, SUBACK) for at most ``timeout_s``.

    Not ``asyncio.wait_for``: on Python 3.11 it returns the result instead of raising
    ``CancelledError`` when the answer and a cancellation arrive in the same turn of the
    loop (CPython gh-86296), so a service stopped just then would carry on.
    """
    async with asyncio.timeout(timeout_s):
        return await waiter
