"""Detection score: does every injected fault page the right captain, nothing else, in time?

A simulated fleet with no legitimate alarm of its own (``firmware_sim/scenarios/
detection.yaml``: 500 indoor cabinets, fresh consumables, nobody opening a door) suffers
every fault type of :class:`firmware_sim.faults.Fault` twelve times, each at a cabinet of
its own. The whole server side runs as in the alerting end-to-end test: a Mosquitto of
its own, the alerting service (ingest and alerting in one process) with its SQLite
store, a real InfluxDB behind its shim, and a real SMTP server (aiosmtpd) that keeps
every email the captains, backups and coordinators are sent. The fleet runs in a child
process of its own, as cabinets do, so that the simulation's CPU does not delay the
service's event loop; both share one scaled clock (anchored on the machine's monotonic
clock, which all processes read alike).

From the simulator's ground truth (when each fault began, at which cabinet), the
mailbox (who was sent what, and when it arrived) and the alarm store (which alarms an
email spoke for), the score reports:

- **recall** per fault type: injected faults whose expected alarms (:data:`EXPECTED`)
  reached the cabinet's own captain as a page. Goal: 100 %.
- **precision**: pages, to anyone, explained by a fault injected at that cabinet, either
  by an expected alarm or by a side effect the fault legitimately causes
  (:data:`SIDE_EFFECTS`: a failed battery also turns the ready light off and fails the
  next self-test), each side effect counted and listed on its own. Each alarm an email
  speaks for counts as one page. Goal: 100 %.
- **latency** per fault type and alarm: wall seconds from the fault to the arrival of
  the captain's page, minus the designed delay. Goal: within 5 s. Two faults are timed
  from the moment the cabinet can first tell: a circuit fault from the next self-test,
  a flat battery from the next heartbeat (the battery level is a heartbeat reading; the
  heartbeat's time is read back from InfluxDB).

Designed delay, and why the figures are in wall seconds: the rules count their delays
(temperature outside the range 30 min, AED not back 30 min) on the clock, which runs
``--scale`` times faster than the wall, so the rule's delay is converted to wall
seconds (30 clock minutes are 180 wall seconds at scale 10) before it is subtracted.
Warnings (offline, power lost) are not sent at once by design: non-urgent notices wait
for the grouping window (5 clock minutes) so that several alarms for one captain make
one message; that window is part of the designed delay and shown in its own column.
Everything else the service does (ingest batching, the scheduler's 1 s tick, rendering,
SMTP) takes wall time and is what the 5 s goal measures, along with the simulated
hardware's sampling (every 10 clock seconds: 1 wall s at scale 10).

The scale is a trade: the slowest rules (30 clock minutes) take ``1800 / scale`` wall
seconds, but the fleet's message rate grows with it, ``cabinets * scale / 60``
heartbeats per wall second (at scale 10, 500 cabinets send as much as 5,000 do in real
time). The report prints that rate and the CPU each process used, so that a latency
can be read against the load it was measured under.

    PYTHONPATH=. .venv/bin/python benchmarks/detection_score.py              # 500 cabinets
    PYTHONPATH=. .venv/bin/python benchmarks/detection_score.py --cabinets 50 --quick

Exit status: 0 when every goal is met, 1 when one is missed, 2 when the run itself
failed (the fleet did not come up before the first fault, the service stopped).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Final
from zoneinfo import ZoneInfo

import psutil
from pydantic import BaseModel, ConfigDict

from aedfleet.clock import ScaledClock
from aedfleet.mqtt import MqttSettings
from alerting.config import SchedulerSettings
from alerting.model import AlarmType, NoticeKind, NotificationState, Severity
from alerting.quiet import QuietSettings, is_urgent
from alerting.rule_config import RuleConfig, Thresholds, rules_for
from alerting.service import AlertingService
from alerting.store import AlarmStore
from firmware_sim.cabinet import CabinetSpec, next_selftest_after
from firmware_sim.faults import Fault, FaultPhase, Phase
from firmware_sim.fleet import FleetSettings, SimulatedFleet
from firmware_sim.ground_truth import read_ground_truth
from firmware_sim.registry import person_ids, simulated_registry
from firmware_sim.scenario import SCENARIO_DIR, Scenario, fleet_specs, load_scenario
from tests.alerting_e2e_support import EMAIL_DOMAIN, alerting_settings, seed_fleet_registry
from tests.brokers import MosquittoBroker
from tests.influx import InfluxServer
from tests.mailbox import Mailbox

SCENARIO: Final = SCENARIO_DIR / "detection.yaml"
DATABASE: Final = "detection"
REPO: Final = Path(__file__).resolve().parent.parent
ZONE: Final = ZoneInfo("Asia/Shanghai")
# Daytime in the fleet's zone, so that quiet hours (22:00-07:00) hold nothing back, and
# early enough that every fault starts before the self-tests (09:55-10:10) even when
# the servers take a while to start.
START: Final = datetime(2026, 11, 26, 8, 55, tzinfo=ZONE)
# A failing self-test must be reported within the run, not at the next day's test.
LONGEST_SELFTEST_WAIT: Final = timedelta(hours=1)
# 30 min rules take three wall minutes, and the service keeps up with the heartbeats of
# 500 cabinets (83 a second) on the project's shared 2-core machine; at 30 it did not.
DEFAULT_SCALE: Final = 10.0
QUICK_SCALE: Final = 60.0
MIN_CABINETS: Final = 500
MIN_FAULTS_PER_TYPE: Final = 10
QUICK_CABINETS: Final = 50
HEARTBEAT_INTERVAL_S: Final = 60
HARDWARE_TICK_S: Final = 10.0
FLEET_RAMP_S: Final = 10.0
LATENCY_GOAL_S: Final = 5.0
# Watched past the last deadline, so that late and stray pages are seen too.
OBSERVE_AFTER: Final = timedelta(minutes=4)
FLEET_START_TIMEOUT_S: Final = 60.0
FLEET_STOP_TIMEOUT_S: Final = 15.0
SERVICE_START_TIMEOUT_S: Final = 30.0
PROGRESS_EVERY_S: Final = 15.0

EXPECTED: Final[Mapping[Fault, frozenset[AlarmType]]] = MappingProxyType(
    {
        Fault.SELFTEST_FAILURE: frozenset({AlarmType.SELFTEST_FAILED}),
        Fault.BATTERY_FAILURE: frozenset({AlarmType.BATTERY_LOW}),
        Fault.PADS_REMOVED: frozenset({AlarmType.PADS_MISSING}),
        Fault.POWER_LOSS: frozenset({AlarmType.POWER_LOST}),
        Fault.TEMPERATURE_EXCURSION: frozenset({AlarmType.TEMPERATURE}),
        Fault.AED_NOT_RETURNED: frozenset(
            {AlarmType.DOOR_OPENED, AlarmType.AED_REMOVED, AlarmType.AED_NOT_RETURNED}
        ),
        Fault.CABINET_OFFLINE: frozenset({AlarmType.OFFLINE}),
        Fault.AGENT_KILLED: frozenset({AlarmType.OFFLINE}),
    }
)
"""The alarms that must page the cabinet's captain for each fault."""

