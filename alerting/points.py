"""Alarm, readiness and notification data points for InfluxDB (pure line protocol).

Dashboards show readiness over time and how fast captains respond, so alerting writes
four measurements beside the ingest's telemetry (schema in ``docs/influx-schema.md``):

- ``alarm``: one point per lifecycle step (raised, severity changed, acknowledged,
  resolved) at the moment it happened; ``response_s`` (raise → acknowledgement) and
  ``duration_s`` (raise → resolution) are fields so a dashboard can average them.
- ``readiness``: one point per cabinet per evaluation that changed its readiness, plus a
  periodic snapshot, with ``ready`` as 0/1 so ``mean(ready)`` is the ready fraction, the
  one-word ``state`` and the cabinet's position for maps.
- ``district_readiness``: one point per district per snapshot (:mod:`alerting.districts`),
  tagged with the district's ``region`` code.
- ``notification``: one point per delivery outcome, with the channel and the latency
  from the alarm's raise to the delivery.

Tags are the cabinet's four registry tags (:class:`aedfleet.influx.lines.CabinetTags`) plus
small enumerations (alarm type, severity, channel, kind, role, outcome): all of bounded
cardinality. Alarm ids and person ids are fields, never tags.
"""

from __future__ import annotations

from datetime import datetime

from aedfleet.influx.lines import CabinetTags, escape_string_field, tag_value, timestamp_ns
from aedfleet.registry import Cabinet, Role
from alerting.districts import DistrictReadiness
from alerting.model import Alarm, NoticeKind
from alerting.readiness import Readiness


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


def readiness_line(tags: CabinetTags, cabinet: Cabinet, state: Readiness, at: datetime) -> str:
    """The ``readiness`` point of one cabinet at ``at``."""
    listed = ",".join(reason.value for reason in state.reasons)
    return (
        f"readiness{tags.section} ready={int(state.ready)}i,"
        f"reasons={escape_string_field(listed)},state={escape_string_field(state.state.value)},"
        f"latitude={float(cabinet.latitude)!r},longitude={float(cabinet.longitude)!r} "
        f"{timestamp_ns(at)}"
    )


def district_readiness_line(district: DistrictReadiness, at: datetime) -> str:
    """The ``district_readiness`` point of one district at ``at`` (``readiness_pct`` left
    out while the district has no cabinets: there is no fraction to plot)."""
    fields = [
        f"name={escape_string_field(district.name)}",
        f"cabinets={district.cabinets}i",
        f"ready={district.ready}i",
    ]
    if district.readiness_pct is not None:
        fields.append(f"readiness_pct={float(district.readiness_pct)!r}")
    fields += [
        f"open_alarms={district.open_alarms}i",
        f"population={district.population}i",
        f"aeds_per_100k={float(district.aeds_per_100k)!r}",
        f"target_per_100k={float(district.target_per_100k)!r}",
    ]
    return (
        f"district_readiness,region={tag_value(district.region_code)} "
        f"{','.join(fields)} {timestamp_ns(at)}"
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
