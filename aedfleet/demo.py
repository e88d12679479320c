"""``aedfleet demo``: a simulated fleet, an embedded broker and a live traffic view.

Nothing to install or configure: the broker runs in this process on a free loopback
port, and the fleet's clock runs faster than wall time so that days of self-tests, door
openings and injected faults pass in minutes.
"""

from __future__ import annotations

import socket
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from aedfleet.clock import ScaledClock
from aedfleet.contract import subscription
from aedfleet.embedded_broker import EmbeddedBroker
from aedfleet.mqtt import KeepAliveTicker, MqttConnection
from aedfleet.traffic import TrafficView
from firmware_sim.fleet import FleetSettings, FleetStats, SimulatedFleet
from firmware_sim.scenario import SCENARIO_DIR, load_scenario

DEMO_SCENARIO = "demo.yaml"


def _free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def run_demo(
    cabinets: int,
    duration_s: float | None,
    clock_scale: float,
    emit: Callable[[str], None],
    work_dir: Path | None = None,
) -> FleetStats:
    scenario = load_scenario(SCENARIO_DIR / DEMO_SCENARIO)
    with tempfile.TemporaryDirectory(prefix="aedfleet-demo-") as scratch:
        folder = work_dir or Path(scratch)
        async with (
            EmbeddedBroker(_free_loopback_port()) as broker,
            KeepAliveTicker() as ticker,
        ):
            view = TrafficView(emit)
            watcher = MqttConnection(
                broker.client_settings, "aedfleet-demo-view", ticker, on_message=view.on_message
            )
            async with watcher:
                await watcher.subscribe(subscription())
                emit(
                    f"aedfleet demo: {cabinets} simulated cabinets on an embedded broker at "
                    f"127.0.0.1:{broker.port}, clock x{clock_scale:g}; ground truth in "
                    f"{folder / 'ground-truth.jsonl'}"
                )
                settings = FleetSettings(
                    cabinets=cabinets,
                    broker=broker.client_settings,
                    work_dir=folder,
                    ramp_s=min(10.0, cabinets / 10),
                    tick_s=min(60.0, clock_scale),
                )
                fleet = SimulatedFleet(
                    settings, scenario, ScaledClock(datetime.now(UTC), clock_scale)
                )

                def report(stats: FleetStats) -> None:
                    emit(
                        view.summary()
                        + f", sim RSS/cabinet {stats.rss_per_cabinet_bytes / 1024:.0f} KiB"
                    )

                stats = await fleet.run(duration_s, on_stats=report)
                emit(
                    f"done: {stats.acknowledged} messages acknowledged in {stats.elapsed_s:.0f} s "
                    f"({stats.messages_per_s:.0f}/s), {stats.faults_started} faults injected"
                )
                return stats
