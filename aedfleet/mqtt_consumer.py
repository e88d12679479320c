"""MQTT 5 consumer connection: the protocol spoken directly on an asyncio transport.

Built for one job, draining a high rate of QoS 1 deliveries that are acknowledged only
after they are stored (the ingest). Measured here (``docs/benchmarks.md``), the general
adapter of :mod:`aedfleet.mqtt` (paho-mqtt) costs about 35 µs per delivery on this
machine: paho reads each PUBLISH with four ``recv`` calls, builds an MQTT 5
``Properties`` object for it and sends each PUBACK in a system call of its own. gmqtt
decodes faster but defers a PUBACK only by running ``on_message`` as an asyncio task per
delivery that returns the reason code later. This module instead:

- decodes every packet a read returned in one pass, a few slices per PUBLISH (its
  properties are parsed only when it has any, for its User Properties; no topic alias
  maximum is announced, so the broker never replaces a topic by an alias);
- hands the deliveries of one read to ``on_messages`` as one list;
- queues PUBACKs and writes all of those of one loop iteration in one ``send``.

The decoding is :class:`PacketDecoder`, free of I/O (fed bytes, it returns deliveries
and parsed control packets); :class:`ConsumerConnection` is the asyncio adapter around
it. The reference, with the limits announced and honoured, is ``docs/mqtt-consumer.md``.

Scope, chosen for the ingest: MQTT 5 only (shared subscriptions, persistent sessions and
the receive maximum as back-pressure are MQTT 5 features), subscriptions at QoS 0 or 1,
publishing at QoS 0 or 1 (dead letters), TLS and username/password, keep-alive. No QoS 2,
no last will, no enhanced authentication: a packet that needs them ends the connection
as a protocol error. Like :class:`aedfleet.mqtt.MqttConnection`, a connection does not
reconnect itself; the caller builds a new one.

Errors are those of :mod:`aedfleet.mqtt` (the tree is drawn there), raised for the same
failures as :class:`aedfleet.mqtt.MqttConnection` raises them, plus one of this module's,
:class:`MqttProtocolError`: the broker sent a malformed packet or one over the announced
maximum packet size, and the connection ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Self

from aedfleet.mqtt import (
    InboundMessage,
    MqttConnectError,
    MqttError,
    MqttNotConnectedError,
    MqttRefusedError,
    MqttSettings,
    MqttTimeoutError,
    await_answer,
)

__all__ = [
    "DEFAULT_MAX_PACKET_SIZE",
    "Acknowledgement",
    "BrokerLimits",
    "Connack",
    "ConsumerConnection",
    "ControlPacket",
    "Disconnect",
    "MqttProtocolError",
    "PacketDecoder",
    "PingResponse",
]

log = logging.getLogger(__name__)

# Four times the largest valid cabinet payload (aedfleet.contract.MAX_PAYLOAD_BYTES,
# 16 KiB) plus room for the topic and properties: an oversized payload up to this size
# still reaches the ingest and is refused visibly, as a dead letter; a larger one the
# broker drops for this client (MQTT 5.0, 3.1.2.11.4) instead of making it buffer it.
DEFAULT_MAX_PACKET_SIZE: Final = 65_536
# Every packet with a one-byte remaining length (at most 129 bytes) fits, so the decoder
# checks the size only of longer ones.
_MIN_MAX_PACKET_SIZE: Final = 256
_MAX_REMAINING_LENGTH: Final = 268_435_455  # four bytes of variable byte integer
_MAX_MAX_PACKET_SIZE: Final = 1 + 4 + _MAX_REMAINING_LENGTH

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

_MALFORMED_PACKET: Final = 0x81
_PROTOCOL_ERROR: Final = 0x82
_PACKET_TOO_LARGE: Final = 0x95

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
    0x9A: "Retain not supported",
    0x9B: "QoS not supported",
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
_FIXED_SIZES: Final = {_BYTE: 1, _TWO: 2, _FOUR: 4}
_SESSION_EXPIRY: Final = 0x11
_SERVER_KEEP_ALIVE: Final = 0x13
_REASON_STRING: Final = 0x1F
_RECEIVE_MAXIMUM: Final = 0x21
_TOPIC_ALIAS_MAXIMUM: Final = 0x22
_TOPIC_ALIAS: Final = 0x23
_MAXIMUM_QOS: Final = 0x24
_RETAIN_AVAILABLE: Final = 0x25
_USER_PROPERTY: Final = 0x26
_MAXIMUM_PACKET_SIZE: Final = 0x27
_WILDCARDS_AVAILABLE: Final = 0x28
_SUBSCRIPTION_IDENTIFIERS_AVAILABLE: Final = 0x29
_SHARED_SUBSCRIPTIONS_AVAILABLE: Final = 0x2A


class MqttProtocolError(MqttError):
    """The broker sent something this connection cannot read; the connection ends.

    ``reason_code`` is the one sent to the broker in the closing DISCONNECT.
    """

    def __init__(self, message: str, reason_code: int = _MALFORMED_PACKET) -> None:
        super().__init__(message)
        self.reason_code = reason_code


# -- the packets the decoder hands out besides deliveries ------------------------------------


@dataclass(frozen=True, slots=True)
class BrokerLimits:
    """What the broker's CONNACK allows this client (MQTT 5.0, 3.2.2.3).

    A property the broker leaves out has the spec's default, given here.
    """

    maximum_qos: int = 2
    retain_available: bool = True
    maximum_packet_size: int | None = None  # None: only the protocol's own limit
    receive_maximum: int = 65_535  # QoS 1 publishes this client may have unacknowledged
    topic_alias_maximum: int = 0  # this client sends no aliases, so it is only kept
    wildcard_subscriptions: bool = True
    shared_subscriptions: bool = True
    subscription_identifiers: bool = True


@dataclass(frozen=True, slots=True)
class Connack:
    session_present: bool
    reason_code: int
    reason_string: str
    server_keep_alive_s: int | None
    limits: BrokerLimits


@dataclass(frozen=True, slots=True)
class Acknowledgement:
    """A PUBACK (one reason code) or a SUBACK (one per topic filter)."""

    kind: int
    packet_id: int
    reason_codes: tuple[int, ...]
    reason_string: str


@dataclass(frozen=True, slots=True)
class Disconnect:
    reason_code: int
    reason_string: str


@dataclass(frozen=True, slots=True)
class PingResponse:
    pass


ControlPacket = Connack | Acknowledgement | Disconnect | PingResponse

_PING_RESPONSE: Final = PingResponse()


# -- encoding ------------------------------------------------------------------------------


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


# -- decoding ------------------------------------------------------------------------------


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


def _read_properties(data: bytes, position: int, end: int) -> tuple[dict[int, object], int]:
    """The properties at ``position`` of a packet ending at ``end`` and the position after
    them. The last value of a property wins, except User Properties (0x26): their
    (name, value) pairs are kept in order, as a list."""
    length, position = _read_variable_integer(data, position, end)
    stop = position + length
    if stop > end:
        raise MqttProtocolError("properties run past their packet")
    found: dict[int, object] = {}
    pairs: list[tuple[str, str]] = []
    while position < stop:
        identifier = data[position]
        kind = _PROPERTY_KINDS.get(identifier)
        position += 1
        value: object
        if kind is None:
            raise MqttProtocolError(f"unknown property 0x{identifier:02X}")
        size = _FIXED_SIZES.get(kind)
        if size is not None:
            if position + size > stop:
                raise MqttProtocolError(f"property 0x{identifier:02X} runs past its packet")
            value = int.from_bytes(data[position : position + size], "big")
            position += size
        elif kind == _VARIABLE:
            value, position = _read_variable_integer(data, position, stop)
        elif kind == _BINARY:
            value, position = _read_binary(data, position, stop)
        elif kind == _TEXT:
            raw, position = _read_binary(data, position, stop)
            value = _utf8(raw, identifier)
        else:
            name, position = _read_binary(data, position, stop)
            text, position = _read_binary(data, position, stop)
            pairs.append((_utf8(name, identifier), _utf8(text, identifier)))
            continue
        found[identifier] = value
    if pairs:
        found[_USER_PROPERTY] = pairs
    return found, stop


def _utf8(raw: bytes, identifier: int) -> str:
    try:
        return raw.decode()
    except UnicodeDecodeError:
        raise MqttProtocolError(f"property 0x{identifier:02X} is not UTF-8") from None


def _read_binary(data: bytes, position: int, end: int) -> tuple[bytes, int]:
    if position + 2 > end:
        raise MqttProtocolError("a string's length runs past its packet")
    stop = position + 2 + (data[position] << 8 | data[position + 1])
    if stop > end:
        raise MqttProtocolError("a string runs past its packet")
    return data[position + 2 : stop], stop


def _publish(first: int, data: bytes, start: int, stop: int) -> InboundMessage:
    """The delivery in the PUBLISH whose body is ``data[start:stop]`` (the hot path)."""
    qos = (first >> 1) & 0x03
    if qos > 1:
        raise MqttProtocolError(
            f"a QoS {qos} delivery; subscriptions are QoS 0 or 1", _PROTOCOL_ERROR
        )
    if stop - start < 2:
        raise MqttProtocolError("a PUBLISH ends inside its topic length")
    topic_end = start + 2 + (data[start] << 8 | data[start + 1])
    cursor = topic_end + 2 * qos
    if cursor >= stop:
        raise MqttProtocolError("a PUBLISH ends inside its header")
    if topic_end == start + 2:
        # Only a topic alias could stand for an empty name, and none is allowed.
        raise MqttProtocolError("a PUBLISH without a topic name", _PROTOCOL_ERROR)
    packet_id = data[topic_end] << 8 | data[topic_end + 1] if qos else 0
    if qos and not packet_id:
        raise MqttProtocolError("a QoS 1 PUBLISH with packet identifier 0")
    user_properties: tuple[tuple[str, str], ...] = ()
    if data[cursor]:
        # Properties are rare on this path (the edge sends none); only then are they parsed.
        properties, cursor = _read_properties(data, cursor, stop)
        if _TOPIC_ALIAS in properties:
            raise MqttProtocolError(
                "a topic alias, though no topic alias maximum was announced", _PROTOCOL_ERROR
            )
        pairs = properties.get(_USER_PROPERTY)
        if isinstance(pairs, list):
            user_properties = tuple(pairs)
    else:
        cursor += 1
    try:
        topic = data[start + 2 : topic_end].decode()
    except UnicodeDecodeError:
        raise MqttProtocolError("a topic name is not UTF-8") from None
    return InboundMessage(
        topic, data[cursor:stop], qos, bool(first & 0x01), packet_id, user_properties
    )


def _reason_string(properties: dict[int, object]) -> str:
    reason = properties.get(_REASON_STRING)
    return reason if isinstance(reason, str) else ""


def _flag(properties: dict[int, object], identifier: int, name: str) -> bool:
    value = properties.get(identifier, 1)
    if value not in (0, 1):
        raise MqttProtocolError(f"CONNACK {name} is {value}, not 0 or 1", _PROTOCOL_ERROR)
    return value == 1


def _positive(properties: dict[int, object], identifier: int, name: str) -> int | None:
    value = properties.get(identifier)
    if value == 0:
        raise MqttProtocolError(f"CONNACK {name} is 0", _PROTOCOL_ERROR)
    return value if isinstance(value, int) else None


def _limits(properties: dict[int, object]) -> BrokerLimits:
    # Absent, it is 2; sent, it can only be 0 or 1 (MQTT 5.0, 3.2.2.3.4).
    maximum_qos = properties.get(_MAXIMUM_QOS, 2)
    if _MAXIMUM_QOS in properties and maximum_qos not in (0, 1):
        raise MqttProtocolError(f"CONNACK maximum QoS is {maximum_qos}", _PROTOCOL_ERROR)
    topic_alias_maximum = properties.get(_TOPIC_ALIAS_MAXIMUM, 0)
    return BrokerLimits(
        maximum_qos=maximum_qos if isinstance(maximum_qos, int) else 2,
        retain_available=_flag(properties, _RETAIN_AVAILABLE, "retain available"),
        maximum_packet_size=_positive(properties, _MAXIMUM_PACKET_SIZE, "maximum packet size"),
        receive_maximum=_positive(properties, _RECEIVE_MAXIMUM, "receive maximum") or 65_535,
        topic_alias_maximum=topic_alias_maximum if isinstance(topic_alias_maximum, int) else 0,
        wildcard_subscriptions=_flag(properties, _WILDCARDS_AVAILABLE, "wildcards available"),
        shared_subscriptions=_flag(
            properties, _SHARED_SUBSCRIPTIONS_AVAILABLE, "shared subscriptions available"
        ),
        subscription_identifiers=_flag(
            properties, _SUBSCRIPTION_IDENTIFIERS_AVAILABLE, "subscription identifiers available"
        ),
    )


def _properties_to_the_end(body: bytes, position: int, what: str) -> dict[int, object]:
    """The properties at ``position``, which must fill the rest of ``body``; none when
    the body ends before them (the spec lets a packet leave out an empty property list)."""
    if position >= len(body):
        return {}
    properties, stop = _read_properties(body, position, len(body))
    if stop != len(body):
        raise MqttProtocolError(f"{what} has bytes after its properties")
    return properties


def _connack(body: bytes) -> Connack:
    if len(body) < 2:
        raise MqttProtocolError("CONNACK is too short")
    if body[0] & 0xFE:
        raise MqttProtocolError("CONNACK has reserved flags set")
    properties = _properties_to_the_end(body, 2, "CONNACK")
    server_keep_alive = properties.get(_SERVER_KEEP_ALIVE)
    return Connack(
        session_present=bool(body[0] & 0x01),
        reason_code=body[1],
        reason_string=_reason_string(properties),
        server_keep_alive_s=server_keep_alive if isinstance(server_keep_alive, int) else None,
        limits=_limits(properties),
    )


def _puback(body: bytes) -> Acknowledgement:
    if len(body) < 2:
        raise MqttProtocolError("a PUBACK without a packet identifier")
    properties = _properties_to_the_end(body, 3, "PUBACK")
    return Acknowledgement(
        _PUBACK,
        body[0] << 8 | body[1],
        (body[2] if len(body) > 2 else 0,),
        _reason_string(properties),
    )


def _suback(body: bytes) -> Acknowledgement:
    if len(body) < 3:
        raise MqttProtocolError("a SUBACK without its packet identifier and properties")
    properties, codes_start = _read_properties(body, 2, len(body))
    if codes_start >= len(body):
        raise MqttProtocolError("a SUBACK without reason codes")
    return Acknowledgement(
        _SUBACK, body[0] << 8 | body[1], tuple(body[codes_start:]), _reason_string(properties)
    )


def _disconnect(body: bytes) -> Disconnect:
    properties = _properties_to_the_end(body, 1, "DISCONNECT")
    return Disconnect(body[0] if body else 0, _reason_string(properties))


def _control_packet(first: int, body: bytes) -> ControlPacket:
    kind = first & 0xF0
    if first & 0x0F:
        raise MqttProtocolError(f"packet type {kind >> 4} with reserved flags 0x{first & 15:X}")
    if kind == _PUBACK:
        return _puback(body)
    if kind == _PINGRESP:
        if body:
            raise MqttProtocolError("PINGRESP with a body")
        return _PING_RESPONSE
    if kind == _SUBACK:
        return _suback(body)
    if kind == _CONNACK:
        return _connack(body)
    if kind == _DISCONNECT:
        return _disconnect(body)
    raise MqttProtocolError(f"unexpected packet type {kind >> 4}", _PROTOCOL_ERROR)


class PacketDecoder:
    """The packets a broker sends, decoded from its bytes however they were split (no I/O).

    :meth:`feed` each read, then call :meth:`read` until it returns no control packet.
    A packet over ``max_packet_size`` bytes (what the client announced in CONNECT) is an
    error as soon as its fixed header is in, so what is kept between reads is always
    less than one packet of at most that size. After a :class:`MqttProtocolError` the
    stream cannot be read further.
    """

    __slots__ = ("_buffer", "_max_packet_size", "_position")

    def __init__(self, max_packet_size: int = DEFAULT_MAX_PACKET_SIZE) -> None:
        if not _MIN_MAX_PACKET_SIZE <= max_packet_size <= _MAX_MAX_PACKET_SIZE:
            raise ValueError(
                f"max_packet_size {max_packet_size} is not within "
                f"{_MIN_MAX_PACKET_SIZE} … {_MAX_MAX_PACKET_SIZE}"
            )
        self._max_packet_size = max_packet_size
        self._buffer = b""
        self._position = 0

    @property
    def buffered(self) -> int:
        """Bytes fed but not yet decoded."""
        return len(self._buffer) - self._position

    def feed(self, data: bytes) -> None:
        if self._position < len(self._buffer):
            self._buffer = self._buffer[self._position :] + data
        else:
            self._buffer = data
        self._position = 0

    def read(self) -> tuple[list[InboundMessage], ControlPacket | None]:
        """The deliveries up to the next control packet, and that packet; None in its place
        once no whole packet is left.

        The hot path of the ingest: a loop over the buffer, one call per PUBLISH.
        """
        delivered: list[InboundMessage] = []
        append = delivered.append
        data = self._buffer
        end = len(data)
        position = self._position
        max_packet_size = self._max_packet_size
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
                if start - position + length > max_packet_size:
                    raise MqttProtocolError(
                        f"a packet of {start - position + length} bytes, over the maximum "
                        f"packet size of {max_packet_size} announced",
                        _PACKET_TOO_LARGE,
                    )
            stop = start + length
            if stop > end:
                break
            if first & 0xF0 == _PUBLISH:
                append(_publish(first, data, start, stop))
            else:
                self._position = stop
                return delivered, _control_packet(first, data[start:stop])
            position = stop
        if position == end:
            self._buffer = b""
            position = 0
        self._position = position
        return delivered, None


# -- the connection --------------------------------------------------------------------------


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
    ``max_packet_size`` is announced to the broker, which then sends nothing larger; a
    larger packet all the same ends the connection as a :class:`MqttProtocolError`.
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
        max_packet_size: int = DEFAULT_MAX_PACKET_SIZE,
        on_messages: Callable[[list[InboundMessage]], None] | None = None,
    ) -> None:
        if settings.protocol != "5":
            raise ValueError(
                f"{client_id}: ConsumerConnection speaks MQTT 5 only, not {settings.protocol}"
            )
        if receive_maximum is not None and not 1 <= receive_maximum <= 65_535:
            raise ValueError(f"receive_maximum {receive_maximum} is not within 1 … 65535")
        self._decoder = PacketDecoder(max_packet_size)
        self.settings = settings
        self.client_id = client_id
        self._clean_start = clean_start
        self._session_expiry_s = session_expiry_s
        self._manual_ack = manual_ack
        self._receive_maximum = receive_maximum
        self._max_packet_size = max_packet_size
        self._on_messages = on_messages
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._connected: asyncio.Future[bool] = self._loop.create_future()
        self._disconnected: asyncio.Future[str] = self._loop.create_future()
        self._error: MqttError | None = None
        self._pending: dict[int, asyncio.Future[int]] = {}
        self._next_packet_id = 0
        self._acks = bytearray()
        self._ack_flush_scheduled = False
        self._keepalive_s = settings.keepalive_s
        self._keepalive_timer: asyncio.TimerHandle | None = None
        self._last_received = 0.0
        self._limits = BrokerLimits()
        # QoS 1 publishes sent and not yet acknowledged, by packet identifier: at most
        # the broker's receive maximum (MQTT 5.0, 4.9); a publish beyond it waits.
        self._unacknowledged_publishes: set[int] = set()
        self._publish_slots = self._limits.receive_maximum
        self._slot_waiters: deque[asyncio.Future[None]] = deque()

    @property
    def is_connected(self) -> bool:
        return self._connected.done() and not self._disconnected.done()

    @property
    def broker_limits(self) -> BrokerLimits:
        """The limits of the broker's CONNACK (the spec's defaults before it arrives)."""
        return self._limits

    @property
    def error(self) -> MqttError | None:
        """The protocol error that ended the connection, if one did."""
        return self._error

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
        except MqttError:
            self.abort()
            raise

    def _connect_packet(self) -> bytes:
        settings = self.settings
        flags = 0x02 if self._clean_start else 0x00
        properties = b""
        if self._session_expiry_s:
            properties += bytes((_SESSION_EXPIRY,)) + self._session_expiry_s.to_bytes(4, "big")
        if self._receive_maximum is not None:
            properties += bytes((_RECEIVE_MAXIMUM,)) + self._receive_maximum.to_bytes(2, "big")
        properties += bytes((_MAXIMUM_PACKET_SIZE,)) + self._max_packet_size.to_bytes(4, "big")
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
        """Subscribe and wait for the broker's SUBACK, which must grant ``qos``."""
        if qos not in (0, 1):
            raise ValueError(f"{self.client_id}: subscriptions are QoS 0 or 1, not {qos}")
        self._require_connection()
        limits = self._limits
        if qos > limits.maximum_qos:
            raise MqttError(
                f"{self.client_id}: {self.settings.endpoint} allows QoS {limits.maximum_qos} "
                f"at most, so {topic_filter} cannot be subscribed at QoS {qos}"
            )
        if topic_filter.startswith("$share/") and not limits.shared_subscriptions:
            raise MqttError(
                f"{self.client_id}: {self.settings.endpoint} has no shared subscriptions "
                f"for {topic_filter}"
            )
        if ("+" in topic_filter or "#" in topic_filter) and not limits.wildcard_subscriptions:
            raise MqttError(
                f"{self.client_id}: {self.settings.endpoint} has no wildcard subscriptions "
                f"for {topic_filter}"
            )
        # No properties, then the one filter and its options.
        request = b"\x00" + _text(topic_filter) + bytes((qos,))
        self._check_size(2 + len(request), f"the subscription to {topic_filter}")
        packet_id = self._take_packet_id()
        try:
            granted = await self._request(
                packet_id,
                _packet(_SUBSCRIBE, packet_id.to_bytes(2, "big") + request),
                f"SUBACK for {topic_filter}",
            )
        except MqttRefusedError as exc:
            raise MqttRefusedError(
                f"{self.client_id}: {self.settings.endpoint} refused the subscription to "
                f"{topic_filter}: {exc}",
                exc.reason_code,
            ) from None
        if granted < qos:
            raise MqttRefusedError(
                f"{self.client_id}: {self.settings.endpoint} granted {topic_filter} "
                f"QoS {granted} only, not {qos}",
                granted,
            )

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
        self._check_publish(topic, len(body), qos, retain)
        self._write(_packet(_PUBLISH | (retain & 1), body))

    async def publish_confirmed(self, topic: str, payload: bytes, retain: bool = False) -> None:
        """Publish at QoS 1 and wait for the broker's acknowledgement.

        With as many publishes unacknowledged as the broker's receive maximum allows,
        this waits for one of them to be acknowledged (within the connect timeout).
        """
        self._require_connection()
        raw_topic = _text(topic)
        self._check_publish(topic, len(raw_topic) + 3 + len(payload), 1, retain)
        await self._take_publish_slot(topic)
        try:
            packet_id = self._take_packet_id()
        except MqttError:
            self._release_publish_slot()
            raise
        self._unacknowledged_publishes.add(packet_id)
        body = raw_topic + packet_id.to_bytes(2, "big") + b"\x00" + payload
        # The slot is given back when the PUBACK comes, even after this wait timed out.
        await self._request(
            packet_id, _packet(_PUBLISH | 0x02 | (retain & 1), body), f"PUBACK for {topic}"
        )

    def _check_publish(self, topic: str, body_length: int, qos: int, retain: bool) -> None:
        limits = self._limits
        if qos > limits.maximum_qos:
            raise MqttError(
                f"{self.client_id}: {self.settings.endpoint} allows QoS "
                f"{limits.maximum_qos} at most; cannot publish to {topic} at QoS {qos}"
            )
        if retain and not limits.retain_available:
            raise MqttError(
                f"{self.client_id}: {self.settings.endpoint} keeps no retained messages; "
                f"cannot publish to {topic} retained"
            )
        self._check_size(body_length, f"the publish to {topic}")

    def _check_size(self, body_length: int, what: str) -> None:
        limit = self._limits.maximum_packet_size
        size = 1 + len(_variable_integer(body_length)) + body_length
        if limit is not None and size > limit:
            raise MqttError(
                f"{self.client_id}: {what} is a packet of {size} bytes, over the "
                f"{limit} bytes {self.settings.endpoint} accepts"
            )

    async def _take_publish_slot(self, topic: str) -> None:
        if self._publish_slots > 0 and not self._slot_waiters:
            self._publish_slots -= 1
            return
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._slot_waiters.append(waiter)
        timeout_s = self.settings.connect_timeout_s
        try:
            await await_answer(waiter, timeout_s)
        except (TimeoutError, asyncio.CancelledError) as exc:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._release_publish_slot()  # handed over as the wait ended: pass it on
            if isinstance(exc, asyncio.CancelledError):
                raise
            raise MqttTimeoutError(
                f"{self.client_id}: cannot publish to {topic}: the "
                f"{self._limits.receive_maximum} publishes {self.settings.endpoint} allows "
                f"unacknowledged were not acknowledged within {timeout_s:g} s"
            ) from None
        finally:
            with contextlib.suppress(ValueError):
                self._slot_waiters.remove(waiter)

    def _release_publish_slot(self) -> None:
        while self._slot_waiters:
            waiter = self._slot_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes to it directly
                return
        self._publish_slots += 1

    async def _request(self, packet_id: int, packet: bytes, answer: str) -> int:
        """Send ``packet`` and wait for its answer; returns the (first) reason code."""
        waiter: asyncio.Future[int] = self._loop.create_future()
        self._pending[packet_id] = waiter
        try:
            self._write(packet)
            return await await_answer(waiter, self.settings.connect_timeout_s)
        except TimeoutError:
            raise MqttTimeoutError(
                f"{self.client_id}: no {answer} from {self.settings.endpoint} within "
                f"{self.settings.connect_timeout_s:g} s"
            ) from None
        finally:
            self._pending.pop(packet_id, None)

    def _take_packet_id(self) -> int:
        self._require_connection()
        for _ in range(65_535):
            self._next_packet_id = self._next_packet_id % 65_535 + 1
            candidate = self._next_packet_id
            if candidate not in self._pending and candidate not in self._unacknowledged_publishes:
                return candidate
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
        error = self._error
        if not self._connected.done():
            self._connected.set_exception(self._ended(reason, error, MqttConnectError))
            self._connected.exception()  # retrieved: the caller may never await it
        if not self._disconnected.done():
            self._disconnected.set_result(reason)
        waiters: list[asyncio.Future[Any]] = [*self._pending.values(), *self._slot_waiters]
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(self._ended(reason, error, MqttNotConnectedError))

    def _ended(self, reason: str, error: MqttError | None, otherwise: type[MqttError]) -> MqttError:
        if isinstance(error, MqttProtocolError):
            return MqttProtocolError(f"{self.client_id}: {reason}", error.reason_code)
        return otherwise(f"{self.client_id}: {reason}")

    def _fail(self, reason: str) -> None:
        log.warning("%s: %s; closing the connection", self.client_id, reason)
        self._finish(reason)
        if self._transport is not None:
            self._transport.abort()

    def _fail_protocol(self, error: MqttProtocolError) -> None:
        """Tell the broker why (MQTT 5.0, 4.13) and close once that is sent."""
        self._error = error
        reason = f"protocol error from {self.settings.endpoint}: {error}"
        log.warning("%s: %s; closing the connection", self.client_id, reason)
        self._finish(reason)
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.write(bytes((_DISCONNECT, 1, error.reason_code)))
            transport.close()

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
        if self._disconnected.done():
            return  # bytes after a protocol error or DISCONNECT are not read
        self._last_received = self._loop.time()
        decoder = self._decoder
        try:
            decoder.feed(data)
            while True:
                delivered, control = decoder.read()
                if delivered:
                    self._deliver(delivered)
                if control is None:
                    return
                self._control(control)
                if self._disconnected.done():
                    return
        except MqttProtocolError as exc:
            self._fail_protocol(exc)

    def _deliver(self, delivered: list[InboundMessage]) -> None:
        if not self._connected.done():
            raise MqttProtocolError("a PUBLISH before CONNACK", _PROTOCOL_ERROR)
        if not self._manual_ack:
            self.ack_many(delivered)
        if self._on_messages is not None:
            self._on_messages(delivered)

    def _control(self, packet: ControlPacket) -> None:
        if not self._connected.done():
            if not isinstance(packet, Connack):
                raise MqttProtocolError(f"{type(packet).__name__} before CONNACK", _PROTOCOL_ERROR)
            self._connack(packet)
        elif isinstance(packet, Acknowledgement):
            self._answer(packet)
        elif isinstance(packet, Disconnect):
            reason = f" ({packet.reason_string[:200]})" if packet.reason_string else ""
            self._finish(
                f"disconnected by {self.settings.endpoint}: "
                f"{_reason_name(packet.reason_code)}{reason}"
            )
            if self._transport is not None:
                self._transport.close()
        elif isinstance(packet, Connack):
            raise MqttProtocolError("a second CONNACK", _PROTOCOL_ERROR)

    def _connack(self, connack: Connack) -> None:
        if connack.reason_code >= 0x80:
            detail = f" ({connack.reason_string[:200]})" if connack.reason_string else ""
            reason = (
                f"{self.settings.endpoint} refused the connection: "
                f"{_reason_name(connack.reason_code)}{detail}"
            )
            self._connected.set_exception(MqttConnectError(f"{self.client_id}: {reason}"))
            self._finish(reason)  # nothing after the refusal is read
            if self._transport is not None:
                self._transport.close()
            return
        if connack.server_keep_alive_s is not None:
            # The server's value binds (MQTT 5.0, 3.2.2.3.14).
            self._keepalive_s = connack.server_keep_alive_s
        self._limits = connack.limits
        self._publish_slots = connack.limits.receive_maximum
        self._connected.set_result(connack.session_present)
        self._schedule_keepalive()

    def _answer(self, answer: Acknowledgement) -> None:
        packet_id = answer.packet_id
        if answer.kind == _PUBACK and packet_id in self._unacknowledged_publishes:
            self._unacknowledged_publishes.discard(packet_id)
            self._release_publish_slot()
        waiter = self._pending.get(packet_id)
        if waiter is None or waiter.done():
            return  # answered after its wait timed out
        refused = [code for code in answer.reason_codes if code >= 0x80]
        if refused:
            detail = f" ({answer.reason_string[:200]})" if answer.reason_string else ""
            reason = f"{_reason_name(refused[0])}{detail}"
            if answer.kind == _PUBACK:
                reason = f"{self.client_id}: {self.settings.endpoint} refused the publish: {reason}"
            waiter.set_exception(MqttRefusedError(reason, refused[0]))
        else:
            waiter.set_result(answer.reason_codes[0])
