"""Signed links: acknowledge, resolve or record an inspection from a phone, without a login.

A captain's message carries a link such as ``https://aed.example.cn/l/AR4...`` whose last
path segment is a token. The token says what may be done (:class:`LinkAction`), to what
(an alarm id, or a cabinet id for an inspection), by whom (a person id) and until when;
an HMAC-SHA256 tag makes it unforgeable. Whoever holds the link may act as that person
until it expires, as with any emailed login link, so the time to live stays short.

Token layout, before URL-safe base64 without padding::

    version and action   1 byte     high nibble the format version (1), low nibble the action
    expires at           4 bytes    Unix seconds, big-endian (good until 2106)
    target               varint     alarm id (acknowledge, resolve)
                      or varint + UTF-8   cabinet id (record inspection)
    person id            varint + UTF-8
    tag                  16 bytes   HMAC-SHA256 over a domain label and the bytes above,
                                    truncated to 128 bits (RFC 2104 section 5)

Binary fields rather than JSON keep it short enough for SMS: 21 fixed bytes plus the
target and the person id. Alarm 1,000,000 acknowledged by person ``p-000123`` is 33
bytes, a 44-character token; behind ``https://aed.example.cn/l/`` the link is 69
characters, inside one 70-character Chinese (UCS-2) SMS segment. In general a token has
``ceil(4 * (21 + target + person) / 3)`` characters, where an alarm id takes 1 to 3
bytes below 2,097,152, and a cabinet or person id its UTF-8 length plus one (plus two
beyond 127 bytes). The longest, 64 four-byte characters in both ids, is 716 characters.

Verification is strict: only the URL-safe alphabet, only the canonical encoding (so no
two strings carry the same token), a tag compared in constant time
(:func:`hmac.compare_digest`) against every verification secret, and only then the
payload is parsed. A link is valid while ``now < expires_at`` and expired from that
exact second. Failures raise :class:`LinkError` whose ``reason`` says which check failed.

Keys rotate: a :class:`LinkSigner` holds a list of secrets; the first signs, all verify.
Add the new secret in front, and drop the old one once the longest TTL has passed.

Links are not single-use: acknowledging and resolving are idempotent and every alarm
has its own id, so replaying a link does nothing the first use did not. The HTTP layer
should act on a POST from the page the link opens, never on the GET itself, because
mail and chat scanners fetch links before the captain does.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Final
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from aedfleet.contract import CabinetId, UtcTimestamp
from aedfleet.registry import PersonId
from alerting.errors import AlertingError

FORMAT_VERSION: Final = 1
TAG_BYTES: Final = 16
MIN_SECRET_BYTES: Final = 32
SIGNATURE_DOMAIN: Final = b"aedfleet-link-v1\x00"
_EXPIRY_BYTES: Final = 4
_MAX_EXPIRY: Final = 2**32 - 1
_MAX_ALARM_ID: Final = 2**63 - 1
_MAX_ID_BYTES: Final = 2 + 4 * 64  # a varint length and 64 four-byte characters
MAX_TOKEN_CHARS: Final = math.ceil(4 * (1 + _EXPIRY_BYTES + 2 * _MAX_ID_BYTES + TAG_BYTES) / 3)
_TOKEN_ALPHABET: Final = re.compile(r"[A-Za-z0-9_-]+")


class LinkAction(StrEnum):
    ACKNOWLEDGE = "ack"
    RESOLVE = "resolve"
    RECORD_INSPECTION = "inspect"

    @property
    def targets_alarm(self) -> bool:
        """Acknowledge and resolve act on an alarm; recording an inspection on a cabinet."""
        return self is not LinkAction.RECORD_INSPECTION


_ACTION_CODES: Final = {
    LinkAction.ACKNOWLEDGE: 1,
    LinkAction.RESOLVE: 2,
    LinkAction.RECORD_INSPECTION: 3,
}
_ACTIONS_BY_CODE: Final = {code: action for action, code in _ACTION_CODES.items()}


class LinkErrorReason(StrEnum):
    MALFORMED = "malformed"
    BAD_SIGNATURE = "bad_signature"
    EXPIRED = "expired"
    WRONG_ACTION = "wrong_action"


class LinkError(AlertingError):
    """A link that grants nothing; ``reason`` is stable for metrics and the page shown."""

    def __init__(self, reason: LinkErrorReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


class LinkClaim(BaseModel):
    """What a valid link allows: ``person_id`` may do ``action`` until ``expires_at``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    action: LinkAction
    alarm_id: int | None = Field(default=None, ge=0, le=_MAX_ALARM_ID)
    cabinet_id: CabinetId | None = None
    person_id: PersonId
    expires_at: UtcTimestamp

    @model_validator(mode="after")
    def _check_target(self) -> LinkClaim:
        if self.action.targets_alarm:
            if self.alarm_id is None or self.cabinet_id is not None:
                raise ValueError(f"a {self.action.value} link names an alarm id and no cabinet")
        elif self.cabinet_id is None or self.alarm_id is not None:
            raise ValueError(f"a {self.action.value} link names a cabinet id and no alarm")
        return self


