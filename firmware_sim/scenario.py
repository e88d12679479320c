"""Scenario files: the fleet to simulate, its habits and the faults to inject.

A scenario is YAML validated by :class:`Scenario`; :func:`fleet_specs` and
:func:`fault_plan` turn it into cabinets and a fault plan, both deterministic from its
seed. A file that cannot be used raises :class:`~firmware_sim.errors.ScenarioError`
naming the file and the key.
"""

from __future__ import annotations

import random
from datetime import time
from pathlib import Path
from typing import Annotated, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from aedfleet.contract import SelftestPeriod, SelftestSchedule, TimeZoneName
from firmware_sim.cabinet import CabinetSpec
from firmware_sim.climate import ClimateProfile
from firmware_sim.errors import ScenarioError
from firmware_sim.faults import DEFAULT_DURATION_S, Fault, FaultPlan, PlannedFault

NonNegative = Annotated[float, Field(ge=0)]
Positive = Annotated[float, Field(gt=0)]

SCENARIO_DIR = Path(__file__).parent / "scenarios"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FleetDefaults(_Strict):
    size: int = Field(default=20, ge=1, le=100_000)
    id_prefix: str = Field(default="sim-", pattern=r"^[A-Za-z0-9_.-]{0,40}$")
    time_zones: tuple[TimeZoneName, ...] = Field(default=("Europe/Berlin",), min_length=1)
    climate_mix: dict[ClimateProfile, NonNegative] = Field(
        default_factory=lambda: {ClimateProfile.INDOOR: 1.0},
        description="Relative share of each climate profile; need not add up to 1",
    )
    door_openings_per_day: NonNegative = 3.0
    aed_taken_fraction: float = Field(default=0.02, ge=0, le=1)
    fresh_consumables: bool = Field(
        default=False,
        description="All pads and batteries well within date (a fleet with no expiry "
        "alarms, for scoring detection); default: dates spread as a real fleet has them",
    )
    selftest_earliest: time = time(1, 0)
    selftest_latest: time = time(5, 0)

    @model_validator(mode="after")
    def _check(self) -> Self:
        if sum(self.climate_mix.values()) <= 0:
            raise ValueError("climate_mix needs at least one profile with a positive share")
        if self.selftest_latest < self.selftest_earliest:
            raise ValueError("selftest_latest is before selftest_earliest")
        return self


class ExplicitFault(_Strict):
    at: NonNegative = Field(description="Seconds from the start of the run")
    cabinet: int | str = Field(description="Index in the fleet, or cabinet id")
    fault: Fault
    duration_s: Positive | None = Field(
        default=None, description="Omitted: the fault type's default duration"
    )


class Scenario(_Strict):
    seed: int = 0
    fleet: FleetDefaults = Field(default_factory=FleetDefaults)
    fault_rates: dict[Fault, NonNegative] = Field(
        default_factory=dict, description="Random faults per cabinet-day"
    )
    fault_durations_s: dict[Fault, Positive] = Field(default_factory=dict)
    faults: tuple[ExplicitFault, ...] = ()

    @model_validator(mode="after")
    def _check_cabinets(self) -> Self:
        for number, fault in enumerate(self.faults):
            try:
                index = self.cabinet_index(fault.cabinet)
            except ValueError as exc:
                raise ValueError(f"faults.{number}.cabinet: {exc}") from None
            if index >= self.fleet.size:
                raise ValueError(
                    f"faults.{number}.cabinet: cabinet {fault.cabinet!r} is outside "
                    f"a fleet of {self.fleet.size}"
                )
        return self

    def duration_s(self, fault: Fault) -> float:
        """How long ``fault`` lasts when nothing more specific is said."""
        return self.fault_durations_s.get(fault, DEFAULT_DURATION_S[fault])

    def cabinet_id(self, index: int) -> str:
        return f"{self.fleet.id_prefix}{index:04d}"

    def cabinet_index(self, cabinet: int | str) -> int:
        """The fleet index of a cabinet named by index or by id."""
        if isinstance(cabinet, int):
            if cabinet < 0:
                raise ValueError(f"cabinet index {cabinet} is negative")
            return cabinet
        digits = cabinet.removeprefix(self.fleet.id_prefix)
        if not digits.isdigit() or self.cabinet_id(int(digits)) != cabinet:
            raise ValueError(f"cabinet {cabinet!r} is not an id of this fleet")
        return int(digits)


def _problem_key(error: ValidationError) -> tuple[str | None, str]:
    first = error.errors()[0]
    # A bad mapping key is reported under the key itself plus a "[key]" marker.
    key = ".".join(str(part) for part in first["loc"] if part != "[key]")
    return key or None, first["msg"]


def load_scenario(path: Path) -> Scenario:
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ScenarioError(path, None, f"cannot be read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ScenarioError(path, None, f"is not valid YAML: {exc}") from None
    if not isinstance(document, dict):
        raise ScenarioError(path, None, "must be a YAML mapping of keys to values")
    try:
        return Scenario.model_validate(document)
    except ValidationError as exc:
        key, problem = _problem_key(exc)
        raise ScenarioError(path, key, problem) from None


def _climate_counts(mix: dict[ClimateProfile, float], size: int) -> list[ClimateProfile]:
    """Profiles in the mix's proportions, by largest remainder so small fleets match too."""
    total = sum(mix.values())
    quotas = {profile: share / total * size for profile, share in mix.items()}
    counts = {profile: int(quota) for profile, quota in quotas.items()}
    by_remainder = sorted(quotas, key=lambda p: counts[p] - quotas[p])
    for profile in by_remainder[: size - sum(counts.values())]:
        counts[profile] += 1
    return [profile for profile, count in counts.items() for _ in range(count)]


def fleet_specs(scenario: Scenario, size: int | None = None) -> list[CabinetSpec]:
    """The cabinets of the scenario's fleet (``size`` overrides the scenario's)."""
    fleet = scenario.fleet
    size = fleet.size if size is None else size
    rng = random.Random(scenario.seed)
    climates = _climate_counts(fleet.climate_mix, size)
    rng.shuffle(climates)
    earliest = fleet.selftest_earliest.hour * 60 + fleet.selftest_earliest.minute
    latest = fleet.selftest_latest.hour * 60 + fleet.selftest_latest.minute
    specs = []
    for index, climate in enumerate(climates):
        minute = rng.randint(earliest, latest)
        specs.append(
            CabinetSpec(
                cabinet_id=scenario.cabinet_id(index),
                seed=rng.getrandbits(32),
                climate=climate,
                time_zone=rng.choice(fleet.time_zones),
                selftest=SelftestSchedule(
                    period=SelftestPeriod.DAILY, at_local=time(minute // 60, minute % 60)
                ),
                door_openings_per_day=fleet.door_openings_per_day,
                aed_taken_fraction=fleet.aed_taken_fraction,
                fresh_consumables=fleet.fresh_consumables,
            )
        )
    return specs


def fault_plan(scenario: Scenario, size: int | None = None) -> FaultPlan:
    """The scenario's faults, random and explicit (``size`` overrides the fleet size).

    Raises ValueError when ``size`` leaves out a cabinet that an explicit fault names.
    """
    explicit = [
        PlannedFault(
            fault.at,
            scenario.cabinet_index(fault.cabinet),
            fault.fault,
            fault.duration_s or scenario.duration_s(fault.fault),
        )
        for fault in scenario.faults
    ]
    return FaultPlan(
        fleet_size=scenario.fleet.size if size is None else size,
        seed=scenario.seed,
        rates_per_cabinet_day=scenario.fault_rates,
        durations_s=scenario.fault_durations_s,
        explicit=explicit,
    )
