"""A fleet of simulated cabinets, each running the real edge agent in this process.

Every cabinet has its own MQTT connection with its own last will, its own queue in a
shared outbox database, and simulated hardware. Faults come from the scenario (by rate
or explicitly); the hardware faults act on the cabinet model, and the two that concern
the agent itself are played here: ``cabinet_offline`` cuts the network (the agent keeps
storing and resends when it is back) and ``agent_killed`` drops the agent like a power
cut and boots a new one, with a new boot id, over the same outbox. Every fault's start
and end is written to the ground-truth file.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import psutil
from pydantic import BaseModel, ConfigDict, Field, SecretBytes, SecretStr

from aedfleet.broker_auth import cabinet_password
from aedfleet.clock import Clock
from aedfleet.mqtt import KeepAliveTicker, MqttSettings
from aedfleet.service import StartupError
from edge_agent import CabinetProfile, EdgeAgent, LinkSettings, Outbox, OutboxDatabase
from firmware_sim import MAX_CABINETS
from firmware_sim.cabinet import CabinetModel, CabinetSpec
from firmware_sim.faults import Fault, FaultPhase, FaultWindow, Phase
from firmware_sim.ground_truth import GroundTruthWriter
from firmware_sim.hardware import SimulatedHardware
from firmware_sim.scenario import Scenario, fault_plan, fleet_specs

log = logging.getLogger(__name__)

AED_MODELS = (
    "Mindray BeneHeart C1A",
    "Philips HeartStart HS1",
    "ZOLL AED Plus",
    "Yuwell iAED-S1",
    "Cardiac Science Powerheart G5",
)


class FleetSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    cabinets: int = Field(ge=1, le=MAX_CABINETS)
    broker: MqttSettings
    work_dir: Path = Field(description="Holds the shared outbox and the ground truth")
    heartbeat_interval_s: int = Field(default=60, ge=10, le=86_400)
    tick_s: float = Field(default=1.0, gt=0, description="Clock seconds between model steps")
    ramp_s: float = Field(
        default=10.0, ge=0, description="Wall seconds over which the cabinets connect"
    )
    link: LinkSettings = LinkSettings()
    broker_secret: SecretBytes | None = Field(
        default=None,
        description="Provisioning secret: each cabinet logs in with its id and derived "
        "password (docs/security.md); unset, all use the broker's user name and password",
    )

    def broker_for(self, cabinet_id: str) -> MqttSettings:
        """The broker settings one cabinet connects with."""
        if self.broker_secret is None:
            return self.broker
        password = cabinet_password(self.broker_secret.get_secret_value(), cabinet_id)
        return self.broker.model_copy(
            update={"username": cabinet_id, "password": SecretStr(password)}
        )

    @property
    def outbox_path(self) -> Path:
        return self.work_dir / "sim-outbox.sqlite3"

    @property
    def ground_truth_path(self) -> Path:
        return self.work_dir / "ground-truth.jsonl"


@dataclass(frozen=True, slots=True)
class FleetStats:
    elapsed_s: float
    cabinets: int
    connected: int
    acknowledged: int
    messages_per_s: float
    rss_bytes: int
    rss_per_cabinet_bytes: float
    faults_started: int


class ClockNetwork:
    """A cabinet's network link, which a fault can cut until a time on the clock."""

    __slots__ = ("_clock", "down_until")

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self.down_until: datetime | None = None

    async def wait_up(self) -> None:
        while self.down_until is not None:
            remaining = (self.down_until - self._clock.now()).total_seconds()
            if remaining <= 0:
                self.down_until = None
                return
            await self._clock.sleep(remaining)


