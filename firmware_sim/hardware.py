"""``SimulatedHardware``: the edge agent's ``CabinetHardware`` on a simulated cabinet.

It advances a :class:`~firmware_sim.cabinet.CabinetModel` on the clock it is given, one
tick at a time, and hands the model's notices to the agent. A ``ScaledClock`` lets the
agent live through days of self-tests in minutes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncGenerator
from datetime import UTC, datetime, time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aedfleet.clock import Clock, ScaledClock, SystemClock
from aedfleet.contract import SelftestKind, SelftestPeriod, SelftestSchedule, TimeZoneName
from edge_agent import (
    ConsumablesReport,
    HardwareError,
    HardwareNotice,
    SelftestReport,
    SensorSnapshot,
)
from firmware_sim.cabinet import CabinetModel, CabinetSpec
from firmware_sim.climate import ClimateProfile
from firmware_sim.errors import OptionsError
from firmware_sim.faults import Fault


class SimulatedHardware:
    __slots__ = ("_clock", "_model", "_pending", "_tick_s")

    def __init__(self, model: CabinetModel, clock: Clock, tick_s: float = 1.0) -> None:
        if tick_s <= 0:
            raise ValueError("the simulation tick must be positive")
        self._model = model
        self._clock = clock
        self._tick_s = tick_s
        # Notices played by a read between two ticks; the next tick hands them out, so
        # this never holds more than one tick's worth and needs no bound.
        self._pending: deque[HardwareNotice] = deque()

    @property
    def model(self) -> CabinetModel:
        return self._model

    def apply_fault(self, fault: Fault, now: datetime, duration_s: float | None) -> None:
        self._model.apply_fault(fault, now, duration_s)

    async def read_sensors(self) -> SensorSnapshot:
        now = self._catch_up()
        return self._model.sensors(now)

    async def read_consumables(self) -> ConsumablesReport:
        self._catch_up()
        return self._model.consumables()

    async def run_selftest(self, kind: SelftestKind) -> SelftestReport:
        self._catch_up()
        if not self._model.aed_present:
            raise HardwareError(
                f"cabinet {self._model.spec.cabinet_id}: the AED is not in the cabinet"
            )
        return self._model.run_selftest(kind)

    async def notices(self) -> AsyncGenerator[HardwareNotice, None]:
        while True:
            self._catch_up()
            while self._pending:
                yield self._pending.popleft()
            await self._clock.sleep(self._tick_s)

    def _catch_up(self) -> datetime:
        now = self._clock.now()
        self._pending.extend(self._model.advance(now))
        return now


class SimulatedHardwareOptions(BaseModel):
    """The ``[hardware.options]`` a simulated cabinet accepts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = 0
    climate: ClimateProfile = ClimateProfile.INDOOR
    door_openings_per_day: float = Field(default=3.0, ge=0)
    aed_taken_fraction: float = Field(default=0.02, ge=0, le=1)
    time_zone: TimeZoneName = "UTC"
    selftest_at_local: time = time(3, 0)
    clock_scale: float = Field(default=1.0, gt=0)
    tick_s: float = Field(default=1.0, gt=0, description="Clock seconds between two ticks")


def simulated_hardware(cabinet_id: str, options: dict[str, Any]) -> SimulatedHardware:
    """A ``HardwareFactory`` for the agent's config: one simulated cabinet."""
    try:
        parsed = SimulatedHardwareOptions.model_validate(options)
    except ValidationError as exc:
        first = exc.errors()[0]
        option = ".".join(str(part) for part in first["loc"]) or "options"
        raise OptionsError(option, first["msg"]) from None
    spec = CabinetSpec(
        cabinet_id=cabinet_id,
        seed=parsed.seed,
        climate=parsed.climate,
        time_zone=parsed.time_zone,
        selftest=SelftestSchedule(period=SelftestPeriod.DAILY, at_local=parsed.selftest_at_local),
        door_openings_per_day=parsed.door_openings_per_day,
        aed_taken_fraction=parsed.aed_taken_fraction,
    )
    clock: Clock = (
        SystemClock()
        if parsed.clock_scale == 1
        else ScaledClock(datetime.now(UTC), parsed.clock_scale)
    )
    return SimulatedHardware(CabinetModel(spec, clock.now()), clock, parsed.tick_s)