class LinkSigner:
    """Makes and verifies signed links; ``secrets[0]`` signs, every secret verifies."""

    def __init__(self, secrets: Sequence[bytes], base_url: str, ttl: timedelta) -> None:
        if isinstance(secrets, bytes | bytearray):
            raise TypeError("secrets is a sequence of keys; wrap a single key in a list")
        if not secrets:
            raise ValueError("at least one secret is needed")
        for index, secret in enumerate(secrets):
            if len(secret) < MIN_SECRET_BYTES:
                raise ValueError(
                    f"secret {index} has {len(secret)} bytes; use at least {MIN_SECRET_BYTES}"
                    " random bytes (secrets.token_bytes)"
                )
        if ttl <= timedelta(0):
            raise ValueError(f"ttl must be positive, got {ttl}")
        self._secrets = tuple(bytes(secret) for secret in secrets)
        self._base_url = _check_base_url(base_url)
        self._ttl = ttl

    def make(self, action: LinkAction, target: int | str, person_id: str, now: datetime) -> str:
        """A link for ``person_id`` to ``action`` on ``target`` (an alarm id, or a cabinet
        id for an inspection), valid from ``now`` for the signer's ttl."""
        return f"{self._base_url}/{self.token(action, target, person_id, now)}"

    def token(self, action: LinkAction, target: int | str, person_id: str, now: datetime) -> str:
        """The token alone, for callers that build their own URL."""
        _require_aware(now)
        expires = math.floor((now + self._ttl).timestamp())
        if not 0 <= expires <= _MAX_EXPIRY:
            raise ValueError(f"expiry {expires} does not fit the token's 32-bit field")
        if action.targets_alarm:
            if isinstance(target, bool) or not isinstance(target, int):
                raise TypeError(f"a {action.value} link takes an alarm id (int), got {target!r}")
            claim = LinkClaim(
                action=action,
                alarm_id=target,
                person_id=person_id,
                expires_at=datetime.fromtimestamp(expires, UTC),
            )
        else:
            if not isinstance(target, str):
                raise TypeError(f"a {action.value} link takes a cabinet id (str), got {target!r}")
            claim = LinkClaim(
                action=action,
                cabinet_id=target,
                person_id=person_id,
                expires_at=datetime.fromtimestamp(expires, UTC),
            )
        payload = _encode(claim)
        tag = _tag(self._secrets[0], payload)
        return base64.urlsafe_b64encode(payload + tag).rstrip(b"=").decode("ascii")

    def verify(
        self, url_or_token: str, now: datetime, expected: LinkAction | None = None
    ) -> LinkClaim:
        """What the link allows at ``now``, or :class:`LinkError` saying why it allows nothing.

        ``expected`` is the action of the endpoint the link was opened on, if it has one.
        """
        _require_aware(now)
        raw = _decode(_token_of(url_or_token))
        payload, tag = raw[:-TAG_BYTES], raw[-TAG_BYTES:]
        # Every secret is tried, so the time taken does not tell which one matched.
        matched = False
        for secret in self._secrets:
            matched |= hmac.compare_digest(_tag(secret, payload), tag)
        if not matched:
            raise LinkError(LinkErrorReason.BAD_SIGNATURE, "the link's signature does not match")
        claim = _parse(payload)
        if expected is not None and claim.action is not expected:
            raise LinkError(
                LinkErrorReason.WRONG_ACTION,
                f"this link is for {claim.action.value}, not {expected.value}",
            )
        if now >= claim.expires_at:
            raise LinkError(
                LinkErrorReason.EXPIRED,
                f"the link expired at {claim.expires_at.isoformat()}",
            )
        return claim


