"""Endpoint authentication (pure): bearer tokens and HMAC-signed, timestamped bodies.

The HMAC scheme, for receivers to implement::

    X-AEDFleet-Timestamp: 1718000000            (Unix seconds when the attempt was made)
    X-AEDFleet-Signature: v1=<hex HMAC-SHA256(secret, timestamp + "." + body)>

The timestamp is inside the MAC, so a captured request cannot be re-dated; a receiver
rejects timestamps outside its tolerance (stale) and a signature it has already seen
within that tolerance (replayed). Each delivery attempt is signed afresh, so a retry is
not a replay; the ``Idempotency-Key`` header (the same on every attempt of a message)
is what lets a receiver drop a message it has already processed.

:class:`SignatureVerifier` is the receiver's side, for command-centre integrators (and
the tests' receiver). Several ``v1=`` signatures may be sent comma separated, and a
verifier may hold several secrets, so keys can be rotated without a gap.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import OrderedDict
from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from typing import Final

from dispatch.errors import DispatchError

TIMESTAMP_HEADER: Final = "X-AEDFleet-Timestamp"
SIGNATURE_HEADER: Final = "X-AEDFleet-Signature"
IDEMPOTENCY_HEADER: Final = "Idempotency-Key"
SCHEME: Final = "v1"
DEFAULT_TOLERANCE_S: Final = 300.0


def signature(secret: bytes, timestamp: int, body: bytes) -> str:
    """The ``v1=…`` value of the signature header for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"{SCHEME}={mac.hexdigest()}"


def signed_headers(secret: bytes, body: bytes, now: datetime) -> dict[str, str]:
    timestamp = int(now.timestamp())
    return {
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: signature(secret, timestamp, body),
    }


def bearer_headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class Rejection(StrEnum):
    MISSING = "missing"
    MALFORMED = "malformed"
    STALE = "stale"
    MISMATCH = "mismatch"
    REPLAYED = "replayed"


class SignatureError(DispatchError):
    """A request whose signature a receiver must refuse; ``reason`` says why."""

    def __init__(self, reason: Rejection, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason


class SignatureVerifier:
    """Checks signed requests on the receiving side and remembers what it accepted.

    Not thread-safe: use one per event loop or guard it.
    """

    def __init__(
        self,
        secrets: Sequence[bytes],
        tolerance_s: float = DEFAULT_TOLERANCE_S,
        remembered: int = 100_000,
    ) -> None:
        if not secrets:
            raise ValueError("a verifier needs at least one secret")
        self._secrets = tuple(secrets)
        self._tolerance_s = tolerance_s
        self._remembered = remembered
        # signature -> timestamp, oldest first; only signatures within the tolerance matter.
        self._seen: OrderedDict[str, int] = OrderedDict()

    def verify(
        self, timestamp: str | None, signatures: str | None, body: bytes, now: datetime
    ) -> None:
        """Raise :class:`SignatureError` unless the request is fresh, authentic and new."""
        if not timestamp or not signatures:
            raise SignatureError(
                Rejection.MISSING, f"{TIMESTAMP_HEADER} and {SIGNATURE_HEADER} are required"
            )
        if not timestamp.isascii() or not timestamp.isdigit():
            raise SignatureError(
                Rejection.MALFORMED, f"timestamp {timestamp[:40]!r} is not Unix seconds"
            )
        sent_at = int(timestamp)
        age_s = now.timestamp() - sent_at
        if abs(age_s) > self._tolerance_s:
            raise SignatureError(
                Rejection.STALE,
                f"timestamp is {age_s:.0f} s off; the tolerance is {self._tolerance_s:g} s",
            )
        offered = [part.strip() for part in signatures.split(",") if part.strip()]
        expected = [signature(secret, sent_at, body) for secret in self._secrets]
        match = next(
            (
                given
                for given in offered
                if any(hmac.compare_digest(given, wanted) for wanted in expected)
            ),
            None,
        )
        if match is None:
            raise SignatureError(Rejection.MISMATCH, "no signature matches the body and timestamp")
        self._forget_before(int(now.timestamp() - self._tolerance_s))
        if match in self._seen:
            raise SignatureError(Rejection.REPLAYED, "this signed request was accepted before")
        self._seen[match] = sent_at
        while len(self._seen) > self._remembered:
            self._seen.popitem(last=False)

    def _forget_before(self, oldest: int) -> None:
        # Signatures older than the tolerance are refused as stale anyway.
        while self._seen:
            first = next(iter(self._seen.values()))
            if first >= oldest:
                return
            self._seen.popitem(last=False)
