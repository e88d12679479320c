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

from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime
from types import MappingProxyType
from typing import Any, Final

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


TwinValues = dict[str, Any]
"""A twin's fields by name, mutable: the working form of the fold.

Enumerations may be held as members or as their string values (they compare equal),
fault codes as a tuple; the state store reads and writes rows in this form, so a batch
is folded without building a :class:`Twin` per message.
"""

_SECTION_STAMPS: Final = {
    section: (
        "boot_id" if section == "birth" else f"{section}_boot_id",
        f"{section}_seq",
        f"{section}_ts",
    )
    for section in (
        "birth",
        "heartbeat",
        "door",
        "aed_present",
        "power",
        "selftest",
        "consumables",
    )
}
_HEARTBEAT: Final = _SECTION_STAMPS["heartbeat"]
_DOOR: Final = _SECTION_STAMPS["door"]
_AED_PRESENT: Final = _SECTION_STAMPS["aed_present"]
_POWER: Final = _SECTION_STAMPS["power"]
_LAST: Final = ("last_boot_id", "last_seq", "last_seq_ts")

_EVENT_EFFECTS: dict[EventType, tuple[tuple[str, str, str], dict[str, Any]]] = {
    EventType.DOOR_OPENED: (_DOOR, {"door": DoorState.OPEN}),
    EventType.DOOR_CLOSED: (_DOOR, {"door": DoorState.CLOSED}),
    EventType.AED_REMOVED: (_AED_PRESENT, {"aed_present": False}),
    EventType.AED_RETURNED: (_AED_PRESENT, {"aed_present": True}),
    EventType.POWER_LOST: (_POWER, {"power": PowerSource.BACKUP}),
    EventType.POWER_RESTORED: (_POWER, {"power": PowerSource.MAINS}),
}

EMPTY_TWIN_VALUES: Final[Mapping[str, None]] = MappingProxyType(dict.fromkeys(Twin.model_fields))
"""Every field of a twin of which nothing is known yet (copy it and set the cabinet id)."""


def _newer(values: TwinValues, stamp: tuple[str, str, str], message: CabinetMessage) -> bool:
    """:func:`is_newer` for a section's stamp in ``values``, written out: the fold's
    innermost step (``tests/test_twin.py`` holds the two to the same answers)."""
    boot_key, seq_key, ts_key = stamp
    stamp_boot, stamp_seq, stamp_ts = values[boot_key], values[seq_key], values[ts_key]
    if stamp_boot is None or stamp_seq is None or stamp_ts is None:
        return True
    if message.boot_id == stamp_boot:
        return bool(message.seq > stamp_seq)
    return bool(message.ts > stamp_ts)


def _stamp(values: TwinValues, stamp: tuple[str, str, str], message: CabinetMessage) -> None:
    boot_key, seq_key, ts_key = stamp
    values[boot_key] = message.boot_id
    values[seq_key] = message.seq
    values[ts_key] = message.ts


def _held_status(values: TwinValues) -> Status | None:
    online = values["online"]
    boot_id, seq, ts = values["status_boot_id"], values["status_seq"], values["status_ts"]
    if online is None or boot_id is None or seq is None or ts is None:
        return None
    return Status(
        v=1,
        cabinet_id=values["cabinet_id"],
        boot_id=boot_id,
        seq=seq,
        ts=ts,
        state=ConnectionState.ONLINE if online else ConnectionState.OFFLINE,
    )


def _fold_status(values: TwinValues, status: Status) -> None:
    held = apply_status(_held_status(values), status)
    values["online"] = held.state is ConnectionState.ONLINE
    values["status_boot_id"] = held.boot_id
    values["status_seq"] = held.seq
    values["status_ts"] = held.ts


