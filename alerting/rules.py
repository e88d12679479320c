"""The readiness rules: what is wrong with a cabinet at an instant (pure).

:func:`evaluate` looks at a cabinet's registry record, its twin (the latest state,
:mod:`aedfleet.twin`), its facts (since when things hold, :mod:`alerting.facts`) and its
effective :class:`~alerting.rule_config.RuleSet`, and returns every
:class:`~alerting.model.Condition` that holds at ``now``, in the order of
:class:`~alerting.model.AlarmType`. :func:`next_change` returns the earliest later instant
at which that answer can change with no new message, so that a scheduler wakes up exactly
when a deadline passes rather than polling.

Both come from one walk over the rules: every comparison of ``now`` with a deadline goes
through :meth:`_Evaluation.reached`, which also records the deadlines still ahead. The
answer is therefore constant until the earliest of them, and the two functions cannot
disagree. For the same reason nothing in a condition is computed from ``now`` itself
(a detail never says "open for 12 minutes"): a detail changes only with the facts. A
detail is an :class:`~alerting.model.AlarmDetail`, facts without words; the renderer
phrases it in the reader's language and the cabinet's time zone.

A deadline counts as passed at its instant (``now >= deadline``). Dates (expiry, install)
are read in the cabinet's time zone (its birth's, else the configured default): pads that
expire on 1 June are expired from midnight starting 2 June there, and an expiry notice of
N days begins at midnight N days before the expiry date.

How each condition is found, and its ``since``:

- door opened / AED removed: immediately, since the ``door_opened`` / ``aed_removed``
  (see :class:`~alerting.facts.Track`); the open door blocks readiness only once it has been
  open for the inspection allowance. A door already closed again (an AED already back)
  is reported ``over`` for ``event_hold`` after its opening (see :func:`_recent_onset`).
  AED not returned: at removal + the allowed time. Post-use check: from the return until
  a passing self-test and new pads.
- self-test failed: from the last self-test, with its fault codes in the detail (one
  fault, one alarm); fault codes: a self-test that passed yet reported codes. Ready
  indicator off: from the heartbeats, and not while the AED is out of its cabinet
  (nobody can see its light; the removal alarm says what is wrong); while the last
  self-test failed it is ``covered_by`` that failure, the light's usual consequence.
- pads missing, pads or battery expiring (a notice: does not block readiness) or expired:
  the AED's own report of its consumables, else the dates in the registry. Battery below
  the model's minimum: the heartbeat's level.
- offline: the last will (since the cabinet was last heard from) or no heartbeat for
  ``heartbeat_misses`` intervals (since the last heartbeat); critical once that has
  lasted ``offline_critical_after``. A cabinet never heard from gets one offline warning
  since its install date (the evaluation time when unknown, nothing before it is
  installed) and none of the device rules: an empty twin table at start-up pages nobody
  urgently, and every cabinet that has spoken is judged from its own device times
  (``first_seen``/``last_seen``), not from when the service started.
- self-test missing: no self-test within the schedule's grace after the last one (or
  after the cabinet was first heard from); an unknown schedule is taken as daily.
- temperature: outside the model's storage range for the configured duration, since it
  left it. Power lost: on backup power; critical when the cabinet needs heating (heater
  on, or colder than the model's minimum).
- tamper: for the tamper window after the event.
- inspection overdue: the interval after the last inspection, else the install date,
  else the first time the cabinet was heard from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from aedfleet.contract import DoorState, PowerSource, SelftestPeriod, SelftestResult
from aedfleet.registry import Cabinet
from aedfleet.twin import Twin
from alerting.facts import CabinetFacts, Track
from alerting.model import AlarmDetail, AlarmType, Condition, DetailKey, Severity
from alerting.rule_config import RuleSet

_EARLIEST = datetime.min.replace(tzinfo=UTC)
_LATEST = datetime.max.replace(tzinfo=UTC)
_TYPE_ORDER = {alarm_type: index for index, alarm_type in enumerate(AlarmType)}


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _plus(instant: datetime, duration: timedelta) -> datetime:
    try:
        return instant + duration
    except OverflowError:
        return _LATEST if duration > timedelta(0) else _EARLIEST


def _midnight(day: date, zone: ZoneInfo, *, days_later: int = 0) -> datetime:
    """The start of ``day`` (moved by ``days_later``) in ``zone``, in UTC; past either
    end of the calendar, the end itself."""
    try:
        return datetime.combine(day + timedelta(days=days_later), time(), tzinfo=zone).astimezone(
            UTC
        )
    except OverflowError:
        return _LATEST if day.year > 1 and days_later >= 0 else _EARLIEST


@dataclass(slots=True)
class _Evaluation:
    cabinet: Cabinet
    twin: Twin | None
    facts: CabinetFacts
    rules: RuleSet
    now: datetime
    zone: ZoneInfo
    conditions: list[Condition] = field(default_factory=list)
    ahead: list[datetime] = field(default_factory=list)

    def reached(self, deadline: datetime) -> bool:
        """Whether ``deadline`` has passed; one still ahead is remembered for next_change."""
        if deadline <= self.now:
            return True
        if deadline < _LATEST:  # the end of the calendar stands for never
            self.ahead.append(deadline)
        return False

    def add(
        self,
        alarm_type: AlarmType,
        severity: Severity,
        since: datetime,
        detail: AlarmDetail,
        *,
        blocks_readiness: bool = True,
        over: bool = False,
        covered_by: AlarmType | None = None,
    ) -> None:
        self.conditions.append(
            Condition(
                cabinet_id=self.cabinet.cabinet_id,
                type=alarm_type,
                severity=severity,
                since=since,
                detail=detail,
                blocks_readiness=blocks_readiness,
                over=over,
                covered_by=covered_by,
            )
        )


def _since(track: Track, twin_says: bool | None, twin_ts: datetime | None) -> datetime | None:
    """When ``track``'s property began, or None when it does not hold.

    The twin answers only for facts that know nothing yet (alerting started after the
    ingest, or facts lost): it tells the state, and its section's stamp is the best
    ``since`` it has.
    """
    if track.known:
        return track.since
    return twin_ts if twin_says else None


# -- the rules -----------------------------------------------------------------------------------


def _recent_onset(e: _Evaluation, track: Track) -> datetime | None:
    """The device time of the last opening or removal event, while it is news.

    A door opened and closed (an AED taken and put back) between two evaluations leaves
    no open door to see, yet someone opened it: the event itself is news for
    ``event_hold``, reported as a condition that is ``over``, so that the captain hears
    of it. The lifecycle raises it only when no alarm was raised for that opening (it
    was seen open), and resolves at once an alarm raised while the door was open.
    """
    onset = track.last_onset
    if (
        onset is None
        or not e.reached(onset.ts)
        or e.reached(_plus(onset.ts, e.rules.thresholds.event_hold))
    ):
        return None
    return onset.ts


def _door_and_aed(e: _Evaluation, twin: Twin) -> datetime | None:
    """Door and AED presence rules; returns since when the AED is out, else None."""
    limits, severities = e.rules.thresholds, e.rules.severities
    opened = _since(e.facts.door_open, twin.door is DoorState.OPEN, twin.door_ts)
    if opened is not None:
        e.add(
            AlarmType.DOOR_OPENED,
            severities.door_opened,
            opened,
            AlarmDetail(key=DetailKey.DOOR_OPEN, at=opened),
            blocks_readiness=e.reached(_plus(opened, limits.door_open_allowance)),
        )
    elif (onset := _recent_onset(e, e.facts.door_open)) is not None:
        e.add(
            AlarmType.DOOR_OPENED,
            severities.door_opened,
            onset,
            AlarmDetail(key=DetailKey.DOOR_OPENED_AND_CLOSED, at=onset),
            blocks_readiness=False,
            over=True,
        )
    removed = _since(
        e.facts.aed_out,
        None if twin.aed_present is None else not twin.aed_present,
        twin.aed_present_ts,
    )
    if removed is None and (onset := _recent_onset(e, e.facts.aed_out)) is not None:
        e.add(
            AlarmType.AED_REMOVED,
            severities.aed_removed,
            onset,
            AlarmDetail(key=DetailKey.AED_TAKEN_AND_RETURNED, at=onset),
            blocks_readiness=False,
            over=True,
        )
    if removed is not None:
        e.add(
            AlarmType.AED_REMOVED,
            severities.aed_removed,
            removed,
            AlarmDetail(key=DetailKey.AED_OUT, at=removed),
        )
        overdue = _plus(removed, limits.aed_not_returned_after)
        if e.reached(overdue):
            e.add(
                AlarmType.AED_NOT_RETURNED,
                severities.aed_not_returned,
                overdue,
                AlarmDetail(key=DetailKey.AED_NOT_RETURNED, at=removed),
            )
    returned = e.facts.post_use_check_since
    if returned is not None:
        e.add(
            AlarmType.POST_USE_CHECK,
            severities.post_use_check,
            returned,
            AlarmDetail(key=DetailKey.AED_BACK_UNCHECKED, at=returned),
        )
    return removed


def _aed_health(e: _Evaluation, twin: Twin, aed_out: bool) -> None:
    severities = e.rules.severities
    failed = False
    if twin.selftest_ts is not None:
        codes = tuple(twin.selftest_fault_codes or ())
        if twin.selftest_result is SelftestResult.FAIL:
            failed = True
            e.add(
                AlarmType.SELFTEST_FAILED,
                severities.selftest_failed,
                twin.selftest_ts,
                AlarmDetail(
                    key=DetailKey.SELFTEST_FAILED, selftest_kind=twin.selftest_kind, codes=codes
                ),
            )
        elif codes:
            e.add(
                AlarmType.FAULT_CODES,
                severities.fault_codes,
                twin.selftest_ts,
                AlarmDetail(
                    key=DetailKey.FAULT_CODES, selftest_kind=twin.selftest_kind, codes=codes
                ),
            )
    not_ready = _since(
        e.facts.not_ready, None if twin.aed_ready is None else not twin.aed_ready, twin.heartbeat_ts
    )
    if not_ready is not None and not aed_out:
        e.add(
            AlarmType.AED_NOT_READY,
            severities.aed_not_ready,
            not_ready,
            AlarmDetail(key=DetailKey.READY_LIGHT_OFF),
            covered_by=AlarmType.SELFTEST_FAILED if failed else None,
        )
    if twin.battery_pct is not None and twin.battery_pct < e.rules.aed.min_battery_pct:
        low = e.facts.battery_low.since or twin.heartbeat_ts
        if low is not None:
            e.add(
                AlarmType.BATTERY_LOW,
                severities.battery_low,
                low,
                AlarmDetail(key=DetailKey.BATTERY_BELOW, percent=e.rules.aed.min_battery_pct),
            )


def _consumables(e: _Evaluation, twin: Twin | None) -> None:
    pads_missing = (
        None
        if twin is None
        else _since(
            e.facts.pads_missing,
            None if twin.pads_present is None else not twin.pads_present,
            twin.consumables_ts,
        )
    )
    if pads_missing is not None:
        e.add(
            AlarmType.PADS_MISSING,
            e.rules.severities.pads_missing,
            pads_missing,
            AlarmDetail(key=DetailKey.NO_PADS),
        )
    else:
        pads_expiry = (
            twin.pads_expiry if twin and twin.pads_expiry is not None else e.cabinet.pads_expiry
        )
        _expiry(e, pads_expiry, AlarmType.PADS_EXPIRING, AlarmType.PADS_EXPIRED)
    battery_expiry = (
        twin.battery_expiry
        if twin and twin.battery_expiry is not None
        else e.cabinet.battery_expiry
    )
    _expiry(e, battery_expiry, AlarmType.BATTERY_EXPIRING, AlarmType.BATTERY_EXPIRED)


_EXPIRY_DETAILS = {
    AlarmType.PADS_EXPIRING: DetailKey.PADS_EXPIRE,
    AlarmType.PADS_EXPIRED: DetailKey.PADS_EXPIRED,
    AlarmType.BATTERY_EXPIRING: DetailKey.BATTERY_EXPIRES,
    AlarmType.BATTERY_EXPIRED: DetailKey.BATTERY_EXPIRED,
}


def _expiry(
    e: _Evaluation,
    expiry: date | None,
    expiring: AlarmType,
    expired: AlarmType,
) -> None:
    if expiry is None:
        return
    expired_at = _midnight(expiry, e.zone, days_later=1)
    if e.reached(expired_at):
        severity = getattr(e.rules.severities, expired.value)
        e.add(expired, severity, expired_at, AlarmDetail(key=_EXPIRY_DETAILS[expired], day=expiry))
        return
    notices = e.rules.thresholds.expiry_notices  # farthest first
    if not notices:
        return
    notice_severity: Severity | None = None
    for notice in notices:
        if e.reached(_midnight(expiry, e.zone, days_later=-notice.within_days)):
            notice_severity = notice.severity
    if notice_severity is not None:
        first_notice = _midnight(expiry, e.zone, days_later=-notices[0].within_days)
        e.add(
            expiring,
            notice_severity,
            first_notice,
            AlarmDetail(key=_EXPIRY_DETAILS[expiring], day=expiry),
            blocks_readiness=False,
        )


def _connection(e: _Evaluation, twin: Twin, last_seen: datetime, first_seen: datetime) -> None:
    limits, severities = e.rules.thresholds, e.rules.severities
    interval = (
        timedelta(seconds=twin.heartbeat_interval_s)
        if twin.heartbeat_interval_s
        else limits.heartbeat_interval
    )
    last_beat = twin.heartbeat_ts or first_seen
    silent = e.reached(_plus(last_beat, interval * limits.heartbeat_misses))
    offline_since = [last_beat] if silent else []
    if twin.online is False:
        offline_since.append(last_seen)
    if offline_since:
        since = min(offline_since)
        long = e.reached(_plus(since, limits.offline_critical_after))
        e.add(
            AlarmType.OFFLINE,
            severities.offline_long if long else severities.offline,
            since,
            AlarmDetail(
                key=DetailKey.LAST_HEARD,
                at=last_seen,
                heartbeat_at=None if twin.online is False else last_beat,
            ),
        )


def _selftest_schedule(e: _Evaluation, twin: Twin, first_seen: datetime) -> None:
    limits = e.rules.thresholds
    grace = {
        SelftestPeriod.DAILY: limits.selftest_grace_daily,
        SelftestPeriod.WEEKLY: limits.selftest_grace_weekly,
        SelftestPeriod.MONTHLY: limits.selftest_grace_monthly,
    }[twin.selftest_period or SelftestPeriod.DAILY]
    last = twin.selftest_ts or first_seen
    deadline = _plus(last, grace)
    if e.reached(deadline):
        e.add(
            AlarmType.SELFTEST_MISSING,
            e.rules.severities.selftest_missing,
            deadline,
            AlarmDetail(key=DetailKey.NO_SELFTEST_SINCE, at=last)
            if twin.selftest_ts
            else AlarmDetail(key=DetailKey.NO_SELFTEST_YET),
        )


def _climate(e: _Evaluation, twin: Twin) -> None:
    limits, severities, storage = e.rules.thresholds, e.rules.severities, e.rules.aed.storage_c
    celsius = twin.temperature_c
    if celsius is not None and not storage.contains(celsius):
        left = e.facts.temperature_outside.since or twin.heartbeat_ts
        if left is not None and e.reached(_plus(left, limits.temperature_excursion_after)):
            side = (
                DetailKey.ABOVE_STORAGE_RANGE
                if celsius > storage.max_c
                else DetailKey.BELOW_STORAGE_RANGE
            )
            e.add(
                AlarmType.TEMPERATURE,
                severities.temperature,
                left,
                AlarmDetail(key=side, low_c=storage.min_c, high_c=storage.max_c),
            )
    backup = _since(
        e.facts.on_backup_power,
        None if twin.power is None else twin.power is PowerSource.BACKUP,
        twin.power_ts,
    )
    if backup is not None:
        needs_heat = bool(twin.heater_on) or (celsius is not None and celsius < storage.min_c)
        e.add(
            AlarmType.POWER_LOST,
            severities.power_lost_unheated if needs_heat else severities.power_lost,
            backup,
            AlarmDetail(key=DetailKey.ON_BACKUP_POWER, needs_heat=needs_heat),
            blocks_readiness=False,
        )


def _tamper(e: _Evaluation) -> None:
    tamper = e.facts.last_tamper
    if tamper is not None and not e.reached(_plus(tamper.ts, e.rules.thresholds.tamper_window)):
        e.add(
            AlarmType.TAMPER,
            e.rules.severities.tamper,
            tamper.ts,
            AlarmDetail(key=DetailKey.TAMPER_REPORTED, at=tamper.ts),
            blocks_readiness=False,
        )


def _inspection_base(
    cabinet: Cabinet, twin: Twin | None, facts: CabinetFacts, zone: ZoneInfo
) -> datetime | None:
    if facts.last_inspection is not None:
        return facts.last_inspection
    if cabinet.install_date is not None:
        return _midnight(cabinet.install_date, zone)
    return twin.first_seen if twin else None


def _inspection(e: _Evaluation) -> None:
    base = _inspection_base(e.cabinet, e.twin, e.facts, e.zone)
    if base is None:
        return
    due = _plus(base, e.rules.thresholds.inspection_interval)
    if e.reached(due):
        e.add(
            AlarmType.INSPECTION_OVERDUE,
            e.rules.severities.inspection_overdue,
            due,
            AlarmDetail(key=DetailKey.INSPECTION_DUE, at=due),
            blocks_readiness=False,
        )


def _never_heard(e: _Evaluation) -> None:
    if e.cabinet.install_date is None:
        since = e.now
    else:
        since = _midnight(e.cabinet.install_date, e.zone)
        if not e.reached(since):
            return  # not installed yet
    e.add(
        AlarmType.OFFLINE,
        e.rules.severities.offline,
        since,
        AlarmDetail(key=DetailKey.NEVER_HEARD),
    )


# -- entry points ---------------------------------------------------------------------------------


def _walk(
    cabinet: Cabinet, twin: Twin | None, facts: CabinetFacts, rules: RuleSet, now: datetime
) -> _Evaluation:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    for name, other in (("twin", twin), ("facts", facts)):
        if other is not None and other.cabinet_id != cabinet.cabinet_id:
            raise ValueError(
                f"the {name} of cabinet {other.cabinet_id!r} evaluated for {cabinet.cabinet_id!r}"
            )
    zone = _zone((twin.time_zone if twin else None) or rules.default_time_zone)
    e = _Evaluation(cabinet, twin, facts, rules, now.astimezone(UTC), zone)
    heard: Twin | None = None
    if twin is not None and twin.first_seen is not None and twin.last_seen is not None:
        heard = twin
        removed = _door_and_aed(e, twin)
        _aed_health(e, twin, aed_out=removed is not None)
        _connection(e, twin, twin.last_seen, twin.first_seen)
        _selftest_schedule(e, twin, twin.first_seen)
        _climate(e, twin)
        _tamper(e)
    else:
        _never_heard(e)
    _consumables(e, heard)
    _inspection(e)
    e.conditions.sort(key=_type_order)
    return e


def _type_order(condition: Condition) -> int:
    return _TYPE_ORDER[condition.type]


def evaluate(
    cabinet: Cabinet, twin: Twin | None, facts: CabinetFacts, rules: RuleSet, now: datetime
) -> tuple[Condition, ...]:
    """Every condition that holds for ``cabinet`` at ``now``, one per alarm type.

    ``twin`` None: the cabinet has never been heard from. Raises ValueError when ``now``
    is naive or the twin or facts belong to another cabinet.
    """
    return tuple(_walk(cabinet, twin, facts, rules, now).conditions)


def next_change(
    cabinet: Cabinet, twin: Twin | None, facts: CabinetFacts, rules: RuleSet, now: datetime
) -> datetime | None:
    """The earliest instant after ``now`` at which :func:`evaluate` may answer differently
    without any new message (None: never). ``evaluate`` is constant on [now, that instant),
    except for the ``since`` of a never-heard cabinet without an install date, which is
    the evaluation time itself."""
    ahead = _walk(cabinet, twin, facts, rules, now).ahead
    return min(ahead) if ahead else None


def inspection_due(
    cabinet: Cabinet, twin: Twin | None, facts: CabinetFacts, rules: RuleSet
) -> datetime | None:
    """When the next inspection is due (None: nothing tells when the cabinet started)."""
    zone = _zone((twin.time_zone if twin else None) or rules.default_time_zone)
    base = _inspection_base(cabinet, twin, facts, zone)
    return None if base is None else _plus(base, rules.thresholds.inspection_interval)


def inspection_reminder_at(
    cabinet: Cabinet, twin: Twin | None, facts: CabinetFacts, rules: RuleSet
) -> datetime | None:
    """When to remind the captain of the next inspection: the configured lead before it
    is due, but not before the inspection it follows."""
    zone = _zone((twin.time_zone if twin else None) or rules.default_time_zone)
    base = _inspection_base(cabinet, twin, facts, zone)
    if base is None:
        return None
    due = _plus(base, rules.thresholds.inspection_interval)
    return max(base, _plus(due, -rules.thresholds.inspection_reminder_lead))
