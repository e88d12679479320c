"""Delivery attempts against a real HTTP receiver on loopback (and a real Mosquitto)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from aedfleet.contract import DispatchEvent, Event, EventType, dispatch_subscription
from aedfleet.mqtt import KeepAliveTicker, MqttConnection
from aedfleet_testing.brokers import MosquittoBroker, broker_settings, free_port, make_test_pki
from aedfleet_testing.dispatch_support import (
    BEARER_TOKEN,
    HMAC_SECRET,
    DispatchReceiver,
    registry,
)
from dispatch.config import BearerAuth, EndpointSettings, HmacAuth
from dispatch.enrichment import build_event, particulars_by_cabinet
from dispatch.errors import DeliveryError
from dispatch.incident import CoalescingPolicy, observe
from dispatch.sender import (
    KIND_HEADER,
    HttpTransport,
    MqttTransport,
    idempotency_key,
    tls_context,
)
from dispatch.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER
from tests.recorder import Recorder, eventually

BOOT = "d" * 32


def sample_event(cabinet_id: str = "SZ-1") -> DispatchEvent:
    now = datetime.now(UTC)
    message = Event(
        v=1, cabinet_id=cabinet_id, boot_id=BOOT, seq=7, ts=now, event=EventType.DOOR_OPENED
    )
    [notice] = observe(None, message, now, CoalescingPolicy()).notices
    return build_event(notice, particulars_by_cabinet(registry([cabinet_id])).get(cabinet_id), None)


def endpoint(url: str, **values: Any) -> EndpointSettings:
    return EndpointSettings.model_validate({"name": "cc", "url": url, "timeout_s": 5, **values})


def hmac_auth() -> HmacAuth:
    return HmacAuth.model_validate({"secret": HMAC_SECRET})


async def test_a_signed_json_post_is_verified_by_the_receiver() -> None:
    event = sample_event("深圳 南山, 1")
    async with (
        DispatchReceiver() as receiver,
        HttpTransport(endpoint(receiver.url(), auth=hmac_auth())) as transport,
    ):
        assert await transport.send(event, datetime.now(UTC)) == 200
    [arrival] = receiver.arrivals
    assert arrival.event() == event
    assert arrival.headers["Content-Type"] == "application/json"
    assert unquote(arrival.key) == event.event_id
    assert arrival.key == idempotency_key(event)
    assert arrival.key.isascii()
    assert arrival.headers[KIND_HEADER] == "alert"
    assert arrival.headers[SIGNATURE_HEADER].startswith("v1=")
    assert TIMESTAMP_HEADER in arrival.headers
    assert receiver.refused == []


async def test_a_wrong_secret_is_refused_and_reported_with_its_status() -> None:
    async with (
        DispatchReceiver() as receiver,
        HttpTransport(
            endpoint(receiver.url(), auth=HmacAuth.model_validate({"secret": "x" * 32}))
        ) as transport,
    ):
        with pytest.raises(DeliveryError) as caught:
            await transport.send(sample_event(), datetime.now(UTC))
    assert caught.value.status == 401
    assert caught.value.endpoint == "cc"
    assert receiver.refused == ["mismatch"]
    assert receiver.arrivals == []


async def test_a_stale_signature_is_refused() -> None:
    async with (
        DispatchReceiver() as receiver,
        HttpTransport(endpoint(receiver.url(), auth=hmac_auth())) as transport,
    ):
        with pytest.raises(DeliveryError, match="401"):
            await transport.send(sample_event(), datetime.now(UTC) - timedelta(minutes=10))
    assert receiver.refused == ["stale"]


async def test_bearer_tokens_from_the_config_or_a_file(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(BEARER_TOKEN + "\n", encoding="utf-8")
    async with DispatchReceiver(secret=None, token=BEARER_TOKEN) as receiver:
        for auth in (
            BearerAuth.model_validate({"token": BEARER_TOKEN}),
            BearerAuth(token_file=token_file),
        ):
            async with HttpTransport(endpoint(receiver.url(), auth=auth)) as transport:
                await transport.send(sample_event(), datetime.now(UTC))
        async with HttpTransport(endpoint(receiver.url())) as anonymous:
            with pytest.raises(DeliveryError, match="401"):
                await anonymous.send(sample_event(), datetime.now(UTC))
    assert len(receiver.arrivals) == 2
    assert receiver.refused == ["bearer"]


async def test_cap_endpoints_get_xml() -> None:
    async with (
        DispatchReceiver() as receiver,
        HttpTransport(endpoint(receiver.url(), auth=hmac_auth(), format="cap")) as transport,
    ):
        await transport.send(sample_event(), datetime.now(UTC))
    [arrival] = receiver.arrivals
    assert arrival.headers["Content-Type"] == "application/xml"
    assert arrival.cap().tag.endswith("}alert")


async def test_server_errors_and_an_absent_server_are_delivery_errors() -> None:
    async with (
        DispatchReceiver(secret=None, responder=lambda _: 503) as receiver,
        HttpTransport(endpoint(receiver.url())) as transport,
    ):
        with pytest.raises(DeliveryError) as caught:
            await transport.send(sample_event(), datetime.now(UTC))
    assert caught.value.status == 503
    async with HttpTransport(endpoint(f"http://127.0.0.1:{free_port()}/x")) as transport:
        with pytest.raises(DeliveryError, match="cannot post") as refused:
            await transport.send(sample_event(), datetime.now(UTC))
    assert refused.value.status is None


async def test_a_slow_server_times_out() -> None:
    async with DispatchReceiver(secret=None) as receiver:
        receiver.gate = asyncio.Event()
        async with HttpTransport(endpoint(receiver.url(), timeout_s=0.3)) as transport:
            with pytest.raises(DeliveryError, match=r"within 0\.3 s"):
                await transport.send(sample_event(), datetime.now(UTC))
        receiver.gate.set()


async def test_tls_is_verified_by_default(tmp_path: Path) -> None:
    pki = make_test_pki(tmp_path / "pki")
    async with DispatchReceiver(tls=(pki.server_cert, pki.server_key)) as receiver:
        url = receiver.url()
        assert url.startswith("https://localhost:")
        async with HttpTransport(endpoint(url, auth=hmac_auth())) as untrusting:
            with pytest.raises(DeliveryError, match=r"TLS|certificate"):
                await untrusting.send(sample_event(), datetime.now(UTC))
        async with HttpTransport(
            endpoint(url, auth=hmac_auth(), ca_file=str(pki.ca_cert))
        ) as trusting:
            assert await trusting.send(sample_event(), datetime.now(UTC)) == 200
        async with HttpTransport(endpoint(url, auth=hmac_auth(), tls_verify=False)) as careless:
            assert await careless.send(sample_event(), datetime.now(UTC)) == 200
    assert len(receiver.arrivals) == 2


def test_a_missing_ca_file_is_a_delivery_error(tmp_path: Path) -> None:
    settings = endpoint("https://localhost:1/x", ca_file=str(tmp_path / "missing.pem"))
    with pytest.raises(DeliveryError, match="CA file"):
        tls_context(settings)


async def test_mqtt_republication(broker: MosquittoBroker, ticker: KeepAliveTicker) -> None:
    settings = broker_settings(broker)
    event = sample_event()
    held: list[MqttConnection] = []
    transport = MqttTransport(lambda: held[0] if held else None)
    with pytest.raises(DeliveryError, match="not connected"):
        await transport.send(event, datetime.now(UTC))
    async with (
        Recorder(settings, ticker, dispatch_subscription(), "watch-dispatch") as watcher,
        MqttConnection(settings, "dispatch-sender-test", ticker) as connection,
    ):
        held.append(connection)
        assert await transport.send(event, datetime.now(UTC)) is None
        await eventually(lambda: bool(watcher.messages), 10, "nothing republished")
    [message] = watcher.messages
    assert message.topic == "aedfleet/dispatch/v1/SZ-1"
    assert DispatchEvent.model_validate_json(message.payload) == event
