"""What the rules need to know of a cabinet beyond its twin: since when things hold (pure).

The twin (:mod:`aedfleet.twin`) keeps the latest value of each section. Rules also need
*since when*: since when the door is open, the AED out of its cabinet, the temperature
outside the model's range; whether a used AED has had its post-use check; when the
last tamper happened and the last inspection. :class:`CabinetFacts` folds those out of the
same messages, under the same rules as the twin: messages arrive late, twice and out of
order, so every fact is built from *stamps* (boot id, seq, device ts) compared with
:func:`aedfleet.twin.is_newer`, and only through maxima and minima of stamps, which any
order of delivery and any number of copies reach alike. (Where two boots share a device
ts, the boot id breaks the tie, so even then the order does not matter.)

A yes/no property (door open, AED out, on backup power, ready light off, pads missing,
temperature outside the range, battery below the minimum) is a :class:`Track`: the
newest observation that it holds, the newest that it does not, the earliest that it
holds and the newest event announcing its onset (``door_opened``, ``aed_removed``,
``power_lost``). It holds when its newest "on" is newer than its newest "off"; it holds
*since*:

- the onset event, when there is one newer than the last "off" (the device's own account:
  ``door_opened`` says when the door opened);
- else the last observation that it did not hold: the earliest instant it may have begun,
  the only one a maximum can tell whatever the order of delivery (a heartbeat every minute
  makes the difference a minute);
- else, never seen off, its earliest "on".

The post-use check (pads are single-use): an ``aed_returned`` newer than the newest
``aed_removed`` starts it; it is done once both a passing self-test and a consumables
report with new pads have come after that return. "New pads" are pads whose expiry the
cabinet had not reported before the removal: equivalent to "an expiry different from the
one at use" as long as a pads expiry never comes back after another one, and, unlike it,
a fold of per-expiry first and last reports, so that it does not depend on the order of
delivery. The cabinet keeps the :data:`PADS_EXPIRIES_KEPT` expiries reported most recently.

Temperature and battery are judged against the AED model's spec given to :func:`observe`;
the rules judge the twin's current reading against the current spec themselves, so a
changed configuration cannot leave a stale verdict behind, and use the facts for *since*.

Facts are values: JSON in and out (``model_dump_json``/``model_validate_json``), for the
state store.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Final, Self

from pydantic import BaseModel, ConfigDict, Field

from aedfleet.contract import (
    Birth,
    BootId,
    CabinetId,
    CabinetMessage,
    CmdResult,
    Consumables,
    DoorState,
    Event,
    EventType,
    Heartbeat,
    PowerSource,
    Selftest,
    SelftestResult,
    Status,
    UtcTimestamp,
)
from aedfleet.twin import is_newer
from alerting.rule_config import AedModelSpec

PADS_EXPIRIES_KEPT: Final = 16


class _Fact(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Stamp(_Fact):
    """Where a message sits in a cabinet's stream: its boot, seq and device time."""

    boot_id: BootId
    seq: int = Field(ge=1)
    ts: UtcTimestamp

    @classmethod
    def of(cls, message: CabinetMessage) -> Self:
        return cls(boot_id=message.boot_id, seq=message.seq, ts=message.ts)

    def is_newer_than(self, other: Stamp | None) -> bool:
        if other is None:
            return True
        if is_newer(other.boot_id, other.seq, other.ts, self.boot_id, self.seq, self.ts):
            return True
        # Two boots at the same device time: neither is newer by is_newer; the boot id
        # decides, so that the order of delivery does not.
        return (
            self.boot_id != other.boot_id and self.ts == other.ts and self.boot_id > other.boot_id
        )


def newest(kept: Stamp | None, candidate: Stamp) -> Stamp:
    return candidate if candidate.is_newer_than(kept) else kept or candidate


def earliest(kept: Stamp | None, candidate: Stamp) -> Stamp:
    return candidate if kept is None or kept.is_newer_than(candidate) else kept


