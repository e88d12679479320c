"""Endpoint authentication (pure): HMAC over timestamp and body, replay protection."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dispatch.signing import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Rejection,
    SignatureError,
    SignatureVerifier,
    bearer_headers,
    signature,
    signed_headers,
)

SECRET = b"a shared secret of the 120 centre"
NOW = datetime(2025, 6, 1, 8, 0, tzinfo=UTC)
BODY = b'{"event_id":"SZ-1/abc/1"}'


def verify(
    verifier: SignatureVerifier, headers: dict[str, str], body: bytes, now: datetime = NOW
) -> None:
    verifier.verify(headers.get(TIMESTAMP_HEADER), headers.get(SIGNATURE_HEADER), body, now)


def rejection(
    verifier: SignatureVerifier, headers: dict[str, str], body: bytes, **kw: datetime
) -> Rejection:
    with pytest.raises(SignatureError) as caught:
        verify(verifier, headers, body, **kw)
    return caught.value.reason


def test_the_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    headers = signed_headers(SECRET, BODY, NOW)
    timestamp = int(NOW.timestamp())
    assert headers[TIMESTAMP_HEADER] == str(timestamp)
    expected = hmac.new(SECRET, f"{timestamp}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert headers[SIGNATURE_HEADER] == f"v1={expected}"


def test_a_fresh_request_passes_once() -> None:
    verifier = SignatureVerifier([SECRET])
    headers = signed_headers(SECRET, BODY, NOW)
    verify(verifier, headers, BODY, NOW + timedelta(seconds=2))
    assert rejection(verifier, headers, BODY, now=NOW + timedelta(seconds=3)) is Rejection.REPLAYED


def test_a_retry_is_signed_afresh_and_is_not_a_replay() -> None:
    verifier = SignatureVerifier([SECRET])
    verify(verifier, signed_headers(SECRET, BODY, NOW), BODY)
    later = NOW + timedelta(seconds=5)
    verify(verifier, signed_headers(SECRET, BODY, later), BODY, later)


def test_stale_and_future_timestamps_are_refused() -> None:
    verifier = SignatureVerifier([SECRET], tolerance_s=60)
    old = signed_headers(SECRET, BODY, NOW - timedelta(seconds=61))
    assert rejection(verifier, old, BODY) is Rejection.STALE
    ahead = signed_headers(SECRET, BODY, NOW + timedelta(seconds=61))
    assert rejection(verifier, ahead, BODY) is Rejection.STALE


def test_a_changed_body_timestamp_or_key_is_refused() -> None:
    verifier = SignatureVerifier([SECRET])
    headers = signed_headers(SECRET, BODY, NOW)
    assert rejection(verifier, headers, BODY + b" ") is Rejection.MISMATCH
    redated = {**headers, TIMESTAMP_HEADER: str(int(NOW.timestamp()) + 1)}
    assert rejection(verifier, redated, BODY) is Rejection.MISMATCH
    forged = signed_headers(b"another key entirely, 32 bytes", BODY, NOW)
    assert rejection(verifier, forged, BODY) is Rejection.MISMATCH


def test_missing_and_malformed_headers_are_refused() -> None:
    verifier = SignatureVerifier([SECRET])
    assert rejection(verifier, {}, BODY) is Rejection.MISSING
    bad = {TIMESTAMP_HEADER: "yesterday", SIGNATURE_HEADER: "v1=00"}
    assert rejection(verifier, bad, BODY) is Rejection.MALFORMED


def test_keys_rotate_without_a_gap() -> None:
    old, new = b"the old key of the centre!!", b"the new key of the centre!!"
    verifier = SignatureVerifier([new, old])
    verify(verifier, signed_headers(old, BODY, NOW), BODY)
    timestamp = int(NOW.timestamp()) + 1
    both = {
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: f"{signature(b'unknown key, not held!!', timestamp, BODY)}, "
        f"{signature(new, timestamp, BODY)}",
    }
    verify(verifier, both, BODY)


def test_memory_is_bounded_and_forgets_what_is_stale_anyway() -> None:
    verifier = SignatureVerifier([SECRET], tolerance_s=10, remembered=3)
    for offset in range(5):
        at = NOW + timedelta(seconds=offset)
        verify(
            verifier, signed_headers(SECRET, BODY + bytes([offset]), at), BODY + bytes([offset]), at
        )
    assert len(verifier._seen) <= 3
    later = NOW + timedelta(seconds=60)
    verify(verifier, signed_headers(SECRET, BODY, later), BODY, later)
    assert len(verifier._seen) == 1


def test_a_verifier_needs_a_secret() -> None:
    with pytest.raises(ValueError, match="secret"):
        SignatureVerifier([])


def test_bearer_header() -> None:
    assert bearer_headers("abc") == {"Authorization": "Bearer abc"}


@given(st.binary(max_size=2_000), st.integers(min_value=0, max_value=2**33))
def test_any_body_signed_now_verifies(body: bytes, seconds: int) -> None:
    now = datetime.fromtimestamp(seconds, UTC)
    verify(SignatureVerifier([SECRET]), signed_headers(SECRET, body, now), body, now)