class SimulatedCabinet:
    """One cabinet: model, hardware, network and the agent of its current boot."""

    __slots__ = (
        "acknowledged_before",
        "agent",
        "hardware",
        "network",
        "outbox",
        "profile",
        "restart_at",
        "task",
    )

    def __init__(
        self, profile: CabinetProfile, hardware: SimulatedHardware, network: ClockNetwork
    ) -> None:
        self.profile = profile
        self.hardware = hardware
        self.network = network
        self.outbox: Outbox | None = None
        self.agent: EdgeAgent | None = None
        self.task: asyncio.Task[None] | None = None
        self.acknowledged_before = 0
        self.restart_at: datetime | None = None

    @property
    def acknowledged(self) -> int:
        current = self.agent.stats.acknowledged if self.agent else 0
        return self.acknowledged_before + current


def cabinet_profile(spec: CabinetSpec, heartbeat_interval_s: int) -> CabinetProfile:
    return CabinetProfile(
        cabinet_id=spec.cabinet_id,
        aed_model=AED_MODELS[spec.seed % len(AED_MODELS)],
        aed_serial=f"SN{spec.seed:010d}",
        hardware_version="sim-cabinet-1",
        firmware_version="aedfleet-sim-0.1",
        time_zone=spec.time_zone,
        heartbeat_interval_s=heartbeat_interval_s,
        selftest_schedule=spec.selftest,
    )


