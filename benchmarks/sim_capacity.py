"""How many simulated cabinets one sim process sustains (a benchmark, not a test).

Each cabinet runs the real edge agent with its own MQTT connection and last will, a
60 s heartbeat, simulated hardware and a queue in the shared outbox. The run measures,
after all cabinets are connected, the process's CPU use, its memory per cabinet and
whether every heartbeat due was delivered. As a baseline measured in the same run it
first holds the same number of bare MQTT connections (the adapter alone, no agent), so
the figures read as "what the agent and the simulation add on top of a connection".

    python benchmarks/sim_capacity.py --cabinets 5000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psutil

from aedfleet.clock import ScaledClock
from aedfleet.mqtt import KeepAliveTicker, MqttConnection, MqttSettings
from aedfleet_testing.brokers import MosquittoBroker
from firmware_sim.fleet import FleetSettings, SimulatedFleet
from firmware_sim.scenario import Scenario


@dataclass
class Measure:
    connected: int
    cpu_fraction: float
    rss_per_connection: float
    delivered: int


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


async def bare_connections(settings: MqttSettings, count: int, window_s: float) -> Measure:
    process = psutil.Process()
    rss_before = process.memory_info().rss
    async with KeepAliveTicker() as ticker:
        connections = [MqttConnection(settings, f"bare-{i}", ticker) for i in range(count)]
        for start in range(0, count, 100):
            await asyncio.gather(*(c.connect() for c in connections[start : start + 100]))
        cpu_before, wall_before = _cpu_seconds(process), time.monotonic()
        await asyncio.sleep(window_s)
        cpu = (_cpu_seconds(process) - cpu_before) / (time.monotonic() - wall_before)
        rss = (process.memory_info().rss - rss_before) / count
        connected = sum(c.is_connected for c in connections)
        await asyncio.gather(*(c.disconnect() for c in connections))
    return Measure(connected, cpu, rss, 0)


async def simulated_fleet(
    settings: MqttSettings, count: int, ramp_s: float, window_s: float, work_dir: Path
) -> Measure:
    process = psutil.Process()
    fleet_settings = FleetSettings(
        cabinets=count, broker=settings, work_dir=work_dir, heartbeat_interval_s=60, ramp_s=ramp_s
    )
    scenario = Scenario(seed=1, fault_rates={})
    fleet = SimulatedFleet(fleet_settings, scenario, ScaledClock(datetime.now(UTC), 1.0))
    rss_before = process.memory_info().rss
    run = asyncio.create_task(fleet.run(duration_s=None))
    deadline = time.monotonic() + ramp_s + 120
    # Polls a count over thousands of agents; no single event marks "all connected".
    while fleet.connected() < count and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.5)
    # Let the start-up burst (birth, consumables, first heartbeat) drain first.
    await asyncio.sleep(5)
    acked_before = sum(
        agent.stats.acknowledged for i in range(count) if (agent := fleet.agent(i)) is not None
    )
    cpu_before, wall_before = _cpu_seconds(process), time.monotonic()
    await asyncio.sleep(window_s)
    wall = time.monotonic() - wall_before
    cpu = (_cpu_seconds(process) - cpu_before) / wall
    acked = sum(
        agent.stats.acknowledged for i in range(count) if (agent := fleet.agent(i)) is not None
    )
    measure = Measure(
        fleet.connected(),
        cpu,
        (process.memory_info().rss - rss_before) / count,
        acked - acked_before,
    )
    run.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await run
    return measure


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cabinets", type=int, default=2000)
    parser.add_argument("--window", type=float, default=90.0, help="measured seconds, >= 60")
    parser.add_argument("--ramp", type=float, default=None, help="seconds to connect all")
    args = parser.parse_args()
    if args.window < 60:
        parser.error("--window must cover a heartbeat interval (60 s)")
    ramp = args.ramp if args.ramp is not None else max(5.0, args.cabinets / 200)
    with tempfile.TemporaryDirectory(prefix="aedfleet-bench-") as scratch:
        broker = MosquittoBroker(Path(scratch) / "broker")
        broker.start()
        try:
            settings = MqttSettings(port=broker.port, keepalive_s=60, connect_timeout_s=30)
            baseline = await bare_connections(settings, args.cabinets, args.window / 2)
            sim = await simulated_fleet(
                settings, args.cabinets, ramp, args.window, Path(scratch) / "sim"
            )
        finally:
            broker.stop()
    # Every cabinet owes at least one heartbeat in any 60 s of the window.
    due = args.cabinets * int(args.window // 60)
    print(f"machine: {os.cpu_count()} cores; {args.cabinets} cabinets, 60 s heartbeat")
    print(
        f"baseline, bare connections: {baseline.connected} connected, "
        f"{baseline.cpu_fraction:.1%} of a core, {baseline.rss_per_connection / 1024:.1f} KiB each"
    )
    print(
        f"simulated fleet:            {sim.connected} connected, "
        f"{sim.cpu_fraction:.1%} of a core, {sim.rss_per_connection / 1024:.1f} KiB per cabinet"
    )
    print(
        f"messages delivered in {args.window:.0f} s: {sim.delivered} "
        f"(at least {due} heartbeats due: {sim.delivered / due:.2f}x)"
    )
    memory_ratio = sim.rss_per_connection / max(baseline.rss_per_connection, 1)
    cpu_ratio = sim.cpu_fraction / max(baseline.cpu_fraction, 1e-4)
    print(f"ratios vs baseline: memory {memory_ratio:.1f}x, CPU {cpu_ratio:.1f}x")


if __name__ == "__main__":
    asyncio.run(main())