_NOT_READY = "the AED's ready light goes off (it reports itself not ready)"
_FAILS_SELFTEST = "the next daily self-test fails on it"
# A failed self-test is one alarm that names its fault codes, and the ready light going
# off after it is covered by that alarm (docs/alerting.md): fault_codes never follows a
# failed self-test, and the ready light only when its heartbeat overtook the report.
SIDE_EFFECTS: Final[Mapping[Fault, Mapping[AlarmType, str]]] = MappingProxyType(
    {
        Fault.SELFTEST_FAILURE: {
            AlarmType.AED_NOT_READY: "a heartbeat with the ready light off reached the "
            "service before the failed self-test's report",
        },
        Fault.BATTERY_FAILURE: {
            AlarmType.AED_NOT_READY: "below 10 % " + _NOT_READY,
            AlarmType.SELFTEST_FAILED: _FAILS_SELFTEST + " (battery, E-BATT)",
        },
        Fault.PADS_REMOVED: {
            AlarmType.AED_NOT_READY: "without pads " + _NOT_READY,
            AlarmType.SELFTEST_FAILED: _FAILS_SELFTEST + " (pads, E-PADS)",
        },
        Fault.POWER_LOSS: {},
        Fault.TEMPERATURE_EXCURSION: {},
        Fault.AED_NOT_RETURNED: {},
        Fault.CABINET_OFFLINE: {},
        Fault.AGENT_KILLED: {},
    }
)
"""Alarms a fault legitimately causes besides the expected ones, and why."""

