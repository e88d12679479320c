"""The consumer connection's packet decoder, pure: bytes in, packets out, no I/O.

A small encoder of its own (written from the MQTT 5.0 specification, not from the
decoder) builds the packets a broker sends; hypothesis splits the byte stream anywhere.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aedfleet.mqtt import InboundMessage, MqttProtocolError
from aedfleet.mqtt.codec import (
    Acknowledgement,
    BrokerLimits,
    Connack,
    ControlPacket,
    Disconnect,
    PacketDecoder,
    PingResponse,
)

Decoded = InboundMessage | ControlPacket

# -- the test encoder ----------------------------------------------------------------------


def variable_integer(value: int) -> bytes:
    encoded = bytearray()
    while True:
        value, digit = divmod(value, 128)
        encoded.append(digit | 0x80 if value else digit)
        if not value:
            return bytes(encoded)


def string(raw: bytes) -> bytes:
    return len(raw).to_bytes(2, "big") + raw


# How each property used here is encoded (MQTT 5.0, 2.2.2.2).
BYTE, TWO, FOUR, VARIABLE, TEXT, BINARY, PAIR = range(7)
KINDS = {
    0x01: BYTE,  # payload format indicator
    0x02: FOUR,  # message expiry interval
    0x03: TEXT,  # content type
    0x08: TEXT,  # response topic
    0x09: BINARY,  # correlation data
    0x0B: VARIABLE,  # subscription identifier
    0x11: FOUR,  # session expiry interval
    0x12: TEXT,  # assigned client identifier
    0x13: TWO,  # server keep alive
    0x1F: TEXT,  # reason string
    0x21: TWO,  # receive maximum
    0x22: TWO,  # topic alias maximum
    0x24: BYTE,  # maximum QoS
    0x25: BYTE,  # retain available
    0x26: PAIR,  # user property
    0x27: FOUR,  # maximum packet size
    0x28: BYTE,  # wildcard subscription available
    0x29: BYTE,  # subscription identifiers available
    0x2A: BYTE,  # shared subscription available
}

Property = tuple[int, object]


def encode_properties(properties: list[Property]) -> bytes:
    encoded = b""
    for identifier, value in properties:
        kind = KINDS[identifier]
        encoded += bytes((identifier,))
        if kind in (BYTE, TWO, FOUR):
            assert isinstance(value, int)
            encoded += value.to_bytes({BYTE: 1, TWO: 2, FOUR: 4}[kind], "big")
        elif kind == VARIABLE:
            assert isinstance(value, int)
            encoded += variable_integer(value)
        elif kind == TEXT:
            assert isinstance(value, str)
            encoded += string(value.encode())
        elif kind == BINARY:
            assert isinstance(value, bytes)
            encoded += string(value)
        else:
            assert isinstance(value, tuple)
            name, text = value
            encoded += string(name.encode()) + string(text.encode())
    return variable_integer(len(encoded)) + encoded


def packet(first: int, body: bytes) -> bytes:
    return bytes((first,)) + variable_integer(len(body)) + body


# -- strategies: (bytes on the wire, what they decode to) -------------------------------------

Encoded = tuple[bytes, Decoded]

texts = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)
topics = st.text(st.characters(codec="utf-8", exclude_characters="+#\x00"), min_size=1, max_size=30)
publish_properties = st.lists(
    st.one_of(
        st.tuples(st.just(0x01), st.integers(0, 1)),
        st.tuples(st.just(0x02), st.integers(0, 2**32 - 1)),
        st.tuples(st.just(0x03), texts),
        st.tuples(st.just(0x08), texts),
        st.tuples(st.just(0x09), st.binary(max_size=20)),
        st.tuples(st.just(0x0B), st.integers(1, 268_435_455)),
        st.tuples(st.just(0x26), st.tuples(texts, texts)),
    ),
    max_size=6,
)
reason_strings = st.one_of(st.just(""), texts)


@st.composite
def publishes(draw: st.DrawFn, payload_sizes: st.SearchStrategy[int]) -> Encoded:
    topic = draw(topics)
    size = draw(payload_sizes)
    payload = draw(st.binary(min_size=size, max_size=size))
    packet_id = draw(st.integers(0, 65_535))  # 0: a QoS 0 delivery
    retain, duplicate = draw(st.booleans()), draw(st.booleans())
    properties = draw(publish_properties)
    qos = 1 if packet_id else 0
    body = string(topic.encode())
    if qos:
        body += packet_id.to_bytes(2, "big")
    body += encode_properties(properties) + payload
    first = 0x30 | (0x08 if duplicate and qos else 0) | qos << 1 | (0x01 if retain else 0)
    pairs = tuple(value for identifier, value in properties if identifier == 0x26)
    expected = InboundMessage(topic, payload, qos, retain, packet_id, pairs)
    return packet(first, body), expected


def with_reason_string(reason: str) -> list[Property]:
    return [(0x1F, reason)] if reason else []


@st.composite
def connacks(draw: st.DrawFn) -> Encoded:
    session_present = draw(st.booleans())
    code = draw(st.sampled_from([0x00, 0x80, 0x85, 0x87, 0x9F]))
    limits: dict[str, Any] = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "maximum_qos": st.integers(0, 1),
                "retain_available": st.booleans(),
                "maximum_packet_size": st.integers(1, 2**32 - 1),
                "receive_maximum": st.integers(1, 65_535),
                "topic_alias_maximum": st.integers(0, 65_535),
                "wildcard_subscriptions": st.booleans(),
                "shared_subscriptions": st.booleans(),
                "subscription_identifiers": st.booleans(),
            },
        )
    )
    keep_alive = draw(st.one_of(st.none(), st.integers(0, 65_535)))
    reason = draw(reason_strings)
    identifiers = {
        "maximum_qos": 0x24,
        "retain_available": 0x25,
        "maximum_packet_size": 0x27,
        "receive_maximum": 0x21,
        "topic_alias_maximum": 0x22,
        "wildcard_subscriptions": 0x28,
        "shared_subscriptions": 0x2A,
        "subscription_identifiers": 0x29,
    }
    properties: list[Property] = [(identifiers[name], int(v)) for name, v in limits.items()]
    if keep_alive is not None:
        properties.append((0x13, keep_alive))
    properties += [(0x12, "assigned"), (0x11, 600), *with_reason_string(reason)]
    properties = draw(st.permutations(properties))
    body = bytes((int(session_present), code)) + encode_properties(properties)
    expected = Connack(session_present, code, reason, keep_alive, BrokerLimits(**limits))
    return packet(0x20, body), expected


@st.composite
def pubacks(draw: st.DrawFn) -> Encoded:
    packet_id = draw(st.integers(1, 65_535))
    code = draw(st.sampled_from([0x00, 0x10, 0x80, 0x87, 0x97]))
    reason = draw(reason_strings)
    body = packet_id.to_bytes(2, "big")
    shape = draw(st.sampled_from(["short", "code", "properties"]))
    if shape == "short":
        code, reason = 0, ""
    else:
        body += bytes((code,))
        if shape == "properties":
            body += encode_properties(with_reason_string(reason))
        else:
            reason = ""
    return packet(0x40, body), Acknowledgement(0x40, packet_id, (code,), reason)


@st.composite
def subacks(draw: st.DrawFn) -> Encoded:
    packet_id = draw(st.integers(1, 65_535))
    codes = tuple(draw(st.lists(st.sampled_from([0, 1, 2, 0x80, 0x8F, 0x9E]), min_size=1)))
    reason = draw(reason_strings)
    body = packet_id.to_bytes(2, "big") + encode_properties(with_reason_string(reason))
    return packet(0x90, body + bytes(codes)), Acknowledgement(0x90, packet_id, codes, reason)


@st.composite
def disconnects(draw: st.DrawFn) -> Encoded:
    if draw(st.booleans()):
        return b"\xe0\x00", Disconnect(0, "")
    code = draw(st.sampled_from([0x00, 0x8B, 0x8E, 0x95]))
    reason = draw(reason_strings)
    body = bytes((code,)) + encode_properties(with_reason_string(reason))
    return packet(0xE0, body), Disconnect(code, reason)


def packets(payload_sizes: st.SearchStrategy[int]) -> st.SearchStrategy[Encoded]:
    return st.one_of(
        publishes(payload_sizes),
        connacks(),
        pubacks(),
        subacks(),
        disconnects(),
        st.just((b"\xd0\x00", PingResponse())),
    )


small_payloads = st.integers(0, 40)
payload_sizes = st.one_of(small_payloads, st.sampled_from([127, 128, 16_383, 16_384, 70_000]))
cuts = st.lists(st.integers(0, 300_000), max_size=10)

# -- feeding the decoder -------------------------------------------------------------------


def chunks(stream: bytes, positions: list[int]) -> list[bytes]:
    edges = sorted({0, len(stream), *(cut % (len(stream) + 1) for cut in positions)})
    return [stream[start:stop] for start, stop in itertools.pairwise(edges)]


def decode_all(
    stream: bytes, positions: list[int], max_packet_size: int = 1 << 20
) -> list[Decoded]:
    """Every packet in ``stream`` fed in pieces; after each read the decoder holds less
    than one packet of the maximum size."""
    decoder = PacketDecoder(max_packet_size)
    decoded: list[Decoded] = []
    for chunk in chunks(stream, positions):
        decoder.feed(chunk)
        while True:
            delivered, control = decoder.read()
            decoded.extend(delivered)
            if control is None:
                break
            decoded.append(control)
        assert decoder.buffered < max_packet_size
    return decoded


@settings(max_examples=300, deadline=None)
@given(sent=st.lists(packets(payload_sizes), min_size=1, max_size=10), positions=cuts)
def test_valid_packets_decode_to_what_was_encoded_however_the_stream_is_split(
    sent: list[Encoded], positions: list[int]
) -> None:
    stream = b"".join(wire for wire, _ in sent)
    assert decode_all(stream, positions) == [expected for _, expected in sent]


@st.composite
def damaged_streams(draw: st.DrawFn) -> bytes:
    """Valid packets, then bytes overwritten, inserted and cut off: deep into each parser."""
    stream = bytearray(b"".join(wire for wire, _ in draw(st.lists(packets(small_payloads)))))
    for position, value in draw(st.lists(st.tuples(st.integers(0), st.integers(0, 255)))):
        if stream:
            stream[position % len(stream)] = value
    for position, extra in draw(st.lists(st.tuples(st.integers(0), st.binary(max_size=6)))):
        at = position % (len(stream) + 1)
        stream[at:at] = extra
    keep = draw(st.integers(0, len(stream)))
    return bytes(stream[:keep])


@settings(max_examples=1_000, deadline=None)
@given(stream=st.one_of(st.binary(max_size=400), damaged_streams()), positions=cuts)
def test_any_byte_stream_decodes_or_raises_the_protocol_error_only(
    stream: bytes, positions: list[int]
) -> None:
    try:
        decode_all(stream, positions, max_packet_size=1_024)
    except MqttProtocolError as exc:
        error = exc
    else:
        return
    assert str(error)
    assert error.reason_code in (0x81, 0x82, 0x95)


# -- each malformed shape, by name ---------------------------------------------------------

MALFORMED = [
    (b"\x30\x00", "ends inside its topic length"),  # remaining length 0
    (b"\x30\x01\x00", "ends inside its topic length"),  # remaining length 1
    (b"\x30\x02\x00\x01", "ends inside its header"),  # topic cut
    (b"\x30\x03\x00\x01a", "ends inside its header"),  # property length missing (QoS 0)
    (b"\x32\x03\x00\x01a", "ends inside its header"),  # packet identifier missing (QoS 1)
    (b"\x32\x04\x00\x01a\x00", "ends inside its header"),  # packet identifier cut
    (b"\x32\x06\x00\x01a\x00\x00\x00", "packet identifier 0"),
    (b"\x30\x03\x00\x00\x00", "without a topic name"),
    (b"\x30\x05\x00\x02\xff\xfe\x00", "not UTF-8"),
    (b"\x36\x04\x00\x01a\x00", "QoS 3"),
    (b"\x34\x06\x00\x01a\x00\x01\x00", "QoS 2"),
    (b"\x30\x08\x00\x01a\xff\xff\xff\xff\x7f", "longer than four bytes"),  # property length
    (b"\x30\x05\x00\x01a\x80\x80", "runs past its packet"),  # property length cut
    (b"\x30\x04\x00\x01a\x09", "properties run past"),
    (b"\x30\x06\x00\x01a\x01\x02\x00", "0x02 runs past"),  # 4-byte property with 0 bytes
    (b"\x30\x05\x00\x01a\x01\x7f", "unknown property 0x7F"),
    (b"\x30\x06\x00\x01a\x02\x26\x00", "length runs past"),  # user property name length cut
    (b"\x30\x08\x00\x01a\x04\x26\x00\x05k", "string runs past"),
    (b"\x30\x0a\x00\x01a\x06\x26\x00\x01\xff\x00\x00", "0x26 is not UTF-8"),
    (b"\x30\x07\x00\x01a\x03\x23\x00\x01", "topic alias"),
    (b"\x30\x06\x00\x01a\x02\x0b\x80", "runs past its packet"),  # subscription id cut
    (b"\x30\xff\xff\xff\xff\x7f", "longer than four bytes"),  # remaining length
    (b"\x20\x01\x00", "CONNACK is too short"),
    (b"\x20\x03\x02\x00\x00", "reserved flags"),
    (b"\x20\x05\x00\x00\x02\x24\x02", "maximum QoS is 2"),
    (b"\x20\x05\x00\x00\x02\x25\x07", "retain available is 7"),
    (b"\x20\x07\x00\x00\x04\x27\x00\x00\x00", "0x27 runs past"),
    (b"\x20\x08\x00\x00\x05\x27\x00\x00\x00\x00", "maximum packet size is 0"),
    (b"\x20\x06\x00\x00\x03\x21\x00\x00", "receive maximum is 0"),
    (b"\x20\x04\x00\x00\x00\x00", "bytes after its properties"),
    (b"\x40\x01\x00", "without a packet identifier"),
    (b"\x40\x04\x00\x01\x00\x05", "properties run past"),
    (b"\x90\x02\x00\x01", "SUBACK without its packet identifier"),
    (b"\x90\x03\x00\x01\x00", "without reason codes"),
    (b"\x90\x04\x00\x01\x07\x01", "properties run past"),
    (b"\xd0\x01\x00", "PINGRESP with a body"),
    (b"\xe0\x02\x00\x03", "properties run past"),
    (b"\x42\x02\x00\x01", "reserved flags 0x2"),
    (b"\x50\x02\x00\x01", "unexpected packet type 5"),
    (b"\xf0\x00", "unexpected packet type 15"),  # AUTH: no enhanced authentication
    (b"\x00\x00", "unexpected packet type 0"),
]


@pytest.mark.parametrize(("stream", "why"), MALFORMED)
@pytest.mark.parametrize("split", [False, True])
def test_each_malformed_packet_is_a_protocol_error(stream: bytes, why: str, split: bool) -> None:
    with pytest.raises(MqttProtocolError, match=why):
        decode_all(stream, list(range(len(stream))) if split else [])


def test_a_packet_over_the_maximum_size_is_refused_as_soon_as_its_header_is_in() -> None:
    decoder = PacketDecoder(1_024)
    header = b"\x30" + variable_integer(1_022)  # 1 + 2 + 1,022 = 1,025 bytes
    decoder.feed(header[:2])
    assert decoder.read() == ([], None)  # the length is not complete yet
    decoder.feed(header[2:])
    with pytest.raises(MqttProtocolError, match="1025 bytes, over the maximum packet size"):
        decoder.read()
    just_fits = b"\x30" + variable_integer(1_021) + b"\x00\x01t\x00" + b"x" * 1_017
    decoder = PacketDecoder(1_024)
    decoder.feed(just_fits)
    assert decoder.read() == ([InboundMessage("t", b"x" * 1_017, 0, False)], None)


def test_what_waits_for_the_rest_of_a_packet_stays_under_the_maximum_size() -> None:
    decoder = PacketDecoder(1_024)
    stream = b"".join(
        b"\x32" + variable_integer(1_021) + b"\x00\x01t" + bytes((0, index + 1, 0)) + b"x" * 1_015
        for index in range(20)
    )
    delivered: list[InboundMessage] = []
    for start in range(0, len(stream), 700):  # reads that end inside packets
        decoder.feed(stream[start : start + 700])
        messages, control = decoder.read()
        assert control is None
        delivered.extend(messages)
        assert decoder.buffered < 1_024
    assert [message.mid for message in delivered] == list(range(1, 21))


@pytest.mark.parametrize("size", [0, 255, 268_435_461])
def test_a_maximum_packet_size_out_of_range_is_refused(size: int) -> None:
    with pytest.raises(ValueError, match=f"max_packet_size {size} is not within"):
        PacketDecoder(size)


def test_deliveries_before_a_control_packet_come_first() -> None:
    publish = packet(0x30, string(b"t") + b"\x00" + b"p")
    decoder = PacketDecoder()
    decoder.feed(publish + b"\xd0\x00" + publish + publish)
    message = InboundMessage("t", b"p", 0, False)
    assert decoder.read() == ([message], PingResponse())
    assert decoder.read() == ([message, message], None)
    assert decoder.read() == ([], None)
    assert decoder.buffered == 0