def _fold_heartbeat(values: TwinValues, beat: Heartbeat) -> None:
    # The stamps are compared first: most folded heartbeats of a batch lose to a newer one.
    if _newer(values, _HEARTBEAT, beat):
        values["aed_ready"] = beat.aed_ready
        values["battery_pct"] = beat.battery_pct
        values["temperature_c"] = beat.temperature_c
        values["humidity_pct"] = beat.humidity_pct
        values["heater_on"] = beat.heater_on
        values["rssi_dbm"] = beat.rssi_dbm
        values["outbox_pending"] = beat.outbox_pending
        values["outbox_shed"] = beat.outbox_shed
        _stamp(values, _HEARTBEAT, beat)
    if _newer(values, _DOOR, beat):
        values["door"] = beat.door
        _stamp(values, _DOOR, beat)
    if _newer(values, _AED_PRESENT, beat):
        values["aed_present"] = beat.aed_present
        _stamp(values, _AED_PRESENT, beat)
    if _newer(values, _POWER, beat):
        values["power"] = beat.power
        _stamp(values, _POWER, beat)


def _fold_birth(values: TwinValues, birth: Birth) -> None:
    stamp = _SECTION_STAMPS["birth"]
    if _newer(values, stamp, birth):
        values["aed_model"] = birth.aed_model
        values["firmware_version"] = birth.firmware_version
        values["heartbeat_interval_s"] = birth.heartbeat_interval_s
        values["selftest_period"] = birth.selftest_schedule.period
        values["time_zone"] = birth.time_zone
        _stamp(values, stamp, birth)


def _fold_event(values: TwinValues, event: Event) -> None:
    effect = _EVENT_EFFECTS.get(event.event)
    if effect is not None:
        stamp, changes = effect
        if _newer(values, stamp, event):
            values.update(changes)
            _stamp(values, stamp, event)


def _fold_selftest(values: TwinValues, selftest: Selftest) -> None:
    stamp = _SECTION_STAMPS["selftest"]
    if _newer(values, stamp, selftest):
        values["selftest_kind"] = selftest.kind
        values["selftest_result"] = selftest.result
        values["selftest_fault_codes"] = selftest.fault_codes
        values["selftest_battery_pct"] = selftest.battery_pct
        _stamp(values, stamp, selftest)


def _fold_consumables(values: TwinValues, consumables: Consumables) -> None:
    stamp = _SECTION_STAMPS["consumables"]
    if _newer(values, stamp, consumables):
        values["pads_present"] = consumables.pads_present
        values["pads_expiry"] = consumables.pads_expiry
        values["battery_expiry"] = consumables.battery_expiry
        values["consumables_source"] = consumables.source
        _stamp(values, stamp, consumables)


def _fold_nothing(values: TwinValues, message: CabinetMessage) -> None:
    return  # a command result changes no section, only the sequence and first/last seen


_FOLD_SECTIONS: Final[dict[type[CabinetMessage], Callable[[TwinValues, Any], None]]] = {
    Heartbeat: _fold_heartbeat,
    Event: _fold_event,
    Status: _fold_status,
    Birth: _fold_birth,
    Selftest: _fold_selftest,
    Consumables: _fold_consumables,
    CmdResult: _fold_nothing,
}


def fold(values: TwinValues, messages: Iterable[CabinetMessage]) -> None:
    """Apply ``messages`` in order to a twin's ``values``, in place.

    The same rules as :func:`apply_message`, which is this fold of one message; the
    caller makes sure every message is of the cabinet ``values`` describe.
    """
    for message in messages:
        _FOLD_SECTIONS[type(message)](values, message)
        ts = message.ts
        if type(message) is not Status and _newer(values, _LAST, message):
            _stamp(values, _LAST, message)
        first_seen = values["first_seen"]
        if first_seen is None or ts < first_seen:
            values["first_seen"] = ts
        last_seen = values["last_seen"]
        if last_seen is None or ts > last_seen:
            values["last_seen"] = ts


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
    values = dict(twin.__dict__)
    fold(values, (message,))
    changed = {key: value for key, value in values.items() if getattr(twin, key) != value}
    if not changed:
        return twin
    return twin.model_copy(update=changed)
