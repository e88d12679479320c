"""The twin fold as it was before it worked on plain values: the oracle the fast fold
(:func:`aedfleet.twin.fold`) is checked against in ``tests/test_twin.py``.

Kept verbatim (a frozen :class:`aedfleet.twin.Twin` copied per message), so that any
behaviour the rewrite changed, even outside what the other twin tests pin down, shows.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aedfleet.contract import (
    Birth,
    CabinetMessage,
    CmdResult,
    ConnectionState,
    Consumables,
    DoorState,
    Event,
    EventType,
    Heartbeat,
    PowerSource,
    Selftest,
    Status,
)
from aedfleet.presence import apply_status
from aedfleet.twin import Twin, is_newer


def _stamp_if_newer(
    twin: Twin, section: str, message: CabinetMessage, values: dict[str, Any]
) -> dict[str, Any]:
    """``values`` plus the section's new stamp when ``message`` is newer, else nothing."""
    boot_field = "boot_id" if section == "birth" else f"{section}_boot_id"
    stamp_boot: str | None = getattr(twin, boot_field)
    stamp_seq: int | None = getattr(twin, f"{section}_seq")
    stamp_ts: datetime | None = getattr(twin, f"{section}_ts")
    if not is_newer(stamp_boot, stamp_seq, stamp_ts, message.boot_id, message.seq, message.ts):
        return {}
    return {
        **values,
        boot_field: message.boot_id,
        f"{section}_seq": message.seq,
        f"{section}_ts": message.ts,
    }


_EVENT_EFFECTS: dict[EventType, tuple[str, dict[str, Any]]] = {
    EventType.DOOR_OPENED: ("door", {"door": DoorState.OPEN}),
    EventType.DOOR_CLOSED: ("door", {"door": DoorState.CLOSED}),
    EventType.AED_REMOVED: ("aed_present", {"aed_present": False}),
    EventType.AED_RETURNED: ("aed_present", {"aed_present": True}),
    EventType.POWER_LOST: ("power", {"power": PowerSource.BACKUP}),
    EventType.POWER_RESTORED: ("power", {"power": PowerSource.MAINS}),
}


def _held_status(twin: Twin) -> Status | None:
    if (
        twin.online is None
        or twin.status_boot_id is None
        or twin.status_seq is None
        or twin.status_ts is None
    ):
        return None
    return Status(
        v=1,
        cabinet_id=twin.cabinet_id,
        boot_id=twin.status_boot_id,
        seq=twin.status_seq,
        ts=twin.status_ts,
        state=ConnectionState.ONLINE if twin.online else ConnectionState.OFFLINE,
    )


def _status_update(twin: Twin, status: Status) -> dict[str, Any]:
    held = apply_status(_held_status(twin), status)
    return {
        "online": held.state is ConnectionState.ONLINE,
        "status_boot_id": held.boot_id,
        "status_seq": held.seq,
        "status_ts": held.ts,
    }


def _heartbeat_update(twin: Twin, beat: Heartbeat) -> dict[str, Any]:
    readings = {
        "aed_ready": beat.aed_ready,
        "battery_pct": beat.battery_pct,
        "temperature_c": beat.temperature_c,
        "humidity_pct": beat.humidity_pct,
        "heater_on": beat.heater_on,
        "rssi_dbm": beat.rssi_dbm,
        "outbox_pending": beat.outbox_pending,
        "outbox_shed": beat.outbox_shed,
    }
    return {
        **_stamp_if_newer(twin, "heartbeat", beat, readings),
        **_stamp_if_newer(twin, "door", beat, {"door": beat.door}),
        **_stamp_if_newer(twin, "aed_present", beat, {"aed_present": beat.aed_present}),
        **_stamp_if_newer(twin, "power", beat, {"power": beat.power}),
    }


def _section_update(twin: Twin, message: CabinetMessage) -> dict[str, Any]:
    """The field changes ``message`` makes to its own sections."""
    match message:
        case Status():
            return _status_update(twin, message)
        case Heartbeat():
            return _heartbeat_update(twin, message)
        case Birth():
            return _stamp_if_newer(
                twin,
                "birth",
                message,
                {
                    "aed_model": message.aed_model,
                    "firmware_version": message.firmware_version,
                    "heartbeat_interval_s": message.heartbeat_interval_s,
                    "selftest_period": message.selftest_schedule.period,
                    "time_zone": message.time_zone,
                },
            )
        case Event():
            effect = _EVENT_EFFECTS.get(message.event)
            if effect is None:
                return {}
            section, values = effect
            return _stamp_if_newer(twin, section, message, values)
        case Selftest():
            return _stamp_if_newer(
                twin,
                "selftest",
                message,
                {
                    "selftest_kind": message.kind,
                    "selftest_result": message.result,
                    "selftest_fault_codes": message.fault_codes,
                    "selftest_battery_pct": message.battery_pct,
                },
            )
        case Consumables():
            return _stamp_if_newer(
                twin,
                "consumables",
                message,
                {
                    "pads_present": message.pads_present,
                    "pads_expiry": message.pads_expiry,
                    "battery_expiry": message.battery_expiry,
                    "consumables_source": message.source,
                },
            )
        case CmdResult():
            return {}


def apply_message(twin: Twin | None, message: CabinetMessage) -> Twin:
    """The twin after ``message``; ``twin`` None means nothing is known of the cabinet yet.

    Raises ValueError when the message belongs to another cabinet.
    """
    if twin is None:
        twin = Twin(cabinet_id=message.cabinet_id)
    elif twin.cabinet_id != message.cabinet_id:
        raise ValueError(
            f"message of cabinet {message.cabinet_id!r} applied to the twin of {twin.cabinet_id!r}"
        )
    update = _section_update(twin, message)
    if not isinstance(message, Status) and is_newer(
        twin.last_boot_id, twin.last_seq, twin.last_seq_ts, message.boot_id, message.seq, message.ts
    ):
        update |= {
            "last_boot_id": message.boot_id,
            "last_seq": message.seq,
            "last_seq_ts": message.ts,
        }
    if twin.first_seen is None or message.ts < twin.first_seen:
        update["first_seen"] = message.ts
    if twin.last_seen is None or message.ts > twin.last_seen:
        update["last_seen"] = message.ts
    changed = {key: value for key, value in update.items() if getattr(twin, key) != value}
    if not changed:
        return twin
    return twin.model_copy(update=changed)
