"""Every figure of the fleet report, from plain values (pure: no I/O, no clock).

- **States**: each cabinet's latest readiness reading (the ``state`` of its newest
  ``readiness`` point); a registered cabinet without one is *no data*, neither ready nor
  counted in any state.
- **Districts**: :func:`alerting.districts.coverage` over the cabinets, ready meaning a
  reading of ``ready``, with the open alarms of the state store.
- **Consumables**: pads and battery dates, the cabinet's own report (twin) first, else
  the registry's (as the rules read them). A date is *expired* once its day has passed;
  the others fall in the first of 7, 30 or 90 days that holds them (days left counted
  from ``today``), and dates further out are not listed.
- **Map**: cabinets placed by an equirectangular projection (longitudes scaled by the
  cosine of the fleet's middle latitude, so a city keeps its shape), fitted into a fixed
  width with a margin; each district named at the middle of its cabinets.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import date, datetime
from enum import StrEnum
from typing import Final

from pydantic import BaseModel, ConfigDict, Field

from aedfleet.registry import Cabinet, Registry
from aedfleet.twin import Twin
from alerting.districts import Coverage, CoverageSettings, coverage, percent
from alerting.readiness import CabinetState

MAP_WIDTH: Final = 800.0
MAP_MAX_HEIGHT: Final = 600.0
MAP_MARGIN: Final = 24.0
# The smallest span drawn, in degrees (about 1 km): one cabinet, or several in a street,
# are not blown up to the whole map.
MIN_SPAN_DEG: Final = 0.01
HORIZON_DAYS: Final = (7, 30, 90)


class _Value(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Reading(_Value):
    """A cabinet's latest readiness, as alerting last wrote it."""

    cabinet_id: str
    state: CabinetState
    at: datetime


class Consumable(StrEnum):
    PADS = "pads"
    BATTERY = "battery"


class Expiring(_Value):
    cabinet_id: str
    cabinet_name: str
    district: str
    owner_unit: str
    item: Consumable
    expiry: date
    days_left: int
    within_days: int | None
    """7, 30 or 90: the first horizon that holds it; None when it has expired."""


class StateCounts(_Value):
    total: int = Field(ge=0)
    by_state: dict[CabinetState, int]
    no_data: int = Field(ge=0)
    readiness_pct: float | None


class Pin(_Value):
    cabinet_id: str
    name: str
    district: str
    x: float
    y: float
    state: CabinetState | None
    """None: no readiness reading."""


class Label(_Value):
    """A district's name, at the middle of its cabinets' pins."""

    text: str
    x: float
    y: float


class Map(_Value):
    width: float
    height: float
    pins: tuple[Pin, ...]
    labels: tuple[Label, ...] = ()


class FleetReport(_Value):
    generated_at: datetime
    today: date
    fleet: StateCounts
    open_alarms: int = Field(ge=0)
    coverage: Coverage
    expiring: tuple[Expiring, ...]
    """Soonest first."""
    expiring_counts: dict[str, int]
    """``expired``, ``7``, ``30``, ``90``: how many dates fall in each."""
    map: Map


def build_report(
    registry: Registry,
    twins: Mapping[str, Twin],
    readings: Mapping[str, Reading],
    open_alarms: Mapping[str, int],
    settings: CoverageSettings,
    *,
    now: datetime,
    today: date,
) -> FleetReport:
    """The report of the registry's cabinets (readings and alarms of other cabinets are
    left out)."""
    cabinets = registry.cabinets
    states = {
        cabinet.cabinet_id: reading.state
        for cabinet in cabinets
        if (reading := readings.get(cabinet.cabinet_id)) is not None
    }
    by_state = dict.fromkeys(CabinetState, 0)
    for state in states.values():
        by_state[state] += 1
    ready = by_state[CabinetState.READY]
    district_names = {district.region_code: district.name for district in registry.districts}
    alarms = {c.cabinet_id: open_alarms.get(c.cabinet_id, 0) for c in cabinets}
    expiring = _expiring(cabinets, twins, district_names, today)
    counts = {"expired": 0, **{str(days): 0 for days in HORIZON_DAYS}}
    for item in expiring:
        counts["expired" if item.within_days is None else str(item.within_days)] += 1
    return FleetReport(
        generated_at=now,
        today=today,
        fleet=StateCounts(
            total=len(cabinets),
            by_state=by_state,
            no_data=len(cabinets) - len(states),
            readiness_pct=percent(ready, len(cabinets)),
        ),
        open_alarms=sum(alarms.values()),
        coverage=coverage(
            registry.districts,
            [(c, states.get(c.cabinet_id) is CabinetState.READY) for c in cabinets],
            alarms,
            settings,
        ),
        expiring=expiring,
        expiring_counts=counts,
        map=project(cabinets, states, district_names),
    )


