"""TLS and username/password, as a deployment configures them, against a real Mosquitto."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from aedfleet.contract import IDENTITY_PROPERTY
from aedfleet.mqtt import (
    KeepAliveTicker,
    MqttConnectError,
    MqttConnection,
    MqttSettings,
    TlsSettings,
)
from aedfleet_testing.brokers import MosquittoBroker, TlsFiles, make_test_pki
from tests.recorder import Recorder, eventually
from tests.scripted_hardware import ScriptedHardware
from tests.test_agent_broker import running_agent

# Every test here starts a Mosquitto of its own, in a module fixture or its body.
pytestmark = pytest.mark.broker


@pytest.fixture
def pki(tmp_path: Path) -> TlsFiles:
    return make_test_pki(tmp_path / "pki")


@pytest.fixture
def secure_broker(tmp_path: Path, pki: TlsFiles) -> Iterator[MosquittoBroker]:
    broker = MosquittoBroker(tmp_path / "broker", tls=pki, users={"cabinet-7": "s3cret-7"})
    broker.start()
    yield broker
    broker.stop()


def secure_settings(broker: MosquittoBroker, ca: Path, password: str) -> MqttSettings:
    return MqttSettings(
        host="127.0.0.1",
        port=broker.port,
        username="cabinet-7",
        password=SecretStr(password),
        tls=TlsSettings(ca_file=str(ca)),
        connect_timeout_s=5,
    )


async def test_agent_connects_over_tls_with_a_password(
    secure_broker: MosquittoBroker, pki: TlsFiles, ticker: KeepAliveTicker, tmp_path: Path
) -> None:
    settings = secure_settings(secure_broker, pki.ca_cert, "s3cret-7")
    async with running_agent(
        "CAB-T1", settings, ticker, tmp_path / "o.db", ScriptedHardware()
    ) as agent:
        await asyncio.wait_for(agent.connected.wait(), 10)
        await eventually(lambda: agent.stats.acknowledged >= 3, 10, "events not acknowledged")


async def test_every_message_names_the_login_it_was_published_under(
    secure_broker: MosquittoBroker, pki: TlsFiles, ticker: KeepAliveTicker, tmp_path: Path
) -> None:
    settings = secure_settings(secure_broker, pki.ca_cert, "s3cret-7")
    async with (
        Recorder(settings, ticker, "aed/v1/CAB-T1/#", "witness") as witness,
        running_agent("CAB-T1", settings, ticker, tmp_path / "o.db", ScriptedHardware()) as agent,
    ):
        await eventually(lambda: agent.stats.acknowledged >= 3, 10, "events not acknowledged")
        await eventually(lambda: len(witness.messages) >= 3, 10, "nothing reached the witness")
    channels = {message.topic.rsplit("/", 1)[1] for message in witness.messages}
    assert {"birth", "status"} <= channels
    for message in witness.messages:
        assert message.user_properties == ((IDENTITY_PROPERTY, "cabinet-7"),), message.topic


async def test_a_wrong_password_is_refused_with_a_clear_error(
    secure_broker: MosquittoBroker, pki: TlsFiles, ticker: KeepAliveTicker
) -> None:
    settings = secure_settings(secure_broker, pki.ca_cert, "wrong")
    with pytest.raises(MqttConnectError, match="refused the connection"):
        await MqttConnection(settings, "intruder", ticker).connect()


async def test_an_untrusted_server_certificate_is_refused(
    secure_broker: MosquittoBroker, ticker: KeepAliveTicker, tmp_path: Path
) -> None:
    other_ca = make_test_pki(tmp_path / "other").ca_cert
    settings = secure_settings(secure_broker, other_ca, "s3cret-7")
    with pytest.raises(MqttConnectError, match="certificate verify failed"):
        await MqttConnection(settings, "fooled", ticker).connect()
