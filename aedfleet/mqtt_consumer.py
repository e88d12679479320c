"""MQTT 5 consumer connection: the protocol spoken directly on an asyncio transport.

Built for one job, draining a high rate of QoS 1 deliveries that are acknowledged only
after they are stored (the ingest). Measured here (``docs/benchmarks.md``), the general
adapter of :mod:`aedfleet.mqtt` (paho-mqtt) costs about 35 µs per delivery on this
machine: paho reads each PUBLISH with four ``recv`` calls, builds an MQTT 5
``Properties`` object for it and sends each PUBACK in a system call of its own. gmqtt
decodes faster but defers a PUBACK only by running ``on_message`` as an asyncio task per
delivery that returns the reason code later. This module instead:

- decodes every packet a read returned in one pass, a few slices per PUBLISH (its
  properties are skipped by length: no topic alias maximum is announced, so the broker
  never replaces a topic by an alias);
- hands the deliveries of one read to ``on_messages`` as one list;
- queues PUBACKs and writes all of those of one loop iteration in one ``send``.

Scope, chosen for the ingest: MQTT 5 only (shared subscriptions, persistent sessions and
the receive maximum as back-pressure are MQTT 5 features), subscriptions at QoS 0 or 1,
publishing at QoS 0 or 1 (dead letters), TLS and username/password, keep-alive. No QoS 2,
no last will, no enhanced authentication: a packet that needs them ends the connection
as a protocol error. Like :class:`aedfleet.mqtt.MqttConnection`, a connection does not
reconnect itself; the caller builds a new one.

Errors are those of :mod:`aedfleet.mqtt`::

    MqttError                  a publish or subscription the broker refused
    ├── MqttConnectError       the broker could not be reached or refused the connection
    └── MqttNotConnectedError  an operation needs a connection that is gone
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Final, Self

from aedfleet.mqtt import (
    InboundMessage,
    MqttConnectError,
    MqttError,
    MqttNotConnectedError,
    MqttSettings,
    await_answer,
)

__all__ = ["ConsumerConnection", "MqttProtocolError"]

log = logging.getLogger(__name__)

_CONNECT: Final = 0x10
_CONNACK: Final = 0x20
_PUBLISH: Final = 0x30
_PUBACK: Final = 0x40
_SUBSCRIBE: Final = 0x82  # the type plus the reserved flags the spec requires
_SUBACK: Final = 0x90
_PINGREQ: Final = b"\xc0\x00"
_PINGRESP: Final = 0xD0
_DISCONNECT: Final = 0xE0
_NORMAL_DISCONNECT: Final = b"\xe0\x00"
_PUBACK_HEADER: Final = b"\x40\x02"  # success needs neither reason code nor properties

# Reason codes a user may see in an error (MQTT 5.0, 2.4); others print as hex.
_REASONS: Final = {
    0x10: "No matching subscribers",
    0x80: "Unspecified error",
    0x81: "Malformed Packet",
    0x82: "Protocol Error",
    0x83: "Implementation specific error",
    0x84: "Unsupported Protocol Version",
    0x85: "Client Identifier not valid",
    0x86: "Bad User Name or Password",
    0x87: "Not authorized",
    0x88: "Server unavailable",
    0x89: "Server busy",
    0x8A: "Banned",
    0x8B: "Server shutting down",
    0x8D: "Keep Alive timeout",
    0x8E: "Session taken over",
    0x8F: "Topic Filter invalid",
    0x90: "Topic Name invalid",
    0x93: "Receive Maximum exceeded",
    0x95: "Packet too large",
    0x97: "Quota exceeded",
    0x99: "Payload format invalid",
    0x9C: "Use another server",
    0x9D: "Server moved",
    0x9E: "Shared Subscriptions not supported",
    0x9F: "Connection rate exceeded",
    0xA1: "Subscription Identifiers not supported",
    0xA2: "Wildcard Subscriptions not supported",
}

# MQTT 5 property identifiers and how their values are encoded (MQTT 5.0, 2.2.2.2).
_BYTE, _TWO, _FOUR, _VARIABLE, _TEXT, _BINARY, _PAIR = range(7)
_PROPERTY_KINDS: Final = {
    0x01: _BYTE,
    0x02: _FOUR,
    0x03: _TEXT,
    0x08: _TEXT,
    0x09: _BINARY,
    0x0B: _VARIABLE,
    0x11: _FOUR,
    0x12: _TEXT,
    0x13: _TWO,
    0x15: _TEXT,
    0x16: _BINARY,
    0x17: _BYTE,
    0x18: _FOUR,
    0x19: _BYTE,
    0x1A: _TEXT,
    0x1C: _TEXT,
    0x1F: _TEXT,
    0x21: _TWO,
    0x22: _TWO,
    0x23: _TWO,
    0x24: _BYTE,
    0x25: _BYTE,
    0x26: _PAIR,
    0x27: _FOUR,
    0x28: _BYTE,
    0x29: _BYTE,
    0x2A: _BYTE,
}
_SERVER_KEEP_ALIVE: Final = 0x13
_RECEIVE_MAXIMUM: Final = 0x21
_REASON_STRING: Final = 0x1F


class MqttProtocolError(MqttError):
    """The broker sent something this connection cannot read; the connection ends."""


def _reason_name(code: int) -> str:
    return _REASONS.get(code, f"reason code 0x{code:02X}")


def _variable_integer(value: int) -> bytes:
    encoded = bytearray()
    while True:
        value, digit = divmod(value, 128)
        encoded.append(digit | 0x80 if value else digit)
        if not value:
            return bytes(encoded)


def _text(value: str) -> bytes:
    raw = value.encode()
    return len(raw).to_bytes(2, "big") + raw


def _binary(value: bytes) -> bytes:
    return len(value).to_bytes(2, "big") + value


def _packet(first_byte: int, body: bytes) -> bytes:
    return bytes((first_byte,)) + _variable_integer(len(body)) + body


def _read_variable_integer(data: bytes, position: int, end: int) -> tuple[int, int]:
    """(value, position after it); raises MqttProtocolError when malformed or cut."""
    value = 0
    for shift in (0, 7, 14, 21):
        if position >= end:
            raise MqttProtocolError("a variable byte integer runs past its packet")
        digit = data[position]
        position += 1
        value |= (digit & 0x7F) << shift
        if not digit & 0x80:
            return value, position
    raise MqttProtocolError("a variable byte integer is longer than four bytes")


def _remaining_length(data: bytes, position: int, end: int) -> tuple[int, int] | None:
    """A fixed header's remaining length and where the packet's body starts, or None
    when the length is not all in ``data`` yet."""
    value = 0
    for shift in (0, 7, 14, 21):
        if position >= end:
            return None
        digit = data[position]
        position += 1
        value |= (digit & 0x7F) << shift
        if not digit & 0x80:
            return value, position
    raise MqttProtocolError("a remaining length is longer than four bytes")


def _read_properties(data: bytes, position: int) -> tuple[dict[int, object], int]:
    """The properties at ``position`` (last value wins) and the position after them."""
    length, position = _read_variable_integer(data, position, len(data))
    end = position + length
    if end > len(data):
        raise MqttProtocolError("properties run past their packet")
    found: dict[int, object] = {}
    while position < end:
        identifier = data[position]
        kind = _PROPERTY_KINDS.get(identifier)
        position += 1
        value: object
        if kind == _BYTE:
            value, position = data[position], position + 1
        elif kind == _TWO:
            value, position = int.from_bytes(data[position : position + 2], "big"), position + 2
        elif kind == _FOUR:
            value, position = int.from_bytes(data[position : position + 4], "big"), position + 4
        elif kind == _VARIABLE:
            value, position = _read_variable_integer(data, position, end)
        elif kind in (_TEXT, _BINARY, _PAIR):
            value, position = _read_binary(data, position, end)
            if kind == _PAIR:
                second, position = _read_binary(data, position, end)
                value = (value, second)
        else:
            raise MqttProtocolError(f"unknown property 0x{identifier:02X}")
        if position > end:
            raise MqttProtocolError(f"property 0x{identifier:02X} runs past its packet")
        found[identifier] = value
    return found, end


def _read_binary(data: bytes, position: int, end: int) -> tuple[bytes, int]:
    stop = position + 2 + int.from_bytes(data[position : position + 2], "big")
    if stop > end:
        raise MqttProtocolError("a string runs past its packet")
    return data[position + 2 : stop], stop


def _publish(first: int, data: bytes, start: int, stop: int) -> InboundMessage:
    """The delivery in the PUBLISH whose body is ``data[start:stop]`` (the hot path)."""
    qos = (first >> 1) & 0x03
    topic_end = start + 2 + (data[start] << 8 | data[start + 1])
    if qos > 1:
        raise MqttProtocolError(f"a QoS {qos} delivery; subscriptions are QoS 0 or 1")
    cursor = topic_end + 2 * qos
    if cursor >= stop:
        raise MqttProtocolError("a PUBLISH ends inside its header")
    packet_id = data[topic_end] << 8 | data[topic_end + 1] if qos else 0
    properties = data[cursor]
    if properties & 0x80:
        properties, cursor = _read_variable_integer(data, cursor, stop)
        cursor += properties
    else:
        cursor += 1 + properties
    if cursor > stop:
        raise MqttProtocolError("a PUBLISH's properties run past it")
    try:
        topic = data[start + 2 : topic_end].decode()
    except UnicodeDecodeError:
        raise MqttProtocolError("a topic name is not UTF-8") from None
    return InboundMessage(topic, data[cursor:stop], qos, bool(first & 0x01), packet_id)


def _reason_text(properties: dict[int, object]) -> str:
    reason = properties.get(_REASON_STRING)
    if isinstance(reason, bytes):
        return f" ({reason.decode(errors='replace')[:200]})"
    return ""


def _ssl_context(settings: MqttSettings) -> ssl.SSLContext | None:
    tls = settings.tls
    if tls is None:
        return None
    context = ssl.create_default_context(cafile=tls.ca_file)
    if tls.cert_file is not None:
        context.load_cert_chain(tls.cert_file, tls.key_file)
    # The certificate chain is verified either way, as paho does with tls_insecure_set.
    context.check_hostname = tls.verify_hostname
    return context


class _Protocol(asyncio.Protocol):
    """Forwards transport events to its connection (which keeps its public API clean)."""

    def __init__(self, connection: ConsumerConnection) -> None:
        self._connection = connection

    def data_received(self, data: bytes) -> None:
        self._connection._data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._connection._connection_lost(exc)


class ConsumerConnection:
    """One MQTT 5 connection that subscribes and acknowledges in bulk.

    ``on_messages`` is called on the event loop with the deliveries of one socket read,
    in arrival order; it must not block. With ``manual_ack`` a QoS 1 delivery stays
    unacknowledged until :meth:`ack` or :meth:`ack_many`, and ``receive_maximum`` caps
    how many the broker sends ahead: that is the back-pressure on a slow consumer.
    """

    def __init__(
        self,
        settings: MqttSettings,
        client_id: str,
        *,
        clean_start: bool = True,
        session_expiry_s: int = 0,
        manual_ack: bool = False,
        receive_maximum: int | None = None,
        on_messages: Callable[[list[InboundMessage]], None] | None = None,
    ) -> None:
        if settings.protocol != "5":
            raise ValueError(
                f"{client_id}: ConsumerConnection speaks MQTT 5 only, not {settings.protocol}"
            )
        if receive_maximum is not None and not 1 <= receive_maximum <= 65_535:
            raise ValueError(f"receive_maximum {receive_maximum} is not within 1 … 65535")
        self.settings = settings
        self.client_id = client_id
        self._clean_start = clean_start
        self._session_expiry_s = session_expiry_s
        self._manual_ack = manual_ack
        self._receive_maximum = receive_maximum
        self._on_messages = on_messages
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._connected: asyncio.Future[bool] = self._loop.create_future()
        self._disconnected: asyncio.Future[str] = self._loop.create_future()
        self._pending: dict[int, asyncio.Future[None]] = {}
        self._next_packet_id = 0
        self._partial = b""
        self._acks = bytearray()
        self._ack_flush_scheduled = False
        self._keepalive_s = settings.keepalive_s
        self._keepalive_timer: asyncio.TimerHandle | None = None
        self._last_received = 0.0
        self._send_quota = 65_535

    @property
    def is_connected(self) -> bool:
        return self._connected.done() and not self._disconnected.done()

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.disconnect()

    # -- connecting --------------------------------------------------------------------

    async def connect(self) -> bool:
        """Open the connection and wait for CONNACK; returns whether a session was resumed."""
        settings = self.settings
        endpoint = settings.endpoint
        timeout_s = settings.connect_timeout_s
        try:
            context = _ssl_context(settings)
            self._transport, _ = await asyncio.wait_for(
                self._loop.create_connection(
                    lambda: _Protocol(self),
                    settings.host,
                    settings.port,
                    ssl=context,
                    server_hostname=settings.host if context is not None else None,
                ),
                timeout_s,
            )
        except TimeoutError:
            self.abort()
            raise MqttConnectError(
                f"{self.client_id}: no TCP connection to {endpoint} within {timeout_s:g} s"
            ) from None
        except OSError as exc:  # ssl.SSLError is an OSError
            self.abort()
            raise MqttConnectError(f"{self.client_id}: cannot reach {endpoint}: {exc}") from None
        self._last_received = self._loop.time()
        self._write(self._connect_packet())
        try:
            return await asyncio.wait_for(asyncio.shield(self._connected), timeout_s)
        except TimeoutError:
            self.abort()
            raise MqttConnectError(
                f"{self.client_id}: {endpoint} sent no CONNACK within {timeout_s:g} s"
            ) from None
        except MqttConnectError:
            self.abort()
            raise

    def _connect_packet(self) -> bytes:
        settings = self.settings
        flags = 0x02 if self._clean_start else 0x00
        properties = b""
        if self._session_expiry_s:
            properties += b"\x11" + self._session_expiry_s.to_bytes(4, "big")
        if self._receive_maximum is not None:
            properties += b"\x21" + self._receive_maximum.to_bytes(2, "big")
        payload = _text(self.client_id)
        if settings.username is not None:
            flags |= 0x80
            payload += _text(settings.username)
        if settings.password is not None:
            flags |= 0x40
            payload += _binary(settings.password.get_secret_value().encode())
        body = (
            b"\x00\x04MQTT\x05"
            + bytes((flags,))
            + settings.keepalive_s.to_bytes(2, "big")
            + _variable_integer(len(properties))
            + properties
            + payload
        )
        return _packet(_CONNECT, body)

    # -- subscribing, acknowledging, publishing ---------------------------------------

    async def subscribe(self, topic_filter: str, qos: int = 1) -> None:
        """Subscribe and wait for the broker's SUBACK."""
        if qos not in (0, 1):
            raise ValueError(f"{self.client_id}: subscriptions are QoS 0 or 1, not {qos}")
        packet_id = self._take_packet_id()
        body = packet_id.to_bytes(2, "big") + b"\x00" + _text(topic_filter) + bytes((qos,))
        await self._request(packet_id, _packet(_SUBSCRIBE, body), f"SUBACK for {topic_filter}")

    def ack(self, message: InboundMessage) -> None:
        """Acknowledge a delivery; the PUBACKs of one loop iteration go in one write.

        A lost connection drops it silently: the broker redelivers what is unacknowledged.
        """
        if message.qos == 1:
            self._acks += _PUBACK_HEADER
            self._acks += message.mid.to_bytes(2, "big")
            if not self._ack_flush_scheduled:
                self._ack_flush_scheduled = True
                self._loop.call_soon(self._flush_acks)

    def ack_many(self, messages: Iterable[InboundMessage]) -> None:
        """Acknowledge deliveries now, in one write."""
        acks = self._acks
        for message in messages:
            if message.qos == 1:
                acks += _PUBACK_HEADER
                acks += message.mid.to_bytes(2, "big")
        self._flush_acks()

    def _flush_acks(self) -> None:
        self._ack_flush_scheduled = False
        if self._acks:
            if self.is_connected:
                self._write(bytes(self._acks))
            self._acks.clear()

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        """Send a message at QoS 0, without waiting for anything."""
        if qos != 0:
            raise ValueError("publish() sends at QoS 0; use publish_confirmed() for QoS 1")
        self._require_connection()
        body = _text(topic) + b"\x00" + payload
        self._write(_packet(_PUBLISH | (retain & 1), body))

    async def publish_confirmed(self, topic: str, payload: bytes, retain: bool = False) -> None:
        """Publish at QoS 1 and wait for the broker's acknowledgement."""
        self._require_connection()
        if len(self._pending) >= self._send_quota:
            raise MqttError(
                f"{self.client_id}: {self._send_quota} publishes already await their PUBACK"
            )
        packet_id = self._take_packet_id()
        body = _text(topic) + packet_id.to_bytes(2, "big") + b"\x00" + payload
        await self._request(
            packet_id, _packet(_PUBLISH | 0x02 | (retain & 1), body), f"PUBACK for {topic}"
        )

    async def _request(self, packet_id: int, packet: bytes, answer: str) -> None:
        waiter = self._loop.create_future()
        self._pending[packet_id] = waiter
        try:
            self._write(packet)
            await await_answer(waiter, self.settings.connect_timeout_s)
        except TimeoutError:
            raise MqttNotConnectedError(
                f"{self.client_id}: no {answer} from {self.settings.endpoint} within "
                f"{self.settings.connect_timeout_s:g} s"
            ) from None
        finally:
            self._pending.pop(packet_id, None)

    def _take_packet_id(self) -> int:
        self._require_connection()
        for _ in range(65_535):
            self._next_packet_id = self._next_packet_id % 65_535 + 1
            if self._next_packet_id not in self._pending:
                return self._next_packet_id
        raise MqttError(f"{self.client_id}: every packet identifier is in use")

    def _require_connection(self) -> None:
        if not self.is_connected:
            raise MqttNotConnectedError(
                f"{self.client_id}: not connected to {self.settings.endpoint}"
            )

    def _write(self, data: bytes) -> None:
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    # -- closing -----------------------------------------------------------------------

    async def wait_closed(self) -> str:
        """Wait until the connection is gone; returns why."""
        return await asyncio.shield(self._disconnected)

    async def disconnect(self) -> None:
        """Close cleanly: pending acknowledgements, then DISCONNECT."""
        if self.is_connected and self._transport is not None:
            self._flush_acks()
            self._write(_NORMAL_DISCONNECT)
            self._transport.close()  # after the buffered bytes are sent
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._disconnected), 2)
        self.abort()

    def abort(self) -> None:
        """Drop the connection at once, without DISCONNECT."""
        if self._transport is not None:
            self._transport.abort()
        self._finish("connection aborted")

    def _finish(self, reason: str) -> None:
        if self._keepalive_timer is not None:
            self._keepalive_timer.cancel()
            self._keepalive_timer = None
        if not self._connected.done():
            self._connected.set_exception(MqttConnectError(f"{self.client_id}: {reason}"))
            self._connected.exception()  # retrieved: the caller may never await it
        if not self._disconnected.done():
            self._disconnected.set_result(reason)
        for waiter in self._pending.values():
            if not waiter.done():
                waiter.set_exception(MqttNotConnectedError(f"{self.client_id}: {reason}"))

    def _fail(self, reason: str) -> None:
        log.warning("%s: %s; closing the connection", self.client_id, reason)
        self._finish(reason)
        if self._transport is not None:
            self._transport.abort()

    def _connection_lost(self, exc: Exception | None) -> None:
        cause = f": {exc}" if exc is not None else ""
        self._finish(f"connection to {self.settings.endpoint} lost{cause}")

    # -- keep-alive --------------------------------------------------------------------

    def _schedule_keepalive(self) -> None:
        if self._keepalive_s > 0:
            self._keepalive_timer = self._loop.call_later(self._keepalive_s / 2, self._keepalive)

    def _keepalive(self) -> None:
        silent_s = self._loop.time() - self._last_received
        if silent_s > 1.5 * self._keepalive_s:
            self._fail(f"{self.settings.endpoint} sent nothing for {silent_s:.0f} s")
            return
        # Every half keep-alive, whatever else was sent: the answer proves the broker alive.
        self._write(_PINGREQ)
        self._schedule_keepalive()

    # -- reading -----------------------------------------------------------------------

    def _data_received(self, data: bytes) -> None:
        self._last_received = self._loop.time()
        if self._partial:
            data = self._partial + data
        try:
            consumed, delivered = self._decode(data)
        except MqttProtocolError as exc:
            self._fail(f"protocol error from {self.settings.endpoint}: {exc}")
            return
        self._partial = data[consumed:]
        if delivered:
            if not self._manual_ack:
                self.ack_many(delivered)
            if self._on_messages is not None:
                self._on_messages(delivered)

    def _decode(self, data: bytes) -> tuple[int, list[InboundMessage]]:
        """Every whole packet in ``data``: (bytes consumed, the deliveries among them).

        The hot path of the ingest: a loop over the buffer, one call per PUBLISH.
        """
        delivered: list[InboundMessage] = []
        append = delivered.append
        end = len(data)
        position = 0
        while end - position >= 2:
            first = data[position]
            length = data[position + 1]
            start = position + 2
            if length & 0x80:
                # Payloads over 127 bytes: the remaining length takes two bytes or more.
                if start >= end:
                    break
                second = data[start]
                length = (length & 0x7F) | (second & 0x7F) << 7
                start += 1
                if second & 0x80:
                    decoded = _remaining_length(data, position + 1, end)
                    if decoded is None:
                        break
                    length, start = decoded
            stop = start + length
            if stop > end:
                break
            if first & 0xF0 == _PUBLISH:
                append(_publish(first, data, start, stop))
            else:
                self._control(first, data[start:stop])
                if self._disconnected.done():
                    return end, delivered
            position = stop
        return position, delivered

    def _control(self, first: int, body: bytes) -> None:
        kind = first & 0xF0
        if not self._connected.done():
            if kind != _CONNACK:
                raise MqttProtocolError(f"packet type {kind >> 4} before CONNACK")
            self._connack(body)
        elif kind in (_PUBACK, _SUBACK):
            self._answer(kind, body)
        elif kind == _PINGRESP:
            return
        elif kind == _DISCONNECT:
            code = body[0] if body else 0
            properties = _read_properties(body, 1)[0] if len(body) > 1 else {}
            self._finish(
                f"disconnected by {self.settings.endpoint}: "
                f"{_reason_name(code)}{_reason_text(properties)}"
            )
            if self._transport is not None:
                self._transport.close()
        else:
            raise MqttProtocolError(f"unexpected packet type {kind >> 4}")

    def _connack(self, body: bytes) -> None:
        if len(body) < 2:
            raise MqttProtocolError("CONNACK is too short")
        session_present, code = bool(body[0] & 0x01), body[1]
        properties = _read_properties(body, 2)[0] if len(body) > 2 else {}
        if code >= 0x80:
            self._connected.set_exception(
                MqttConnectError(
                    f"{self.client_id}: {self.settings.endpoint} refused the connection: "
                    f"{_reason_name(code)}{_reason_text(properties)}"
                )
            )
            if self._transport is not None:
                self._transport.close()
            return
        server_keep_alive = properties.get(_SERVER_KEEP_ALIVE)
        if isinstance(server_keep_alive, int):
            self._keepalive_s = server_keep_alive  # the server's value binds (MQTT 5.0, 3.2.2.3.14)
        receive_maximum = properties.get(_RECEIVE_MAXIMUM)
        if isinstance(receive_maximum, int):
            self._send_quota = receive_maximum
        self._connected.set_result(session_present)
        self._schedule_keepalive()

    def _answer(self, kind: int, body: bytes) -> None:
        if len(body) < 2:
            raise MqttProtocolError("an acknowledgement without a packet identifier")
        packet_id = int.from_bytes(body[:2], "big")
        if kind == _PUBACK:
            codes = body[2:3] or b"\x00"
        else:
            properties_length, codes_start = _read_variable_integer(body, 2, len(body))
            codes = body[codes_start + properties_length :]
        waiter = self._pending.get(packet_id)
        if waiter is None or waiter.done():
            return  # answered after its wait timed out
        refused = [code for code in codes if code >= 0x80]
        if refused:
            what = "publish" if kind == _PUBACK else "subscription"
            waiter.set_exception(
                MqttError(
                    f"{self.client_id}: {self.settings.endpoint} refused the {what}: "
                    f"{_reason_name(refused[0])}"
                )
            )
        else:
            waiter.set_result(None)
