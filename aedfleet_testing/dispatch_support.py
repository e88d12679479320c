"""Shared set-up for dispatch tests: a registry with captains, a real HTTP receiver that
verifies what it is sent, and the CAP 1.2 schema's element order."""

from __future__ import annotations

import asyncio
import json
import ssl
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

from aiohttp import web

from aedfleet.contract import DispatchEvent
from aedfleet.db.state import StateStore
from aedfleet.registry import (
    AccessMode,
    Assignment,
    Cabinet,
    Language,
    Person,
    Registry,
    Role,
    SiteType,
)
from aedfleet_testing.brokers import free_port
from dispatch.formats import CAP_NAMESPACE
from dispatch.signing import (
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    SignatureError,
    SignatureVerifier,
)

HMAC_SECRET: Final = "correct horse battery staple 120"  # noqa: S105 - test key
BEARER_TOKEN: Final = "t0ken-for-the-command-centre"  # noqa: S105 - test token


# -- registry ----------------------------------------------------------------------------------


def cabinet(cabinet_id: str, index: int = 0, **changes: object) -> Cabinet:
    values: dict[str, object] = {
        "cabinet_id": cabinet_id,
        "name": f"深圳湾公园 南门 {index}",
        "aed_model": "Mindray BeneHeart C1A",
        "aed_serial": f"SN-{index:04d}",
        "latitude": 22.5153 + index / 10_000,
        "longitude": 113.9421,
        "address": "广东省深圳市南山区滨海大道",
        "floor": "1F",
        "indoor_description": "服务中心入口左侧",
        "site_type": SiteType.SCENIC_SPOT,
        "region_code": "440305",
        "owner_unit": "深圳湾公园管理处",
        "access_mode": AccessMode.PIN,
        "availability_hours": "Mo-Su 06:00-23:00",
        "pads_expiry": date(2030, 1, 31),
        "battery_expiry": date(2031, 6, 30),
    }
    return Cabinet.model_validate(values | changes)


def captain(index: int) -> Person:
    return Person(
        person_id=f"captain-{index}",
        name=f"王小明 {index}",
        phone=f"+86 138 0000 {index:04d}",
        language=Language.ZH,
    )


def registry(cabinet_ids: Iterable[str]) -> Registry:
    ids = list(cabinet_ids)
    return Registry(
        cabinets=tuple(cabinet(cabinet_id, index) for index, cabinet_id in enumerate(ids)),
        people=tuple(captain(index) for index in range(len(ids))),
        assignments=tuple(
            Assignment(cabinet_id=cabinet_id, person_id=f"captain-{index}", role=Role.CAPTAIN)
            for index, cabinet_id in enumerate(ids)
        ),
    )


def seed(store_url: str, cabinet_ids: Iterable[str]) -> Registry:
    values = registry(cabinet_ids)
    with StateStore.open(store_url) as store:
        store.apply_registry(values)
    return values


# -- the receiver ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Arrival:
    path: str
    headers: dict[str, str]
    body: bytes = field(repr=False)
    at: float
    """time.monotonic() when it arrived."""

    @property
    def key(self) -> str:
        return self.headers[IDEMPOTENCY_HEADER]

    def event(self) -> DispatchEvent:
        return DispatchEvent.model_validate_json(self.body)

    def cap(self) -> ET.Element:
        return ET.fromstring(self.body)  # noqa: S314 - our own test output


# Given a request that passed authentication, the HTTP status to answer.
Responder = Callable[[Arrival], int]


def accept(_: Arrival) -> int:
    return 200