def within(days_left: int) -> int | None:
    """The first horizon (7, 30, 90) that holds a date ``days_left`` (≥ 0) days ahead;
    None when it is further out than every horizon."""
    return next((days for days in HORIZON_DAYS if days_left <= days), None)


def _expiring(
    cabinets: tuple[Cabinet, ...],
    twins: Mapping[str, Twin],
    district_names: Mapping[str, str],
    today: date,
) -> tuple[Expiring, ...]:
    found: list[Expiring] = []
    for cabinet in cabinets:
        twin = twins.get(cabinet.cabinet_id)
        dates = {
            Consumable.PADS: (twin.pads_expiry if twin else None) or cabinet.pads_expiry,
            Consumable.BATTERY: (twin.battery_expiry if twin else None) or cabinet.battery_expiry,
        }
        for item, expiry in dates.items():
            if expiry is None:
                continue
            days_left = (expiry - today).days
            horizon = within(days_left) if days_left >= 0 else None
            if days_left >= 0 and horizon is None:
                continue
            found.append(
                Expiring(
                    cabinet_id=cabinet.cabinet_id,
                    cabinet_name=cabinet.name,
                    district=district_names.get(cabinet.region_code, cabinet.region_code),
                    owner_unit=cabinet.owner_unit,
                    item=item,
                    expiry=expiry,
                    days_left=days_left,
                    within_days=horizon,
                )
            )
    found.sort(key=lambda e: (e.expiry, e.cabinet_id, e.item.value))
    return tuple(found)


def project(
    cabinets: tuple[Cabinet, ...],
    states: Mapping[str, CabinetState],
    district_names: Mapping[str, str],
) -> Map:
    """The cabinets as pins on a map ``MAP_WIDTH`` wide (north up, east right)."""
    if not cabinets:
        return Map(width=MAP_WIDTH, height=2 * MAP_MARGIN, pins=())
    latitudes = [c.latitude for c in cabinets]
    longitudes = [c.longitude for c in cabinets]
    middle = (min(latitudes) + max(latitudes)) / 2
    squeeze = max(math.cos(math.radians(middle)), 0.01)  # near the poles, stay finite
    span_x = max((max(longitudes) - min(longitudes)) * squeeze, MIN_SPAN_DEG)
    span_y = max(max(latitudes) - min(latitudes), MIN_SPAN_DEG)
    inner_w = MAP_WIDTH - 2 * MAP_MARGIN
    scale = min(inner_w / span_x, (MAP_MAX_HEIGHT - 2 * MAP_MARGIN) / span_y)
    # Centre the fleet in the drawn area when one of its spans was widened to the minimum.
    left = (min(longitudes) + max(longitudes)) / 2 * squeeze - inner_w / scale / 2
    top = max(latitudes) + (span_y - (max(latitudes) - min(latitudes))) / 2
    pins = tuple(
        Pin(
            cabinet_id=c.cabinet_id,
            name=c.name,
            district=district_names.get(c.region_code, c.region_code),
            x=round(MAP_MARGIN + (c.longitude * squeeze - left) * scale, 1),
            y=round(MAP_MARGIN + (top - c.latitude) * scale, 1),
            state=states.get(c.cabinet_id),
        )
        for c in cabinets
    )
    by_district: dict[str, list[Pin]] = {}
    for pin in pins:
        if pin.district:
            by_district.setdefault(pin.district, []).append(pin)
    labels = tuple(
        Label(
            text=name,
            x=round(sum(p.x for p in members) / len(members), 1),
            y=round(sum(p.y for p in members) / len(members), 1),
        )
        for name, members in sorted(by_district.items())
    )
    height = round(span_y * scale + 2 * MAP_MARGIN, 1)
    return Map(width=MAP_WIDTH, height=height, pins=pins, labels=labels)