# -- the plan --------------------------------------------------------------------------------


def scored_scenario(scenario: Scenario, cabinets: int, quick: bool) -> Scenario:
    """The scenario for a fleet of ``cabinets``: with ``quick``, only the faults on the
    first :data:`QUICK_CABINETS` cabinets; otherwise every fault, which must fit the fleet.

    Raises ValueError when a fault type would not be injected at all, or (not quick)
    when the fleet or the faults are too few for a score.
    """
    limit = min(cabinets, QUICK_CABINETS) if quick else cabinets
    kept = tuple(f for f in scenario.faults if scenario.cabinet_index(f.cabinet) < limit)
    if not quick:
        if cabinets < MIN_CABINETS:
            raise ValueError(f"a score needs at least {MIN_CABINETS} cabinets (or --quick)")
        if len(kept) < len(scenario.faults):
            raise ValueError(f"the scenario's faults need more than {cabinets} cabinets")
    per_type = Counter(f.fault for f in kept)
    missing = [fault.value for fault in Fault if per_type[fault] == 0]
    if missing:
        raise ValueError(f"no {', '.join(missing)} fault on the first {limit} cabinets")
    if not quick:
        few = [f"{f.value} ({n})" for f, n in per_type.items() if n < MIN_FAULTS_PER_TYPE]
        if few:
            raise ValueError(f"fewer than {MIN_FAULTS_PER_TYPE} faults of {', '.join(few)}")
    cabinet_ids = [scenario.cabinet_id(scenario.cabinet_index(f.cabinet)) for f in kept]
    if len(set(cabinet_ids)) < len(cabinet_ids):
        raise ValueError("two faults at one cabinet: the score could not tell them apart")
    fleet = scenario.fleet.model_copy(update={"size": cabinets})
    return scenario.model_copy(update={"fleet": fleet, "faults": kept})


REPORTED_BY_HEARTBEAT: Final = frozenset({Fault.BATTERY_FAILURE})
"""Faults the cabinet tells only in its next heartbeat (the battery level is a reading)."""


def observable_at(
    fault: Fault, started: datetime, spec: CabinetSpec, next_heartbeat: datetime | None = None
) -> datetime:
    """When the cabinet can first tell of ``fault``: a circuit fault at the next self-test,
    a flat battery in the next heartbeat (``next_heartbeat``, when known), others at once.

    The temperature rule is not here on purpose: it counts its 30 minutes from the last
    reading still in range, so its own delay already covers the wait for a heartbeat.
    """
    if fault is Fault.SELFTEST_FAILURE:
        return next_selftest_after(spec.selftest, ZoneInfo(spec.time_zone), started)
    if fault in REPORTED_BY_HEARTBEAT and next_heartbeat is not None:
        return max(started, next_heartbeat)
    return started


def rule_delays(fault: Fault, thresholds: Thresholds) -> dict[AlarmType, timedelta]:
    """Each expected alarm of ``fault`` and its rule's own delay under ``thresholds``."""
    delays = dict.fromkeys(EXPECTED[fault], timedelta(0))
    if AlarmType.TEMPERATURE in delays:
        delays[AlarmType.TEMPERATURE] = thresholds.temperature_excursion_after
    if AlarmType.AED_NOT_RETURNED in delays:
        delays[AlarmType.AED_NOT_RETURNED] = thresholds.aed_not_returned_after
    return delays


