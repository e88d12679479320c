"""The harness: Mosquitto, InfluxDB, the alerting service, an SMTP server and the fleet's
own process, run on one scaled clock; what they did, read back for the score."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

import psutil
from pydantic import BaseModel, ConfigDict

from aedfleet.clock import ScaledClock
from aedfleet.mqtt import MqttSettings
from aedfleet_app.alerting_process import AlertingProcess
from aedfleet_testing.alerting_e2e_support import alerting_settings, seed_fleet_registry
from aedfleet_testing.brokers import MosquittoBroker
from aedfleet_testing.influx import InfluxServer
from aedfleet_testing.mailbox import Mailbox
from alerting.config import SchedulerSettings
from alerting.model import NoticeKind, NotificationState, Severity
from alerting.quiet import QuietSettings, is_urgent
from alerting.store import AlarmStore
from benchmarks.detection.plan import (
    HEARTBEAT_INTERVAL_S,
    REPORTED_BY_HEARTBEAT,
    START,
    RunFailedError,
    local_time,
    observation_end,
    scored_scenario,
    thresholds_by_cabinet,
)
from benchmarks.detection.report import RunFacts
from benchmarks.detection.score import PageSeen, Score, WallClock, injected_faults, judge
from firmware_sim.faults import FaultPhase, Phase
from firmware_sim.fleet import FleetSettings, SimulatedFleet
from firmware_sim.ground_truth import read_ground_truth
from firmware_sim.scenario import Scenario, load_scenario

DATABASE: Final = "detection"
REPO: Final = Path(__file__).resolve().parents[2]
# The fleet's process is the entry point again, given its job (see FleetProcess).
ENTRY_POINT: Final = REPO / "benchmarks" / "detection_score.py"
HARDWARE_TICK_S: Final = 10.0
FLEET_RAMP_S: Final = 10.0
FLEET_START_TIMEOUT_S: Final = 60.0
FLEET_STOP_TIMEOUT_S: Final = 15.0
SERVICE_START_TIMEOUT_S: Final = 30.0
PROGRESS_EVERY_S: Final = 15.0


class FleetJob(BaseModel):
    """What the fleet's process is given: the scenario, the broker and the shared clock."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    scenario: Scenario
    broker: MqttSettings
    work_dir: Path
    scale: float
    clock_at: datetime
    monotonic_at: float


async def run_fleet(job: FleetJob) -> None:
    """Run the fleet until terminated; print its start on the clock once it exists."""
    elapsed_s = (time.monotonic() - job.monotonic_at) * job.scale
    clock = ScaledClock(job.clock_at + timedelta(seconds=elapsed_s), job.scale)
    fleet = SimulatedFleet(
        FleetSettings(
            cabinets=job.scenario.fleet.size,
            broker=job.broker,
            work_dir=job.work_dir,
            heartbeat_interval_s=HEARTBEAT_INTERVAL_S,
            tick_s=HARDWARE_TICK_S,
            ramp_s=FLEET_RAMP_S,
        ),
        job.scenario,
        clock,
    )
    print(clock.now().isoformat(), flush=True)
    await fleet.run(duration_s=None)


class FleetProcess:
    """The fleet's child process: started with a job, its start read from its output."""

    def __init__(self, job: FleetJob, log_path: Path) -> None:
        self.job = job
        self.log_path = log_path
        self._process: asyncio.subprocess.Process | None = None

    async def start(self) -> datetime:
        """Start the fleet; returns when (on the clock) its fault plan began."""
        with self.log_path.open("ab") as log_file:
            self._process = await asyncio.create_subprocess_exec(
                sys.executable,
                str(ENTRY_POINT),
                "--fleet-job",
                self.job.model_dump_json(),
                stdout=asyncio.subprocess.PIPE,
                stderr=log_file,
                env={**os.environ, "PYTHONPATH": str(REPO)},
            )
        assert self._process.stdout is not None
        try:
            async with asyncio.timeout(FLEET_START_TIMEOUT_S):
                line = await self._process.stdout.readline()
        except TimeoutError:
            raise RunFailedError(
                f"the fleet did not start within {FLEET_START_TIMEOUT_S:g} s ({self.log_path})"
            ) from None
        if not line:
            raise RunFailedError(f"the fleet exited at start; see {self.log_path}")
        return datetime.fromisoformat(line.decode().strip())

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    async def stop(self) -> None:
        process = self._process
        if process is None or process.returncode is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(FLEET_STOP_TIMEOUT_S):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()


