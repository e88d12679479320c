"""Pure tests of signed links: round trips, tampering, the exact expiry, rotation, length."""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from aedfleet.contract import cabinet_id_problem
from alerting.links import (
    MAX_TOKEN_CHARS,
    SIGNATURE_DOMAIN,
    TAG_BYTES,
    LinkAction,
    LinkClaim,
    LinkError,
    LinkErrorReason,
    LinkSigner,
)

SECRET = bytes(range(32))
OLD_SECRET = bytes(range(100, 132))
BASE = "https://aed.example.cn/l"
TTL = timedelta(hours=24)
T0 = datetime(2024, 5, 1, 12, 0, 30, 250_000, tzinfo=UTC)
FAST = settings(max_examples=200, deadline=None)
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

signer = LinkSigner([SECRET], BASE, TTL)


def reason_of(url_or_token: str, now: datetime = T0, expected: LinkAction | None = None) -> str:
    with pytest.raises(LinkError) as caught:
        signer.verify(url_or_token, now, expected)
    return caught.value.reason


# Round trips


def test_an_acknowledge_link_round_trips() -> None:
    url = signer.make(LinkAction.ACKNOWLEDGE, 1_000_000, "p-000123", T0)
    assert url.startswith(BASE + "/")
    claim = signer.verify(url, T0)
    assert claim == LinkClaim(
        action=LinkAction.ACKNOWLEDGE,
        alarm_id=1_000_000,
        person_id="p-000123",
        expires_at=datetime(2024, 5, 2, 12, 0, 30, tzinfo=UTC),
    )


def test_an_inspection_link_names_a_cabinet() -> None:
    url = signer.make(LinkAction.RECORD_INSPECTION, "深圳-南山-0001", "张三", T0)
    claim = signer.verify(url, T0, expected=LinkAction.RECORD_INSPECTION)
    assert claim.cabinet_id == "深圳-南山-0001"
    assert claim.alarm_id is None
    assert claim.person_id == "张三"


def test_the_token_alone_verifies_and_so_does_a_url_with_extras() -> None:
    token = signer.token(LinkAction.RESOLVE, 42, "p-1", T0)
    assert signer.make(LinkAction.RESOLVE, 42, "p-1", T0) == f"{BASE}/{token}"
    for form in (token, f"{BASE}/{token}", f"{BASE}/{token}/", f" {BASE}/{token}?utm=sms#top "):
        assert signer.verify(form, T0).alarm_id == 42
    trailing = LinkSigner([SECRET], BASE + "/", TTL)
    assert trailing.make(LinkAction.RESOLVE, 42, "p-1", T0) == f"{BASE}/{token}"


person_ids = st.from_regex(r"[^\s,;]{1,64}", fullmatch=True)
cabinet_ids = st.text(min_size=1, max_size=64).filter(lambda text: cabinet_id_problem(text) is None)
moments = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)


@FAST
@given(
    action=st.sampled_from(list(LinkAction)),
    alarm_id=st.integers(0, 2**63 - 1),
    cabinet_id=cabinet_ids,
    person_id=person_ids,
    now=moments,
)
def test_every_link_round_trips(
    action: LinkAction, alarm_id: int, cabinet_id: str, person_id: str, now: datetime
) -> None:
    target: int | str = alarm_id if action.targets_alarm else cabinet_id
    claim = signer.verify(signer.make(action, target, person_id, now), now, expected=action)
    assert claim.action is action
    assert claim.person_id == person_id
    assert (claim.alarm_id if action.targets_alarm else claim.cabinet_id) == target
    assert claim.expires_at == datetime.fromtimestamp(math.floor((now + TTL).timestamp()), UTC)


# Length


def test_a_typical_link_fits_one_chinese_sms_segment() -> None:
    # The numbers promised in the module docstring.
    token = signer.token(LinkAction.ACKNOWLEDGE, 1_000_000, "p-000123", T0)
    assert len(token) == 44
    link = f"https://aed.example.cn/l/{token}"
    assert len(link) == 69
    assert len(link) <= 70


@FAST
@given(
    action=st.sampled_from(list(LinkAction)),
    alarm_id=st.integers(0, 2_097_151),
    person_id=person_ids,
)
def test_the_token_length_follows_the_documented_formula(
    action: LinkAction, alarm_id: int, person_id: str
) -> None:
    target: int | str = alarm_id if action.targets_alarm else "cab-0001"
    token = signer.token(action, target, person_id, T0)
    if action.targets_alarm:
        target_bytes = 1 if alarm_id < 2**7 else 2 if alarm_id < 2**14 else 3
    else:
        target_bytes = 1 + len("cab-0001")
    encoded = len(person_id.encode())
    person_bytes = encoded + (1 if encoded < 2**7 else 2)
    assert len(token) == math.ceil(4 * (21 + target_bytes + person_bytes) / 3)