def thresholds_by_cabinet(scenario: Scenario, rules: RuleConfig) -> dict[str, Thresholds]:
    """Each cabinet's effective thresholds, as the service applies them (overrides too)."""
    return {
        cabinet.cabinet_id: rules_for(cabinet, rules).thresholds
        for cabinet in simulated_registry(scenario, email_domain=EMAIL_DOMAIN).cabinets
    }


# -- what happened, and the score (pure) -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class InjectedFault:
    """A fault of the ground truth, its times already on the wall clock (seconds)."""

    cabinet_id: str
    captain_id: str
    fault: Fault
    started_wall: float
    observable_wall: float
    rule_delay_s: Mapping[AlarmType, float]
    """Each expected alarm and its rule's own delay, in wall seconds."""


@dataclass(frozen=True, slots=True)
class PageSeen:
    """One alarm an emailed page spoke for, as the SMTP server received it.

    ``raised_wall`` is when the service raised the alarm, so that a page's latency splits
    into detection (fault to alarm) and notification (alarm to email).
    """

    at_wall: float
    raised_wall: float
    person_id: str
    alarm_id: int
    cabinet_id: str
    alarm_type: AlarmType
    severity: Severity


@dataclass(frozen=True, slots=True)
class Detection:
    """One expected alarm of one fault: the captain's first page about it, if any."""

    fault: InjectedFault
    alarm_type: AlarmType
    page: PageSeen | None
    designed_delay_s: float = 0.0
    hold_s: float = 0.0

    @property
    def beyond_s(self) -> float | None:
        """Wall seconds past the designed delay (rule + notification hold)."""
        if self.page is None:
            return None
        return self.page.at_wall - self.fault.observable_wall - self.designed_delay_s

    @property
    def from_fault_s(self) -> float | None:
        return None if self.page is None else self.page.at_wall - self.fault.started_wall

    @property
    def to_alarm_s(self) -> float | None:
        """Of :attr:`beyond_s`, the part before the alarm was raised (detection)."""
        if self.page is None:
            return None
        rule_delay_s = self.designed_delay_s - self.hold_s
        return self.page.raised_wall - self.fault.observable_wall - rule_delay_s

    @property
    def to_email_s(self) -> float | None:
        """Of :attr:`beyond_s`, the part from the alarm to the email (notification)."""
        if self.page is None:
            return None
        return self.page.at_wall - self.page.raised_wall - self.hold_s


class Verdict(StrEnum):
    EXPECTED = "expected"
    SIDE_EFFECT = "side effect"
    UNEXPLAINED = "unexplained"


@dataclass(frozen=True, slots=True)
class JudgedPage:
    page: PageSeen
    verdict: Verdict
    fault: Fault | None


@dataclass(frozen=True, slots=True)
class Score:
    detections: tuple[Detection, ...]
    pages: tuple[JudgedPage, ...]
    latency_goal_s: float = LATENCY_GOAL_S

    def recall(self, fault: Fault) -> tuple[int, int]:
        """(faults of this type fully paged to their captain, faults of this type)."""
        by_fault: dict[int, bool] = {}
        for detection in self.detections:
            if detection.fault.fault is fault:
                key = id(detection.fault)
                by_fault[key] = by_fault.get(key, True) and detection.page is not None
        return sum(by_fault.values()), len(by_fault)

    @property
    def explained(self) -> int:
        return sum(judged.verdict is not Verdict.UNEXPLAINED for judged in self.pages)

    @property
    def precision(self) -> float:
        return self.explained / len(self.pages) if self.pages else 1.0

    @property
    def recall_met(self) -> bool:
        return all(detection.page is not None for detection in self.detections)

    @property
    def precision_met(self) -> bool:
        return self.explained == len(self.pages)

    @property
    def latency_met(self) -> bool:
        return all(
            beyond <= self.latency_goal_s
            for detection in self.detections
            if (beyond := detection.beyond_s) is not None
        )

    @property
    def met(self) -> bool:
        return self.recall_met and self.precision_met and self.latency_met


