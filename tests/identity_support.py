"""Cabinets that claim a login: the MQTT 5 identity property set by hand, and their events."""

from __future__ import annotations

from datetime import UTC, datetime

from aedfleet.contract import IDENTITY_PROPERTY, Event, EventType, encode
from aedfleet.mqtt import KeepAliveTicker, MqttConnection, MqttSettings


def claiming(settings: MqttSettings, ticker: KeepAliveTicker, login: str) -> MqttConnection:
    """A connection whose every message says it was published under ``login``."""
    return MqttConnection(
        settings, f"aed-{login}", ticker, user_properties=((IDENTITY_PROPERTY, login),)
    )


def door_opened(cabinet_id: str, seq: int, boot_id: str = "e" * 32) -> bytes:
    return encode(
        Event(
            v=1,
            cabinet_id=cabinet_id,
            boot_id=boot_id,
            seq=seq,
            ts=datetime.now(UTC),
            event=EventType.DOOR_OPENED,
        )
    )