def test_the_longest_token_is_accepted() -> None:
    longest_id = "\U0001f6d1" * 64
    token = signer.token(LinkAction.RECORD_INSPECTION, longest_id, longest_id, T0)
    assert len(token) == MAX_TOKEN_CHARS == 716
    assert signer.verify(token, T0).cabinet_id == longest_id


# Tampering


@FAST
@given(data=st.data(), person_id=person_ids, alarm_id=st.integers(0, 10**9))
def test_any_changed_character_invalidates_the_token(
    data: st.DataObject, person_id: str, alarm_id: int
) -> None:
    token = signer.token(LinkAction.ACKNOWLEDGE, alarm_id, person_id, T0)
    index = data.draw(st.integers(0, len(token) - 1))
    replacement = data.draw(st.sampled_from(ALPHABET).filter(lambda char: char != token[index]))
    tampered = token[:index] + replacement + token[index + 1 :]
    assert reason_of(tampered) in {LinkErrorReason.BAD_SIGNATURE, LinkErrorReason.MALFORMED}


@FAST
@given(data=st.data(), person_id=person_ids, cabinet_id=cabinet_ids)
def test_any_changed_byte_fails_the_signature(
    data: st.DataObject, person_id: str, cabinet_id: str
) -> None:
    token = signer.token(LinkAction.RECORD_INSPECTION, cabinet_id, person_id, T0)
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    index = data.draw(st.integers(0, len(raw) - 1))
    raw[index] ^= data.draw(st.integers(1, 255))
    tampered = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    assert reason_of(tampered) is LinkErrorReason.BAD_SIGNATURE


@FAST
@given(data=st.data(), person_id=person_ids)
def test_cut_or_extended_tokens_fail(data: st.DataObject, person_id: str) -> None:
    token = signer.token(LinkAction.RESOLVE, 7, person_id, T0)
    cut = token[: data.draw(st.integers(0, len(token) - 1))]
    extended = token + data.draw(st.text(ALPHABET, min_size=1, max_size=8))
    assert reason_of(cut) in {LinkErrorReason.BAD_SIGNATURE, LinkErrorReason.MALFORMED}
    assert reason_of(extended) in {LinkErrorReason.BAD_SIGNATURE, LinkErrorReason.MALFORMED}


def test_another_encoding_of_the_same_bytes_is_refused() -> None:
    # 35 bytes leave two unused bits in the last character; setting them changes no byte.
    token = signer.token(LinkAction.ACKNOWLEDGE, 1_000_000, "p-00012345", T0)
    assert len(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))) % 3 == 2
    last = ALPHABET.index(token[-1])
    assert last & 0b11 == 0
    twin = token[:-1] + ALPHABET[last | 0b01]
    assert base64.urlsafe_b64decode(twin + "=") == base64.urlsafe_b64decode(token + "=")
    assert reason_of(twin) is LinkErrorReason.MALFORMED


@pytest.mark.parametrize(
    "text",
    ["", "/", f"{BASE}/", "not a token!", "AAAA====", "A" * 5, "A" * 20, "A" * 717, "ÄÖÜ" * 20],
)
def test_garbage_is_malformed(text: str) -> None:
    assert reason_of(text) is LinkErrorReason.MALFORMED


def _sign(payload: bytes, secret: bytes = SECRET) -> str:
    tag = hmac.new(secret, SIGNATURE_DOMAIN + payload, hashlib.sha256).digest()[:TAG_BYTES]
    return base64.urlsafe_b64encode(payload + tag).rstrip(b"=").decode()


@pytest.mark.parametrize(
    "payload",
    [
        bytes([0x21]) + (2**31).to_bytes(4, "big") + b"\x07\x03p-1",  # a future format
        bytes([0x14]) + (2**31).to_bytes(4, "big") + b"\x07\x03p-1",  # an unknown action
        bytes([0x11]) + (2**31).to_bytes(4, "big") + b"\x07\x03p-1!",  # trailing bytes
        bytes([0x11]) + (2**31).to_bytes(4, "big") + b"\x07\x09p-1",  # ends early
        bytes([0x11]) + (2**31).to_bytes(4, "big") + b"\x07\x03p 1",  # not a person id
        bytes([0x13]) + (2**31).to_bytes(4, "big") + b"\x03a/b\x03p-1",  # not a cabinet id
        bytes([0x11]) + (2**31).to_bytes(4, "big") + b"\x80" * 11,  # endless varint
    ],
)
def test_signed_but_unreadable_payloads_are_malformed(payload: bytes) -> None:
    with pytest.raises(LinkError, match="signed but unreadable") as caught:
        signer.verify(_sign(payload), T0)
    assert caught.value.reason is LinkErrorReason.MALFORMED


def test_the_hand_built_layout_matches_the_signer() -> None:
    payload = bytes([0x11]) + (2**31).to_bytes(4, "big") + b"\x07\x03p-1"
    claim = signer.verify(_sign(payload), T0)
    assert (claim.action, claim.alarm_id, claim.person_id) == (LinkAction.ACKNOWLEDGE, 7, "p-1")
    assert claim.expires_at == datetime.fromtimestamp(2**31, UTC)


