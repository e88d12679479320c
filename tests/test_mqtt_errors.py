"""Both MQTT adapters raise the same error for the same failure, against a real Mosquitto.

The paho adapter (:class:`MqttConnection`) and the ingest's consumer
(:class:`ConsumerConnection`) are run through one suite: a subscription or a publish the
broker refuses, and a broker that stays connected but answers nothing.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Protocol

import pytest
from pydantic import SecretStr

from aedfleet.mqtt import (
    KeepAliveTicker,
    MqttConnection,
    MqttQueueFullError,
    MqttRefusedError,
    MqttSettings,
    MqttTimeoutError,
)
from aedfleet.mqtt.consumer import ConsumerConnection
from aedfleet_testing.brokers import MosquittoBroker, broker_settings, free_port

NOT_AUTHORIZED = 0x87
USER, PASSWORD = "operator", "s3cret-enough"
FORBIDDEN = "forbidden/x"


class Connection(Protocol):
    @property
    def is_connected(self) -> bool: ...

    async def subscribe(self, topic_filter: str, qos: int = 1) -> None: ...

    async def publish_confirmed(self, topic: str, payload: bytes) -> None: ...


Connect = Callable[[MqttSettings], AbstractAsyncContextManager[Connection]]


@pytest.fixture(params=["paho", "consumer"])
async def connect(request: pytest.FixtureRequest) -> AsyncIterator[Connect]:
    async with KeepAliveTicker() as ticker:
        if request.param == "paho":
            yield lambda settings: MqttConnection(settings, "errors-paho", ticker)
        else:
            yield lambda settings: ConsumerConnection(settings, "errors-consumer")


def dynamic_security_plugin() -> Path:
    found = sorted(Path("/usr/lib").glob("*/mosquitto_dynamic_security.so"))
    assert found, "Mosquitto's dynamic security plugin is not installed (Debian: mosquitto)"
    return found[0]


@pytest.fixture
def refusing_broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """A Mosquitto whose dynamic security plugin denies one login subscribing to and
    publishing on ``forbidden/#`` (the plain ACL file of Mosquitto 2.0.11 grants every
    SUBSCRIBE), so the SUBACK and PUBACK carry 0x87 Not authorized."""
    workdir = tmp_path / "broker"
    workdir.mkdir()
    config = workdir / "dynsec.json"
    subprocess.run(
        ["mosquitto_ctrl", "dynsec", "init", str(config), USER, PASSWORD],
        check=True,
        capture_output=True,
    )
    document = json.loads(config.read_text())
    (role,) = document["roles"]
    role["acls"] = [
        {"acltype": "subscribePattern", "topic": "forbidden/#", "priority": 9, "allow": False},
        {"acltype": "publishClientSend", "topic": "forbidden/#", "priority": 9, "allow": False},
        {"acltype": "subscribePattern", "topic": "#", "allow": True},
        {"acltype": "publishClientSend", "topic": "#", "allow": True},
        {"acltype": "publishClientReceive", "topic": "#", "allow": True},
    ]
    config.write_text(json.dumps(document))
    port = free_port()
    listeners = (
        f"listener {port} 127.0.0.1\n"
        f"plugin {dynamic_security_plugin()}\n"
        f"plugin_opt_config_file {config}"
    )
    instance = MosquittoBroker(workdir, listeners=listeners, port=port)
    instance.start()
    yield instance
    instance.stop()


def login(broker: MosquittoBroker) -> MqttSettings:
    return broker_settings(broker).model_copy(
        update={"username": USER, "password": SecretStr(PASSWORD)}
    )


@pytest.mark.broker  # refusing_broker is this module's own
async def test_a_refused_subscription_keeps_the_brokers_reason_code(
    refusing_broker: MosquittoBroker, connect: Connect
) -> None:
    async with connect(login(refusing_broker)) as connection:
        await connection.subscribe("allowed/#")
        with pytest.raises(
            MqttRefusedError, match=f"subscription to {FORBIDDEN}: Not auth"
        ) as info:
            await connection.subscribe(FORBIDDEN)
        assert info.value.reason_code == NOT_AUTHORIZED
        assert connection.is_connected


@pytest.mark.broker  # refusing_broker is this module's own
async def test_a_refused_publish_keeps_the_brokers_reason_code(
    refusing_broker: MosquittoBroker, connect: Connect
) -> None:
    async with connect(login(refusing_broker)) as connection:
        await connection.publish_confirmed("allowed/x", b"fine")
        with pytest.raises(MqttRefusedError, match="refused the publish: Not authorized") as info:
            await connection.publish_confirmed(FORBIDDEN, b"refused")
        assert info.value.reason_code == NOT_AUTHORIZED
        assert connection.is_connected


async def test_a_connected_broker_that_answers_nothing_is_a_timeout(
    broker: MosquittoBroker, connect: Connect
) -> None:
    settings = broker_settings(broker).model_copy(update={"connect_timeout_s": 0.5})
    async with connect(settings) as connection:
        broker.pause()
        try:
            with pytest.raises(MqttTimeoutError, match=r"no PUBACK for t/a .* within 0\.5 s"):
                await connection.publish_confirmed("t/a", b"unanswered")
            with pytest.raises(MqttTimeoutError, match=r"no SUBACK for t/# .* within 0\.5 s"):
                await connection.subscribe("t/#")
            assert connection.is_connected
        finally:
            broker.resume()


async def test_publishing_beyond_the_outgoing_bound_is_an_error_not_a_drop(
    broker: MosquittoBroker, ticker: KeepAliveTicker
) -> None:
    acknowledged: list[int] = []
    all_acknowledged = asyncio.Event()

    def on_published(mid: int) -> None:
        acknowledged.append(mid)
        if len(acknowledged) == 2:
            all_acknowledged.set()

    async with MqttConnection(
        broker_settings(broker),
        "bounded",
        ticker,
        max_inflight=1,
        max_queued=2,
        on_published=on_published,
    ) as connection:
        # No PUBACK is read while this code holds the event loop.
        held = [connection.publish("t/a", b"1"), connection.publish("t/a", b"2")]
        with pytest.raises(MqttQueueFullError, match=r"2 messages to .* are not yet acknowledged"):
            connection.publish("t/a", b"3")
        await asyncio.wait_for(all_acknowledged.wait(), 5)
        assert sorted(acknowledged) == sorted(held)
        connection.publish("t/a", b"3")


@pytest.mark.parametrize(("max_inflight", "max_queued"), [(20, 10), (0, 10), (1, 65_536)])
async def test_an_impossible_outgoing_bound_is_refused(
    ticker: KeepAliveTicker, max_inflight: int, max_queued: int
) -> None:
    with pytest.raises(ValueError, match="1 <= max_inflight <= max_queued <= 65535"):
        MqttConnection(
            MqttSettings(), "bad", ticker, max_inflight=max_inflight, max_queued=max_queued
        )
