"""Contract messages as InfluxDB line protocol: the time-series schema, pure and fast.

:func:`to_line` turns one decoded cabinet message plus the registry's tags for that
cabinet into one line of line protocol, ready for :class:`ingest.influx.InfluxWriter`.
The schema and the reasons behind it are in ``docs/influx-schema.md``.

Lines are built as strings, not with influxdb-client's ``Point`` (which costs about
25 µs a point and halves the ingest rate). The escaping follows the rules every
InfluxDB line-protocol parser (1.x, 2.x, 3.x) agrees on:

- tag values: ``,``, ``=`` and space are escaped with a backslash. Nothing else can be
  escaped portably (the 1.x/2.x parser keeps ``\\\\`` and ``\\n`` literally), so two
  things are replaced before escaping: control characters (a line break would end the
  line) become a space, and ``\\`` becomes ``/`` (a backslash before a separator, or at
  the end of a value, would be read as an escape). Cabinet ids cannot contain either
  (``/`` is reserved in MQTT topics), so the mapping never merges two cabinets. A tag
  whose value is empty is left out: line protocol has no empty tag values.
- string fields: ``"`` and ``\\`` are escaped; everything else, line breaks and all
  other Unicode included, is written as is (UTF-8) inside the quotes.
- measurement names, tag keys and field keys are constants of this module and need no
  escaping.

The timestamp is the device's ``ts`` in nanoseconds, so a message delivered twice
(the contract is at-least-once) lands on the same point and overwrites itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Final, assert_never

from aedfleet.contract import (
    Birth,
    CabinetMessage,
    CmdResult,
    ConnectionState,
    Consumables,
    Event,
    Heartbeat,
    Selftest,
    SelftestResult,
    Status,
)
from ingest.registry.models import Cabinet

__all__ = [
    "MAX_TIMESTAMP_NS",
    "MIN_TIMESTAMP_NS",
    "CabinetTags",
    "escape_string_field",
    "timestamp_ns",
    "to_line",
]

# InfluxDB stores int64 nanoseconds and reserves the extremes (1677-09-21 … 2262-04-11).
MIN_TIMESTAMP_NS: Final = -9_223_372_036_854_775_806
MAX_TIMESTAMP_NS: Final = 9_223_372_036_854_775_806

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_TAG_SPECIALS: Final = frozenset(",= \\")


def _tag_value(value: str) -> str:
    if not any(char in _TAG_SPECIALS or not char.isprintable() for char in value):
        return value  # the common case: nothing to map or escape
    mapped = "".join("/" if char == "\\" else " " if _is_control(char) else char for char in value)
    return mapped.replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def _is_control(char: str) -> bool:
    # Category Cc: C0 and C1 controls, the only characters a line-protocol parser
    # may treat as line ends (\n, \r) or field separators (\t in some parsers).
    return char < " " or "\x7f" <= char <= "\x9f"


def _string(value: str) -> str:
    if '"' in value or "\\" in value:
        value = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{value}"'


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _float(value: float) -> str:
    # repr() is the shortest exact form; float() keeps an int-valued reading a float so
    # the field's type never changes (InfluxDB rejects a type change per shard).
    return repr(float(value))


@dataclass(frozen=True, slots=True)
class CabinetTags:
    """The tags every point of one cabinet carries, from the fleet registry.

    Only low-cardinality, slowly changing descriptions of the cabinet are tags; see
    ``docs/influx-schema.md``. An empty value means "unknown" and leaves the tag out.
    """

    cabinet_id: str
    region_code: str = ""
    site_type: str = ""
    aed_model: str = ""
    # The escaped ",k=v,..." section, computed once per cabinet rather than per message.
    section: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Tag keys in the byte order InfluxDB sorts them into anyway (cheaper to index).
        pairs = (
            ("aed_model", self.aed_model),
            ("cabinet_id", self.cabinet_id),
            ("region", self.region_code),
            ("site_type", self.site_type),
        )
        section = "".join(f",{key}={_tag_value(value)}" for key, value in pairs if value)
        object.__setattr__(self, "section", section)

    @classmethod
    def from_cabinet(cls, cabinet: Cabinet) -> CabinetTags:
        return cls(
            cabinet_id=cabinet.cabinet_id,
            region_code=cabinet.region_code,
            site_type=cabinet.site_type.value,
            aed_model=cabinet.aed_model,
        )


def timestamp_ns(ts: datetime) -> int:
    """Nanoseconds since the epoch, exactly (no float rounding on the way)."""
    delta = ts - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def _heartbeat(m: Heartbeat) -> str:
    return (
        f"aed_ready={_bool(m.aed_ready)},"
        f"aed_present={_bool(m.aed_present)},"
        f"battery_pct={_float(m.battery_pct)},"
        f'boot_id="{m.boot_id}",'
        f'door="{m.door.value}",'
        f"heater_on={_bool(m.heater_on)},"
        f"humidity_pct={_float(m.humidity_pct)},"
        f"outbox_pending={m.outbox_pending}i,"
        f"outbox_shed={m.outbox_shed}i,"
        f'power="{m.power.value}",'
        f"rssi_dbm={m.rssi_dbm}i,"
        f"seq={m.seq}i,"
        f"temperature_c={_float(m.temperature_c)}"
    )


def _event(m: Event) -> str:
    detail = f",detail={_string(m.detail)}" if m.detail is not None else ""
    return f'boot_id="{m.boot_id}"{detail},event="{m.event.value}",seq={m.seq}i'


def _selftest(m: Selftest) -> str:
    return (
        f"battery_pct={_float(m.battery_pct)},"
        f'boot_id="{m.boot_id}",'
        f'fault_codes="{",".join(m.fault_codes)}",'  # the contract's pattern needs no escaping
        f'kind="{m.kind.value}",'
        f"passed={_bool(m.result is SelftestResult.PASS)},"
        f'result="{m.result.value}",'
        f"seq={m.seq}i"
    )


def _expiry(name: str, expiry: date | None, today: date) -> str:
    if expiry is None:
        return ""
    return f',{name}="{expiry.isoformat()}",{name}_days={(expiry - today).days}i'


def _consumables(m: Consumables) -> str:
    today = m.ts.date()  # ts is UTC: days are counted from the device's UTC date
    return (
        f'boot_id="{m.boot_id}"'
        f"{_expiry('battery_expiry', m.battery_expiry, today)}"
        f"{_expiry('pads_expiry', m.pads_expiry, today)}"
        f",pads_present={_bool(m.pads_present)},"
        f"seq={m.seq}i,"
        f'source="{m.source.value}"'
    )


def _status(m: Status) -> str:
    online = _bool(m.state is ConnectionState.ONLINE)
    return f'boot_id="{m.boot_id}",connection={m.seq}i,online={online}'


def _birth(m: Birth) -> str:
    return (
        f"aed_serial={_string(m.aed_serial)},"
        f'boot_id="{m.boot_id}",'
        f"firmware_version={_string(m.firmware_version)},"
        f"hardware_version={_string(m.hardware_version)},"
        f"heartbeat_interval_s={m.heartbeat_interval_s}i,"
        f"seq={m.seq}i,"
        f"time_zone={_string(m.time_zone)}"
    )


def _cmd_result(m: CmdResult) -> str:
    command_id = f",command_id={_string(m.command_id)}" if m.command_id is not None else ""
    error = f",error={_string(m.error)}" if m.error is not None else ""
    return f'boot_id="{m.boot_id}"{command_id}{error},ok={_bool(m.ok)},seq={m.seq}i'


def to_line(message: CabinetMessage, tags: CabinetTags) -> str | None:
    """One line of line protocol for ``message``, tagged with ``tags``.

    Returns None when InfluxDB cannot store the point: a device clock so wrong that
    ``ts`` falls outside 1677-09-21 … 2262-04-11 (the range of int64 nanoseconds).
    The caller counts and drops those; every other valid message gives a line.

    Raises ValueError when ``tags`` belong to another cabinet (a bug in the caller).
    """
    if message.cabinet_id != tags.cabinet_id:
        raise ValueError(
            f"tags of cabinet {tags.cabinet_id!r} given for a message of {message.cabinet_id!r}"
        )
    ns = timestamp_ns(message.ts)
    if not MIN_TIMESTAMP_NS <= ns <= MAX_TIMESTAMP_NS:
        return None
    match message:  # the most frequent first
        case Heartbeat():
            return f"heartbeat{tags.section} {_heartbeat(message)} {ns}"
        case Status():
            return f"status{tags.section} {_status(message)} {ns}"
        case Event():
            return f"event{tags.section} {_event(message)} {ns}"
        case Selftest():
            return f"selftest{tags.section} {_selftest(message)} {ns}"
        case Consumables():
            return f"consumables{tags.section} {_consumables(message)} {ns}"
        case Birth():
            return f"birth{tags.section} {_birth(message)} {ns}"
        case CmdResult():
            return f"cmd_result{tags.section} {_cmd_result(message)} {ns}"
        case _:
            assert_never(message)


def escape_string_field(value: str) -> str:
    """A string field value, quoted and escaped, for other components' measurements."""
    return _string(value)


def escape_tag_value(value: str) -> str:
    """A tag value, escaped, for other components' measurements."""
    return _tag_value(value)
