"""The cabinet's hardware as the agent sees it.

A real cabinet implements :class:`CabinetHardware` with its own drivers (door switch,
AED status reader, temperature/humidity sensor, power monitor) and names the factory in
the agent's config (``hardware.driver = "package.module:factory"``); the simulated
implementation lives in ``firmware_sim``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date
from typing import Any, Protocol

from aedfleet.contract import (
    DoorState,
    EventType,
    PowerSource,
    SelftestKind,
    SelftestResult,
)
from edge_agent.errors import EdgeAgentError


class HardwareError(EdgeAgentError):
    """A driver could not read or act on the hardware."""


@dataclass(frozen=True, slots=True)
class SensorSnapshot:
    aed_ready: bool
    battery_pct: float
    temperature_c: float
    humidity_pct: float
    door: DoorState
    aed_present: bool
    power: PowerSource
    heater_on: bool
    rssi_dbm: int


@dataclass(frozen=True, slots=True)
class CabinetEvent:
    """Something happened at the cabinet that must be reported at once."""

    event: EventType
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class SelftestReport:
    kind: SelftestKind
    result: SelftestResult
    fault_codes: tuple[str, ...]
    battery_pct: float


@dataclass(frozen=True, slots=True)
class ConsumablesReport:
    pads_present: bool
    pads_expiry: date | None
    battery_expiry: date | None


HardwareNotice = CabinetEvent | SelftestReport | ConsumablesReport


class CabinetHardware(Protocol):
    async def read_sensors(self) -> SensorSnapshot:
        """Current sensor values, for the heartbeat."""
        ...

    async def read_consumables(self) -> ConsumablesReport:
        """Pad and battery state as the AED reports it."""
        ...

    async def run_selftest(self, kind: SelftestKind) -> SelftestReport:
        """Ask the AED to test itself now and wait for the verdict."""
        ...

    def notices(self) -> AsyncIterator[HardwareNotice]:
        """Events as they happen, the AED's scheduled self-tests, consumable changes."""
        ...


class HardwareFactory(Protocol):
    def __call__(self, cabinet_id: str, options: dict[str, Any]) -> CabinetHardware: ...
