"""What to do with one delivery: accept it, refuse it (with a reason), or ignore it.

Pure: the contract decides validity, the registry decides who belongs to the fleet.
Never raises for any topic or payload.

Two ways to the same answer. :func:`aedfleet.contract.decode_payload` parses the JSON in
Python, checks the schema version, then validates, and names the reason when something
is wrong. Nearly every delivery is valid, and for those pydantic's own JSON parser
(``validate_json``, parse and validate in one pass in Rust) takes about half the time;
so a payload is first tried that way, and anything it does not plainly accept (an
oversized or invalid payload, another cabinet's id, a schema version that is not the
JSON integer 1) goes the contract's way, which alone decides refusals and their reasons.
``tests/test_screening.py`` checks that both ways agree on generated payloads.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Container, Sequence
from dataclasses import dataclass
from typing import Final

from pydantic import TypeAdapter, ValidationError

from aedfleet.contract import (
    MAX_PAYLOAD_BYTES,
    MODEL_BY_CHANNEL,
    CabinetMessage,
    Channel,
    Cmd,
    ContractError,
    Message,
    Reason,
    decode_payload,
    identity_problem,
    parse_topic,
)


@dataclass(frozen=True, slots=True)
class Refused:
    reason: Reason
    detail: str


@dataclass(frozen=True, slots=True)
class Ignored:
    """Traffic on the fleet's topic tree that is not a cabinet report (commands)."""


_JSON_ADAPTERS: Final[dict[Channel, TypeAdapter[Message]]] = {
    channel: TypeAdapter(model) for channel, model in MODEL_BY_CHANNEL.items()
}
# In valid JSON the bytes `"v"` followed by a colon can only be a key: a quote inside a
# string is escaped. Validation forbids unknown keys, nested ones included, so once a
# payload validates and holds `"v"` only once, this finds its top-level schema version.
_VERSION_ONE: Final = re.compile(rb'"v"[ \t\n\r]*:[ \t\n\r]*1[ \t\n\r]*[,}]')


def screen(
    topic: str,
    payload: bytes,
    known_cabinets: Container[str],
    user_properties: Sequence[tuple[str, str]] = (),
) -> CabinetMessage | Refused | Ignored:
    try:
        cabinet_id, channel = _route(topic)
        if channel is Channel.CMD:
            return Ignored()
        if user_properties and (problem := identity_problem(cabinet_id, user_properties)):
            return Refused(Reason.IDENTITY_MISMATCH, problem)
        message = _plainly_valid(channel, payload, cabinet_id) or decode_payload(
            channel, payload, cabinet_id
        )
    except ContractError as exc:
        return Refused(exc.reason, exc.detail)
    if isinstance(message, Cmd):
        return Ignored()
    if message.cabinet_id not in known_cabinets:
        return Refused(
            Reason.UNKNOWN_CABINET, f"cabinet {message.cabinet_id!r} is not in the fleet registry"
        )
    return message


@functools.lru_cache(maxsize=1 << 16)
def _route(topic: str) -> tuple[str, Channel]:
    """:func:`parse_topic`, remembered: a fleet sends on a few topics per cabinet, again
    and again (a refused topic raises every time, and is not remembered)."""
    return parse_topic(topic)


def _plainly_valid(channel: Channel, payload: bytes, cabinet_id: str) -> Message | None:
    """The message, when the payload is one that ``decode_payload`` accepts as it is;
    None when it may not be (``decode_payload`` then decides)."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        return None
    try:
        message = _JSON_ADAPTERS[channel].validate_json(payload)
    except ValidationError:
        return None
    if message.cabinet_id != cabinet_id:
        return None
    # The model takes 1.0 and true for its version 1; the contract wants the integer
    # (and of a key given twice, the last one counts).
    if payload.count(b'"v"') != 1 or _VERSION_ONE.search(payload) is None:
        return None
    return message