class Track(_Fact):
    """Observations of a yes/no property; see the module docstring for ``since``."""

    last_on: Stamp | None = None
    last_off: Stamp | None = None
    first_on: Stamp | None = None
    last_onset: Stamp | None = None

    def observe(self, stamp: Stamp, holds: bool, *, onset: bool = False) -> Track:
        if holds:
            update = {
                "last_on": newest(self.last_on, stamp),
                "first_on": earliest(self.first_on, stamp),
                "last_onset": newest(self.last_onset, stamp) if onset else self.last_onset,
            }
        else:
            update = {"last_off": newest(self.last_off, stamp)}
        changed = {key: value for key, value in update.items() if getattr(self, key) != value}
        return self.model_copy(update=changed) if changed else self

    @property
    def known(self) -> bool:
        return self.last_on is not None or self.last_off is not None

    @property
    def holds(self) -> bool:
        return self.last_on is not None and self.last_on.is_newer_than(self.last_off)

    @property
    def since(self) -> datetime | None:
        """When the property began to hold, or None when it does not hold."""
        last_on = self.last_on
        if last_on is None or not last_on.is_newer_than(self.last_off):
            return None
        if self.last_onset is not None and self.last_onset.is_newer_than(self.last_off):
            return self.last_onset.ts
        if self.last_off is not None:
            return self.last_off.ts
        return (self.first_on or last_on).ts


class PadsReported(_Fact):
    """The first and the last consumables report that gave this pads expiry."""

    expiry: date
    first: Stamp
    last: Stamp


class CabinetFacts(_Fact):
    cabinet_id: CabinetId

    door_open: Track = Track()
    aed_out: Track = Track()
    on_backup_power: Track = Track()
    not_ready: Track = Track()
    pads_missing: Track = Track()
    temperature_outside: Track = Track()
    battery_low: Track = Track()

    # The post-use check: the newest return, the newest passing self-test, the pads seen.
    aed_returned: Stamp | None = None
    passed_selftest: Stamp | None = None
    pads_expiries: tuple[PadsReported, ...] = Field(default=(), max_length=PADS_EXPIRIES_KEPT)

    last_tamper: Stamp | None = None
    last_inspection: UtcTimestamp | None = Field(
        default=None, description="Set by the service from the inspection records"
    )

    @property
    def post_use_check_since(self) -> datetime | None:
        """When the AED came back from a use whose check is not done yet, else None."""
        removed = self.aed_out.last_onset
        returned = self.aed_returned
        if removed is None or returned is None or not returned.is_newer_than(removed):
            return None
        tested = self.passed_selftest is not None and self.passed_selftest.is_newer_than(returned)
        new_pads = any(
            pads.first.is_newer_than(removed) and pads.last.is_newer_than(returned)
            for pads in self.pads_expiries
        )
        return None if tested and new_pads else returned.ts

    def to_json(self) -> str:
        """Compact JSON for the store (what is unknown is left out)."""
        return self.model_dump_json(exclude_none=True, exclude_defaults=True)

    @classmethod
    def from_json(cls, text: str) -> Self:
        return cls.model_validate_json(text)


def with_inspection(facts: CabinetFacts, at: datetime) -> CabinetFacts:
    """``facts`` knowing of an inspection at ``at`` (the latest inspection wins)."""
    if facts.last_inspection is not None and facts.last_inspection >= at:
        return facts
    return facts.model_copy(update={"last_inspection": at})


def _with_pads(
    reports: tuple[PadsReported, ...], expiry: date, stamp: Stamp
) -> tuple[PadsReported, ...]:
    by_expiry = {report.expiry: report for report in reports}
    known = by_expiry.get(expiry)
    if known is None:
        by_expiry[expiry] = PadsReported(expiry=expiry, first=stamp, last=stamp)
    else:
        first, last = earliest(known.first, stamp), newest(known.last, stamp)
        if (first, last) == (known.first, known.last):
            return reports
        by_expiry[expiry] = PadsReported(expiry=expiry, first=first, last=last)
    kept = sorted(by_expiry.values(), key=_last_report_order, reverse=True)[:PADS_EXPIRIES_KEPT]
    return tuple(sorted(kept, key=lambda report: report.expiry))


