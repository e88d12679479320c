"""Screening is total: any topic and payload is accepted, refused with a reason, or ignored."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from aedfleet.contract import Reason
from ingest.ratelimit import RateLimiter
from ingest.screening import Ignored, Refused, screen

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