# Expiry and action


@FAST
@given(now=moments, ttl_seconds=st.integers(1, 30 * 86_400))
def test_a_link_is_valid_until_exactly_its_expiry(now: datetime, ttl_seconds: int) -> None:
    short = LinkSigner([SECRET], BASE, timedelta(seconds=ttl_seconds))
    token = short.token(LinkAction.ACKNOWLEDGE, 9, "p-1", now)
    expires_at = short.verify(token, now).expires_at
    assert now + timedelta(seconds=ttl_seconds) - timedelta(seconds=1) < expires_at
    assert expires_at <= now + timedelta(seconds=ttl_seconds)
    assert short.verify(token, expires_at - timedelta(microseconds=1)).alarm_id == 9
    with pytest.raises(LinkError, match="expired at") as caught:
        short.verify(token, expires_at)
    assert caught.value.reason is LinkErrorReason.EXPIRED


def test_a_link_opened_for_another_action_is_refused() -> None:
    token = signer.token(LinkAction.ACKNOWLEDGE, 9, "p-1", T0)
    assert reason_of(token, expected=LinkAction.RESOLVE) is LinkErrorReason.WRONG_ACTION
    assert signer.verify(token, T0, expected=LinkAction.ACKNOWLEDGE).alarm_id == 9


# Key rotation


def test_keys_rotate_the_first_signs_and_all_verify() -> None:
    before = LinkSigner([OLD_SECRET], BASE, TTL)
    during = LinkSigner([SECRET, OLD_SECRET], BASE, TTL)
    after = LinkSigner([SECRET], BASE, TTL)
    old_link = before.make(LinkAction.ACKNOWLEDGE, 5, "p-1", T0)
    new_link = during.make(LinkAction.ACKNOWLEDGE, 5, "p-1", T0)
    assert during.verify(old_link, T0).alarm_id == 5
    assert after.verify(new_link, T0).alarm_id == 5
    with pytest.raises(LinkError) as caught:
        before.verify(new_link, T0)
    assert caught.value.reason is LinkErrorReason.BAD_SIGNATURE
    with pytest.raises(LinkError) as caught:
        after.verify(old_link, T0)
    assert caught.value.reason is LinkErrorReason.BAD_SIGNATURE


# Misuse


@pytest.mark.parametrize(
    ("secrets", "base_url", "ttl", "message"),
    [
        ([], BASE, TTL, "at least one secret"),
        ([b"short"], BASE, TTL, "secret 0 has 5 bytes"),
        ([SECRET, b"x" * 31], BASE, TTL, "secret 1 has 31 bytes"),
        ([SECRET], BASE, timedelta(0), "ttl must be positive"),
        ([SECRET], "aed.example.cn/l", TTL, "absolute http"),
        ([SECRET], "ftp://aed.example.cn/l", TTL, "absolute http"),
        ([SECRET], BASE + "?x=1", TTL, "query or fragment"),
    ],
)
def test_a_signer_refuses_unusable_settings(
    secrets: list[bytes], base_url: str, ttl: timedelta, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        LinkSigner(secrets, base_url, ttl)


def test_a_single_key_must_be_wrapped_in_a_list() -> None:
    with pytest.raises(TypeError, match="sequence of keys"):
        LinkSigner(SECRET, BASE, TTL)  # type: ignore[arg-type]


def test_targets_must_fit_the_action() -> None:
    with pytest.raises(TypeError, match="alarm id"):
        signer.make(LinkAction.ACKNOWLEDGE, "cab-1", "p-1", T0)
    with pytest.raises(TypeError, match="alarm id"):
        signer.make(LinkAction.RESOLVE, True, "p-1", T0)
    with pytest.raises(TypeError, match="cabinet id"):
        signer.make(LinkAction.RECORD_INSPECTION, 5, "p-1", T0)
    with pytest.raises(ValidationError):
        signer.make(LinkAction.ACKNOWLEDGE, -1, "p-1", T0)
    with pytest.raises(ValidationError):
        signer.make(LinkAction.ACKNOWLEDGE, 1, "p 1", T0)
    with pytest.raises(ValidationError):
        LinkClaim(action=LinkAction.RESOLVE, cabinet_id="cab-1", person_id="p-1", expires_at=T0)


def test_time_must_be_aware_and_within_the_token_range() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        signer.make(LinkAction.ACKNOWLEDGE, 1, "p-1", datetime(2024, 5, 1))
    token = signer.token(LinkAction.ACKNOWLEDGE, 1, "p-1", T0)
    with pytest.raises(ValueError, match="timezone-aware"):
        signer.verify(token, datetime(2024, 5, 1))
    with pytest.raises(ValueError, match="32-bit"):
        signer.make(LinkAction.ACKNOWLEDGE, 1, "p-1", datetime(2106, 3, 1, tzinfo=UTC))
