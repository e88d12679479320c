"""A cabinet whose hardware the test drives: it stands in for drivers, not for MQTT.

``counting_hardware`` is a driver factory for agent subprocesses: it reports a door
event every ``event_interval_s`` so that tests can count what arrives.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import date
from typing import Any

from aedfleet.contract import DoorState, EventType, PowerSource, SelftestKind, SelftestResult
from edge_agent.hardware import (
    CabinetEvent,
    ConsumablesReport,
    HardwareError,
    HardwareNotice,
    SelftestReport,
    SensorSnapshot,
)


class ScriptedHardware:
    def __init__(self, selftest_fails: bool = False) -> None:
        self.queue: asyncio.Queue[HardwareNotice] = asyncio.Queue()
        self.selftest_fails = selftest_fails
        self.broken = False
        self.door = DoorState.CLOSED

    def push(self, notice: HardwareNotice) -> None:
        self.queue.put_nowait(notice)

    async def read_sensors(self) -> SensorSnapshot:
        return SensorSnapshot(
            aed_ready=True,
            battery_pct=91.0,
            temperature_c=21.0,
            humidity_pct=45.0,
            door=self.door,
            aed_present=True,
            power=PowerSource.MAINS,
            heater_on=False,
            rssi_dbm=-67,
        )

    async def read_consumables(self) -> ConsumablesReport:
        return ConsumablesReport(
            pads_present=True, pads_expiry=date(2028, 1, 31), battery_expiry=date(2029, 6, 30)
        )

    async def run_selftest(self, kind: SelftestKind) -> SelftestReport:
        if self.broken:
            raise HardwareError("AED does not answer on its service port")
        result = SelftestResult.FAIL if self.selftest_fails else SelftestResult.PASS
        codes = ("E-PADS",) if self.selftest_fails else ()
        return SelftestReport(kind=kind, result=result, fault_codes=codes, battery_pct=90.0)

    async def notices(self) -> AsyncIterator[HardwareNotice]:
        while True:
            yield await self.queue.get()


class CountingHardware(ScriptedHardware):
    def __init__(self, event_interval_s: float) -> None:
        super().__init__()
        self.event_interval_s = event_interval_s

    async def notices(self) -> AsyncIterator[HardwareNotice]:
        number = 0
        while True:
            await asyncio.sleep(self.event_interval_s)
            number += 1
            kind = EventType.DOOR_OPENED if number % 2 else EventType.DOOR_CLOSED
            yield CabinetEvent(kind, detail=f"n={number}")


def counting_hardware(cabinet_id: str, options: dict[str, Any]) -> CountingHardware:
    return CountingHardware(float(options.get("event_interval_s", 0.05)))
