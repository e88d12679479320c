"""The fault plan: the scenario scored, which alarms each fault must page and which it
may cause, when a fault can first be told, and when the last page is due (pure)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Final
from zoneinfo import ZoneInfo

from aedfleet_testing.alerting_e2e_support import EMAIL_DOMAIN
from alerting.model import AlarmType
from alerting.rule_config import RuleConfig, Thresholds, rules_for
from firmware_sim.cabinet import CabinetSpec, next_selftest_after
from firmware_sim.faults import Fault
from firmware_sim.registry import simulated_registry
from firmware_sim.scenario import SCENARIO_DIR, Scenario, fleet_specs

SCENARIO: Final = SCENARIO_DIR / "detection.yaml"
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
# Watched past the last deadline, so that late and stray pages are seen too.
OBSERVE_AFTER: Final = timedelta(minutes=4)

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


class RunFailedError(Exception):
    """The run could not produce a score (not a missed goal: a void run)."""


def local_time(at: datetime) -> str:
    """A clock time as the fleet's captains read it."""
    return f"{at.astimezone(ZONE):%H:%M:%S}"


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
                f"{planned.fault.value} at {spec.cabinet_id} starts at {local_time(started)}, "
                f"after that cabinet's self-test ({spec.selftest.at_local:%H:%M}): the fleet "
                "started too late for the scenario"
            )
        for delay in rule_delays(planned.fault, thresholds[spec.cabinet_id]).values():
            due = max(due, seen + delay + grouping)
    return due + timedelta(seconds=HEARTBEAT_INTERVAL_S) + OBSERVE_AFTER