def judge(
    faults: Sequence[InjectedFault],
    pages: Sequence[PageSeen],
    hold_s: Callable[[Severity], float],
    latency_goal_s: float = LATENCY_GOAL_S,
) -> Score:
    """Score ``pages`` against the injected ``faults``.

    A fault is detected for an expected alarm by the first page about an alarm of that
    type at its cabinet to its captain, arriving after the fault began. A page is
    explained by a fault at its cabinet that began before it, when its alarm is expected
    for that fault or a side effect of it. ``hold_s`` is how long a notice of a severity
    waits by design before it is sent (grouping), in wall seconds.
    """
    ordered = sorted(pages, key=lambda page: page.at_wall)
    detections = []
    for fault in faults:
        for alarm_type in sorted(fault.rule_delay_s):
            first = next(
                (
                    page
                    for page in ordered
                    if page.cabinet_id == fault.cabinet_id
                    and page.person_id == fault.captain_id
                    and page.alarm_type is alarm_type
                    and page.at_wall >= fault.started_wall
                ),
                None,
            )
            hold = 0.0 if first is None else hold_s(first.severity)
            detections.append(
                Detection(
                    fault,
                    alarm_type,
                    first,
                    designed_delay_s=fault.rule_delay_s[alarm_type] + hold,
                    hold_s=hold,
                )
            )
    by_cabinet: dict[str, list[InjectedFault]] = {}
    for fault in faults:
        by_cabinet.setdefault(fault.cabinet_id, []).append(fault)
    judged = [_judge_page(page, by_cabinet.get(page.cabinet_id, ())) for page in ordered]
    return Score(tuple(detections), tuple(judged), latency_goal_s)


def _judge_page(page: PageSeen, faults: Iterable[InjectedFault]) -> JudgedPage:
    earlier = [fault for fault in faults if fault.started_wall <= page.at_wall]
    for fault in earlier:
        if page.alarm_type in EXPECTED[fault.fault]:
            return JudgedPage(page, Verdict.EXPECTED, fault.fault)
    for fault in earlier:
        if page.alarm_type in SIDE_EFFECTS[fault.fault]:
            return JudgedPage(page, Verdict.SIDE_EFFECT, fault.fault)
    return JudgedPage(page, Verdict.UNEXPLAINED, None)


# -- the report ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunFacts:
    """What the report says about the run besides the score."""

    cabinets: int
    scale: float
    faults_per_type: Mapping[Fault, int]
    observed_clock: tuple[datetime, datetime]
    grouping_window: timedelta
    cpu_shares: Mapping[str, float]
    """Share of one core each process used while the faults played (1.0 = a core)."""
    load_average: float
    """The machine's 5-minute load average at the end: others may share it."""
    service_stop_error: str | None
    alarms_raised: int
    alarms_without_fault: Sequence[str]
    notifications_failed: int
    notifications_pending: int


def _local(at: datetime) -> str:
    """A clock time as the fleet's captains read it."""
    return f"{at.astimezone(ZONE):%H:%M:%S}"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _median(values: Sequence[float | None]) -> str:
    known = [value for value in values if value is not None]
    return _seconds(statistics.median(known) if known else None)


