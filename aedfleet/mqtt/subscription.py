"""Staying subscribed: connect, subscribe, hold the connection until it drops, again.

The ingest and the dispatch service each keep one subscription for as long as they run,
on different connection classes (the ingest's :class:`~aedfleet.mqtt_consumer.
ConsumerConnection`, paho's :class:`~aedfleet.mqtt.MqttConnection` for dispatch); this
loop is what they share. A failed attempt waits with backoff and full jitter; a dropped
connection waits one first-step delay, so that a fleet of services that lost the broker
together do not all come back in the same instant.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from typing import NoReturn, Protocol, TypeVar

from aedfleet.backoff import BackoffSettings, reconnect_delay
from aedfleet.mqtt import MqttError

__all__ = ["Subscriber", "keep_subscribed"]

log = logging.getLogger(__name__)


class Subscriber(Protocol):
    async def connect(self) -> object: ...

    async def subscribe(self, topic_filter: str, qos: int = 1) -> None: ...

    async def wait_closed(self) -> str: ...

    def abort(self) -> None: ...


S = TypeVar("S", bound=Subscriber)


async def keep_subscribed(
    name: str,
    new_connection: Callable[[], S],
    topic_filter: str,
    endpoint: str,
    reconnect: BackoffSettings,
    rng: random.Random,
    on_up: Callable[[S], None],
    on_down: Callable[[S], None],
) -> NoReturn:
    """Keep ``topic_filter`` subscribed at QoS 1 until cancelled.

    ``on_up`` runs once a connection is subscribed; ``on_down`` once it has closed (or
    the loop is cancelled), after it was aborted, so nothing more arrives on it.
    """
    failures = 0
    while True:
        connection = new_connection()
        try:
            await connection.connect()
            await connection.subscribe(topic_filter, qos=1)
        except MqttError as exc:
            connection.abort()
            delay = reconnect_delay(reconnect, failures, rng)
            failures += 1
            log.warning("%s: %s; retrying in %.1f s", name, exc, delay)
            await asyncio.sleep(delay)
            continue
        failures = 0
        on_up(connection)
        log.info("%s: subscribed to %s on %s", name, topic_filter, endpoint)
        try:
            reason = await connection.wait_closed()
        finally:
            connection.abort()
            on_down(connection)
        log.warning("%s: %s; reconnecting", name, reason)
        await asyncio.sleep(reconnect_delay(reconnect, 0, rng))