class DispatchReceiver:
    """A command centre's endpoint: checks the signature (or token), records what passes.

    ``arrivals`` holds what was accepted, ``refused`` what failed authentication. It can
    be stopped and started again on the same port (an outage).
    """

    def __init__(
        self,
        *,
        secret: str | None = HMAC_SECRET,
        token: str | None = None,
        tls: tuple[Path, Path] | None = None,
        responder: Responder = accept,
    ) -> None:
        self.port = free_port()
        self.verifier = SignatureVerifier([secret.encode()]) if secret else None
        self.token = token
        self.responder = responder
        self.arrivals: list[Arrival] = []
        self.refused: list[str] = []
        self.gate: asyncio.Event | None = None
        """When set to an event, requests wait for it before being answered."""
        self._tls = tls
        self._runner: web.AppRunner | None = None

    @property
    def scheme(self) -> str:
        return "https" if self._tls else "http"

    def url(self, path: str = "/dispatch") -> str:
        host = "localhost" if self._tls else "127.0.0.1"
        return f"{self.scheme}://{host}:{self.port}{path}"

    def on(self, path: str) -> list[Arrival]:
        return [arrival for arrival in self.arrivals if arrival.path == path]

    def keys(self, path: str = "/dispatch") -> list[str]:
        return [arrival.key for arrival in self.on(path)]

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("POST", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        context = None
        if self._tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(str(self._tls[0]), str(self._tls[1]))
        await web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=context).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.gate is not None:
            await self.gate.wait()
        headers = dict(request.headers)
        if self.token is not None and headers.get("Authorization") != f"Bearer {self.token}":
            self.refused.append("bearer")
            return web.Response(status=401)
        if self.verifier is not None:
            try:
                self.verifier.verify(
                    headers.get(TIMESTAMP_HEADER),
                    headers.get(SIGNATURE_HEADER),
                    body,
                    datetime.now(UTC),
                )
            except SignatureError as exc:
                self.refused.append(exc.reason.value)
                return web.Response(status=401, text=str(exc))
        arrival = Arrival(request.path, headers, body, time.monotonic())
        status = self.responder(arrival)
        if 200 <= status < 300:
            self.arrivals.append(arrival)
        return web.Response(status=status)


def distinct(arrivals: Iterable[Arrival]) -> list[Arrival]:
    """Arrivals without repeated idempotency keys (what a receiver keeps)."""
    seen: set[str] = set()
    kept = []
    for arrival in arrivals:
        if arrival.key not in seen:
            seen.add(arrival.key)
            kept.append(arrival)
    return kept


# -- configuration -----------------------------------------------------------------------------


def write_toml(path: Path, document: dict[str, Any]) -> Path:
    """A TOML file of nested dicts and lists of dicts (enough for the dispatch config)."""
    lines: list[str] = []

    def scalar(value: object) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float):
            return repr(value)
        return json.dumps(str(value), ensure_ascii=False)

    def table(prefix: str, values: dict[str, Any], array: bool = False) -> None:
        plain = {k: v for k, v in values.items() if not isinstance(v, dict | list)}
        nested = {k: v for k, v in values.items() if isinstance(v, dict)}
        arrays = {k: v for k, v in values.items() if isinstance(v, list)}
        if prefix:
            lines.append(f"[[{prefix}]]" if array else f"[{prefix}]")
        lines.extend(f"{key} = {scalar(value)}" for key, value in plain.items())
        for key, value in nested.items():
            table(f"{prefix}.{key}" if prefix else key, value)
        for key, items in arrays.items():
            for item in items:
                table(f"{prefix}.{key}" if prefix else key, item, array=True)

    table("", document)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# -- CAP 1.2: the element order of the OASIS schema (CAP-v1.2.xsd) ---------------------------

Occurs = tuple[str, int, int | None]
"""(element, minOccurs, maxOccurs; None = unbounded)."""