def report(score: Score, facts: RunFacts) -> list[str]:
    """The printed report: the table, precision with its side effects, and the verdict."""
    scale = facts.scale
    per_type = ", ".join(f"{n} {fault.value}" for fault, n in facts.faults_per_type.items())
    first, last = facts.observed_clock
    lines = [
        f"Detection score: {facts.cabinets} cabinets, faults injected: {per_type}",
        f"clock {scale:g}x wall: observed {_local(first)}-{_local(last)} clock "
        f"({(last - first).total_seconds() / 60:.0f} min) in "
        f"{(last - first).total_seconds() / scale:.0f} wall s",
        f"heartbeats: {facts.cabinets * scale / HEARTBEAT_INTERVAL_S:.0f} per wall second, as "
        f"many as {facts.cabinets * scale:,.0f} cabinets send in real time (one a minute each)",
        f"CPU while the faults played ({os.cpu_count()} cores, load average "
        f"{facts.load_average:.1f}): "
        + ", ".join(f"{name} {100 * share:.0f} %" for name, share in facts.cpu_shares.items()),
        "",
        "Latencies are WALL seconds: the rule's delay (counted on the clock) and the grouping",
        f"window of non-urgent notices ({facts.grouping_window.total_seconds() / 60:g} clock "
        f"min) are converted to wall seconds at {scale:g} clock s per wall s and subtracted;",
        "'beyond' is what is left, measured from the fault (a failing self-test from the",
        "self-test, a flat battery from the next heartbeat) to the captain's email.",
        f"Goal: beyond <= {score.latency_goal_s:g} s.",
        "A rule counting from readings (temperature) starts at the last reading still in",
        "range, up to a heartbeat before the fault: its 'beyond' may be slightly negative.",
        "'beyond' splits into 'to alarm' (the fault reaching the service and its rules) and",
        "'to email' (escalation, grouping beyond its window, rendering, SMTP).",
        "",
        f"{'fault':<22} {'alarm paged':<17} {'captain paged':>13}  {'rule delay':>10} "
        f"{'grouping':>8}  {'beyond p50':>10} {'max':>5}  {'to alarm p50':>12} "
        f"{'to email p50':>12}  {'fault→page p50':>14}",
    ]
    for fault in Fault:
        detections = [d for d in score.detections if d.fault.fault is fault]
        for alarm_type in sorted({d.alarm_type for d in detections}):
            rows = [d for d in detections if d.alarm_type is alarm_type]
            paged = [d for d in rows if d.page is not None]
            beyond = [b for d in paged if (b := d.beyond_s) is not None]
            rule = max(d.fault.rule_delay_s[alarm_type] for d in rows)
            hold = max((d.hold_s for d in paged), default=0.0)
            ok = len(paged) == len(rows) and all(b <= score.latency_goal_s for b in beyond)
            lines.append(
                f"{fault.value:<22} {alarm_type.value:<17} "
                f"{f'{len(paged)}/{len(rows)}':>7} {100 * len(paged) / len(rows):>4.0f} %  "
                f"{rule:>8.1f} s {hold:>6.1f} s  "
                f"{_median(beyond):>8} s {_seconds(max(beyond, default=None)):>5}  "
                f"{_median([d.to_alarm_s for d in paged]):>10} s "
                f"{_median([d.to_email_s for d in paged]):>10} s  "
                f"{_median([d.from_fault_s for d in paged]):>12} s"
                f"  {'' if ok else 'MISSED'}"
            )
    lines.append("")
    for fault in Fault:
        found, total = score.recall(fault)
        if found < total:
            missed = [
                f"{d.fault.cabinet_id} {d.alarm_type.value}"
                for d in score.detections
                if d.fault.fault is fault and d.page is None
            ]
            lines.append(f"recall {fault.value}: {found}/{total}; not paged: {', '.join(missed)}")
    lines.append(
        f"recall: {sum(score.recall(f)[0] for f in Fault)}/{sum(score.recall(f)[1] for f in Fault)}"
        f" faults paged to their own captain (goal 100 %: "
        f"{'met' if score.recall_met else 'NOT met'})"
    )
    lines += _precision_lines(score)
    lines.append(
        f"alarms raised: {facts.alarms_raised}; notifications failed: "
        f"{facts.notifications_failed}, still pending at the end: {facts.notifications_pending}"
    )
    if facts.alarms_without_fault:
        lines.append(
            f"alarms raised at cabinets without a fault ({len(facts.alarms_without_fault)}): "
            + ", ".join(facts.alarms_without_fault[:20])
        )
    lines.append(
        f"latency: {'every page within' if score.latency_met else 'NOT every page within'} "
        f"the designed delay + {score.latency_goal_s:g} s"
    )
    if facts.service_stop_error:
        lines.append(
            f"the service failed while stopping, after the run: {facts.service_stop_error}"
        )
    lines.append(f"goals {'met' if score.met else 'NOT met'}")
    return lines


