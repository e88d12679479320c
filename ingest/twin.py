"""A cabinet's current state (its "twin"), folded from the messages it sends (pure).

Messages arrive late, twice, and out of order (the outbox replays after an outage, the
broker redelivers, several ingest workers race). The twin therefore keeps one *stamp*
per section, the (boot id, seq, ts) of the message the section's values came from, and a
message only changes a section it is newer for (:func:`is_newer`):

- same boot: the higher seq wins (seq numbers the boot's sequenced stream);
- different boot: the later device ts wins (a reboot restarts seq at 1).

Sections and what feeds them:

- status (``online``): status messages, under the bdSeq rule of
  :func:`aedfleet.presence.apply_status`;
- birth (``aed_model`` … ``time_zone``): birth;
- heartbeat (``aed_ready`` … ``outbox_shed``): heartbeat;
- door (``door``): heartbeat, door_opened / door_closed;
- aed_present (``aed_present``): heartbeat, aed_removed / aed_returned;
- power (``power``): heartbeat, power_lost / power_restored;
- selftest (``selftest_kind`` … ``selftest_battery_pct``): selftest;
- consumables (``pads_present`` … ``consumables_source``): consumables;
- sequence (``last_boot_id``, ``last_seq``): every message but status.

Door, AED presence and power have a stamp each because events set one of them alone: a
shared stamp would let ``aed_removed`` (seq 12) hide a ``door_opened`` (seq 11)
delivered after it. ``first_seen``/``last_seen`` are the least and greatest device
ts of any message.

So folding is idempotent, and any two orders of the same messages give the same twin as
long as the status messages keep their relative order (status follows ``apply_status``,
which is not commutative: an ``offline`` applies only to the connection it names) and the
device clock runs forward across reboots.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from aedfleet.contract import (
    Birth,
    CabinetMessage,
    CmdResult,
    ConnectionState,
    Consumables,
    ConsumablesSource,
    DoorState,
    Event,
    EventType,
    Heartbeat,
    PowerSource,
    Selftest,
    SelftestKind,
    SelftestPeriod,
    SelftestResult,
    Status,
)
from aedfleet.presence import apply_status


class Twin(BaseModel):
    """The latest known state of one cabinet; every field but the id is None until known.

    Each section's ``*_boot_id``, ``*_seq`` and ``*_ts`` are its stamp: the envelope of
    the message its values came from (``boot_id``/``birth_seq``/``birth_ts`` for the birth).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    cabinet_id: str

    # status: the connection held under the bdSeq rule
    online: bool | None = None
    status_boot_id: str | None = None
    status_seq: int | None = None
    status_ts: datetime | None = None

    # birth: the newest boot's description
    boot_id: str | None = None
    birth_seq: int | None = None
    birth_ts: datetime | None = None
    aed_model: str | None = None
    firmware_version: str | None = None
    heartbeat_interval_s: int | None = None
    selftest_period: SelftestPeriod | None = None
    time_zone: str | None = None

    # heartbeat
    aed_ready: bool | None = None
    battery_pct: float | None = None
    temperature_c: float | None = None
    humidity_pct: float | None = None
    heater_on: bool | None = None
    rssi_dbm: int | None = None
    outbox_pending: int | None = None
    outbox_shed: int | None = None
    heartbeat_boot_id: str | None = None
    heartbeat_seq: int | None = None
    heartbeat_ts: datetime | None = None

    # door: heartbeats and door_opened / door_closed
    door: DoorState | None = None
    door_boot_id: str | None = None
    door_seq: int | None = None
    door_ts: datetime | None = None

    # AED in its cabinet: heartbeats and aed_removed / aed_returned
    aed_present: bool | None = None
    aed_present_boot_id: str | None = None
    aed_present_seq: int | None = None
    aed_present_ts: datetime | None = None

    # power: heartbeats and power_lost / power_restored
    power: PowerSource | None = None
    power_boot_id: str | None = None
    power_seq: int | None = None
    power_ts: datetime | None = None

    # last self-test
    selftest_kind: SelftestKind | None = None
    selftest_result: SelftestResult | None = None
    selftest_fault_codes: tuple[str, ...] | None = None
    selftest_battery_pct: float | None = None
    selftest_boot_id: str | None = None
    selftest_seq: int | None = None
    selftest_ts: datetime | None = None

    # consumables
    pads_present: bool | None = None
    pads_expiry: date | None = None
    battery_expiry: date | None = None
    consumables_source: ConsumablesSource | None = None
    consumables_boot_id: str | None = None
    consumables_seq: int | None = None
    consumables_ts: datetime | None = None

    # sequence: highest seq of the newest boot (for gap tracking), and its device ts
    last_boot_id: str | None = None
    last_seq: int | None = None
    last_seq_ts: datetime | None = None

    # device ts of the earliest and the latest message of any kind
    first_seen: datetime | None = None
    last_seen: datetime | None = None


def is_newer(
    stamp_boot: str | None,
    stamp_seq: int | None,
    stamp_ts: datetime | None,
    boot_id: str,
    seq: int,
    ts: datetime,
) -> bool:
    """Whether a message (boot_id, seq, ts) is newer than a section's stamp.

    True when the stamp is empty, or the message is of the same boot with a higher seq,
    or of a different boot with a later ts.
    """
    if stamp_boot is None or stamp_seq is None or stamp_ts is None:
        return True
    if boot_id == stamp_boot:
        return seq > stamp_seq
    return ts > stamp_ts


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