ALERT: Final[list[Occurs]] = [
    ("identifier", 1, 1),
    ("sender", 1, 1),
    ("sent", 1, 1),
    ("status", 1, 1),
    ("msgType", 1, 1),
    ("source", 0, 1),
    ("scope", 1, 1),
    ("restriction", 0, 1),
    ("addresses", 0, 1),
    ("code", 0, None),
    ("note", 0, 1),
    ("references", 0, 1),
    ("incidents", 0, 1),
    ("info", 0, None),
]
INFO: Final[list[Occurs]] = [
    ("language", 0, 1),
    ("category", 1, None),
    ("event", 1, 1),
    ("responseType", 0, None),
    ("urgency", 1, 1),
    ("severity", 1, 1),
    ("certainty", 1, 1),
    ("audience", 0, 1),
    ("eventCode", 0, None),
    ("effective", 0, 1),
    ("onset", 0, 1),
    ("expires", 0, 1),
    ("senderName", 0, 1),
    ("headline", 0, 1),
    ("description", 0, 1),
    ("instruction", 0, 1),
    ("web", 0, 1),
    ("contact", 0, 1),
    ("parameter", 0, None),
    ("resource", 0, None),
    ("area", 0, None),
]
AREA: Final[list[Occurs]] = [
    ("areaDesc", 1, 1),
    ("polygon", 0, None),
    ("circle", 0, None),
    ("geocode", 0, None),
    ("altitude", 0, 1),
    ("ceiling", 0, 1),
]
VALUE_PAIR: Final[list[Occurs]] = [("valueName", 1, 1), ("value", 1, 1)]
CHILDREN: Final = {
    "alert": ALERT,
    "info": INFO,
    "area": AREA,
    "eventCode": VALUE_PAIR,
    "parameter": VALUE_PAIR,
}
ENUMERATIONS: Final = {
    "status": {"Actual", "Exercise", "System", "Test", "Draft"},
    "msgType": {"Alert", "Update", "Cancel", "Ack", "Error"},
    "scope": {"Public", "Restricted", "Private"},
    "category": {
        "Geo",
        "Met",
        "Safety",
        "Security",
        "Rescue",
        "Fire",
        "Health",
        "Env",
        "Transport",
        "Infra",
        "CBRNE",
        "Other",
    },
    "responseType": {
        "Shelter",
        "Evacuate",
        "Prepare",
        "Execute",
        "Avoid",
        "Monitor",
        "Assess",
        "AllClear",
        "None",
    },
    "urgency": {"Immediate", "Expected", "Future", "Past", "Unknown"},
    "severity": {"Extreme", "Severe", "Moderate", "Minor", "Unknown"},
    "certainty": {"Observed", "Likely", "Possible", "Unlikely", "Unknown"},
}
CAP_TIME: Final = r"^\d\d\d\d-\d\d-\d\dT\d\d:\d\d:\d\d[-+]\d\d:\d\d$"


def local(element: ET.Element) -> str:
    namespace = f"{{{CAP_NAMESPACE}}}"
    if not element.tag.startswith(namespace):
        raise AssertionError(f"{element.tag} is not in the CAP 1.2 namespace")
    return element.tag[len(namespace) :]


def schema_problems(element: ET.Element, path: str = "") -> list[str]:
    """Where ``element`` breaks the CAP 1.2 schema's sequences, occurrences and enumerations."""
    name = local(element)
    here = f"{path}/{name}"
    problems: list[str] = []
    expected = CHILDREN.get(name)
    children = list(element)
    if expected is None:
        if children:
            problems.append(f"{here} must hold text only")
        if name in ENUMERATIONS and element.text not in ENUMERATIONS[name]:
            problems.append(f"{here} = {element.text!r} is not one of its enumeration")
        return problems
    position = 0
    for child_name, low, high in expected:
        count = 0
        while position < len(children) and local(children[position]) == child_name:
            problems.extend(schema_problems(children[position], here))
            position += 1
            count += 1
        if count < low:
            problems.append(f"{here} lacks {child_name} (at least {low})")
        if high is not None and count > high:
            problems.append(f"{here} has {count} {child_name} (at most {high})")
    if position < len(children):
        problems.append(f"{here}: {local(children[position])} is out of order or unknown")
    return problems