def _precision_lines(score: Score) -> list[str]:
    verdicts = Counter(judged.verdict for judged in score.pages)
    lines = [
        f"precision: {score.explained}/{len(score.pages)} pages (PAGE notices to anyone, one per "
        f"alarm an email speaks for) explained by an injected fault = {100 * score.precision:.1f} %"
        f" (goal 100 %: {'met' if score.precision_met else 'NOT met'})",
        f"  by the expected alarm: {verdicts[Verdict.EXPECTED]}; "
        f"by a side effect: {verdicts[Verdict.SIDE_EFFECT]}; "
        f"unexplained: {verdicts[Verdict.UNEXPLAINED]}",
    ]
    side = Counter(
        (judged.fault, judged.page.alarm_type)
        for judged in score.pages
        if judged.verdict is Verdict.SIDE_EFFECT and judged.fault is not None
    )
    for (fault, alarm_type), count in sorted(side.items()):
        why = SIDE_EFFECTS[fault][alarm_type]
        lines.append(f"  side effect {fault.value} -> {alarm_type.value}: {count} pages ({why})")
    for judged in score.pages:
        if judged.verdict is Verdict.UNEXPLAINED:
            page = judged.page
            lines.append(
                f"  UNEXPLAINED: {page.alarm_type.value} ({page.severity.value}) at "
                f"{page.cabinet_id} to {page.person_id}, alarm {page.alarm_id}"
            )
    return lines


# -- the fleet, in a process of its own ------------------------------------------------------


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
                __file__,
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


class RunFailedError(Exception):
    """The run could not produce a score (not a missed goal: a void run)."""


class ServiceRun:
    """The alerting service as a task: ready or failed at start, watched for a crash
    while the faults play, and stopped after. A failure while stopping does not void
    the score (what was sent is in the mailbox); it is kept for the report."""

    def __init__(self, service: AlertingService) -> None:
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


# -- the run ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WallClock:
    """Clock time to wall (monotonic) time, through one anchor taken from the ScaledClock."""

    clock_at: datetime
    monotonic_at: float
    scale: float

    def wall(self, at: datetime) -> float:
        return self.monotonic_at + (at - self.clock_at).total_seconds() / self.scale

    def seconds(self, duration: timedelta) -> float:
        return duration.total_seconds() / self.scale


def injected_faults(
    truth: Sequence[FaultPhase],
    scenario: Scenario,
    thresholds: Mapping[str, Thresholds],
    walls: WallClock,
    next_heartbeats: Mapping[str, datetime],
) -> list[InjectedFault]:
    """The ground truth's fault starts, with their times on the wall clock;
    ``next_heartbeats``: the first heartbeat after the fault, by cabinet."""
    specs = {spec.cabinet_id: spec for spec in fleet_specs(scenario)}
    faults = []
    for phase in truth:
        if phase.phase is not Phase.START:
            continue
        delays = rule_delays(phase.fault, thresholds[phase.cabinet_id])
        faults.append(
            InjectedFault(
                cabinet_id=phase.cabinet_id,
                captain_id=person_ids(scenario.cabinet_index(phase.cabinet_id))[0],
                fault=phase.fault,
                started_wall=walls.wall(phase.ts),
                observable_wall=walls.wall(
                    observable_at(
                        phase.fault,
                        phase.ts,
                        specs[phase.cabinet_id],
                        next_heartbeats.get(phase.cabinet_id),
                    )
                ),
                rule_delay_s={alarm: walls.seconds(delay) for alarm, delay in delays.items()},
            )
        )
    return faults


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


