"""The pure state machine of one simulated cabinet and the AED inside it.

``CabinetModel.advance(now)`` plays everything due up to ``now`` in time order: door
openings, the AED's scheduled self-tests, and the start and end of injected faults. It
returns what the hardware would report and never does I/O or waits, so a test drives it
with explicit datetimes and a fleet runner holds thousands of them in one process.
"""

from __future__ import annotations

import bisect
import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import IntEnum
from typing import Final
from zoneinfo import ZoneInfo

from aedfleet.contract import (
    DoorState,
    EventType,
    PowerSource,
    SelftestKind,
    SelftestPeriod,
    SelftestResult,
    SelftestSchedule,
)
from edge_agent import (
    CabinetEvent,
    ConsumablesReport,
    HardwareNotice,
    SelftestReport,
    SensorSnapshot,
)
from firmware_sim.climate import (
    HEATER_SETPOINT_C,
    PARAMS,
    ClimateProfile,
    ambient_humidity,
    ambient_temperature,
    cabinet_temperature,
    excursion_temperature,
)
from firmware_sim.faults import Fault, FaultPhase, FaultWindow, Phase
from firmware_sim.noise import hash_unit

LOW_BATTERY_PCT: Final = 10.0
# A lithium AED battery lasts about four years on standby.
DAILY_DRAIN_PCT: Final = 0.07
SELFTEST_DRAIN_PCT: Final = 0.01
TAMPER_FRACTION: Final = 0.01
# The enclosure's lag is an hour or more, so the climate is sampled at most once a
# minute however often the model is advanced; it is the model's most costly step.
THERMAL_STEP_S: Final = 60.0
CODE_BATTERY: Final = "E-BATT"
CODE_PADS: Final = "E-PADS"
CODE_CIRCUIT: Final = "E-CIRCUIT"

# Share of expiry dates per bucket, as days from today (inclusive bounds); the rest,
# most of the fleet, expire between 91 days and four years ahead.
_EXPIRY_BUCKETS: Final = (
    (0.05, -180, -1),
    (0.05, 0, 7),
    (0.08, 8, 30),
    (0.12, 31, 90),
)
_EXPIRY_LATER: Final = (91, 1460)
# Beyond the earliest expiry notice (90 days) with room for a long simulated run.
_FRESH_DAYS: Final = 200
_NEVER: Final = datetime.max.replace(tzinfo=UTC)
_LONGEST_WAIT_S: Final = 100 * 365 * 86_400.0
_EVENT_DETAIL: Final = {EventType.TAMPER: "door forced open"}


def spread_expiry(rng: random.Random, today: date) -> date:
    """An expiry date as a fleet has them: a few expired, some soon, most well ahead."""
    draw = rng.random()
    first, last = _EXPIRY_LATER
    for share, low, high in _EXPIRY_BUCKETS:
        if draw < share:
            first, last = low, high
            break
        draw -= share
    return today + timedelta(days=rng.randint(first, last))


def _is_test_day(schedule: SelftestSchedule, day: date) -> bool:
    if schedule.period is SelftestPeriod.WEEKLY:
        return day.weekday() == (schedule.weekday or 0)
    if schedule.period is SelftestPeriod.MONTHLY:
        return day.day == (schedule.day_of_month or 1)
    return True


def next_selftest_after(schedule: SelftestSchedule, zone: ZoneInfo, after: datetime) -> datetime:
    """The first scheduled self-test strictly after ``after``, in UTC."""
    day = after.astimezone(zone).date()
    while True:
        if _is_test_day(schedule, day):
            at = datetime.combine(day, schedule.at_local, tzinfo=zone).astimezone(UTC)
            if at > after:
                return at
        day += timedelta(days=1)


@dataclass(frozen=True, slots=True)
class CabinetSpec:
    """What is fixed about a simulated cabinet for its whole life."""

    cabinet_id: str
    seed: int
    climate: ClimateProfile
    time_zone: str
    selftest: SelftestSchedule
    door_openings_per_day: float
    aed_taken_fraction: float
    fresh_consumables: bool = False