def _require_aware(now: datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")


def _check_base_url(base_url: str) -> str:
    parts = urlsplit(base_url)
    if parts.scheme not in {"https", "http"} or not parts.netloc:
        raise ValueError(f"base_url must be an absolute http(s) URL, got {base_url!r}")
    if parts.query or parts.fragment:
        raise ValueError(f"base_url must not have a query or fragment, got {base_url!r}")
    return base_url.rstrip("/")


def _tag(secret: bytes, payload: bytes) -> bytes:
    return hmac.new(secret, SIGNATURE_DOMAIN + payload, hashlib.sha256).digest()[:TAG_BYTES]


def _encode(claim: LinkClaim) -> bytes:
    parts = [
        bytes([FORMAT_VERSION << 4 | _ACTION_CODES[claim.action]]),
        int(claim.expires_at.timestamp()).to_bytes(_EXPIRY_BYTES, "big"),
    ]
    if claim.alarm_id is not None:
        parts.append(_varint(claim.alarm_id))
    if claim.cabinet_id is not None:
        parts.append(_text(claim.cabinet_id))
    parts.append(_text(claim.person_id))
    return b"".join(parts)


def _varint(value: int) -> bytes:
    """Unsigned LEB128: seven bits a byte, low bits first, high bit set on all but the last."""
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        if not value:
            out.append(low)
            return bytes(out)
        out.append(low | 0x80)


def _text(value: str) -> bytes:
    encoded = value.encode("utf-8")
    return _varint(len(encoded)) + encoded


def _token_of(url_or_token: str) -> str:
    without_query = url_or_token.strip().split("#", 1)[0].split("?", 1)[0]
    return without_query.rstrip("/").rsplit("/", 1)[-1]


def _decode(token: str) -> bytes:
    if not 0 < len(token) <= MAX_TOKEN_CHARS or not _TOKEN_ALPHABET.fullmatch(token):
        raise LinkError(LinkErrorReason.MALFORMED, "not a link token")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise LinkError(LinkErrorReason.MALFORMED, "not base64") from None
    # Unused low bits in the last character would let two strings carry the same bytes.
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != token:
        raise LinkError(LinkErrorReason.MALFORMED, "not the canonical encoding")
    if len(raw) <= TAG_BYTES:
        raise LinkError(LinkErrorReason.MALFORMED, "too short to carry a signature")
    return raw


class _Reader:
    def __init__(self, data: bytes) -> None:
        self._data = data
        self._position = 0

    def take(self, count: int) -> bytes:
        end = self._position + count
        if end > len(self._data):
            raise ValueError("payload ends early")
        chunk = self._data[self._position : end]
        self._position = end
        return chunk

    def varint(self) -> int:
        value = 0
        for shift in range(0, 70, 7):
            byte = self.take(1)[0]
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
        raise ValueError("varint too long")

    def text(self) -> str:
        return self.take(self.varint()).decode("utf-8")

    def at_end(self) -> bool:
        return self._position == len(self._data)


def _parse(payload: bytes) -> LinkClaim:
    """Decode a payload whose tag has been checked; only our own signer made it."""
    reader = _Reader(payload)
    try:
        header = reader.take(1)[0]
        version, code = header >> 4, header & 0x0F
        if version != FORMAT_VERSION or code not in _ACTIONS_BY_CODE:
            raise ValueError(f"unknown format {version} or action {code}")  # noqa: TRY301
        action = _ACTIONS_BY_CODE[code]
        expires = int.from_bytes(reader.take(_EXPIRY_BYTES), "big")
        alarm_id = reader.varint() if action.targets_alarm else None
        cabinet_id = None if action.targets_alarm else reader.text()
        person_id = reader.text()
        if not reader.at_end():
            raise ValueError("trailing bytes")  # noqa: TRY301
        return LinkClaim(
            action=action,
            alarm_id=alarm_id,
            cabinet_id=cabinet_id,
            person_id=person_id,
            expires_at=datetime.fromtimestamp(expires, UTC),
        )
    except (ValueError, ValidationError) as exc:
        raise LinkError(LinkErrorReason.MALFORMED, f"signed but unreadable: {exc}") from None
