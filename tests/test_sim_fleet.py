"""The simulated fleet through the real edge agent, against a real Mosquitto."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

from aedfleet.clock import ScaledClock
from aedfleet.contract import (
    Birth,
    CabinetMessage,
    ConnectionState,
    Consumables,
    Event,
    EventType,
    Heartbeat,
    Status,
    decode_cabinet_message,
    subscription,
)
from aedfleet.mqtt import KeepAliveTicker
from aedfleet_testing.brokers import MosquittoBroker, broker_settings
from aedfleet_testing.commands import AEDFLEET
from firmware_sim.faults import Fault
from firmware_sim.fleet import FleetSettings, FleetStats, SimulatedFleet
from firmware_sim.ground_truth import read_ground_truth
from firmware_sim.scenario import SCENARIO_DIR, load_scenario
from tests.recorder import Recorder, eventually


async def test_every_fault_shows_on_the_wire_and_in_the_ground_truth(
    broker: MosquittoBroker, ticker: KeepAliveTicker, tmp_path: Path
) -> None:
    settings = broker_settings(broker)
    scenario = load_scenario(SCENARIO_DIR / "every_fault.yaml")
    fleet_settings = FleetSettings(
        cabinets=scenario.fleet.size,
        broker=settings,
        work_dir=tmp_path,
        heartbeat_interval_s=60,
        tick_s=10,
        ramp_s=0.5,
    )
    fleet = SimulatedFleet(fleet_settings, scenario, ScaledClock(datetime.now(UTC), 120))
    by_cabinet: dict[str, list[CabinetMessage]] = defaultdict(list)

    async with Recorder(settings, ticker, subscription(), "watch-fleet") as watcher:
        run = asyncio.create_task(fleet.run(duration_s=None))

        def received() -> dict[str, list[CabinetMessage]]:
            by_cabinet.clear()
            for message in watcher.messages:
                decoded = decode_cabinet_message(message.topic, message.payload)
                by_cabinet[decoded.cabinet_id].append(decoded)
            return by_cabinet

        def of(cabinet: str, kind: type[CabinetMessage]) -> list[CabinetMessage]:
            return [m for m in received().get(cabinet, []) if isinstance(m, kind)]

        def seen_everything() -> bool:
            births_ok = all(of(cabinet, Birth) for cabinet in fleet.cabinet_ids)
            killed_births = {m.boot_id for m in of("gt-0007", Birth)}
            offline = [
                m
                for m in of("gt-0006", Status)
                if isinstance(m, Status) and m.state is ConnectionState.OFFLINE
            ]
            return births_ok and len(killed_births) >= 2 and bool(offline)

        try:
            await eventually(seen_everything, 60, "fleet traffic incomplete")
            await eventually(
                lambda: (
                    {p.fault for p in read_ground_truth(fleet_settings.ground_truth_path)}
                    == set(Fault)
                ),
                30,
                "ground truth lacks a fault",
            )
        finally:
            run.cancel()
            stats: FleetStats | None = None
            with contextlib.suppress(asyncio.CancelledError):
                stats = await run

    events = {m.event for m in of("gt-0003", Event) if isinstance(m, Event)}
    assert EventType.POWER_LOST in events
    assert any(
        isinstance(m, Consumables) and not m.pads_present for m in of("gt-0002", Consumables)
    )
    taken = [m.event for m in of("gt-0005", Event) if isinstance(m, Event)]
    assert EventType.AED_REMOVED in taken
    assert any(
        isinstance(m, Heartbeat) and not 0 <= m.temperature_c <= 50
        for m in of("gt-0004", Heartbeat)
    )
    assert any(isinstance(m, Heartbeat) and not m.aed_ready for m in of("gt-0001", Heartbeat))
    truth = read_ground_truth(fleet_settings.ground_truth_path)
    assert all(phase.cabinet_id.startswith("gt-") for phase in truth)
    assert stats is None or stats.acknowledged > 0


def test_sim_command_runs_and_reports(broker: MosquittoBroker, tmp_path: Path) -> None:
    result = subprocess.run(
        [
            AEDFLEET,
            "sim",
            "--cabinets",
            "5",
            "--broker",
            f"mqtt://127.0.0.1:{broker.port}",
            "--duration",
            "3",
            "--ramp",
            "0.5",
            "--work-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "5/5 connected" in result.stdout
    assert "msg/s" in result.stdout
    assert "KiB/cabinet" in result.stdout


def test_sim_rejects_a_bad_scenario(tmp_path: Path) -> None:
    scenario = tmp_path / "bad.yaml"
    scenario.write_text("fleet:\n  size: -3\n", encoding="utf-8")
    result = subprocess.run(
        [
            AEDFLEET,
            "sim",
            "--cabinets",
            "2",
            "--broker",
            "mqtt://127.0.0.1:1",
            "--scenario",
            str(scenario),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "fleet.size" in result.stderr
