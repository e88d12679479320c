"""Adapters that make one delivery attempt: HTTPS endpoints (aiohttp) and the MQTT
republication. Both implement :class:`Transport`; the lanes in :mod:`dispatch.delivery`
decide when to call them.

HTTP: one ``aiohttp.ClientSession`` per endpoint, keeping connections alive, so that a
door event does not pay for a TCP and TLS handshake. Certificates are verified unless
the endpoint says ``tls_verify = false``; ``ca_file`` names a private CA. Each request
carries ``Idempotency-Key`` (the event id, percent-encoded), the endpoint's auth
(bearer token, or a fresh HMAC signature and timestamp per attempt) and the body in the
endpoint's format. A 2xx answer is a delivery; anything else, a timeout or a network
error is a :class:`~dispatch.errors.DeliveryError` (with the status, if one came).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable
from datetime import datetime
from types import TracebackType
from typing import Final, Protocol, Self
from urllib.parse import quote

import aiohttp

from aedfleet.contract import DispatchEvent, dispatch_topic
from aedfleet.mqtt import MqttConnection, MqttError
from dispatch.config import MQTT_ENDPOINT, BearerAuth, EndpointSettings, HmacAuth
from dispatch.errors import DeliveryError
from dispatch.formats import encode_json, render
from dispatch.signing import IDEMPOTENCY_HEADER, bearer_headers, signed_headers

USER_AGENT: Final = "aedfleet-dispatch/1"
KIND_HEADER: Final = "X-AEDFleet-Kind"
ERROR_TEXT_LIMIT: Final = 300


class Transport(Protocol):
    """Makes one attempt to deliver a message; raises DeliveryError when it does not."""

    name: str

    async def send(self, event: DispatchEvent, now: datetime) -> int | None:
        """Deliver ``event``; returns the HTTP status, or None for a transport without one."""
        ...


def idempotency_key(event: DispatchEvent) -> str:
    """The event id as an HTTP header value (headers are ASCII; cabinet ids need not be)."""
    return quote(event.event_id, safe="/")


def tls_context(settings: EndpointSettings) -> ssl.SSLContext | bool:
    """The endpoint's TLS policy for aiohttp: verified by default, against ``ca_file``."""
    if not settings.tls_verify:
        return False
    try:
        return ssl.create_default_context(
            cafile=str(settings.ca_file) if settings.ca_file else None
        )
    except (OSError, ssl.SSLError) as exc:
        raise DeliveryError(
            settings.name, f"cannot load CA file {settings.ca_file}: {exc}"
        ) from None


class HttpTransport:
    """One endpoint over HTTP(S). Use as an async context manager."""

    def __init__(self, settings: EndpointSettings) -> None:
        self.settings = settings
        self.name = settings.name
        self._session: aiohttp.ClientSession | None = None
        auth = settings.auth
        self._token = auth.credential().get_secret_value() if isinstance(auth, BearerAuth) else None
        self._hmac_key = (
            auth.credential().get_secret_value().encode() if isinstance(auth, HmacAuth) else None
        )

    async def __aenter__(self) -> Self:
        connector = aiohttp.TCPConnector(
            ssl=tls_context(self.settings), limit=self.settings.max_concurrent
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self.settings.timeout_s),
            headers={"User-Agent": USER_AGENT},
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def headers(
        self, event: DispatchEvent, body: bytes, content_type: str, now: datetime
    ) -> dict[str, str]:
        headers = {
            "Content-Type": content_type,
            IDEMPOTENCY_HEADER: idempotency_key(event),
            KIND_HEADER: event.kind.value,
        }
        if self._token is not None:
            headers |= bearer_headers(self._token)
        if self._hmac_key is not None:
            headers |= signed_headers(self._hmac_key, body, now)
        return headers

    async def send(self, event: DispatchEvent, now: datetime) -> int | None:
        session = self._session
        if session is None:
            raise DeliveryError(self.name, "the HTTP transport is not open")
        settings = self.settings
        body, content_type = render(event, settings.format, settings.cap)
        headers = self.headers(event, body, content_type, now)
        url = str(settings.url)
        try:
            async with session.post(url, data=body, headers=headers) as response:
                answer = await response.read()
                status = response.status
        except TimeoutError:
            raise DeliveryError(
                self.name, f"no answer from {url} within {settings.timeout_s:g} s"
            ) from None
        except aiohttp.ClientSSLError as exc:
            raise DeliveryError(self.name, f"TLS with {url} failed: {exc}") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise DeliveryError(self.name, f"cannot post to {url}: {exc}") from None
        if 200 <= status < 300:
            return status
        text = answer[:ERROR_TEXT_LIMIT].decode("utf-8", "replace")
        raise DeliveryError(self.name, f"{url} answered HTTP {status}: {text}", status)


class MqttTransport:
    """Republishes on ``aedfleet/dispatch/v1/{cabinet_id}`` (QoS 1, waits for the PUBACK)
    over the service's own broker connection; while there is none, an attempt waits up
    to ``wait_s`` for ``connected`` (the service's subscription) before it fails."""

    name = MQTT_ENDPOINT

    def __init__(
        self,
        connection: Callable[[], MqttConnection | None],
        connected: asyncio.Event | None = None,
        wait_s: float = 0,
    ) -> None:
        self._connection = connection
        self._connected = connected
        self._wait_s = wait_s

    async def send(self, event: DispatchEvent, now: datetime) -> int | None:
        if self._connected is not None and not self._connected.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._connected.wait(), self._wait_s)
        connection = self._connection()
        if connection is None or not connection.is_connected:
            raise DeliveryError(self.name, "not connected to the broker")
        try:
            await connection.publish_confirmed(dispatch_topic(event.cabinet_id), encode_json(event))
        except MqttError as exc:
            raise DeliveryError(self.name, str(exc)) from None
        return None
