"""The alerting engine: the pure rules, lifecycle and escalation applied to the stores.

Synchronous on purpose: every method runs on the service's one store thread (see
:mod:`alerting.service`), so the engine's caches need no locks and the SQLite database
sees one writer per process. Each step is idempotent, because a crash may repeat it:

1. :meth:`AlertingEngine.observe` folds accepted messages into each cabinet's facts and
   re-evaluates those cabinets (the ingest calls it after writing the twins).
2. :meth:`AlertingEngine.evaluate` runs the rules for some cabinets at ``now`` and
   reconciles the conditions with the active alarms (raise, update, clear, resolve).
   The scheduler calls it for the cabinets whose :func:`alerting.rules.next_change` has
   come, so a deadline (an expiry at midnight, a missed heartbeat) raises an alarm with
   no message arriving.
3. :meth:`AlertingEngine.escalate` advances every due escalation and records the pages
   it decides in the store's notification outbox, one per person; a page decided twice
   (after a crash) is recorded once, because its key is unique.
4. :meth:`AlertingEngine.due_messages` reads the outbox's released notifications and
   has :mod:`alerting.composition` group them into messages (quiet hours and grouping)
   and compose each; :meth:`AlertingEngine.delivered` records what the notifiers did
   with them.

Resolution notices go to everyone who was told about the alarm; silenced alarms are
recorded and escalate, but their pages are not recorded (nobody is told) unless the
alarm type can never be silenced (door opened, AED removed).
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta

from aedfleet.contract import CabinetMessage
from aedfleet.db import StateStore
from aedfleet.influx.lines import CabinetTags
from aedfleet.registry import Cabinet, District, Person, Role
from alerting.composition import (
    OutgoingMessage,
    Roster,
    batches,
    compose,
    lead_alarm,
    notice_kind,
)
from alerting.config import AlertingSettings
from alerting.districts import coverage
from alerting.escalation import advance
from alerting.facts import CabinetFacts, observe, with_inspection
from alerting.lifecycle import news_to_check, reconcile
from alerting.links import LinkSigner
from alerting.model import (
    Alarm,
    AlarmState,
    AlarmType,
    Inspection,
    InspectionResult,
    NoticeKind,
    Notification,
    NotificationState,
    Page,
    Severity,
    Silence,
    Via,
)
from alerting.notifiers.delivery import DeliveryReport
from alerting.points import (
    alarm_line,
    district_readiness_line,
    notification_line,
    readiness_line,
)
from alerting.quiet import release_time
from alerting.readiness import FleetReadiness, Readiness, fleet_readiness, readiness
from alerting.rule_config import RuleSet, rules_for
from alerting.rules import evaluate, next_change
from alerting.silences import silenced
from alerting.store import AlarmStore, AppliedChanges

# OutgoingMessage is part of the engine's interface: due_messages returns it.
__all__ = ["AlertingEngine", "OutgoingMessage"]

log = logging.getLogger(__name__)

# How far ahead a cabinet without any deadline is looked at again anyway: a safety net
# against a rule whose next change was computed too late.
_RECHECK: timedelta = timedelta(hours=1)
# A lag below this is the pipeline's own latency, not a backlog; above the cap the device
# clocks are suspect, not the service.
_LAG_NOISE: timedelta = timedelta(seconds=5)
_MAX_LAG: timedelta = timedelta(hours=1)


class AlertingEngine:
    def __init__(
        self,
        settings: AlertingSettings,
        state: StateStore,
        alarms: AlarmStore,
        signer: LinkSigner,
    ) -> None:
        self.settings = settings
        self._state = state
        self._alarms = alarms
        self._signer = signer
        self._registry = Roster({}, {}, {})
        self._registry_revision: int | None = None
        self._rules: dict[str, RuleSet] = {}
        self._tags: dict[str, CabinetTags] = {}
        self._districts: tuple[District, ...] = ()
        self._readiness: dict[str, Readiness] = {}
        # (when, cabinet id): cabinets to evaluate again without a message; stale entries
        # (a cabinet evaluated since) are skipped when they come up.
        self._deadlines: list[tuple[datetime, str]] = []
        self._next_check: dict[str, datetime] = {}
        self._lines: list[str] = []
        self._started_at: datetime | None = None
        self._lag = timedelta(0)
        self._lag_measured_at = datetime.min.replace(tzinfo=UTC)

    def start(self, now: datetime) -> None:
        """Load the registry and evaluate every cabinet: the service's first sweep."""
        self._started_at = now
        self.refresh_registry()
        self.evaluate(self.cabinet_ids, now)

    # -- registry ------------------------------------------------------------------------

    def refresh_registry(self) -> None:
        """Reload the registry, unless nothing in it changed since the last load."""
        revision = self._state.registry_revision()
        if revision == self._registry_revision:
            return
        registry = self._state.load_registry()
        self._registry_revision = revision
        cabinets = {cabinet.cabinet_id: cabinet for cabinet in registry.cabinets}
        assignments: dict[str, list[tuple[Role, int, str]]] = {}
        for assignment in registry.assignments:
            assignments.setdefault(assignment.cabinet_id, []).append(
                (assignment.role, assignment.rank, assignment.person_id)
            )
        self._registry = Roster(
            cabinets=cabinets,
            people={person.person_id: person for person in registry.people},
            assignments={key: tuple(sorted(value)) for key, value in assignments.items()},
        )
        self._rules = {
            cabinet_id: rules_for(cabinet, self.settings.rules)
            for cabinet_id, cabinet in cabinets.items()
        }
        self._tags = {
            cabinet_id: CabinetTags.from_cabinet(cabinet)
            for cabinet_id, cabinet in cabinets.items()
        }
        self._districts = registry.districts

    @property
    def cabinet_ids(self) -> list[str]:
        return list(self._registry.cabinets)

    # -- 1. messages ---------------------------------------------------------------------

    def observe(self, messages: Sequence[CabinetMessage], now: datetime) -> None:
        """Fold accepted messages into the facts, then evaluate their cabinets."""
        by_cabinet: dict[str, list[CabinetMessage]] = {}
        for message in messages:
            if message.cabinet_id in self._registry.cabinets:
                by_cabinet.setdefault(message.cabinet_id, []).append(message)
        if not by_cabinet:
            return
        stored = self._alarms.facts.load(by_cabinet)
        facts: dict[str, CabinetFacts] = {}
        for cabinet_id, cabinet_messages in by_cabinet.items():
            text = stored.get(cabinet_id)
            folded = CabinetFacts.from_json(text) if text else None
            spec = self._rules[cabinet_id].aed
            for message in cabinet_messages:
                folded = observe(folded, message, spec)
            if folded is not None:
                facts[cabinet_id] = folded
        self._alarms.facts.save({key: value.to_json() for key, value in facts.items()})
        self._measure_lag(messages, now)
        self._evaluate(list(by_cabinet), now, facts)

    def _measure_lag(self, messages: Sequence[CabinetMessage], now: datetime) -> None:
        """How far behind the fleet the messages being read are (a backlog draining)."""
        newest = max(message.ts for message in messages)
        self._lag = min(max(now - newest, timedelta(0)), _MAX_LAG)
        self._lag_measured_at = now

    def _judging_lag(self, now: datetime) -> timedelta:
        """How far back to judge the fleet from: the lag while messages come in late.

        Rules measure silence against the clock ("no heartbeat for 3 intervals"). While the
        ingest drains a backlog, the messages that would break the silence are queued,
        not missing; judging at ``now - lag`` keeps a slow service from calling healthy
        cabinets offline. A lag not measured for a heartbeat interval no longer counts:
        nothing arriving means nothing is queued.
        """
        fresh = now - self._lag_measured_at <= self.settings.rules.thresholds.heartbeat_interval
        return self._lag if fresh and self._lag > _LAG_NOISE else timedelta(0)

    # -- 2. rules and the alarm lifecycle ------------------------------------------------

    def evaluate(self, cabinet_ids: Iterable[str], now: datetime) -> None:
        """Evaluate these cabinets at ``now`` from their stored twins and facts."""
        known = [c for c in cabinet_ids if c in self._registry.cabinets]
        stored = self._alarms.facts.load(known)
        facts = {
            cabinet_id: CabinetFacts.from_json(text) for cabinet_id, text in stored.items() if text
        }
        self._evaluate(known, now, facts)

    def evaluate_due(self, now: datetime) -> int:
        """Evaluate every cabinet whose next change has come; how many were evaluated."""
        due: set[str] = set()
        while self._deadlines and self._deadlines[0][0] <= now:
            when, cabinet_id = heapq.heappop(self._deadlines)
            if self._next_check.get(cabinet_id) == when:
                due.add(cabinet_id)
        if due:
            self.evaluate(sorted(due), now)
        return len(due)

    def _evaluate(
        self, cabinet_ids: Sequence[str], now: datetime, facts: Mapping[str, CabinetFacts]
    ) -> None:
        active = self._alarms.active_alarms(cabinet_ids)
        inspections = self._alarms.inspections.last(cabinet_ids)
        twins = self._state.twins_of(cabinet_ids)
        lag = self._judging_lag(now)
        judged_at = now - lag
        for cabinet_id in cabinet_ids:
            cabinet = self._registry.cabinets[cabinet_id]
            rules = self._rules[cabinet_id]
            twin = twins.get(cabinet_id)
            if twin is None and (grace_ends := self._first_contact_deadline()) > now:
                # The fleet's retained births arrive after the first sweep: a cabinet
                # not heard from yet is judged once they have had time to come in.
                self._schedule(cabinet_id, grace_ends)
                continue
            cabinet_facts = facts.get(cabinet_id) or CabinetFacts(cabinet_id=cabinet_id)
            if cabinet_id in inspections:
                cabinet_facts = with_inspection(cabinet_facts, inspections[cabinet_id])
            conditions = evaluate(cabinet, twin, cabinet_facts, rules, judged_at)
            held = active.get(cabinet_id, {})
            news = news_to_check(held, conditions)
            last_raised = self._alarms.last_raised_for(cabinet_id, news) if news else None
            changes = reconcile(held, conditions, now, self.settings.hysteresis, last_raised)
            if changes:
                self._applied(self._alarms.apply(cabinet_id, changes, now), now)
            self._note_readiness(cabinet_id, readiness(cabinet_id, conditions), now)
            deadlines = [now + _RECHECK]
            change_at = next_change(cabinet, twin, cabinet_facts, rules, judged_at)
            if change_at is not None:
                deadlines.append(change_at + lag)
            deadlines.extend(self._clearing_deadlines(cabinet_id, held, changes, now))
            self._schedule(cabinet_id, min(deadlines))

    def _first_contact_deadline(self) -> datetime:
        started = self._started_at or datetime.min.replace(tzinfo=UTC)
        return started + timedelta(seconds=self.settings.scheduler.first_contact_grace_s)

    def _clearing_deadlines(
        self,
        cabinet_id: str,
        held: Mapping[AlarmType, Alarm],
        changes: Sequence[object],
        now: datetime,
    ) -> list[datetime]:
        """When alarms seen clear may resolve: the hysteresis hold has to be waited out."""
        if not changes and not any(alarm.clear_since for alarm in held.values()):
            return []
        current = self._alarms.active_alarms([cabinet_id]).get(cabinet_id, {})
        return [
            alarm.clear_since + self.settings.hysteresis.hold(alarm.type)
            for alarm in current.values()
            if alarm.clear_since is not None
            and alarm.clear_since + self.settings.hysteresis.hold(alarm.type) > now
        ]

    def _schedule(self, cabinet_id: str, when: datetime) -> None:
        self._next_check[cabinet_id] = when
        heapq.heappush(self._deadlines, (when, cabinet_id))

    def _applied(self, applied: AppliedChanges, now: datetime) -> None:
        for alarm in applied.raised:
            log.info(
                "alerting: raised alarm %d %s (%s) at %s: %s",
                alarm.alarm_id,
                alarm.type,
                alarm.severity,
                alarm.cabinet_id,
                alarm.detail,
            )
            self._point(alarm, "raised", alarm.raised_at)
        for alarm in applied.changed:
            self._point(alarm, "changed", now)
        for alarm in applied.resolved:
            log.info(
                "alerting: alarm %d %s at %s resolved", alarm.alarm_id, alarm.type, alarm.cabinet_id
            )
            self._point(alarm, "resolved", alarm.resolved_at or now)
            self._tell_resolved(alarm, now)

    def _note_readiness(self, cabinet_id: str, now_ready: Readiness, now: datetime) -> None:
        before = self._readiness.get(cabinet_id)
        self._readiness[cabinet_id] = now_ready
        if before is None or (before.ready, before.reasons) != (now_ready.ready, now_ready.reasons):
            cabinet = self._registry.cabinets[cabinet_id]
            self._lines.append(readiness_line(self._tags[cabinet_id], cabinet, now_ready, now))

    def fleet_readiness(self) -> FleetReadiness:
        """The fleet's readiness as last evaluated (every cabinet is evaluated at start)."""
        return fleet_readiness(
            (self._registry.cabinets[cabinet_id], state)
            for cabinet_id, state in self._readiness.items()
            if cabinet_id in self._registry.cabinets
        )

    def cabinet_readiness(self, cabinet_id: str) -> Readiness | None:
        return self._readiness.get(cabinet_id)

    def snapshot_lines(self, now: datetime) -> None:
        """A readiness point for every cabinet and one per district: the periodic snapshot
        dashboards plot."""
        evaluated: list[tuple[Cabinet, bool]] = []
        for cabinet_id, state in self._readiness.items():
            tags = self._tags.get(cabinet_id)
            cabinet = self._registry.cabinets.get(cabinet_id)
            if tags is not None and cabinet is not None:
                self._lines.append(readiness_line(tags, cabinet, state, now))
                evaluated.append((cabinet, state.ready))
        if not self._districts:
            return
        active = self._alarms.active_alarms(cabinet.cabinet_id for cabinet, _ in evaluated)
        open_alarms = {cabinet_id: len(by_type) for cabinet_id, by_type in active.items()}
        figures = coverage(self._districts, evaluated, open_alarms, self.settings.coverage)
        self._lines.extend(district_readiness_line(district, now) for district in figures.districts)

    # -- acting on alarms (links, CLI, API) ----------------------------------------------

    def acknowledge(self, alarm_id: int, by: str, via: Via, now: datetime) -> Alarm:
        alarm = self._alarms.acknowledge(alarm_id, by, via, now)
        self._point(alarm, "acknowledged", alarm.acknowledged_at or now)
        return alarm

    def resolve(self, alarm_id: int, by: str, via: Via, now: datetime) -> Alarm:
        before = self._alarms.alarm(alarm_id)
        alarm = self._alarms.resolve(alarm_id, by, via, now)
        if before is not None and before.active:
            self._point(alarm, "resolved", alarm.resolved_at or now)
            self._tell_resolved(alarm, now)
            # The condition may still hold; the next evaluation raises it again if so.
            self._schedule(alarm.cabinet_id, now)
        return alarm

    def record_inspection(self, inspection: Inspection, now: datetime) -> InspectionResult:
        result = self._alarms.inspections.record(inspection)
        if result.pads_expiry_updated or result.battery_expiry_updated:
            self.refresh_registry()
        self.evaluate([inspection.cabinet_id], now)
        return result

    def alarm(self, alarm_id: int) -> Alarm | None:
        return self._alarms.alarm(alarm_id)

    def cabinet(self, cabinet_id: str) -> Cabinet | None:
        return self._registry.cabinets.get(cabinet_id)

    def person(self, person_id: str) -> Person | None:
        return self._registry.people.get(person_id)

    def time_zones(self, cabinet_ids: Iterable[str]) -> dict[str, str]:
        """The zone each cabinet's times are shown in: the one its birth names, else the
        rules' default, as the rules read its dates (cabinets not in the registry left out)."""
        wanted = [cabinet_id for cabinet_id in cabinet_ids if cabinet_id in self._rules]
        twins = self._state.twins_of(wanted)
        return {
            cabinet_id: (twin.time_zone if (twin := twins.get(cabinet_id)) else None)
            or self._rules[cabinet_id].default_time_zone
            for cabinet_id in wanted
        }

    # -- 3. escalation -------------------------------------------------------------------

    def escalate(self, now: datetime) -> int:
        """Advance every due escalation; how many pages were recorded."""
        recorded = 0
        policies = self.settings.escalation
        claimed = self._alarms.claim_due(now)
        # Read once per round, not once per page: a round may page for many alarms.
        silences = self._alarms.silences.all(active_at=now) if claimed else []
        for alarm, state in claimed:
            pages, advanced = advance(alarm, state, policies.for_severity(state.severity), now)
            for page in pages:
                recorded += self._record_page(alarm, page, silences, now)
            self._alarms.save_escalation(advanced)
        return recorded

    def _record_page(
        self, alarm: Alarm, page: Page, silences: Sequence[Silence], now: datetime
    ) -> int:
        cabinet = self._registry.cabinets.get(alarm.cabinet_id)
        if cabinet is None:
            log.warning("alerting: alarm %d is about an unknown cabinet", alarm.alarm_id)
            return 0
        silence = silenced(
            silences,
            cabinet.cabinet_id,
            cabinet.region_code,
            alarm.type,
            alarm.severity,
            now,
        )
        if silence is not None:
            log.info(
                "alerting: page %s silenced by silence %d (%s)",
                page.key,
                silence.silence_id,
                silence.reason,
            )
            return 0
        people = self._registry.people_in_role(cabinet.cabinet_id, page.role)
        if not people:
            log.warning(
                "alerting: cabinet %s has no %s to page for alarm %d",
                cabinet.cabinet_id,
                page.role,
                alarm.alarm_id,
            )
            return 0
        recorded = 0
        for person in people:
            recorded += self._record_notice(
                page.key, person, page.kind, [alarm.alarm_id], alarm.severity, now
            )
        return recorded

    def _record_notice(
        self,
        key: str,
        person: Person,
        kind: NoticeKind,
        alarm_ids: Sequence[int],
        severity: Severity,
        now: datetime,
    ) -> int:
        quiet = self.settings.quiet.quiet_hours_for(person.person_id)
        notification_id = self._alarms.record_notice(
            key,
            person.person_id,
            kind,
            alarm_ids,
            [channel.value for channel in self.settings.notify.channel_order],
            now,
            release_time(now, severity, quiet, now),
        )
        return 0 if notification_id is None else 1

    def _tell_resolved(self, alarm: Alarm, now: datetime) -> None:
        """Everyone who was paged or reminded about the alarm hears that it is over.

        A digest only listed the alarm among others: its reader needs no news of each.
        """
        told = {
            notification.person_id
            for notification in self._alarms.notifications(alarm.alarm_id)
            if notification.kind in (NoticeKind.PAGE, NoticeKind.REMINDER)
            and notification.state is NotificationState.DELIVERED
        }
        for person_id in sorted(told):
            person = self._registry.people.get(person_id)
            if person is not None:
                self._record_notice(
                    f"{alarm.alarm_id}:resolved",
                    person,
                    NoticeKind.RESOLVED,
                    [alarm.alarm_id],
                    alarm.severity,
                    now,
                )

    def record_digests(self, now: datetime) -> int:
        """Each captain's daily digest of info-level alarms, once their digest time came."""
        recorded = 0
        by_captain: dict[str, list[Alarm]] = {}
        for alarm in self._alarms.alarms(state=AlarmState.RAISED, limit=100_000):
            if alarm.severity is not Severity.INFO:
                continue
            for person in self._registry.people_in_role(alarm.cabinet_id, Role.CAPTAIN):
                by_captain.setdefault(person.person_id, []).append(alarm)
        quiet = self.settings.quiet
        for person_id, alarms in by_captain.items():
            # The digest of a day is due at the digest time after the day's start.
            last_due = quiet.next_digest_for(person_id, now - timedelta(days=1))
            if last_due > now:
                continue
            # It lists what was raised by then; an alarm raised later waits for the next
            # morning, or a captain would get a digest whenever a first notice came up.
            listed = [alarm.alarm_id for alarm in alarms if alarm.raised_at <= last_due]
            if not listed:
                continue
            recorded += self._record_notice(
                f"digest:{last_due.date().isoformat()}",
                self._registry.people[person_id],
                NoticeKind.DIGEST,
                listed,
                Severity.INFO,
                now,
            )
        return recorded

    # -- 4. messages out -----------------------------------------------------------------

    def due_messages(self, now: datetime, limit: int = 200) -> list[OutgoingMessage]:
        """The notifications to send now, grouped into messages."""
        pending = self._alarms.pending_notices(now, limit)
        if not pending:
            return []
        by_id = {notification.notification_id: notification for notification in pending}
        alarms: dict[int, Alarm] = {}
        for notification in pending:
            for alarm_id in notification.alarm_ids:
                if alarm_id not in alarms and (alarm := self._alarms.alarm(alarm_id)):
                    alarms[alarm_id] = alarm
        messages = []
        for batch in batches(pending, alarms, self.settings.quiet.grouping, now):
            notifications = [by_id[i] for i in batch.notification_ids]
            message = self._message(batch.person_id, notifications, alarms, now)
            if message is not None:
                messages.append(message)
        return messages

    def _message(
        self,
        person_id: str,
        notifications: Sequence[Notification],
        alarms: Mapping[int, Alarm],
        now: datetime,
    ) -> OutgoingMessage | None:
        person = self._registry.people.get(person_id)
        if person is None:
            for notification in notifications:
                self._alarms.mark_failed(
                    notification.notification_id, now, f"{person_id} left the registry"
                )
            return None
        zones = self.time_zones(
            {alarms[i].cabinet_id for n in notifications for i in n.alarm_ids if i in alarms}
        )
        # Only a page names who was paged before; other messages need no history read.
        history = (
            self._alarms.notifications(lead_alarm(notifications, alarms).alarm_id)
            if notice_kind(notifications) is NoticeKind.PAGE
            else ()
        )
        return compose(
            person,
            notifications,
            alarms,
            self._registry,
            zones,
            self._signer,
            history,
            now,
        )

    def delivered(self, message: OutgoingMessage, report: DeliveryReport, now: datetime) -> None:
        """Record what the notifiers did with ``message``: every attempt, then the outcome."""
        channel = report.channel.value if report.channel is not None else None
        for notification_id in message.notification_ids:
            for attempt in report.attempts:
                self._alarms.record_attempt(
                    notification_id, attempt.channel.value, attempt.at, attempt.ok, attempt.error
                )
            if channel is not None:
                self._alarms.mark_delivered(notification_id, channel, now)
            else:
                self._alarms.mark_failed(notification_id, now, report.error or "undelivered")
        notice = message.notice
        for brief in notice.alarms:
            self._lines.append(
                notification_line(
                    self._tags[brief.cabinet.cabinet_id],
                    alarm=brief.alarm,
                    kind=notice.kind,
                    role=notice.role,
                    channel=channel or "none",
                    delivered=channel is not None,
                    attempts=len(report.attempts),
                    person_id=notice.recipient.person_id,
                    at=now,
                )
            )

    # -- InfluxDB points -----------------------------------------------------------------

    def _point(self, alarm: Alarm, step: str, at: datetime) -> None:
        tags = self._tags.get(alarm.cabinet_id)
        if tags is not None:
            self._lines.append(alarm_line(tags, alarm, step, at))

    def take_lines(self) -> list[str]:
        """The InfluxDB lines made since the last call (the service writes them)."""
        lines, self._lines = self._lines, []
        return lines