def observation_end(
    scenario: Scenario,
    thresholds: Mapping[str, Thresholds],
    fleet_start: datetime,
    grouping: timedelta,
) -> datetime:
    """The last moment a page is due by design, plus a heartbeat and a margin.

    Raises RunFailedError when a failing self-test would not be reported within
    :data:`LONGEST_SELFTEST_WAIT` of its fault (the fleet started too late for the
    scenario's self-test window).
    """
    specs = fleet_specs(scenario)
    due = fleet_start
    for planned in scenario.faults:
        spec = specs[scenario.cabinet_index(planned.cabinet)]
        started = fleet_start + timedelta(seconds=planned.at)
        seen = observable_at(planned.fault, started, spec)
        if seen - started > LONGEST_SELFTEST_WAIT:
            raise RunFailedError(
                f"{planned.fault.value} at {spec.cabinet_id} starts at {_local(started)}, "
                f"after that cabinet's self-test ({spec.selftest.at_local:%H:%M}): the fleet "
                "started too late for the scenario"
            )
        for delay in rule_delays(planned.fault, thresholds[spec.cabinet_id]).values():
            due = max(due, seen + delay + grouping)
    return due + timedelta(seconds=HEARTBEAT_INTERVAL_S) + OBSERVE_AFTER


async def wait_for_fleet(
    service: AlertingService, cabinet_ids: Sequence[str], clock: ScaledClock, by: datetime
) -> None:
    """Until every cabinet has been heard from and judged; RunFailedError after ``by``."""
    while True:
        heard = sum(service.engine.cabinet_readiness(c) is not None for c in cabinet_ids)
        if heard == len(cabinet_ids):
            return
        if clock.now() >= by:
            raise RunFailedError(
                f"only {heard} of {len(cabinet_ids)} cabinets were heard from before the "
                f"first fault ({_local(by)} clock); try a lower --scale"
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
            f"  clock {_local(clock.now())}: {started} faults started, "
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
            service = AlertingService(settings, clock=clock)
            async with ServiceRun(service) as service_run:
                try:
                    fleet_start = await fleet.start()
                    first_fault = fleet_start + timedelta(
                        seconds=min(f.at for f in scenario.faults)
                    )
                    end = observation_end(scenario, thresholds, fleet_start, grouping)
                    print(
                        f"fleet of {len(cabinet_ids)} started at {_local(fleet_start)} clock; "
                        f"first fault at {_local(first_fault)}, watching until {_local(end)} "
                        f"({(end - clock.now()).total_seconds() / args.scale:.0f} wall s)",
                        flush=True,
                    )
                    await wait_for_fleet(service, cabinet_ids, clock, first_fault)
                    print(f"  every cabinet heard from by {_local(clock.now())}", flush=True)
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


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--fleet-job":
        # The fleet's own process (see FleetProcess); it runs until terminated.
        asyncio.run(run_fleet(FleetJob.model_validate_json(sys.argv[2])))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cabinets", type=int, help=f"fleet size (default {MIN_CABINETS})")
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"a smoke run: only the faults on the first {QUICK_CABINETS} cabinets "
        f"(3 of each type), {QUICK_CABINETS} cabinets unless --cabinets; not a score",
    )
    parser.add_argument(
        "--scale",
        type=float,
        help=f"clock seconds per wall second (default {DEFAULT_SCALE:g}, quick {QUICK_SCALE:g})",
    )
    parser.add_argument("--scenario", type=Path, default=SCENARIO)
    parser.add_argument(
        "--keep", type=Path, help="keep the run's files (logs, store, ground truth) here"
    )
    args = parser.parse_args()
    if args.cabinets is None:
        args.cabinets = QUICK_CABINETS if args.quick else MIN_CABINETS
    if args.scale is None:
        args.scale = QUICK_SCALE if args.quick else DEFAULT_SCALE
    try:
        scored_scenario(load_scenario(args.scenario), args.cabinets, args.quick)
    except ValueError as exc:
        parser.error(str(exc))
    work = args.keep or Path(tempfile.mkdtemp(prefix="aedfleet-detection-"))
    work.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        filename=work / "service.log",
        level=logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    try:
        score, facts = asyncio.run(run(args, work))
    except RunFailedError as exc:
        print(f"the run failed: {exc}", file=sys.stderr)
        sys.exit(2)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    print("\n".join(report(score, facts)))
    if args.keep is not None:
        print(f"the run's files: {work}")
    sys.exit(0 if score.met else 1)


if __name__ == "__main__":
    main()