class SimulatedFleet:
    def __init__(self, settings: FleetSettings, scenario: Scenario, clock: Clock) -> None:
        self.settings = settings
        self.scenario = scenario
        self.clock = clock
        self.faults_started = 0
        self._start = clock.now()
        self._plan = fault_plan(scenario, settings.cabinets)
        self._rng = random.Random(scenario.seed)
        self._cabinets: list[SimulatedCabinet] = []
        for spec in fleet_specs(scenario, settings.cabinets):
            model = CabinetModel(spec, self._start)
            hardware = SimulatedHardware(model, clock, settings.tick_s)
            profile = cabinet_profile(spec, settings.heartbeat_interval_s)
            self._cabinets.append(SimulatedCabinet(profile, hardware, ClockNetwork(clock)))
        # Cabinets with faults not yet ended, and how many: their phases must be collected.
        self._open_faults: Counter[int] = Counter()
        self._ticker: KeepAliveTicker | None = None
        self._tasks: asyncio.TaskGroup | None = None

    @property
    def cabinet_ids(self) -> list[str]:
        return [cabinet.profile.cabinet_id for cabinet in self._cabinets]

    def agent(self, index: int) -> EdgeAgent | None:
        return self._cabinets[index].agent

    def connected(self) -> int:
        return sum(
            1 for cabinet in self._cabinets if cabinet.agent and cabinet.agent.connected.is_set()
        )

    async def run(
        self,
        duration_s: float | None,
        on_stats: Callable[[FleetStats], None] | None = None,
        stats_interval_s: float = 5.0,
    ) -> FleetStats:
        """Run the fleet for ``duration_s`` wall seconds (None: until cancelled)."""
        try:
            self.settings.work_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            folder = self.settings.work_dir
            raise StartupError(f"cannot use the work folder {folder}: {exc.strerror}") from None
        rss_before = psutil.Process().memory_info().rss
        started = time.monotonic()
        async with (
            KeepAliveTicker() as ticker,
            OutboxDatabase(self.settings.outbox_path, "NORMAL") as database,
            asyncio.TaskGroup() as tasks,
        ):
            self._ticker, self._tasks = ticker, tasks
            with GroundTruthWriter(self.settings.ground_truth_path) as truth:
                for cabinet in self._cabinets:
                    cabinet.outbox = database.outbox(cabinet.profile.cabinet_id, 10_000)
                ramp = tasks.create_task(self._ramp_up(), name="fleet-ramp")
                faults = tasks.create_task(self._play_faults(truth), name="fleet-faults")
                stats = self._stats(started, rss_before)
                try:
                    async with asyncio.timeout(duration_s):
                        while True:
                            await asyncio.sleep(stats_interval_s)
                            stats = self._stats(started, rss_before)
                            if on_stats:
                                on_stats(stats)
                except TimeoutError:
                    pass
                stats = self._stats(started, rss_before)
                ramp.cancel()
                faults.cancel()
                for cabinet in self._cabinets:
                    if cabinet.task:
                        cabinet.task.cancel()
        return stats

    def _stats(self, started: float, rss_before: int) -> FleetStats:
        elapsed = time.monotonic() - started
        acknowledged = sum(cabinet.acknowledged for cabinet in self._cabinets)
        rss = psutil.Process().memory_info().rss
        return FleetStats(
            elapsed_s=elapsed,
            cabinets=len(self._cabinets),
            connected=self.connected(),
            acknowledged=acknowledged,
            messages_per_s=acknowledged / elapsed if elapsed > 0 else 0.0,
            rss_bytes=rss,
            rss_per_cabinet_bytes=(rss - rss_before) / len(self._cabinets),
            faults_started=self.faults_started,
        )

    async def _ramp_up(self) -> None:
        pause = self.settings.ramp_s / len(self._cabinets)
        for cabinet in self._cabinets:
            self._boot(cabinet)
            if pause:
                await asyncio.sleep(pause)

    def _boot(self, cabinet: SimulatedCabinet) -> None:
        if self._ticker is None or self._tasks is None or cabinet.outbox is None:
            raise RuntimeError("the fleet is not running")
        if cabinet.agent:
            cabinet.acknowledged_before += cabinet.agent.stats.acknowledged
        cabinet.agent = EdgeAgent(
            cabinet.profile,
            self.settings.broker_for(cabinet.profile.cabinet_id),
            self.settings.link,
            cabinet.hardware,
            cabinet.outbox,
            self._ticker,
            clock=self.clock,
            rng=random.Random(self._rng.random()),
            network=cabinet.network,
        )
        cabinet.task = self._tasks.create_task(
            cabinet.agent.run(), name=f"agent-{cabinet.profile.cabinet_id}"
        )

    async def _play_faults(self, truth: GroundTruthWriter) -> None:
        loop = asyncio.get_running_loop()
        while True:
            now = self.clock.now()
            elapsed = (now - self._start).total_seconds()
            for planned in self._plan.due(elapsed):
                self._cabinets[planned.cabinet].hardware.apply_fault(
                    planned.fault, now, planned.duration_s
                )
                self._open_faults[planned.cabinet] += 1
                self.faults_started += 1
            phases: list[FaultPhase] = []
            for index in list(self._open_faults):
                cabinet = self._cabinets[index]
                model = cabinet.hardware.model
                taken = model.take_fault_phases()
                phases.extend(taken)
                self._open_faults[index] -= sum(phase.phase is Phase.END for phase in taken)
                for window in model.take_runner_faults():
                    await self._play_runner_fault(cabinet, window)
                if cabinet.restart_at is not None and cabinet.restart_at <= now:
                    cabinet.restart_at = None
                    self._boot(cabinet)
                if self._open_faults[index] <= 0 and cabinet.restart_at is None:
                    del self._open_faults[index]
            if phases:
                await loop.run_in_executor(None, _write_all, truth, phases)
            await self.clock.sleep(self.settings.tick_s)

    async def _play_runner_fault(self, cabinet: SimulatedCabinet, window: FaultWindow) -> None:
        end = window.end or window.start + timedelta(days=3650)
        if window.fault is Fault.CABINET_OFFLINE:
            cabinet.network.down_until = end
            if cabinet.agent:
                cabinet.agent.drop_connection()
        elif window.fault is Fault.AGENT_KILLED:
            if cabinet.agent and cabinet.task:
                cabinet.agent.kill()
                cabinet.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await cabinet.task
            cabinet.restart_at = end


def _write_all(truth: GroundTruthWriter, phases: list[FaultPhase]) -> None:
    for phase in phases:
        truth.write(phase)