class CpuMeter:
    """CPU seconds of this process (the service), the fleet and the servers, as shares of
    one core over a stretch of wall time: who was busy, on a machine others share."""

    def __init__(self, fleet_pid: int | None) -> None:
        self._fleet_pid = fleet_pid
        self._started = time.monotonic()
        self._before = self._sample()

    def _label(self, process: psutil.Process) -> str:
        if process.pid == os.getpid():
            return "service"
        if process.pid == self._fleet_pid:
            return "fleet"
        return process.name()

    def _sample(self) -> dict[str, float]:
        seconds: dict[str, float] = {}
        me = psutil.Process()
        for process in [me, *me.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                label = self._label(process)
                seconds[label] = seconds.get(label, 0.0) + times.user + times.system
        return seconds

    def shares(self) -> dict[str, float]:
        elapsed = time.monotonic() - self._started
        after = self._sample()
        return {label: (after[label] - self._before.get(label, 0.0)) / elapsed for label in after}


class ServiceRun:
    """The alerting service as a task: ready or failed at start, watched for a crash
    while the faults play, and stopped after. A failure while stopping does not void
    the score (what was sent is in the mailbox); it is kept for the report."""

    def __init__(self, service: AlertingProcess) -> None:
        self.service = service
        self.stop_error: str | None = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> ServiceRun:
        self._task = task = asyncio.create_task(self.service.run())
        ready = asyncio.create_task(self.service.ready.wait())
        done, _ = await asyncio.wait(
            {task, ready}, timeout=SERVICE_START_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED
        )
        if ready not in done:
            ready.cancel()
            await self._stop()
            raise RunFailedError(f"the alerting service did not start: {self.stop_error}")
        return self

    def check(self) -> None:
        """Raise RunFailedError if the service stopped by itself."""
        if self._task is not None and self._task.done():
            error = None if self._task.cancelled() else self._task.exception()
            raise RunFailedError(f"the alerting service stopped during the run: {error!r}")

    async def _stop(self) -> None:
        task = self._task
        if task is None:
            return
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            if (current := asyncio.current_task()) is not None and current.cancelling():
                raise  # the run itself is being cancelled
        except Exception as exc:  # noqa: BLE001 - reported, not hidden: see the class doc
            self.stop_error = repr(exc)

    async def __aexit__(self, *exc_info: object) -> None:
        await self._stop()


def next_heartbeats(
    influx: InfluxServer, database: str, truth: Sequence[FaultPhase]
) -> dict[str, datetime]:
    """For each fault told only by heartbeats, the first heartbeat after it, as written to
    InfluxDB (the point's time is the device's ``ts``)."""
    found = {}
    for phase in truth:
        if phase.phase is not Phase.START or phase.fault not in REPORTED_BY_HEARTBEAT:
            continue
        # The cabinet id is one of the scenario's own (det-0042): nothing to escape.
        query = (
            f'SELECT first("battery_pct") FROM "heartbeat" WHERE "cabinet_id" = '  # noqa: S608
            f"'{phase.cabinet_id}' AND time >= '{phase.ts.isoformat()}'"
        )
        rows = influx.query(query, database)
        if rows:
            found[phase.cabinet_id] = datetime.fromtimestamp(rows[0]["time"] / 1e9, tz=UTC)
    return found


def pages_seen(mailbox: Mailbox, store: AlarmStore, walls: WallClock) -> list[PageSeen]:
    """Every PAGE notification the SMTP server received, one per alarm it spoke for.

    A page is recorded for one alarm. When that alarm is acknowledged or resolved while
    the email is on its way, the store withdraws it from the notification after the
    message was composed; the email still spoke for it, so withdrawn alarms count too.
    """
    pages = []
    for delivery in mailbox.deliveries:
        notice_id = str(delivery.message["X-AEDfleet-Notice-Id"])
        for part in notice_id.removeprefix("n").split("-"):
            notification = store.notification(int(part))
            if notification is None or notification.kind is not NoticeKind.PAGE:
                continue
            for alarm_id in notification.alarm_ids + notification.withdrawn_alarm_ids:
                alarm = store.alarm(alarm_id)
                if alarm is None:
                    continue
                pages.append(
                    PageSeen(
                        at_wall=delivery.at,
                        raised_wall=walls.wall(alarm.raised_at),
                        person_id=notification.person_id,
                        alarm_id=alarm_id,
                        cabinet_id=alarm.cabinet_id,
                        alarm_type=alarm.type,
                        severity=alarm.severity,
                    )
                )
    return pages


@dataclass(frozen=True, slots=True)
class StoreFacts:
    alarms_raised: int
    alarms_without_fault: tuple[str, ...]
    notifications_failed: int
    notifications_pending: int


def store_facts(store: AlarmStore, faulty: Iterable[str]) -> StoreFacts:
    """Alarms at cabinets without a fault, and notifications that never went out."""
    with_fault = set(faulty)
    alarms = store.alarms(limit=1_000_000)
    states: Counter[NotificationState] = Counter()
    for alarm in alarms:
        states.update(n.state for n in store.notifications(alarm.alarm_id))
    return StoreFacts(
        alarms_raised=len(alarms),
        alarms_without_fault=tuple(
            f"{alarm.type.value}@{alarm.cabinet_id}"
            for alarm in alarms
            if alarm.cabinet_id not in with_fault
        ),
        notifications_failed=states[NotificationState.FAILED],
        notifications_pending=states[NotificationState.PENDING],
    )


async def wait_for_fleet(
    service: AlertingProcess, cabinet_ids: Sequence[str], clock: ScaledClock, by: datetime
) -> None:
    """Until every cabinet has been heard from and judged; RunFailedError after ``by``."""
    while True:
        heard = sum(service.alerting.engine.cabinet_readiness(c) is not None for c in cabinet_ids)
        if heard == len(cabinet_ids):
            return
        if clock.now() >= by:
            raise RunFailedError(
                f"only {heard} of {len(cabinet_ids)} cabinets were heard from before the "
                f"first fault ({local_time(by)} clock); try a lower --scale"
            )
        # The engine's readiness map fills as births arrive; no event announces it.
        await asyncio.sleep(0.2)


async def watch(
    clock: ScaledClock, until: datetime, truth_path: Path, mailbox: Mailbox, service: ServiceRun
) -> None:
    """Wait until ``until`` on the clock, printing progress now and then."""
    while (left := (until - clock.now()).total_seconds()) > 0:
        await asyncio.sleep(min(left / clock.scale, PROGRESS_EVERY_S))
        service.check()
        started = await asyncio.to_thread(_faults_started, truth_path)
        print(
            f"  clock {local_time(clock.now())}: {started} faults started, "
            f"{len(mailbox.deliveries)} emails so far",
            flush=True,
        )


def _faults_started(truth_path: Path) -> int:
    if not truth_path.exists():
        return 0
    return sum(phase.phase is Phase.START for phase in read_ground_truth(truth_path))


async def run(args: argparse.Namespace, work: Path) -> tuple[Score, RunFacts]:
    """Play the scenario against the service, then score what the mailbox received."""
    scenario = scored_scenario(load_scenario(args.scenario), args.cabinets, args.quick)
    cabinet_ids = [scenario.cabinet_id(index) for index in range(scenario.fleet.size)]
    store_url = f"sqlite:///{work / 'store.sqlite3'}"
    seed_fleet_registry(store_url, scenario)
    broker = MosquittoBroker(work / "broker")
    influx = InfluxServer(work / "influx")
    broker.start()
    try:
        influx.start()
        influx.create_database(DATABASE)
        # The clock starts once the servers are up, so that their start-up takes none
        # of the scenario's time.
        clock = ScaledClock(START, args.scale)
        walls = WallClock(clock.now(), time.monotonic(), args.scale)
        fleet = FleetProcess(
            FleetJob(
                scenario=scenario,
                broker=MqttSettings(port=broker.port),
                work_dir=work / "fleet",
                scale=args.scale,
                clock_at=walls.clock_at,
                monotonic_at=walls.monotonic_at,
            ),
            work / "fleet.log",
        )
        with Mailbox() as mailbox:
            settings = alerting_settings(
                broker,
                influx,
                DATABASE,
                store_url,
                mailbox,
                # The service's own defaults, where the test helper speeds things up,
                # except that a cabinet is judged never heard from only when the faults
                # begin: the run is void anyway if one has not been heard from by then.
                quiet=QuietSettings(),
                scheduler=SchedulerSettings(
                    first_contact_grace_s=min(f.at for f in scenario.faults)
                ),
            )
            thresholds = thresholds_by_cabinet(scenario, settings.rules)
            grouping = settings.quiet.grouping.window
            service = AlertingProcess(settings, clock=clock)
            async with ServiceRun(service) as service_run:
                try:
                    fleet_start = await fleet.start()
                    first_fault = fleet_start + timedelta(
                        seconds=min(f.at for f in scenario.faults)
                    )
                    end = observation_end(scenario, thresholds, fleet_start, grouping)
                    print(
                        f"fleet of {len(cabinet_ids)} started at {local_time(fleet_start)} "
                        f"clock; first fault at {local_time(first_fault)}, watching until "
                        f"{local_time(end)} "
                        f"({(end - clock.now()).total_seconds() / args.scale:.0f} wall s)",
                        flush=True,
                    )
                    await wait_for_fleet(service, cabinet_ids, clock, first_fault)
                    print(f"  every cabinet heard from by {local_time(clock.now())}", flush=True)
                    cpu = CpuMeter(fleet.pid)
                    await watch(
                        clock, end, fleet.job.work_dir / "ground-truth.jsonl", mailbox, service_run
                    )
                    observed = (fleet_start, clock.now())
                    cpu_shares = cpu.shares()
                finally:
                    await fleet.stop()
            truth = read_ground_truth(fleet.job.work_dir / "ground-truth.jsonl")
            heartbeats = await asyncio.to_thread(next_heartbeats, influx, DATABASE, truth)
            faults = injected_faults(truth, scenario, thresholds, walls, heartbeats)
            with AlarmStore.open(store_url) as store:
                pages = pages_seen(mailbox, store, walls)
                stored = store_facts(store, (fault.cabinet_id for fault in faults))
    finally:
        influx.stop()
        broker.stop()

    def hold_s(severity: Severity) -> float:
        return 0.0 if is_urgent(severity) else walls.seconds(grouping)

    facts = RunFacts(
        cabinets=len(cabinet_ids),
        scale=args.scale,
        faults_per_type=Counter(fault.fault for fault in faults),
        observed_clock=observed,
        grouping_window=grouping,
        cpu_shares=cpu_shares,
        load_average=os.getloadavg()[1],
        service_stop_error=service_run.stop_error,
        alarms_raised=stored.alarms_raised,
        alarms_without_fault=stored.alarms_without_fault,
        notifications_failed=stored.notifications_failed,
        notifications_pending=stored.notifications_pending,
    )
    return judge(faults, pages, hold_s), facts