class _Step(IntEnum):
    """Kinds of due work; the value breaks ties between steps due at the same instant."""

    FAULT_END = 0
    FAULT_START = 1
    SCRIPT = 2
    OPENING = 3
    SELFTEST = 4


class CabinetModel:
    __slots__ = (
        "_active",
        "_aed_present",
        "_at",
        "_battery_expiry",
        "_battery_pct",
        "_door",
        "_excursion_c",
        "_heater_on",
        "_inside_c",
        "_next_opening",
        "_next_selftest",
        "_offset_c",
        "_pads_expiry",
        "_pads_present",
        "_phases",
        "_power",
        "_rng",
        "_rssi_base",
        "_runner_due",
        "_scheduled",
        "_script",
        "_selftest_failed",
        "_thermal_at",
        "_zone",
        "spec",
    )

    def __init__(self, spec: CabinetSpec, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("the model's start time must be timezone-aware")
        self.spec = spec
        self._rng = rng = random.Random(spec.seed)
        self._zone = ZoneInfo(spec.time_zone)
        self._at = self._thermal_at = start.astimezone(UTC)
        today = self._today()
        self._offset_c = rng.uniform(-1.5, 1.5)
        self._rssi_base = rng.randint(-100, -60)
        self._battery_pct = rng.uniform(55.0, 100.0)
        self._pads_present = True
        if spec.fresh_consumables:
            self._pads_expiry = today + timedelta(days=rng.randint(_FRESH_DAYS, 1_460))
            self._battery_expiry = today + timedelta(days=rng.randint(_FRESH_DAYS, 1_460))
        else:
            self._pads_expiry = spread_expiry(rng, today)
            self._battery_expiry = spread_expiry(rng, today)
        self._selftest_failed = False
        self._door = DoorState.CLOSED
        self._aed_present = True
        self._power = PowerSource.MAINS
        self._excursion_c: float | None = None
        self._inside_c = self._ambient_c(self._at)
        self._heater_on = PARAMS[spec.climate].heated and self._inside_c < HEATER_SETPOINT_C
        if self._heater_on:
            self._inside_c = HEATER_SETPOINT_C
        # Steps of the door and the AED already decided, in time order; empty at rest.
        # Every script ends with the door closed.
        self._script: list[tuple[datetime, EventType]] = []
        self._next_opening = self._draw_opening(self._at)
        self._next_selftest = next_selftest_after(spec.selftest, self._zone, self._at)
        self._scheduled: list[FaultWindow] = []
        self._active: list[FaultWindow] = []
        # Kept only until the runner takes them; faults arrive by explicit calls, so
        # these grow with the faults injected, not with time.
        self._phases: list[FaultPhase] = []
        self._runner_due: list[FaultWindow] = []

    @property
    def time(self) -> datetime:
        """How far the model has been advanced."""
        return self._at

    @property
    def aed_present(self) -> bool:
        return self._aed_present

    @property
    def aed_ready(self) -> bool:
        return (
            self._aed_present
            and self._battery_pct >= LOW_BATTERY_PCT
            and self._pads_present
            and not self._selftest_failed
        )

    @property
    def active_faults(self) -> tuple[FaultWindow, ...]:
        return tuple(self._active)

    def sensors(self, now: datetime) -> SensorSnapshot:
        """Sensor values at ``now``; state changes count once ``advance`` has played them."""
        minute = int(now.timestamp() // 60)
        return SensorSnapshot(
            aed_ready=self.aed_ready,
            battery_pct=round(self._battery_pct, 1),
            temperature_c=round(self._inside_c, 1),
            humidity_pct=round(
                ambient_humidity(
                    self.spec.climate, now.astimezone(self._zone), seed=self.spec.seed
                ),
                1,
            ),
            door=self._door,
            aed_present=self._aed_present,
            power=self._power,
            heater_on=self._heater_on,
            rssi_dbm=self._rssi_base + round(4 * hash_unit(self.spec.seed, minute)),
        )

    def consumables(self) -> ConsumablesReport:
        return ConsumablesReport(
            pads_present=self._pads_present,
            pads_expiry=self._pads_expiry,
            battery_expiry=self._battery_expiry,
        )

    def run_selftest(self, kind: SelftestKind) -> SelftestReport:
        """Test the AED now; the verdict follows its battery, pads and active faults."""
        self._battery_pct = max(0.0, self._battery_pct - SELFTEST_DRAIN_PCT)
        codes: list[str] = []
        if self._battery_pct < LOW_BATTERY_PCT:
            codes.append(CODE_BATTERY)
        if not self._pads_present:
            codes.append(CODE_PADS)
        if self._is_active(Fault.SELFTEST_FAILURE):
            codes.append(CODE_CIRCUIT)
        self._selftest_failed = bool(codes)
        result = SelftestResult.FAIL if codes else SelftestResult.PASS
        return SelftestReport(kind, result, tuple(codes), round(self._battery_pct, 1))

    def apply_fault(self, fault: Fault, start: datetime, duration_s: float | None) -> None:
        """Schedule ``fault`` from ``start`` for ``duration_s`` (None: until the end of the run).

        A start in the past takes effect at the next ``advance``. Starting a fault that
        is already active replaces it: the old one ends there, its repair never happens.
        """
        end = None if duration_s is None else start + timedelta(seconds=duration_s)
        bisect.insort(self._scheduled, FaultWindow(fault, start, end), key=_window_start)

    def take_fault_phases(self) -> list[FaultPhase]:
        """Fault starts and ends played since the last call, for the ground truth."""
        phases, self._phases = self._phases, []
        return phases

    def take_runner_faults(self) -> list[FaultWindow]:
        """Runner faults (network, process) that started since the last call."""
        due, self._runner_due = self._runner_due, []
        return due

    def advance(self, now: datetime) -> list[HardwareNotice]:
        """Play everything due up to ``now`` and return what the cabinet reports."""
        notices: list[HardwareNotice] = []
        while (step := self._next_step())[0] <= now:
            at, kind = step
            self._evolve(at)
            if kind is _Step.FAULT_END:
                self._end_fault(at, notices)
            elif kind is _Step.FAULT_START:
                self._start_fault(at, notices)
            elif kind is _Step.SCRIPT:
                self._play_script(notices)
            elif kind is _Step.OPENING:
                self._open_door(at)
            else:
                self._scheduled_selftest(at, notices)
        self._evolve(now)
        return notices

    def _next_step(self) -> tuple[datetime, _Step]:
        steps: list[tuple[datetime, _Step]] = [(self._next_selftest, _Step.SELFTEST)]
        ends = [window.end for window in self._active if window.end is not None]
        if ends:
            steps.append((min(ends), _Step.FAULT_END))
        if self._scheduled:
            steps.append((self._scheduled[0].start, _Step.FAULT_START))
        if self._script:
            steps.append((self._script[0][0], _Step.SCRIPT))
        elif self._next_opening is not None:
            steps.append((self._next_opening, _Step.OPENING))
        at, kind = min(steps)
        # Work scheduled before the model's time (a fault applied late) happens now.
        return max(at, self._at), kind

    def _evolve(self, to: datetime) -> None:
        dt_s = (to - self._at).total_seconds()
        if dt_s <= 0:
            return
        self._battery_pct = max(0.0, self._battery_pct - DAILY_DRAIN_PCT * dt_s / 86_400)
        self._at = to
        thermal_dt_s = (to - self._thermal_at).total_seconds()
        if thermal_dt_s < THERMAL_STEP_S:
            return
        self._thermal_at = to
        if self._excursion_c is not None:
            self._inside_c, self._heater_on = self._excursion_c, False
        else:
            self._inside_c, self._heater_on = cabinet_temperature(
                self.spec.climate,
                self._inside_c,
                self._ambient_c(to),
                thermal_dt_s,
                powered=self._power is PowerSource.MAINS,
            )

    def _ambient_c(self, at: datetime) -> float:
        return ambient_temperature(
            self.spec.climate,
            at.astimezone(self._zone),
            seed=self.spec.seed,
            offset_c=self._offset_c,
        )

    def _today(self) -> date:
        return self._at.astimezone(self._zone).date()

    def _is_active(self, fault: Fault) -> bool:
        return any(window.fault is fault for window in self._active)

    def _draw_opening(self, after: datetime) -> datetime | None:
        rate_per_s = self.spec.door_openings_per_day / 86_400
        if rate_per_s <= 0:
            return None
        # A vanishing rate draws waits longer than a timedelta can hold.
        wait_s = min(self._rng.expovariate(rate_per_s), _LONGEST_WAIT_S)
        return after + timedelta(seconds=wait_s)

    def _after(self, at: datetime, low_s: float, high_s: float) -> datetime:
        return at + timedelta(seconds=self._rng.uniform(low_s, high_s))

    def _return_steps(self, after: datetime) -> list[tuple[datetime, EventType]]:
        opened = self._after(after, 600, 5_400)
        returned = self._after(opened, 5, 20)
        return [
            (opened, EventType.DOOR_OPENED),
            (returned, EventType.AED_RETURNED),
            (self._after(returned, 20, 60), EventType.DOOR_CLOSED),
        ]

    def _open_door(self, at: datetime) -> None:
        rng = self._rng
        if rng.random() < TAMPER_FRACTION:
            self._script.append((at, EventType.TAMPER))
        self._script.append((at, EventType.DOOR_OPENED))
        if self._aed_present and rng.random() < self.spec.aed_taken_fraction:
            removed = self._after(at, 5, 20)
            closed = self._after(removed, 20, 90)
            self._script += [(removed, EventType.AED_REMOVED), (closed, EventType.DOOR_CLOSED)]
            self._script += self._return_steps(closed)
        else:
            self._script.append((self._after(at, 30, 120), EventType.DOOR_CLOSED))
        self._next_opening = self._draw_opening(self._script[-1][0])

    def _play_script(self, notices: list[HardwareNotice]) -> None:
        _, event = self._script.pop(0)
        if event is EventType.DOOR_OPENED:
            self._door = DoorState.OPEN
        elif event is EventType.DOOR_CLOSED:
            self._door = DoorState.CLOSED
        elif event is EventType.AED_REMOVED:
            self._aed_present = False
        elif event is EventType.AED_RETURNED:
            self._aed_present = True
        notices.append(CabinetEvent(event, _EVENT_DETAIL.get(event)))

    def _scheduled_selftest(self, at: datetime, notices: list[HardwareNotice]) -> None:
        self._next_selftest = next_selftest_after(self.spec.selftest, self._zone, at)
        # An AED out of its cabinet still tests itself, but nobody hears the verdict.
        if self._aed_present:
            notices.append(self.run_selftest(SelftestKind(self.spec.selftest.period.value)))

    def _record(self, at: datetime, fault: Fault, phase: Phase, detail: str | None) -> None:
        self._phases.append(
            FaultPhase(
                ts=at, cabinet_id=self.spec.cabinet_id, fault=fault, phase=phase, detail=detail
            )
        )

    def _start_fault(self, at: datetime, notices: list[HardwareNotice]) -> None:
        window = self._scheduled.pop(0)
        for old in [w for w in self._active if w.fault is window.fault]:
            self._active.remove(old)
            self._record(at, old.fault, Phase.END, "superseded by a new fault of this type")
        self._active.append(window)
        self._record(at, window.fault, Phase.START, self._begin(window, at, notices))

    def _end_fault(self, at: datetime, notices: list[HardwareNotice]) -> None:
        window = min(self._active, key=_ends_first)
        self._active.remove(window)
        self._record(at, window.fault, Phase.END, self._repair(window.fault, at, notices))

    def _begin(self, window: FaultWindow, at: datetime, notices: list[HardwareNotice]) -> str:
        """Put ``window.fault`` into effect; returns the ground truth's detail."""
        fault = window.fault
        if fault is Fault.SELFTEST_FAILURE:
            return f"self-tests fail with {CODE_CIRCUIT}"
        if fault is Fault.BATTERY_FAILURE:
            self._battery_pct = min(self._battery_pct, self._rng.uniform(2.0, 9.0))
            return f"battery at {self._battery_pct:.1f} %"
        if fault is Fault.PADS_REMOVED:
            self._pads_present = False
            notices.append(self.consumables())
            return "pads taken out of the AED"
        if fault is Fault.POWER_LOSS:
            if self._power is PowerSource.MAINS:
                self._power = PowerSource.BACKUP
                self._heater_on = False
                notices.append(CabinetEvent(EventType.POWER_LOST))
            return "mains lost, on backup power"
        if fault is Fault.TEMPERATURE_EXCURSION:
            self._excursion_c = excursion_temperature(self.spec.climate, self._ambient_c(at))
            self._inside_c, self._heater_on = self._excursion_c, False
            return f"cabinet at {self._excursion_c:.1f} °C"
        if fault is Fault.AED_NOT_RETURNED:
            self._take_for_good(at)
            return "AED taken and not returned"
        self._runner_due.append(window)
        return "carried out by the fleet runner"

    def _take_for_good(self, at: datetime) -> None:
        # Drops whatever door script was under way, including a pending return.
        self._script.clear()
        if self._door is DoorState.CLOSED and self._aed_present:
            self._script.append((at, EventType.DOOR_OPENED))
        if self._aed_present:
            self._script.append((at + timedelta(seconds=10), EventType.AED_REMOVED))
        if self._door is DoorState.OPEN or self._aed_present:
            self._script.append((at + timedelta(seconds=40), EventType.DOOR_CLOSED))
        self._next_opening = self._draw_opening(self._script[-1][0] if self._script else at)

    def _repair(self, fault: Fault, at: datetime, notices: list[HardwareNotice]) -> str:
        """Undo ``fault`` as the captain or the utility would; returns the detail."""
        if fault is Fault.BATTERY_FAILURE:
            self._battery_pct = 100.0
            self._battery_expiry = self._today() + timedelta(days=self._rng.randint(1200, 1600))
            self._after_replacement(notices)
            return "battery replaced"
        if fault is Fault.PADS_REMOVED:
            self._pads_present = True
            self._pads_expiry = self._today() + timedelta(days=self._rng.randint(540, 760))
            self._after_replacement(notices)
            return "new pads fitted"
        if fault is Fault.POWER_LOSS:
            if self._power is PowerSource.BACKUP:
                self._power = PowerSource.MAINS
                notices.append(CabinetEvent(EventType.POWER_RESTORED))
            return "mains restored"
        if fault is Fault.TEMPERATURE_EXCURSION:
            self._excursion_c = None
            return "cabinet temperature back under control"
        if fault is Fault.AED_NOT_RETURNED:
            if not self._aed_present:
                self._script += self._return_steps(self._script[-1][0] if self._script else at)
            return "AED brought back"
        return "fault over"

    def _after_replacement(self, notices: list[HardwareNotice]) -> None:
        notices.append(self.consumables())
        # AEDs test themselves when a battery or pads go in.
        if self._aed_present:
            notices.append(self.run_selftest(SelftestKind.MANUAL))


def _window_start(window: FaultWindow) -> datetime:
    return window.start


def _ends_first(window: FaultWindow) -> datetime:
    return window.end or _NEVER
