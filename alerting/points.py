"""Alarm, readiness and notification data points for InfluxDB (pure line protocol).

Dashboards show readiness over time and how fast captains respond, so alerting writes
three measurements beside the ingest's telemetry (schema in ``docs/influx-schema.md``):

- ``alarm``: one point per lifecycle step (raised, severity changed, acknowledged,
  resolved) at the moment it happened; ``response_s`` (raise → acknowledgement) and
  ``duration_s`` (raise → resolution) are fields so a dashboard can average them.
- ``readiness``: one point per cabinet per evaluation that changed its readiness, plus a
  periodic snapshot, with ``ready`` as 0/1 so ``mean(ready)`` is the ready fraction.
- ``notification``: one point per delivery outcome, with the channel and the latency
  from the alarm's raise to the delivery.

Tags are the cabinet's four registry tags (:class:`aedfleet.influx.lines.CabinetTags`) plus
small enumerations (alarm type, severity, channel, kind, role, outcome): all of bounded
cardinality. Alarm ids and person ids are fields, never tags.
"""

from __future__ import annotations

from datetime import datetime

from aedfleet.influx.lines import CabinetTags, escape_string_field, timestamp_ns
from aedfleet.registry import Role
from alerting.model import Alarm, AlarmType, NoticeKind


def alarm_line(tags: CabinetTags, alarm: Alarm, step: str, at: datetime) -> str:
    """The ``alarm`` point for one lifecycle ``step`` of ``alarm`` at ``at``."""
    fields = [
        f"alarm_id={alarm.alarm_id}i",
        f"state={escape_string_field(alarm.state.value)}",
        f"step={escape_string_field(step)}",
        f"detail={escape_string_field(_detail_json(alarm))}",
    ]
    if alarm.acknowledged_at is not None:
        response = (alarm.acknowledged_at - alarm.raised_at).total_seconds()
        fields.append(f"response_s={response!r}")
    if alarm.resolved_at is not None:
        duration = (alarm.resolved_at - alarm.raised_at).total_seconds()
        fields.append(f"duration_s={duration!r}")
    return (
        f"alarm{tags.section},severity={alarm.severity.value},type={alarm.type.value} "
        f"{','.join(fields)} {timestamp_ns(at)}"
    )


def readiness_line(
    tags: CabinetTags, ready: bool, reasons: tuple[AlarmType, ...], at: datetime
) -> str:
    """The ``readiness`` point of one cabinet at ``at``."""
    listed = ",".join(reason.value for reason in reasons)
    return (
        f"readiness{tags.section} ready={int(ready)}i,"
        f"reasons={escape_string_field(listed)} {timestamp_ns(at)}"
    )


def notification_line(
    tags: CabinetTags,
    *,
    alarm: Alarm,
    kind: NoticeKind,
    role: Role,
    channel: str,
    delivered: bool,
    attempts: int,
    person_id: str,
    at: datetime,
) -> str:
    """The ``notification`` point for one delivery outcome (delivered or given up)."""
    latency = (at - alarm.raised_at).total_seconds()
    outcome = "delivered" if delivered else "failed"
    return (
        f"notification{tags.section},channel={channel},kind={kind.value},"
        f"outcome={outcome},role={role.value},type={alarm.type.value} "
        f"alarm_id={alarm.alarm_id}i,attempts={attempts}i,latency_s={latency!r},"
        f"person_id={escape_string_field(person_id)} {timestamp_ns(at)}"
    )


def _detail_json(alarm: Alarm) -> str:
    """The detail's facts, language-free as the store keeps them (empty: no detail)."""
    return "" if alarm.detail is None else alarm.detail.model_dump_json(exclude_defaults=True)
