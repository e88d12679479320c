"""Dispatch formats (pure): the JSON event with its schema, CAP 1.2 complete and valid."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aedfleet.contract import (
    DispatchEvent,
    DispatchKind,
    Event,
    EventType,
    SelftestKind,
    SelftestResult,
    cabinet_id_problem,
    dispatch_event_id,
    json_schemas,
)
from aedfleet.registry import Assignment, Person, Registry, Role
from aedfleet.twin import Twin
from aedfleet_testing.dispatch_support import CAP_TIME, cabinet, captain, registry, schema_problems
from dispatch.config import CapSettings
from dispatch.enrichment import (
    Particulars,
    RegistryCache,
    build_event,
    contact_of,
    particulars_by_cabinet,
    readiness,
)
from dispatch.formats import (
    CAP_NAMESPACE,
    cap_identifier,
    cap_time,
    decode_json,
    encode_json,
    render,
    to_cap,
)
from dispatch.incident import CoalescingPolicy, Notice, observe

SCHEMA_FILE = Path(__file__).resolve().parent.parent / "docs" / "schemas" / "dispatch.schema.json"
T0 = datetime(2025, 6, 1, 8, 0, 0, 123456, tzinfo=UTC)
BOOT = "b" * 32
NS = {"cap": CAP_NAMESPACE}


def twin(cabinet_id: str = "SZ-1") -> Twin:
    return Twin(
        cabinet_id=cabinet_id,
        online=True,
        aed_ready=True,
        battery_pct=88.0,
        aed_model="Philips HeartStart HS1",
        selftest_kind=SelftestKind.DAILY,
        selftest_result=SelftestResult.PASS,
        selftest_fault_codes=(),
        selftest_ts=T0 - timedelta(hours=5),
        pads_present=True,
        pads_expiry=date(2025, 5, 1),
        battery_expiry=None,
        last_seen=T0 - timedelta(seconds=30),
    )


def notices(cabinet_id: str = "SZ-1") -> list[Notice]:
    """An alert (door opened), an urgent update (AED taken), a held update (returned)."""
    policy = CoalescingPolicy(min_update_interval_s=15)
    state = None
    produced: list[Notice] = []
    for seq, kind, offset in (
        (1, EventType.DOOR_OPENED, 0),
        (2, EventType.AED_REMOVED, 4),
        (3, EventType.AED_RETURNED, 8),
        (4, EventType.DOOR_CLOSED, 30),
    ):
        message = Event(
            v=1,
            cabinet_id=cabinet_id,
            boot_id=BOOT,
            seq=seq,
            ts=T0 + timedelta(seconds=offset),
            event=kind,
        )
        step = observe(state, message, T0 + timedelta(seconds=offset + 0.5), policy)
        state = step.state
        produced.extend(step.notices)
    return produced


def particulars(cabinet_id: str = "SZ-1") -> Particulars:
    return particulars_by_cabinet(registry([cabinet_id]))[cabinet_id]


def full_event() -> DispatchEvent:
    return build_event(notices()[0], particulars(), twin())


# -- enrichment ---------------------------------------------------------------------------------


def test_the_event_carries_everything_the_issue_lists() -> None:
    event = full_event()
    expected_cabinet = cabinet("SZ-1", 0)
    assert event.event_id == dispatch_event_id("SZ-1", BOOT, 1)
    assert event.cabinet_id == "SZ-1"
    assert event.event_type is EventType.DOOR_OPENED
    assert event.device_ts == T0
    assert event.kind is DispatchKind.ALERT
    assert event.registered
    assert event.location.latitude == expected_cabinet.latitude
    assert event.location.longitude == expected_cabinet.longitude
    assert event.location.address == expected_cabinet.address
    assert event.location.floor == "1F"
    assert event.location.indoor_description == expected_cabinet.indoor_description
    assert event.location.site_name == expected_cabinet.name
    assert event.access.mode == "pin"
    assert event.access.availability_hours == "Mo-Su 06:00-23:00"
    assert event.aed_model == "Mindray BeneHeart C1A"
    assert event.readiness.last_selftest_result is SelftestResult.PASS
    assert event.readiness.last_selftest_at == T0 - timedelta(hours=5)
    assert event.readiness.pads_present is True
    assert event.readiness.pads_expiry == date(2025, 5, 1)
    assert event.readiness.pads_expired is True
    # The twin does not know the battery's expiry; the registry's stands in.
    assert event.readiness.battery_expiry == date(2031, 6, 30)
    assert event.readiness.battery_expired is False
    assert event.readiness.online is True
    assert event.captain is not None
    assert event.captain.name == captain(0).name
    assert event.captain.phone == captain(0).phone
    assert event.captain.role == "captain"
    assert event.idempotency_key.boot_id == BOOT
    assert event.idempotency_key.seq == 1


def test_an_unregistered_cabinet_is_sent_with_what_is_known() -> None:
    event = build_event(notices("ghost-7")[0], None, twin("ghost-7"))
    assert not event.registered
    assert event.location.latitude is None
    assert event.captain is None
    assert event.aed_model == "Philips HeartStart HS1"
    assert event.readiness.online is True
    bare = build_event(notices("ghost-8")[0], None, None)
    assert bare.readiness.online is None
    assert bare.readiness.pads_expired is None


def test_updates_refer_to_the_alert_and_the_previous_message() -> None:
    alert, removed, closed = notices()
    event = build_event(closed, particulars(), twin())
    assert event.kind is DispatchKind.UPDATE
    assert event.update_number == 2
    assert event.incident_id == alert.incident_id
    assert [r.event_id for r in event.references] == [alert.message_id, removed.message_id]
    assert [e.type for e in event.events] == [EventType.AED_RETURNED, EventType.DOOR_CLOSED]
    assert event.event_type is EventType.DOOR_CLOSED
    assert event.event_id == dispatch_event_id("SZ-1", BOOT, 4)
    assert not event.incident_active


def test_the_contact_is_the_captain_else_a_backup() -> None:
    people = [captain(1), captain(2)]
    backup = Assignment(cabinet_id="SZ-1", person_id="captain-2", role=Role.BACKUP, rank=1)
    lead = Assignment(cabinet_id="SZ-1", person_id="captain-1", role=Role.CAPTAIN)
    contact = contact_of([(backup, people[1]), (lead, people[0])])
    assert contact is not None
    assert contact.role == "captain"
    assert contact.name == people[0].name
    only_backup = contact_of([(backup, people[1])])
    assert only_backup is not None
    assert only_backup.role == "backup"
    assert contact_of([]) is None


def test_the_registry_cache_serves_registered_cabinets() -> None:
    cache = RegistryCache()
    cache.replace(registry(["SZ-1", "SZ-2"]))
    assert len(cache) == 2
    found = cache.get("SZ-2")
    assert found is not None
    assert found.contact is not None
    assert cache.get("SZ-3") is None
    cache.add(Particulars(cabinet=cabinet("SZ-3", 3)))
    assert cache.get("SZ-3") is not None
    cache.replace(Registry(people=(Person(person_id="x", name="x"),)))
    assert cache.get("SZ-1") is None


def test_readiness_without_a_twin_uses_the_registry_dates() -> None:
    values = readiness(None, cabinet("SZ-1"), date(2030, 2, 1))
    assert values.pads_expired is True
    assert values.battery_expired is False
    assert values.last_selftest_result is None


# -- JSON -----------------------------------------------------------------------------------------


def test_json_round_trips() -> None:
    event = build_event(notices()[2], particulars(), twin())
    body, content_type = render(event, "json", CapSettings())
    assert content_type == "application/json"
    assert body == encode_json(event)
    assert decode_json(body) == event
    document = json.loads(body)
    assert document["v"] == 1
    assert document["device_ts"].endswith("Z")


def test_the_exported_json_schema_is_the_contract() -> None:
    exported = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    assert exported == json_schemas()["dispatch"], (
        "docs/schemas/dispatch.schema.json is out of date: run `aedfleet contract export-schemas`"
    )
    assert exported["title"] == "DispatchEvent"
    for name in ("event_id", "cabinet_id", "event_type", "device_ts", "location", "readiness"):
        assert name in exported["properties"]


# -- CAP 1.2 ---------------------------------------------------------------------------------------


def cap_of(event: DispatchEvent, **changes: object) -> ET.Element:
    body, content_type = render(event, "cap", CapSettings().model_copy(update=changes))
    assert content_type == "application/xml"
    assert body.startswith(b"<?xml version='1.0' encoding='utf-8'?>")
    return ET.fromstring(body)  # noqa: S314 - our own output


def text(alert: ET.Element, path: str) -> str:
    found = alert.find(path, NS)
    assert found is not None, f"no {path}"
    assert found.text is not None
    return found.text


def parameters(alert: ET.Element) -> dict[str, str]:
    return {
        text(parameter, "cap:valueName"): text(parameter, "cap:value")
        for parameter in alert.findall("cap:info/cap:parameter", NS)
    }


def test_cap_has_every_required_element_in_schema_order() -> None:
    alert = cap_of(full_event())
    assert alert.tag == f"{{{CAP_NAMESPACE}}}alert"
    assert schema_problems(alert) == []
    for required in ("identifier", "sender", "sent", "status", "msgType", "scope"):
        assert alert.find(f"cap:{required}", NS) is not None
    for required in ("category", "event", "urgency", "severity", "certainty"):
        assert alert.find(f"cap:info/cap:{required}", NS) is not None
    assert text(alert, "cap:info/cap:category") == "Health"
    assert text(alert, "cap:msgType") == "Alert"
    assert text(alert, "cap:status") == "Actual"
    assert text(alert, "cap:scope") == "Restricted"
    assert text(alert, "cap:restriction")
    assert re.match(CAP_TIME, text(alert, "cap:sent"))
    assert text(alert, "cap:sent") == "2025-06-01T08:00:00+00:00"
    assert alert.find("cap:references", NS) is None
    assert text(alert, "cap:info/cap:urgency") == "Immediate"
    assert text(alert, "cap:info/cap:severity") == "Severe"
    assert text(alert, "cap:info/cap:certainty") == "Possible"
    assert text(alert, "cap:info/cap:onset") == cap_time(T0)


def test_cap_area_is_a_circle_around_the_cabinet() -> None:
    event = full_event()
    alert = cap_of(event, radius_km=0.2)
    circle = text(alert, "cap:info/cap:area/cap:circle")
    match = re.fullmatch(r"(-?\d+\.\d+),(-?\d+\.\d+) (\d+(\.\d+)?)", circle)
    assert match is not None, circle
    assert float(match.group(1)) == pytest.approx(event.location.latitude)
    assert float(match.group(2)) == pytest.approx(event.location.longitude)
    assert float(match.group(3)) == 0.2
    area = text(alert, "cap:info/cap:area/cap:areaDesc")
    assert event.location.address is not None
    assert event.location.address in area
    assert "1F" in area


def test_cap_carries_the_dispatch_fields_as_parameters_and_text() -> None:
    event = full_event()
    alert = cap_of(event)
    values = parameters(alert)
    assert values["aedfleet:cabinetId"] == "SZ-1"
    assert values["aedfleet:eventType"] == "door_opened"
    assert values["aedfleet:accessMode"] == "pin"
    assert values["aedfleet:availabilityHours"] == "Mo-Su 06:00-23:00"
    assert values["aedfleet:aedModel"] == "Mindray BeneHeart C1A"
    assert values["aedfleet:selftestResult"] == "pass"
    assert values["aedfleet:padsExpiry"] == "2025-05-01"
    assert values["aedfleet:online"] == "true"
    assert values["aedfleet:registered"] == "true"
    assert event.captain is not None
    contact = text(alert, "cap:info/cap:contact")
    assert event.captain.phone in contact
    assert event.captain.name in contact
    description = text(alert, "cap:info/cap:description")
    assert "EXPIRED 2025-05-01" in description
    assert "PASS" in description
    assert event.location.site_name is not None
    assert event.location.site_name in text(alert, "cap:info/cap:headline")


def test_cap_updates_reference_earlier_messages() -> None:
    alert_notice, removed, closed = notices()
    sender = "aedfleet@120.example.cn"
    update = cap_of(build_event(closed, particulars(), twin()), sender=sender)
    assert schema_problems(update) == []
    assert text(update, "cap:msgType") == "Update"
    references = text(update, "cap:references").split()
    assert references == [
        f"{sender},{cap_identifier(alert_notice.message_id)},{cap_time(alert_notice.created_at)}",
        f"{sender},{cap_identifier(removed.message_id)},{cap_time(removed.created_at)}",
    ]
    first = cap_of(build_event(alert_notice, particulars(), twin()), sender=sender)
    assert references[0].split(",")[1] == text(first, "cap:identifier")
    assert references[0].split(",")[2] == text(first, "cap:sent")
    assert text(update, "cap:incidents") == text(first, "cap:incidents")
    assert text(update, "cap:info/cap:urgency") == "Past"
    assert text(update, "cap:info/cap:responseType") == "AllClear"
    taken = cap_of(build_event(removed, particulars(), twin()))
    assert text(taken, "cap:info/cap:certainty") == "Likely"


def test_cap_for_an_unregistered_cabinet_says_so_and_has_no_circle() -> None:
    alert = cap_of(build_event(notices("ghost-1")[0], None, None))
    assert schema_problems(alert) == []
    assert "ghost-1" in text(alert, "cap:note")
    assert alert.find("cap:info/cap:area/cap:circle", NS) is None
    assert "ghost-1" in text(alert, "cap:info/cap:area/cap:areaDesc")


def test_cap_in_chinese_and_private_scope() -> None:
    alert = cap_of(full_event(), language="zh-CN", scope="Private", addresses="120-shenzhen")
    assert schema_problems(alert) == []
    assert text(alert, "cap:info/cap:language") == "zh-CN"
    assert text(alert, "cap:addresses") == "120-shenzhen"
    assert "柜门" in text(alert, "cap:info/cap:event")


def test_cap_rendering_is_deterministic() -> None:
    event = full_event()
    assert to_cap(event, CapSettings()) == to_cap(event, CapSettings())


def test_private_scope_needs_addresses() -> None:
    with pytest.raises(ValueError, match="addresses"):
        CapSettings(scope="Private")


cabinet_ids = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=64).filter(
    lambda value: cabinet_id_problem(value) is None
)


@settings(max_examples=150, deadline=None)
@given(cabinet_ids, st.integers(min_value=1, max_value=2**53))
def test_cap_identifiers_are_valid_for_any_cabinet_id(cabinet_id: str, seq: int) -> None:
    event = build_event(notices(cabinet_id)[0], None, None)
    event = event.model_copy(update={"event_id": dispatch_event_id(cabinet_id, BOOT, seq)})
    alert = cap_of(event)
    assert schema_problems(alert) == []
    for path in ("cap:identifier", "cap:incidents"):
        value = text(alert, path)
        assert not re.search(r"[\s,<&]", value), value
    assert event.cabinet_id in text(alert, "cap:info/cap:area/cap:areaDesc")
