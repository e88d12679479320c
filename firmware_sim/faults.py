"""Fault types, their records for the ground truth, and the plan of when they strike.

How each fault changes a cabinet lives in :mod:`firmware_sim.cabinet`, next to the state
it changes. ``cabinet_offline`` and ``agent_killed`` are carried out by the fleet runner
(network and process); the cabinet model only schedules them and hands them over.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Final

from pydantic import BaseModel, ConfigDict

from aedfleet.contract import UtcTimestamp


class Fault(StrEnum):
    SELFTEST_FAILURE = "selftest_failure"
    BATTERY_FAILURE = "battery_failure"
    PADS_REMOVED = "pads_removed"
    POWER_LOSS = "power_loss"
    TEMPERATURE_EXCURSION = "temperature_excursion"
    AED_NOT_RETURNED = "aed_not_returned"
    CABINET_OFFLINE = "cabinet_offline"
    AGENT_KILLED = "agent_killed"


RUNNER_FAULTS: Final = frozenset({Fault.CABINET_OFFLINE, Fault.AGENT_KILLED})

DEFAULT_DURATION_S: Final[Mapping[Fault, float]] = MappingProxyType(
    {
        Fault.SELFTEST_FAILURE: 2 * 86_400.0,
        Fault.BATTERY_FAILURE: 3 * 86_400.0,
        Fault.PADS_REMOVED: 86_400.0,
        Fault.POWER_LOSS: 2 * 3_600.0,
        Fault.TEMPERATURE_EXCURSION: 6 * 3_600.0,
        Fault.AED_NOT_RETURNED: 2 * 86_400.0,
        Fault.CABINET_OFFLINE: 3_600.0,
        # How long the agent stays dead before the runner restarts it.
        Fault.AGENT_KILLED: 300.0,
    }
)


class Phase(StrEnum):
    START = "start"
    END = "end"


class FaultPhase(BaseModel):
    """One line of the ground truth: a fault began or ended at a cabinet."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ts: UtcTimestamp
    cabinet_id: str
    fault: Fault
    phase: Phase
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class FaultWindow:
    """A fault at one cabinet from ``start`` until ``end`` (None: it never ends)."""

    fault: Fault
    start: datetime
    end: datetime | None


@dataclass(frozen=True, slots=True)
class PlannedFault:
    """A fault to inject ``at_s`` seconds after the run starts, at a cabinet by index."""

    at_s: float
    cabinet: int
    fault: Fault
    duration_s: float | None


def _at_s(planned: PlannedFault) -> float:
    return planned.at_s


def _random_faults(
    fault: Fault, rate_per_cabinet_day: float, fleet_size: int, duration_s: float, seed: int
) -> Iterator[PlannedFault]:
    # One generator per fault type, seeded by name, so that adding a rate for one fault
    # does not move the faults of another.
    rng = random.Random(f"{seed}:{fault.value}")
    rate_per_s = rate_per_cabinet_day * fleet_size / 86_400
    if rate_per_s <= 0:
        return
    at_s = 0.0
    while True:
        at_s += rng.expovariate(rate_per_s)
        yield PlannedFault(at_s, rng.randrange(fleet_size), fault, duration_s)


class FaultPlan:
    """Which fault starts at which cabinet when, deterministic from the seed.

    Random faults arrive as a Poisson process per fault type at the given rate per
    cabinet-day, each at a uniformly chosen cabinet; explicit faults are merged in.
    """

    __slots__ = ("_next", "_stream")

    def __init__(
        self,
        *,
        fleet_size: int,
        seed: int,
        rates_per_cabinet_day: Mapping[Fault, float],
        durations_s: Mapping[Fault, float],
        explicit: Iterable[PlannedFault] = (),
    ) -> None:
        if fleet_size < 1:
            raise ValueError("a fault plan needs a fleet of at least one cabinet")
        planned = sorted(explicit, key=_at_s)
        for fault in planned:
            if not 0 <= fault.cabinet < fleet_size:
                raise ValueError(
                    f"{fault.fault.value} at {fault.at_s} s names cabinet {fault.cabinet}, "
                    f"outside a fleet of {fleet_size}"
                )
        streams: list[Iterable[PlannedFault]] = [planned]
        for fault_type, rate in sorted(rates_per_cabinet_day.items()):
            if rate > 0:
                duration_s = durations_s.get(fault_type, DEFAULT_DURATION_S[fault_type])
                streams.append(_random_faults(fault_type, rate, fleet_size, duration_s, seed))
        self._stream = heapq.merge(*streams, key=_at_s)
        self._next = next(self._stream, None)

    def due(self, elapsed_s: float) -> list[PlannedFault]:
        """The faults starting by ``elapsed_s`` that earlier calls have not returned."""
        due: list[PlannedFault] = []
        while self._next is not None and self._next.at_s <= elapsed_s:
            due.append(self._next)
            self._next = next(self._stream, None)
        return due
