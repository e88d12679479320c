"""InfluxDB line protocol: the tags of a cabinet's points, field values and timestamps.

Shared by every component that writes points (the ingest's telemetry, alerting's
measurements). Lines are built as strings, not with influxdb-client's ``Point`` (which
costs about 25 µs a point); the escaping rules and the reasons are in
``ingest/telemetry.py``'s docstring and ``docs/influx-schema.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

from aedfleet.registry import Cabinet

__all__ = [
    "MAX_TIMESTAMP_NS",
    "MIN_TIMESTAMP_NS",
    "CabinetTags",
    "bool_field",
    "escape_string_field",
    "float_field",
    "tag_value",
    "timestamp_ns",
]

# InfluxDB stores int64 nanoseconds and reserves the extremes (1677-09-21 … 2262-04-11).
MIN_TIMESTAMP_NS: Final = -9_223_372_036_854_775_806
MAX_TIMESTAMP_NS: Final = 9_223_372_036_854_775_806

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_TAG_SPECIALS: Final = frozenset(",= \\")


def tag_value(value: str) -> str:
    if not any(char in _TAG_SPECIALS or not char.isprintable() for char in value):
        return value  # the common case: nothing to map or escape
    mapped = "".join("/" if char == "\\" else " " if _is_control(char) else char for char in value)
    return mapped.replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def _is_control(char: str) -> bool:
    # Category Cc: C0 and C1 controls, the only characters a line-protocol parser
    # may treat as line ends (\n, \r) or field separators (\t in some parsers).
    return char < " " or "\x7f" <= char <= "\x9f"


def escape_string_field(value: str) -> str:
    """A string field value, quoted and escaped."""
    if '"' in value or "\\" in value:
        value = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{value}"'


def bool_field(value: bool) -> str:
    return "true" if value else "false"


def float_field(value: float) -> str:
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
        section = "".join(f",{key}={tag_value(value)}" for key, value in pairs if value)
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
