"""A service that is stopped while it waits for a PUBACK stops.

Python 3.11's ``asyncio.wait_for`` returns the awaited result instead of raising
``CancelledError`` when the result and the cancellation arrive in the same turn of the
event loop (CPython gh-86296); the task then carries on and its ``TaskGroup`` never ends.
It hung the ingest's shutdown when it was stopped as a dead letter's PUBACK came in. Both
adapters are driven here into exactly that turn.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from aedfleet.mqtt import InboundMessage, KeepAliveTicker, MqttConnection, MqttSettings
from aedfleet.mqtt.consumer import ConsumerConnection
from aedfleet_testing.brokers import MosquittoBroker, broker_settings

CONNACK = b"\x20\x03\x00\x00\x00"
"""Session not present, success, no properties."""
QOS0_PUBLISH = b"\x30\x05\x00\x01t\x00x"
"""Topic ``t``, no properties, payload ``x``."""


async def test_the_paho_adapter_is_cancelled_when_the_puback_arrives_in_the_same_turn(
    broker: MosquittoBroker, ticker: KeepAliveTicker
) -> None:
    publishing: asyncio.Task[None] | None = None

    def cancel_on_puback(_mid: int) -> None:
        # Runs right after the adapter resolved the PUBACK's waiter, before the task resumes.
        if publishing is not None:
            publishing.cancel()

    async with MqttConnection(
        broker_settings(broker), "stopping", ticker, on_published=cancel_on_puback
    ) as connection:
        publishing = asyncio.create_task(connection.publish_confirmed("t", b"x"))
        with pytest.raises(asyncio.CancelledError):
            await publishing


@pytest.fixture
async def answering_peer() -> AsyncIterator[int]:
    """An MQTT peer that answers a QoS 1 PUBLISH with its PUBACK and a delivery in one
    write, so that both are read at once, as they are from a busy broker."""
    served: list[asyncio.Task[None]] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.read(1024)  # CONNECT
            writer.write(CONNACK)
            header = await reader.readexactly(2)
            body = await reader.readexactly(header[1])
            topic_length = int.from_bytes(body[:2], "big")
            packet_id = body[2 + topic_length : 4 + topic_length]
            writer.write(b"\x40\x02" + packet_id + QOS0_PUBLISH)
            await writer.drain()
            while await reader.read(1024):  # until the client closes
                pass
        finally:
            writer.close()
            await writer.wait_closed()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        served.append(task)
        await answer(reader, writer)

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    async with server:
        yield int(server.sockets[0].getsockname()[1])
        async with asyncio.timeout(5):
            await asyncio.gather(*served)


async def test_the_consumer_is_cancelled_when_the_puback_arrives_in_the_same_turn(
    answering_peer: int,
) -> None:
    publishing: asyncio.Task[None] | None = None

    def cancel_on_delivery(_messages: list[InboundMessage]) -> None:
        # Called in the same read that resolved the PUBACK's waiter.
        if publishing is not None:
            publishing.cancel()

    settings = MqttSettings(host="127.0.0.1", port=answering_peer, connect_timeout_s=5)
    async with ConsumerConnection(
        settings, "stopping", on_messages=cancel_on_delivery
    ) as connection:
        publishing = asyncio.create_task(connection.publish_confirmed("t", b"x"))
        with pytest.raises(asyncio.CancelledError):
            await publishing
