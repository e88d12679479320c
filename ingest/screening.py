"""What to do with one delivery: accept it, refuse it (with a reason), or ignore it.

Pure: the contract decides validity, the registry decides who belongs to the fleet.
Never raises for any topic or payload.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass

from aedfleet.contract import (
    CabinetMessage,
    Channel,
    Cmd,
    ContractError,
    Reason,
    decode_payload,
    parse_topic,
)


@dataclass(frozen=True, slots=True)
class Refused:
    reason: Reason
    detail: str


@dataclass(frozen=True, slots=True)
class Ignored:
    """Traffic on the fleet's topic tree that is not a cabinet report (commands)."""


def screen(
    topic: str, payload: bytes, known_cabinets: Container[str]
) -> CabinetMessage | Refused | Ignored:
    try:
        cabinet_id, channel = parse_topic(topic)
        if channel is Channel.CMD:
            return Ignored()
        message = decode_payload(channel, payload, cabinet_id)
    except ContractError as exc:
        return Refused(exc.reason, exc.detail)
    if isinstance(message, Cmd):
        return Ignored()
    if message.cabinet_id not in known_cabinets:
        return Refused(
            Reason.UNKNOWN_CABINET, f"cabinet {message.cabinet_id!r} is not in the fleet registry"
        )
    return message
