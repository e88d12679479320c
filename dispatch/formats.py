"""Wire formats of a dispatch event (pure): JSON, the default, and OASIS CAP 1.2 XML.

JSON is the :class:`~aedfleet.contract.DispatchEvent` itself, whose schema is exported
to ``docs/schemas/dispatch.schema.json``. CAP 1.2 (``urn:oasis:names:tc:emergency:cap:1.2``)
is built with :mod:`xml.etree.ElementTree`, elements in the order the CAP 1.2 schema
requires:

- ``alert``: identifier, sender, sent, status, msgType (``Alert`` for the first message
  of an incident, ``Update`` with ``references`` to the alert and the previous message
  afterwards), source, scope (with restriction or addresses), note for an unregistered
  cabinet, references, incidents, info;
- ``info``: language, category ``Health``, event, responseType, urgency, severity,
  certainty, audience, eventCode, onset (when the incident began), senderName,
  headline, description, instruction, contact (the captain), parameters (every field
  a machine needs, named ``aedfleet:…``), area;
- ``area``: areaDesc and ``circle`` "lat,lon radius_km" around the cabinet (no circle
  when the registry has no position for it).

CAP forbids spaces, commas, ``<`` and ``&`` in identifiers, so event ids are
percent-encoded; its times are seconds with a numeric offset (never ``Z``). The same
message always renders to the same bytes, so every retry sends the same document.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from typing import Final, Literal
from urllib.parse import quote

from aedfleet.contract import DispatchEvent, DispatchKind, EventType, SelftestResult
from dispatch.config import CapSettings

CAP_NAMESPACE: Final = "urn:oasis:names:tc:emergency:cap:1.2"
JSON_CONTENT_TYPE: Final = "application/json"
CAP_CONTENT_TYPE: Final = "application/xml"
Format = Literal["json", "cap"]

ET.register_namespace("", CAP_NAMESPACE)


def encode_json(event: DispatchEvent) -> bytes:
    return event.model_dump_json().encode()


def decode_json(body: bytes) -> DispatchEvent:
    """The event of a JSON body (for receivers and tools); raises pydantic's ValueError."""
    return DispatchEvent.model_validate_json(body)


def render(event: DispatchEvent, format_: Format, cap: CapSettings) -> tuple[bytes, str]:
    """The body and its content type for an endpoint of ``format_``."""
    if format_ == "cap":
        return to_cap(event, cap), CAP_CONTENT_TYPE
    return encode_json(event), JSON_CONTENT_TYPE


def cap_time(moment: datetime) -> str:
    """CAP's dateTime: whole seconds and a numeric offset ("Z" is not allowed)."""
    return moment.astimezone(UTC).replace(microsecond=0).isoformat()


def cap_identifier(event_id: str) -> str:
    """An event id as a CAP identifier: no spaces, commas, '<' or '&' survive."""
    return "aedfleet-" + quote(event_id, safe="")


_PHRASES: Final[dict[str, dict[str, str]]] = {
    "en-US": {
        "event_removed": "AED taken from its cabinet",
        "event_opened": "AED cabinet opened",
        "event_closed": "AED cabinet closed, AED in place",
        "headline_removed": "AED taken: {site}",
        "headline_opened": "AED cabinet opened: {site}",
        "headline_closed": "AED cabinet closed again: {site}",
        "audience": "Emergency medical dispatch",
        "unregistered_site": "unregistered cabinet {cabinet}",
        "unregistered_note": "Cabinet {cabinet} is not in the fleet registry: location unknown.",
        "instruction_active": (
            "Someone nearby may be using this AED on a patient. Consider sending the first "
            "responder to the cabinet and telling the caller where it is."
        ),
        "instruction_closed": "The cabinet is closed again with its AED inside.",
        "site": "Site",
        "address": "Address",
        "floor": "Floor",
        "indoor": "Where inside",
        "access": "Access",
        "hours": "Available",
        "model": "AED model",
        "selftest": "Last self-test",
        "pads": "Pads",
        "battery": "Battery",
        "online": "Cabinet online",
        "events": "Events",
        "omitted": "and {count} more events",
        "yes": "yes",
        "no": "no",
        "unknown": "unknown",
        "expires": "expires {date}",
        "expired": "EXPIRED {date}",
        "missing": "missing",
        "access_open": "open to anyone",
        "access_pin": "PIN code",
        "access_qr": "QR code scan",
        "area_position_unknown": "position unknown",
    },
    "zh-CN": {
        "event_removed": "AED 已被取出",
        "event_opened": "AED 柜门打开",
        "event_closed": "AED 柜门已关闭, AED 在位",
        "headline_removed": "AED 已被取出: {site}",
        "headline_opened": "AED 柜门打开: {site}",
        "headline_closed": "AED 柜门已关闭: {site}",
        "audience": "院前急救调度",
        "unregistered_site": "未登记的机柜 {cabinet}",
        "unregistered_note": "机柜 {cabinet} 不在设备登记中: 位置未知。",
        "instruction_active": (
            "附近可能有人正在使用此 AED 施救。请考虑派遣第一响应人前往, 并告知呼救者位置。"
        ),
        "instruction_closed": "机柜已关闭, AED 在柜内。",
        "site": "地点",
        "address": "地址",
        "floor": "楼层",
        "indoor": "室内位置",
        "access": "开启方式",
        "hours": "开放时间",
        "model": "AED 型号",
        "selftest": "最近自检",
        "pads": "电极片",
        "battery": "电池",
        "online": "机柜在线",
        "events": "事件",
        "omitted": "另有 {count} 个事件",
        "yes": "是",
        "no": "否",
        "unknown": "未知",
        "expires": "有效期至 {date}",
        "expired": "已过期 {date}",
        "missing": "缺失",
        "access_open": "直接开启",
        "access_pin": "密码开启",
        "access_qr": "扫码开启",
        "area_position_unknown": "位置未知",
    },
}