def _last_report_order(report: PadsReported) -> tuple[datetime, str, int]:
    return (report.last.ts, report.last.boot_id, report.last.seq)


def _heartbeat_update(
    facts: CabinetFacts, beat: Heartbeat, spec: AedModelSpec
) -> dict[str, object]:
    stamp = Stamp.of(beat)
    return {
        "door_open": facts.door_open.observe(stamp, beat.door is DoorState.OPEN),
        "aed_out": facts.aed_out.observe(stamp, not beat.aed_present),
        "on_backup_power": facts.on_backup_power.observe(stamp, beat.power is PowerSource.BACKUP),
        "not_ready": facts.not_ready.observe(stamp, not beat.aed_ready),
        "temperature_outside": facts.temperature_outside.observe(
            stamp, not spec.storage_c.contains(beat.temperature_c)
        ),
        "battery_low": facts.battery_low.observe(stamp, beat.battery_pct < spec.min_battery_pct),
    }


def _event_update(facts: CabinetFacts, event: Event) -> dict[str, object]:
    stamp = Stamp.of(event)
    match event.event:
        case EventType.DOOR_OPENED:
            return {"door_open": facts.door_open.observe(stamp, True, onset=True)}
        case EventType.DOOR_CLOSED:
            return {"door_open": facts.door_open.observe(stamp, False)}
        case EventType.AED_REMOVED:
            return {"aed_out": facts.aed_out.observe(stamp, True, onset=True)}
        case EventType.AED_RETURNED:
            return {
                "aed_out": facts.aed_out.observe(stamp, False),
                "aed_returned": newest(facts.aed_returned, stamp),
            }
        case EventType.POWER_LOST:
            return {"on_backup_power": facts.on_backup_power.observe(stamp, True, onset=True)}
        case EventType.POWER_RESTORED:
            return {"on_backup_power": facts.on_backup_power.observe(stamp, False)}
        case EventType.TAMPER:
            return {"last_tamper": newest(facts.last_tamper, stamp)}


def _consumables_update(facts: CabinetFacts, report: Consumables) -> dict[str, object]:
    stamp = Stamp.of(report)
    update: dict[str, object] = {
        "pads_missing": facts.pads_missing.observe(stamp, not report.pads_present)
    }
    if report.pads_present and report.pads_expiry is not None:
        update["pads_expiries"] = _with_pads(facts.pads_expiries, report.pads_expiry, stamp)
    return update


def observe(
    facts: CabinetFacts | None, message: CabinetMessage, spec: AedModelSpec
) -> CabinetFacts:
    """The facts after ``message``; None means nothing is known of the cabinet yet.

    Idempotent, and any order of the same messages gives the same facts (for one
    ``spec``). Raises ValueError when the message belongs to another cabinet.
    """
    if facts is None:
        facts = CabinetFacts(cabinet_id=message.cabinet_id)
    elif facts.cabinet_id != message.cabinet_id:
        raise ValueError(
            f"message of cabinet {message.cabinet_id!r} applied to the facts of "
            f"{facts.cabinet_id!r}"
        )
    update: dict[str, object]
    match message:
        case Heartbeat():
            update = _heartbeat_update(facts, message, spec)
        case Event():
            update = _event_update(facts, message)
        case Selftest():
            update = (
                {"passed_selftest": newest(facts.passed_selftest, Stamp.of(message))}
                if message.result is SelftestResult.PASS
                else {}
            )
        case Consumables():
            update = _consumables_update(facts, message)
        case Birth() | Status() | CmdResult():
            update = {}
    changed = {key: value for key, value in update.items() if getattr(facts, key) != value}
    return facts.model_copy(update=changed) if changed else facts
