from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from aedfleet.mqtt import KeepAliveTicker, MqttSettings
from tests.brokers import MosquittoBroker
from tests.influx import fresh_influx_server, influx_database, influx_server  # noqa: F401


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """A fresh Mosquitto of this test's own, without persistence."""
    instance = MosquittoBroker(tmp_path / "broker")
    instance.start()
    yield instance
    instance.stop()


@pytest.fixture
def persistent_broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """A Mosquitto that keeps sessions and queued messages across a restart."""
    instance = MosquittoBroker(tmp_path / "broker", persistence=True)
    instance.start()
    yield instance
    instance.stop()


def broker_settings(broker: MosquittoBroker) -> MqttSettings:
    return MqttSettings(host="127.0.0.1", port=broker.port, keepalive_s=5, connect_timeout_s=5)


@pytest.fixture
async def ticker() -> AsyncIterator[KeepAliveTicker]:
    async with KeepAliveTicker() as instance:
        yield instance
