"""The printed report of a detection score (pure)."""

from __future__ import annotations

import os
import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from benchmarks.detection.plan import HEARTBEAT_INTERVAL_S, SIDE_EFFECTS, local_time
from benchmarks.detection.score import Score, Verdict
from firmware_sim.faults import Fault


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
        f"clock {scale:g}x wall: observed {local_time(first)}-{local_time(last)} clock "
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
