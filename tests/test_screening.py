"""Screening is total: any topic and payload is accepted, refused with a reason, or ignored."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from aedfleet.contract import (
    IDENTITY_PROPERTY,
    Channel,
    CmdResult,
    ConnectionState,
    Consumables,
    ConsumablesSource,
    ContractError,
    EventType,
    Message,
    Reason,
    Selftest,
    SelftestKind,
    SelftestResult,
    decode_payload,
    encode,
)
from ingest.ratelimit import RateLimiter
from ingest.screening import Ignored, Refused, _plainly_valid, screen
from tests.test_twin import CABINET, T0, birth, envelope, event, heartbeat, status

KNOWN = {"SZ-0001"}
HEADER: dict[str, Any] = {
    "v": 1,
    "cabinet_id": "SZ-0001",
    "boot_id": "0123456789abcdef0123456789abcdef",
    "seq": 5,
    "ts": "2026-11-25T08:00:00Z",
}
EVENT = {**HEADER, "event": "door_opened", "detail": None}


def refusal(topic: str, payload: bytes) -> Reason:
    result = screen(topic, payload, KNOWN)
    assert isinstance(result, Refused), result
    return result.reason


def test_a_valid_event_is_accepted() -> None:
    result = screen("aed/v1/SZ-0001/event", json.dumps(EVENT).encode(), KNOWN)
    assert not isinstance(result, Refused | Ignored)
    assert result.seq == 5


def test_a_message_published_under_another_login_is_refused() -> None:
    payload = json.dumps(EVENT).encode()
    spoofed = screen("aed/v1/SZ-0001/event", payload, KNOWN, ((IDENTITY_PROPERTY, "SZ-0002"),))
    assert isinstance(spoofed, Refused)
    assert spoofed.reason is Reason.IDENTITY_MISMATCH
    assert "'SZ-0002'" in spoofed.detail


@given(
    other_login=st.text(min_size=1, max_size=70).filter(lambda login: login != "SZ-0001"),
    first=st.booleans(),
)
def test_no_second_identity_outvotes_a_mismatch(other_login: str, first: bool) -> None:
    own = (IDENTITY_PROPERTY, "SZ-0001")
    other = (IDENTITY_PROPERTY, other_login)
    properties = (other, own) if first else (own, other)
    result = screen("aed/v1/SZ-0001/event", json.dumps(EVENT).encode(), KNOWN, properties)
    assert isinstance(result, Refused)
    assert result.reason is Reason.IDENTITY_MISMATCH


def test_the_own_login_or_none_at_all_is_accepted() -> None:
    payload = json.dumps(EVENT).encode()
    for properties in [(), ((IDENTITY_PROPERTY, "SZ-0001"),), (("site", "SZ-0002"),)]:
        result = screen("aed/v1/SZ-0001/event", payload, KNOWN, properties)
        assert not isinstance(result, Refused | Ignored), properties


def test_commands_are_ignored_not_refused() -> None:
    assert isinstance(screen("aed/v1/SZ-0001/cmd", b"anything", KNOWN), Ignored)


def test_every_kind_of_bad_input_has_its_reason() -> None:
    event = json.dumps(EVENT).encode()
    assert refusal("aed/v1/SZ-0001/event", event[:-5]) is Reason.INVALID_JSON
    assert refusal("aed/v1/SZ-0001/event", event.replace(b"5,", b'"five",', 1)) is (
        Reason.SCHEMA_VIOLATION
    )
    assert refusal("aed/v1/SZ-0001/event", b'{"v": 9}') is Reason.UNKNOWN_VERSION
    assert refusal("aed/v1/SZ-0001/event", b"x" * 70_000) is Reason.OVERSIZED
    assert refusal("aed/v1/SZ-0001/event", b'{"v": 1, "seq": NaN}') is Reason.INVALID_JSON
    assert refusal("aed/v1/SZ-0002/event", event) is Reason.CABINET_MISMATCH
    assert refusal("aed/v1/SZ-0001/bogus", event) is Reason.UNKNOWN_CHANNEL
    assert refusal("aed/v2/SZ-0001/event", event) is Reason.UNKNOWN_VERSION
    assert refusal("aed/v1/SZ-0001/event/extra", event) is Reason.BAD_TOPIC
    stranger = json.dumps({**EVENT, "cabinet_id": "XX-9"}).encode()
    assert refusal("aed/v1/XX-9/event", stranger) is Reason.UNKNOWN_CABINET


def test_a_topic_seen_again_is_screened_alike() -> None:
    event = json.dumps(EVENT).encode()
    for _ in range(3):
        assert refusal("aed/v1/SZ-0001/bogus", event) is Reason.UNKNOWN_CHANNEL
        assert refusal("aed/v1/SZ-0002/event", event) is Reason.CABINET_MISMATCH
        assert not isinstance(screen("aed/v1/SZ-0001/event", event, KNOWN), Refused | Ignored)
    assert refusal("aed/v1/SZ-0001/event", event.replace(b"SZ-0001", b"SZ-0002")) is (
        Reason.CABINET_MISMATCH
    )


@settings(max_examples=400, deadline=None)
@given(topic=st.text(max_size=80), payload=st.binary(max_size=300))
def test_arbitrary_input_never_raises(topic: str, payload: bytes) -> None:
    screen(topic, payload, KNOWN)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(field=st.sampled_from(sorted(EVENT)), value=json_values)
def test_mutated_fields_are_accepted_or_refused_never_raised(field: str, value: object) -> None:
    payload = json.dumps({**EVENT, field: value}).encode()
    result = screen("aed/v1/SZ-0001/event", payload, KNOWN)
    assert not isinstance(result, Ignored)


def test_rate_limiter_allows_a_burst_then_the_rate() -> None:
    limiter = RateLimiter(per_second=1.0, burst=3)
    assert [limiter.allow("k", 0.0) for _ in range(5)] == [True, True, True, False, False]
    assert limiter.take_suppressed("k") == 2
    assert limiter.allow("k", 1.0)
    assert not limiter.allow("k", 1.0)
    assert limiter.allow("other", 1.0)


# -- the fast way agrees with the contract's ------------------------------------------------

VALID_MESSAGES: list[tuple[Channel, Message]] = [
    (Channel.BIRTH, birth(0, 1, T0)),
    (Channel.STATUS, status(0, 1, T0, ConnectionState.ONLINE)),
    (Channel.HEARTBEAT, heartbeat(0, 2, T0)),
    (Channel.EVENT, event(0, 3, T0, EventType.TAMPER)),
    (
        Channel.SELFTEST,
        Selftest(
            **envelope(0, 4, T0),
            kind=SelftestKind.DAILY,
            result=SelftestResult.FAIL,
            fault_codes=("E12", "B-3"),
            battery_pct=80.5,
        ),
    ),
    (
        Channel.CONSUMABLES,
        Consumables(
            **envelope(0, 5, T0),
            pads_present=True,
            pads_expiry=date(2027, 1, 31),
            battery_expiry=None,
            source=ConsumablesSource.CAPTAIN,
        ),
    ),
    (Channel.CMD_RESULT, CmdResult(**envelope(0, 6, T0), command_id="c-1", ok=False, error="x")),
]
# Values that the model may coerce while the contract's own checks may not.
tricky_values: st.SearchStrategy[object] = st.sampled_from(
    [1, 1.0, True, False, 0, -1, "1", "", None, 2**60, 1e300, []]
)


@st.composite
def payloads(draw: st.DrawFn) -> tuple[Channel, bytes]:
    channel, message = draw(st.sampled_from(VALID_MESSAGES))
    document: dict[str, Any] = json.loads(encode(message))
    for _ in range(draw(st.integers(0, 2))):
        key = draw(st.sampled_from([*sorted(document), "v", "extra"]))
        document[key] = draw(tricky_values | json_values)
    separators = draw(st.sampled_from([(",", ":"), (", ", ": "), (" ,", " : ")]))
    text = json.dumps(document, separators=separators, indent=draw(st.sampled_from([None, 1])))
    if draw(st.booleans()):
        # A key given twice: the contract's JSON parser keeps the last.
        version = draw(st.sampled_from(['"v":1', '"v":1.0', '"v":true', '"v" : 1']))
        text = (
            "{" + version + "," + text[1:]
            if draw(st.booleans())
            else text[:-1] + "," + version + "}"
        )
    return channel, text.encode()


def contract_decision(channel: Channel, payload: bytes) -> Message | Reason:
    try:
        return decode_payload(channel, payload, CABINET)
    except ContractError as exc:
        return exc.reason


@settings(max_examples=1_500, deadline=None)
@given(case=payloads())
def test_what_the_fast_way_accepts_the_contract_accepts_alike(
    case: tuple[Channel, bytes],
) -> None:
    channel, payload = case
    fast = _plainly_valid(channel, payload, CABINET)
    if fast is not None:
        assert contract_decision(channel, payload) == fast


def test_the_fast_way_takes_every_valid_message_as_encoded() -> None:
    for channel, message in VALID_MESSAGES:
        assert _plainly_valid(channel, encode(message), CABINET) == message


def test_a_version_the_contract_refuses_is_left_to_the_contract() -> None:
    payload = encode(heartbeat(0, 2, T0))
    for version in (b'"v":1.0', b'"v":true'):
        odd = payload.replace(b'"v":1', version, 1)
        assert _plainly_valid(Channel.HEARTBEAT, odd, CABINET) is None
        assert contract_decision(Channel.HEARTBEAT, odd) is Reason.SCHEMA_VIOLATION


# Python's json.loads given bytes would guess these encodings and skip a byte order mark;
# the contract is UTF-8 without one, and the fast way must not take them either.
OTHER_ENCODINGS = ("utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be")
BYTE_ORDER_MARKS = tuple("\ufeff".encode(codec) for codec in ("utf-8", "utf-16", "utf-32"))


@st.composite
def other_encodings(draw: st.DrawFn) -> tuple[Channel, bytes]:
    channel, message = draw(st.sampled_from(VALID_MESSAGES))
    text = encode(message).decode()
    if draw(st.booleans()):
        return channel, text.encode(draw(st.sampled_from(OTHER_ENCODINGS)))
    return channel, draw(st.sampled_from(BYTE_ORDER_MARKS)) + text.encode()


@settings(max_examples=300, deadline=None)
@given(case=other_encodings())
def test_a_valid_message_not_in_plain_utf8_is_invalid_json_both_ways(
    case: tuple[Channel, bytes],
) -> None:
    channel, payload = case
    assert _plainly_valid(channel, payload, CABINET) is None
    assert contract_decision(channel, payload) is Reason.INVALID_JSON
    assert refusal(f"aed/v1/{CABINET}/{channel.value}", payload) is Reason.INVALID_JSON
