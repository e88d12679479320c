"""``aedfleet demo``: a simulated fleet, an embedded broker, a live traffic view and the
AED captain system paging people about what goes wrong.

Nothing to install or configure: the broker runs in this process on a free loopback
port, and the fleet's clock runs faster than wall time so that hours of door openings,
escalations and injected faults pass in minutes. The watcher that feeds the traffic view
also feeds the alerting engine (:mod:`aedfleet_app.demo_alerting`), whose pages, answers and
resolutions are printed between the events; a summary of both ends the run.

The clock starts shortly before 01:00 in Shenzhen, where the simulated registry places
the cabinets: the fleet's nightly self-tests then run during the demo, and it is night,
which is why the demo turns quiet hours off (warnings would otherwise wait until 07:00).
"""

from __future__ import annotations

import asyncio
import socket
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime, time
from pathlib import Path
from typing import Final
from zoneinfo import ZoneInfo

from aedfleet.clock import ScaledClock
from aedfleet.contract import subscription
from aedfleet.mqtt import InboundMessage, KeepAliveTicker, MqttConnection
from aedfleet_app.demo_alerting import DemoAlerting, demo_settings
from aedfleet_app.embedded_broker import EmbeddedBroker
from aedfleet_app.traffic import TrafficView
from firmware_sim.fleet import FleetSettings, FleetStats, SimulatedFleet
from firmware_sim.registry import simulated_registry
from firmware_sim.scenario import SCENARIO_DIR, Scenario, load_scenario

DEMO_SCENARIO: Final = "demo.yaml"
DEMO_TIME_ZONE: Final = ZoneInfo("Asia/Shanghai")
DEMO_START: Final = time(0, 50)


def _free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _within(scenario: Scenario, cabinets: int) -> Scenario:
    """The scenario without the explicit faults of cabinets beyond a smaller fleet."""
    kept = tuple(
        fault for fault in scenario.faults if scenario.cabinet_index(fault.cabinet) < cabinets
    )
    return scenario.model_copy(update={"faults": kept})


def demo_start(now: datetime) -> datetime:
    """Where the demo's clock starts: :data:`DEMO_START` in Shenzhen on ``now``'s date there."""
    day = now.astimezone(DEMO_TIME_ZONE).date()
    return datetime.combine(day, DEMO_START, tzinfo=DEMO_TIME_ZONE).astimezone(UTC)


async def run_demo(
    cabinets: int,
    duration_s: float | None,
    clock_scale: float,
    emit: Callable[[str], None],
    work_dir: Path | None = None,
    *,
    scenario: Scenario | None = None,
    start: datetime | None = None,
) -> FleetStats:
    """Run the demo for ``duration_s`` wall seconds (None: until cancelled).

    ``scenario`` defaults to ``firmware_sim/scenarios/demo.yaml`` and ``start`` (the
    clock's first instant) to :func:`demo_start` of now.
    """
    scenario = _within(scenario or load_scenario(SCENARIO_DIR / DEMO_SCENARIO), cabinets)
    clock = ScaledClock(start or demo_start(datetime.now(UTC)), clock_scale)
    with tempfile.TemporaryDirectory(prefix="aedfleet-demo-") as scratch:
        folder = work_dir or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        alerting = DemoAlerting(
            demo_settings(_free_loopback_port()),
            simulated_registry(scenario, cabinets),
            f"sqlite:///{folder / 'demo-state.sqlite3'}",
            clock,
            emit,
        )
        async with (
            EmbeddedBroker(_free_loopback_port()) as broker,
            KeepAliveTicker() as ticker,
            alerting,
        ):
            view = TrafficView(emit)

            def watch(message: InboundMessage) -> None:
                view.on_message(message)
                alerting.offer(message)

            watcher = MqttConnection(
                broker.client_settings, "aedfleet-demo-view", ticker, on_message=watch
            )
            async with watcher:
                await watcher.subscribe(subscription())
                began = clock.now()
                emit(
                    f"aedfleet demo: {cabinets} simulated cabinets on an embedded broker at "
                    f"127.0.0.1:{broker.port}, clock x{clock_scale:g} from "
                    f"{began.astimezone(DEMO_TIME_ZONE):%Y-%m-%d %H:%M} Shenzhen time "
                    f"({began:%H:%M} UTC, the time of the lines below); ground truth in "
                    f"{folder / 'ground-truth.jsonl'}"
                )
                emit(
                    f"AED captains: pages print as 📟 lines; their links work while the demo "
                    f"runs (http://127.0.0.1:{alerting.http_port}/l/...); every other critical "
                    f"alarm is acknowledged by its captain after a few clock minutes, the rest "
                    f"escalate"
                )
                settings = FleetSettings(
                    cabinets=cabinets,
                    broker=broker.client_settings,
                    work_dir=folder,
                    # amqtt drops a connecting client whenever another one subscribes
                    # while it sends it the retained messages ("dictionary changed size
                    # during iteration"), so the cabinets connect a quarter second apart.
                    ramp_s=min(10.0, cabinets / 4),
                    tick_s=min(60.0, clock_scale),
                )
                fleet = SimulatedFleet(settings, scenario, clock)

                def report(stats: FleetStats) -> None:
                    emit(
                        view.summary()
                        + f", sim RSS/cabinet {stats.rss_per_cabinet_bytes / 1024:.0f} KiB; "
                        + alerting.status()
                    )

                try:
                    async with asyncio.TaskGroup() as tasks:
                        # Started before the fleet's own timer, so it stops first.
                        paging = tasks.create_task(alerting.run(duration_s), name="demo-alerting")
                        stats = await fleet.run(duration_s, on_stats=report)
                        paging.cancel()
                except asyncio.CancelledError:
                    # Ctrl-C ends a demo without a duration: the summary still comes.
                    for line in await alerting.summary():
                        emit(line)
                    raise
                emit(
                    f"done: {stats.acknowledged} messages acknowledged in {stats.elapsed_s:.0f} s "
                    f"({stats.messages_per_s:.0f}/s), {stats.faults_started} faults injected"
                )
                for line in await alerting.summary():
                    emit(line)
                return stats
