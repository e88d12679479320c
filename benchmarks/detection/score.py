"""Scoring: the ground truth on the wall clock, and the pages judged against it (pure)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final

from alerting.model import AlarmType, Severity
from alerting.rule_config import Thresholds
from benchmarks.detection.plan import EXPECTED, SIDE_EFFECTS, observable_at, rule_delays
from firmware_sim.faults import Fault, FaultPhase, Phase
from firmware_sim.registry import person_ids
from firmware_sim.scenario import Scenario, fleet_specs

LATENCY_GOAL_S: Final = 5.0


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
