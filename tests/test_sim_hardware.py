from __future__ import annotations

from contextlib import aclosing
from datetime import UTC, datetime, time, timedelta

import pytest

from aedfleet.contract import EventType, SelftestKind, SelftestPeriod, SelftestSchedule
from edge_agent.hardware import (
    CabinetEvent,
    CabinetHardware,
    HardwareError,
    HardwareFactory,
    HardwareNotice,
)
from firmware_sim.cabinet import CabinetModel, CabinetSpec
from firmware_sim.climate import ClimateProfile
from firmware_sim.errors import OptionsError
from firmware_sim.faults import Fault
from firmware_sim.hardware import SimulatedHardware, simulated_hardware

START = datetime(2025, 1, 6, 12, tzinfo=UTC)


class SteppedClock:
    """Clock time moves only when slept on: the simulation runs as fast as it can."""

    def __init__(self, start: datetime) -> None:
        self.time = start

    def now(self) -> datetime:
        return self.time

    async def sleep(self, seconds: float) -> None:
        self.time += timedelta(seconds=seconds)


def hardware(clock: SteppedClock, openings_per_day: float = 0.0) -> SimulatedHardware:
    spec = CabinetSpec(
        cabinet_id="cab-3",
        seed=3,
        climate=ClimateProfile.TEMPERATE,
        time_zone="UTC",
        selftest=SelftestSchedule(period=SelftestPeriod.DAILY, at_local=time(3, 0)),
        door_openings_per_day=openings_per_day,
        aed_taken_fraction=0.0,
    )
    return SimulatedHardware(CabinetModel(spec, clock.now()), clock, tick_s=10.0)


def test_it_is_cabinet_hardware_and_its_factory_a_hardware_factory() -> None:
    clock = SteppedClock(START)
    implementation: CabinetHardware = hardware(clock)
    factory: HardwareFactory = simulated_hardware
    assert implementation
    assert factory


async def test_notices_follow_the_clock() -> None:
    clock = SteppedClock(START)
    sim = hardware(clock, openings_per_day=200)
    seen: list[HardwareNotice] = []
    async with aclosing(sim.notices()) as notices:
        async for notice in notices:
            seen.append(notice)
            if len(seen) == 6:
                break
    assert [n.event for n in seen if isinstance(n, CabinetEvent)] == [
        EventType.DOOR_OPENED,
        EventType.DOOR_CLOSED,
    ] * 3
    assert clock.time > START


async def test_reads_play_due_notices_for_the_next_tick() -> None:
    clock = SteppedClock(START)
    sim = hardware(clock)
    sim.apply_fault(Fault.POWER_LOSS, START + timedelta(seconds=5), 60)
    clock.time += timedelta(seconds=30)
    snapshot = await sim.read_sensors()
    assert snapshot.power == "backup"
    async with aclosing(sim.notices()) as notices:
        assert await anext(notices) == CabinetEvent(EventType.POWER_LOST)


async def test_manual_selftest_runs_now_and_follows_faults() -> None:
    clock = SteppedClock(START)
    sim = hardware(clock)
    assert (await sim.run_selftest(SelftestKind.MANUAL)).result == "pass"
    sim.apply_fault(Fault.SELFTEST_FAILURE, START, None)
    report = await sim.run_selftest(SelftestKind.MANUAL)
    assert report.kind is SelftestKind.MANUAL
    assert report.fault_codes == ("E-CIRCUIT",)
    pads = await sim.read_consumables()
    assert pads.pads_present


async def test_no_selftest_without_the_aed() -> None:
    clock = SteppedClock(START)
    sim = hardware(clock)
    sim.apply_fault(Fault.AED_NOT_RETURNED, START, None)
    clock.time += timedelta(minutes=5)
    with pytest.raises(HardwareError, match="cab-3"):
        await sim.run_selftest(SelftestKind.MANUAL)


async def test_factory_builds_a_cabinet_from_options() -> None:
    sim = simulated_hardware(
        "cab-9",
        {"seed": 4, "climate": "cold_region", "time_zone": "Europe/Helsinki", "clock_scale": 60},
    )
    assert sim.model.spec.climate is ClimateProfile.COLD_REGION
    assert sim.model.spec.cabinet_id == "cab-9"
    assert (await sim.read_sensors()).battery_pct > 0


@pytest.mark.parametrize(
    ("options", "option"),
    [
        ({"climate": "tropical"}, "climate"),
        ({"door_openings_per_day": -1}, "door_openings_per_day"),
        ({"time_zone": "Nowhere/Land"}, "time_zone"),
        ({"clock_scale": 0}, "clock_scale"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_factory_names_a_bad_option(options: dict[str, object], option: str) -> None:
    with pytest.raises(OptionsError, match=option) as caught:
        simulated_hardware("cab-9", options)
    assert caught.value.option == option
