"""Readiness and coverage per district: how many AEDs each district's people have (pure).

A district (:class:`~aedfleet.registry.District`) is what cabinets' ``region_code``
names, with its population. For each one this counts the cabinets whose region code is
the district's, how many are ready, their open alarms, and the coverage: registered AEDs
(one per cabinet, ready or not) per 100,000 people, against the district's own target or
else the fleet's (:class:`CoverageSettings`). Cabinets whose region code names no district
are counted apart (:class:`Unplaced`): no population is known for them, so no coverage.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

from pydantic import BaseModel, ConfigDict, Field

from aedfleet.registry import Cabinet, District

PER: Final = 100_000


class CoverageSettings(BaseModel):
    """The fleet's coverage target: AEDs per 100,000 people."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    target_per_100k: float = Field(
        default=30.0,
        gt=0,
        allow_inf_nan=False,
        description="AEDs per 100,000 people a district should have, unless the registry "
        "gives the district a target of its own",
    )


class _Value(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DistrictReadiness(_Value):
    """One district's figures; ``readiness_pct`` is None when it has no cabinets."""

    region_code: str
    name: str
    population: int = Field(gt=0)
    cabinets: int = Field(ge=0)
    ready: int = Field(ge=0)
    readiness_pct: float | None
    open_alarms: int = Field(ge=0)
    aeds_per_100k: float = Field(ge=0)
    target_per_100k: float = Field(gt=0)

    @property
    def meets_target(self) -> bool:
        return self.aeds_per_100k >= self.target_per_100k


class Unplaced(_Value):
    """Cabinets whose region code names no district (empty included), and those codes."""

    cabinets: int = Field(default=0, ge=0)
    ready: int = Field(default=0, ge=0)
    open_alarms: int = Field(default=0, ge=0)
    region_codes: tuple[str, ...] = ()


class Coverage(_Value):
    districts: tuple[DistrictReadiness, ...] = ()
    unplaced: Unplaced = Unplaced()


def percent(part: int, whole: int) -> float | None:
    return None if whole == 0 else 100.0 * part / whole


def coverage(
    districts: Iterable[District],
    cabinets: Iterable[tuple[Cabinet, bool]],
    open_alarms: Mapping[str, int],
    settings: CoverageSettings,
) -> Coverage:
    """The districts' figures, ordered by region code, from each cabinet and whether it
    is ready, and the open alarms by cabinet id (a cabinet not in it has none).

    A cabinet given twice counts once (the last one given).
    """
    known = {district.region_code: district for district in districts}
    latest = {cabinet.cabinet_id: (cabinet, ready) for cabinet, ready in cabinets}
    counts: dict[str, list[int]] = {code: [0, 0, 0] for code in known}
    unplaced = [0, 0, 0]
    unplaced_codes: set[str] = set()
    for cabinet_id, (cabinet, ready) in latest.items():
        tally = counts.get(cabinet.region_code)
        if tally is None:
            tally = unplaced
            unplaced_codes.add(cabinet.region_code)
        tally[0] += 1
        tally[1] += int(ready)
        tally[2] += open_alarms.get(cabinet_id, 0)
    figures = []
    for code in sorted(known):
        district = known[code]
        total, ready_count, alarms = counts[code]
        figures.append(
            DistrictReadiness(
                region_code=code,
                name=district.name,
                population=district.population,
                cabinets=total,
                ready=ready_count,
                readiness_pct=percent(ready_count, total),
                open_alarms=alarms,
                aeds_per_100k=PER * total / district.population,
                target_per_100k=district.target_per_100k or settings.target_per_100k,
            )
        )
    return Coverage(
        districts=tuple(figures),
        unplaced=Unplaced(
            cabinets=unplaced[0],
            ready=unplaced[1],
            open_alarms=unplaced[2],
            region_codes=tuple(sorted(unplaced_codes)),
        ),
    )