class _Cap:
    """Builds one CAP alert; holds the phrase table of the endpoint's language."""

    def __init__(self, event: DispatchEvent, settings: CapSettings) -> None:
        self.event = event
        self.settings = settings
        self.words = _PHRASES[settings.language]

    def say(self, key: str, **values: object) -> str:
        return self.words[key].format(**values)

    def site(self) -> str:
        event = self.event
        return event.location.site_name or self.say("unregistered_site", cabinet=event.cabinet_id)

    def state(self) -> Literal["removed", "opened", "closed"]:
        if self.event.aed_removed:
            return "removed"
        return "opened" if self.event.incident_active else "closed"

    def yes_no(self, value: bool | None) -> str:
        if value is None:
            return self.say("unknown")
        return self.say("yes" if value else "no")

    def expiry(self, present: bool | None, expiry: object, expired: bool | None) -> str:
        if present is False:
            return self.say("missing")
        if expiry is None:
            return self.say("unknown")
        return self.say("expired" if expired else "expires", date=expiry)

    def selftest(self) -> str:
        readiness = self.event.readiness
        if readiness.last_selftest_result is None:
            return self.say("unknown")
        at = cap_time(readiness.last_selftest_at) if readiness.last_selftest_at else ""
        codes = " ".join(readiness.last_selftest_fault_codes)
        verdict = "PASS" if readiness.last_selftest_result is SelftestResult.PASS else "FAIL"
        return " ".join(part for part in (verdict, at, codes) if part)

    def access(self) -> str:
        mode = self.event.access.mode
        return self.say(f"access_{mode}") if mode else self.say("unknown")

    def description(self) -> str:
        event = self.event
        location = event.location
        readiness = event.readiness
        lines = [
            f"{self.say('site')}: {self.site()}",
            f"{self.say('address')}: {location.address or self.say('unknown')}",
            f"{self.say('floor')}: {location.floor or self.say('unknown')}",
            f"{self.say('indoor')}: {location.indoor_description or self.say('unknown')}",
            f"{self.say('access')}: {self.access()}",
            f"{self.say('hours')}: {event.access.availability_hours or self.say('unknown')}",
            f"{self.say('model')}: {event.aed_model or self.say('unknown')}",
            f"{self.say('selftest')}: {self.selftest()}",
            f"{self.say('pads')}: "
            + self.expiry(readiness.pads_present, readiness.pads_expiry, readiness.pads_expired),
            f"{self.say('battery')}: "
            + self.expiry(None, readiness.battery_expiry, readiness.battery_expired),
            f"{self.say('online')}: {self.yes_no(readiness.online)}",
            f"{self.say('events')}: "
            + ", ".join(f"{e.type.value} {cap_time(e.device_ts)}" for e in event.events)
            + (
                f" ({self.say('omitted', count=event.omitted_events)})"
                if event.omitted_events
                else ""
            ),
        ]
        return "\n".join(lines)

    def parameters(self) -> list[tuple[str, str]]:
        event = self.event
        readiness = event.readiness
        values: list[tuple[str, object]] = [
            ("cabinetId", event.cabinet_id),
            ("registered", event.registered),
            ("incidentId", event.incident_id),
            ("updateNumber", event.update_number),
            ("eventId", event.event_id),
            ("eventType", event.event_type.value),
            ("deviceTime", cap_time(event.device_ts)),
            ("doorOpen", event.door_open),
            ("aedRemoved", event.aed_removed),
            ("accessMode", event.access.mode),
            ("availabilityHours", event.access.availability_hours),
            ("floor", event.location.floor),
            ("aedModel", event.aed_model),
            ("selftestResult", readiness.last_selftest_result),
            (
                "selftestTime",
                cap_time(readiness.last_selftest_at) if readiness.last_selftest_at else None,
            ),
            ("padsPresent", readiness.pads_present),
            ("padsExpiry", readiness.pads_expiry),
            ("batteryExpiry", readiness.battery_expiry),
            ("online", readiness.online),
            ("siteName", event.location.site_name),
        ]
        return [
            (f"aedfleet:{name}", _text(value)) for name, value in values if value not in (None, "")
        ]

    def build(self) -> ET.Element:
        event, settings = self.event, self.settings
        alert = ET.Element(_tag("alert"))
        _add(alert, "identifier", cap_identifier(event.event_id))
        _add(alert, "sender", settings.sender)
        _add(alert, "sent", cap_time(event.sent_at))
        _add(alert, "status", settings.status)
        _add(alert, "msgType", "Alert" if event.kind is DispatchKind.ALERT else "Update")
        _add(alert, "source", "aedfleet dispatch")
        _add(alert, "scope", settings.scope)
        if settings.scope == "Restricted":
            _add(alert, "restriction", settings.restriction)
        if settings.scope == "Private" and settings.addresses:
            _add(alert, "addresses", settings.addresses)
        if not event.registered:
            _add(alert, "note", self.say("unregistered_note", cabinet=event.cabinet_id))
        if event.references:
            _add(
                alert,
                "references",
                " ".join(
                    f"{settings.sender},{cap_identifier(ref.event_id)},{cap_time(ref.sent_at)}"
                    for ref in event.references
                ),
            )
        _add(alert, "incidents", cap_identifier(event.incident_id))
        self.info(alert)
        return alert

    def info(self, alert: ET.Element) -> None:
        event, settings = self.event, self.settings
        state = self.state()
        active = event.incident_active
        info = ET.SubElement(alert, _tag("info"))
        _add(info, "language", settings.language)
        _add(info, "category", "Health")
        _add(info, "event", self.say(f"event_{state}"))
        _add(info, "responseType", "Assess" if active else "AllClear")
        _add(info, "urgency", "Immediate" if active else "Past")
        _add(info, "severity", "Severe" if active else "Minor")
        certainty = {"removed": "Likely", "opened": "Possible", "closed": "Observed"}[state]
        _add(info, "certainty", certainty)
        _add(info, "audience", self.say("audience"))
        code = ET.SubElement(info, _tag("eventCode"))
        _add(code, "valueName", "aedfleet:eventType")
        _add(code, "value", event.event_type.value)
        _add(info, "onset", cap_time(event.incident_opened_at))
        _add(info, "senderName", settings.sender_name)
        _add(info, "headline", self.say(f"headline_{state}", site=self.site())[:160])
        _add(info, "description", self.description())
        _add(
            info, "instruction", self.say("instruction_active" if active else "instruction_closed")
        )
        if event.captain is not None:
            _add(
                info,
                "contact",
                f"{event.captain.name} ({event.captain.role}) {event.captain.phone}",
            )
        for name, value in self.parameters():
            parameter = ET.SubElement(info, _tag("parameter"))
            _add(parameter, "valueName", name)
            _add(parameter, "value", value)
        self.area(info)

    def area(self, info: ET.Element) -> None:
        location = self.event.location
        area = ET.SubElement(info, _tag("area"))
        parts = [self.site(), location.address, location.floor, location.indoor_description]
        if location.latitude is None or location.longitude is None:
            parts.append(self.say("area_position_unknown"))
        _add(area, "areaDesc", ", ".join(part for part in parts if part))
        if location.latitude is not None and location.longitude is not None:
            radius = self.settings.radius_km
            _add(area, "circle", f"{location.latitude:.6f},{location.longitude:.6f} {radius:g}")


def _tag(name: str) -> str:
    return f"{{{CAP_NAMESPACE}}}{name}"


def _add(parent: ET.Element, name: str, text: str) -> ET.Element:
    element = ET.SubElement(parent, _tag(name))
    element.text = text
    return element


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, EventType | SelftestResult):
        return value.value
    return str(value)


def to_cap(event: DispatchEvent, settings: CapSettings) -> bytes:
    """The event as a CAP 1.2 alert document (UTF-8, with an XML declaration)."""
    alert = _Cap(event, settings).build()
    document: bytes = ET.tostring(alert, encoding="utf-8", xml_declaration=True)
    return document
