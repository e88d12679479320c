"""The MQTT 5 codec of the consumer connection, free of I/O.

:class:`PacketDecoder` is fed the bytes of each read and returns deliveries and parsed
control packets; the functions under *encoding* build the packets the client sends.
:class:`aedfleet.mqtt.consumer.ConsumerConnection` is the asyncio adapter around it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from aedfleet.mqtt.errors import MqttProtocolError
from aedfleet.mqtt.message import InboundMessage

DEFAULT_MAX_PACKET_SIZE: Final = 65_536
# Every packet with a one-byte remaining length (at most 129 bytes) fits, so the decoder
# checks the size only of longer ones.
_MIN_MAX_PACKET_SIZE: Final = 256
_MAX_REMAINING_LENGTH: Final = 268_435_455  # four bytes of variable byte integer
_MAX_MAX_PACKET_SIZE: Final = 1 + 4 + _MAX_REMAINING_LENGTH

CONNECT: Final = 0x10
_CONNACK: Final = 0x20
PUBLISH: Final = 0x30
PUBACK: Final = 0x40
SUBSCRIBE: Final = 0x82  # the type plus the reserved flags the spec requires
_SUBACK: Final = 0x90
PINGREQ: Final = b"\xc0\x00"
_PINGRESP: Final = 0xD0
DISCONNECT: Final = 0xE0
NORMAL_DISCONNECT: Final = b"\xe0\x00"
PUBACK_HEADER: Final = b"\x40\x02"  # success needs neither reason code nor properties

PROTOCOL_ERROR: Final = 0x82
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
SESSION_EXPIRY: Final = 0x11
_SERVER_KEEP_ALIVE: Final = 0x13
_REASON_STRING: Final = 0x1F
RECEIVE_MAXIMUM: Final = 0x21
_TOPIC_ALIAS_MAXIMUM: Final = 0x22
_TOPIC_ALIAS: Final = 0x23
_MAXIMUM_QOS: Final = 0x24
_RETAIN_AVAILABLE: Final = 0x25
_USER_PROPERTY: Final = 0x26
MAXIMUM_PACKET_SIZE: Final = 0x27
_WILDCARDS_AVAILABLE: Final = 0x28
_SUBSCRIPTION_IDENTIFIERS_AVAILABLE: Final = 0x29
_SHARED_SUBSCRIPTIONS_AVAILABLE: Final = 0x2A


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


def reason_name(code: int) -> str:
    return _REASONS.get(code, f"reason code 0x{code:02X}")


def encode_variable_integer(value: int) -> bytes:
    encoded = bytearray()
    while True:
        value, digit = divmod(value, 128)
        encoded.append(digit | 0x80 if value else digit)
        if not value:
            return bytes(encoded)


def encode_text(value: str) -> bytes:
    raw = value.encode()
    return len(raw).to_bytes(2, "big") + raw


def encode_binary(value: bytes) -> bytes:
    return len(value).to_bytes(2, "big") + value


def encode_packet(first_byte: int, body: bytes) -> bytes:
    return bytes((first_byte,)) + encode_variable_integer(len(body)) + body


# -- decoding ------------------------------------------------------------------------------


def connect_packet(
    client_id: str,
    *,
    keepalive_s: int,
    clean_start: bool,
    username: str | None,
    password: bytes | None,
    session_expiry_s: int,
    receive_maximum: int | None,
    max_packet_size: int,
) -> bytes:
    """The CONNECT packet of an MQTT 5 client that announces its maximum packet size."""
    flags = 0x02 if clean_start else 0x00
    properties = b""
    if session_expiry_s:
        properties += bytes((SESSION_EXPIRY,)) + session_expiry_s.to_bytes(4, "big")
    if receive_maximum is not None:
        properties += bytes((RECEIVE_MAXIMUM,)) + receive_maximum.to_bytes(2, "big")
    properties += bytes((MAXIMUM_PACKET_SIZE,)) + max_packet_size.to_bytes(4, "big")
    payload = encode_text(client_id)
    if username is not None:
        flags |= 0x80
        payload += encode_text(username)
    if password is not None:
        flags |= 0x40
        payload += encode_binary(password)
    body = (
        b"\x00\x04MQTT\x05"
        + bytes((flags,))
        + keepalive_s.to_bytes(2, "big")
        + encode_variable_integer(len(properties))
        + properties
        + payload
    )
    return encode_packet(CONNECT, body)


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
            f"a QoS {qos} delivery; subscriptions are QoS 0 or 1", PROTOCOL_ERROR
        )
    if stop - start < 2:
        raise MqttProtocolError("a PUBLISH ends inside its topic length")
    topic_end = start + 2 + (data[start] << 8 | data[start + 1])
    cursor = topic_end + 2 * qos
    if cursor >= stop:
        raise MqttProtocolError("a PUBLISH ends inside its header")
    if topic_end == start + 2:
        # Only a topic alias could stand for an empty name, and none is allowed.
        raise MqttProtocolError("a PUBLISH without a topic name", PROTOCOL_ERROR)
    packet_id = data[topic_end] << 8 | data[topic_end + 1] if qos else 0
    if qos and not packet_id:
        raise MqttProtocolError("a QoS 1 PUBLISH with packet identifier 0")
    user_properties: tuple[tuple[str, str], ...] = ()
    if data[cursor]:
        # Properties are rare on this path (the edge sends none); only then are they parsed.
        properties, cursor = _read_properties(data, cursor, stop)
        if _TOPIC_ALIAS in properties:
            raise MqttProtocolError(
                "a topic alias, though no topic alias maximum was announced", PROTOCOL_ERROR
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
        raise MqttProtocolError(f"CONNACK {name} is {value}, not 0 or 1", PROTOCOL_ERROR)
    return value == 1


def _positive(properties: dict[int, object], identifier: int, name: str) -> int | None:
    value = properties.get(identifier)
    if value == 0:
        raise MqttProtocolError(f"CONNACK {name} is 0", PROTOCOL_ERROR)
    return value if isinstance(value, int) else None


def _limits(properties: dict[int, object]) -> BrokerLimits:
    # Absent, it is 2; sent, it can only be 0 or 1 (MQTT 5.0, 3.2.2.3.4).
    maximum_qos = properties.get(_MAXIMUM_QOS, 2)
    if _MAXIMUM_QOS in properties and maximum_qos not in (0, 1):
        raise MqttProtocolError(f"CONNACK maximum QoS is {maximum_qos}", PROTOCOL_ERROR)
    topic_alias_maximum = properties.get(_TOPIC_ALIAS_MAXIMUM, 0)
    return BrokerLimits(
        maximum_qos=maximum_qos if isinstance(maximum_qos, int) else 2,
        retain_available=_flag(properties, _RETAIN_AVAILABLE, "retain available"),
        maximum_packet_size=_positive(properties, MAXIMUM_PACKET_SIZE, "maximum packet size"),
        receive_maximum=_positive(properties, RECEIVE_MAXIMUM, "receive maximum") or 65_535,
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
        PUBACK,
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
    if kind == PUBACK:
        return _puback(body)
    if kind == _PINGRESP:
        if body:
            raise MqttProtocolError("PINGRESP with a body")
        return _PING_RESPONSE
    if kind == _SUBACK:
        return _suback(body)
    if kind == _CONNACK:
        return _connack(body)
    if kind == DISCONNECT:
        return _disconnect(body)
    raise MqttProtocolError(f"unexpected packet type {kind >> 4}", PROTOCOL_ERROR)


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
            if first & 0xF0 == PUBLISH:
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
