"""keep_subscribed against a real Mosquitto: up, down with the broker, up again, and out."""

from __future__ import annotations

import asyncio
import contextlib
import random

from aedfleet.backoff import BackoffSettings
from aedfleet.mqtt.consumer import ConsumerConnection
from aedfleet.mqtt.subscription import keep_subscribed
from aedfleet_testing.brokers import MosquittoBroker, broker_settings
from tests.recorder import eventually

FAST = BackoffSettings(initial_s=0.05, max_s=0.2)


async def test_the_subscription_comes_back_after_the_broker_and_ends_when_cancelled(
    broker: MosquittoBroker,
) -> None:
    settings = broker_settings(broker)
    made: list[ConsumerConnection] = []
    changes: list[tuple[str, int]] = []
    received: list[bytes] = []

    def new_connection() -> ConsumerConnection:
        made.append(
            ConsumerConnection(
                settings,
                "keeper",
                on_messages=lambda messages: received.extend(m.payload for m in messages),
            )
        )
        return made[-1]

    def up(connection: ConsumerConnection) -> None:
        changes.append(("up", made.index(connection)))

    def down(connection: ConsumerConnection) -> None:
        changes.append(("down", made.index(connection)))

    task = asyncio.create_task(
        keep_subscribed(
            "test", new_connection, "kept/#", settings.endpoint, FAST, random.Random(1), up, down
        )
    )
    try:
        await eventually(lambda: changes == [("up", 0)], 10, "not subscribed")
        async with ConsumerConnection(settings, "sender") as sender:
            await sender.publish_confirmed("kept/a", b"first")
        await eventually(lambda: received == [b"first"], 10, "not delivered")

        broker.stop()
        await eventually(lambda: changes[-1:] == [("down", 0)], 10, "the drop went unseen")
        # Attempts while the broker is away fail and are retried, each a new connection.
        await eventually(lambda: len(made) >= 3, 10, "no retries while the broker is away")
        broker.start()
        await eventually(lambda: changes[-1][0] == "up", 10, "not subscribed again")
        resubscribed = changes[-1][1]
        async with ConsumerConnection(settings, "sender") as sender:
            await sender.publish_confirmed("kept/b", b"second")
        await eventually(lambda: received[-1:] == [b"second"], 10, "not delivered again")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    # Only successful attempts were reported, and the last one was closed on the way out.
    assert changes == [("up", 0), ("down", 0), ("up", resubscribed), ("down", resubscribed)]
    assert resubscribed >= 2
