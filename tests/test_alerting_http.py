"""The alerting service's HTTP endpoint over loopback: signed links and the JSON API.

:class:`~alerting.http.AlertingHttp` serves a real engine on a real store, SQLite and
PostgreSQL in turn (every test runs on both), its store calls on one thread as in the
service; an aiohttp client plays the captain's phone
and the systems using the API. The endpoint's clock is a hand-driven one, so that link
expiry and the times recorded are exact.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import re
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import aiohttp
import pytest
import sqlalchemy
from pydantic import SecretStr

from aedfleet_testing.brokers import free_port
from alerting.config import ApiScope, ApiToken, HttpSettings, LinkSettings
from alerting.http import MAX_ID, MAX_LIST_LIMIT, AlertingHttp
from alerting.links import SIGNATURE_DOMAIN, TAG_BYTES, LinkAction, LinkSigner
from alerting.model import AlarmEventKind, AlarmState, AlarmType, Via
from tests.postgres import (  # noqa: F401 - a fixture
    STORE_BACKENDS,
    empty_postgres,
    postgres_database,
)
from tests.test_alerting_engine import (
    BACKUP,
    CAPTAIN,
    MINUTE,
    SECOND,
    SECRET,
    T0,
    TODAY,
    Device,
    OpenRig,
    Rig,
    alerting_settings,
    cabinet,
    failed_selftest,
    open_rig,  # noqa: F401 - the fixture
    registry,
    signer_for,
)
from tests.test_twin import CABINET

P = ParamSpec("P")
T = TypeVar("T")
TOKEN = "api-token-for-tests"  # noqa: S105 - a test's own token
READ_TOKEN = "read-only-api-token-for-tests"  # noqa: S105 - a test's own token
# The second cabinet: last inspected 40 days ago, pads and battery dates registered.
INSPECTED = "cab-0002"


class HandClock:
    """The endpoint's clock, moved by the test."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at

    async def sleep(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


@dataclass
class Served:
    rig: Rig
    http: AlertingHttp
    clock: HandClock
    signer: LinkSigner
    port: int
    client: aiohttp.ClientSession

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def link(self, action: LinkAction, target: int | str, person_id: str = CAPTAIN) -> str:
        return self.signer.make(action, target, person_id, self.clock.now())

    async def page(self, method: str, link: str, **form: str) -> tuple[int, str]:
        """Open a link (GET) or press its page's button (POST, with the form's fields)."""
        async with self.client.request(method, link, data=form or None) as response:
            if response.status < 500:
                assert response.content_type == "text/html"
            return response.status, await response.text()

    async def api(
        self, method: str, path: str, body: object = None, token: str | None = TOKEN
    ) -> tuple[int, Any]:
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        async with self.client.request(
            method, self.url(path), json=body, headers=headers
        ) as response:
            assert response.content_type == "application/json"
            return response.status, await response.json()


@pytest.fixture(params=STORE_BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The rigs' database (see :func:`tests.test_alerting_engine.open_rig`)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.sqlite3'}"
    return empty_postgres(request.getfixturevalue("postgres_database"))


@pytest.fixture
async def served(open_rig: OpenRig) -> AsyncIterator[Served]:  # noqa: F811 - the fixture
    port = free_port()
    settings = alerting_settings(
        links=LinkSettings(secrets=(SecretStr(SECRET),), base_url=f"http://127.0.0.1:{port}/l/"),
        http=HttpSettings(
            port=port,
            api_tokens=(
                ApiToken(name="ops", token=SecretStr(TOKEN), scope=ApiScope.WRITE),
                ApiToken(name="wall", token=SecretStr(READ_TOKEN)),
            ),
        ),
    )
    rig = open_rig(
        registry(
            cabinet(),
            cabinet(
                INSPECTED,
                install_date=TODAY - timedelta(days=40),
                pads_expiry=TODAY + timedelta(days=400),
                battery_expiry=TODAY + timedelta(days=500),
            ),
        ),
        settings=settings,
    )
    clock = HandClock(T0)
    signer = signer_for(settings)
    store_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="test-store")

    async def in_store_thread(work: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(store_thread, functools.partial(work, *args, **kwargs))

    try:
        async with (
            AlertingHttp(
                settings.http,
                engine=rig.engine,
                alarms=rig.alarms,
                call=in_store_thread,
                signer=signer,
                silence_limits=settings.silences,
                clock=clock,
            ) as http,
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as client,
        ):
            assert http.port == port
            yield Served(rig, http, clock, signer, port, client)
    finally:
        store_thread.shutdown(wait=True)


def raised_alarm(served: Served) -> int:
    """A failed self-test at the first cabinet, its captain paged; its alarm id."""
    alarm = failed_selftest(served.rig, Device())
    served.rig.engine.escalate(T0)
    served.rig.send(T0)
    return alarm.alarm_id


def state_of(served: Served, alarm_id: int) -> AlarmState:
    alarm = served.rig.alarms.alarm(alarm_id)
    assert alarm is not None
    return alarm.state


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text)


def offers_the_button(html: str) -> bool:
    return 'id="act"' in html


async def test_healthz(served: Served) -> None:
    async with served.client.get(served.url("/healthz")) as response:
        assert response.status == 200


# -- signed links -----------------------------------------------------------------------------


async def test_opening_an_ack_link_acknowledges_nothing_its_button_does(served: Served) -> None:
    alarm = failed_selftest(served.rig, Device())
    alarm_id = alarm.alarm_id
    served.rig.engine.escalate(T0)
    # The link in the page the captain was sent.
    [page] = served.rig.send(T0)
    link = page.notice.alarms[0].ack_url
    assert link is not None
    assert link.startswith(served.url("/l/"))

    # A mail scanner (or the captain) opens it: the alarm is shown, nothing changes.
    served.clock.at = T0 + MINUTE
    for _ in range(2):
        status, html = await served.page("GET", link)
        assert status == 200
        assert f"#{alarm_id}" in html
        assert offers_the_button(html)
    assert state_of(served, alarm_id) is AlarmState.RAISED
    escalation = served.rig.alarms.escalation(alarm_id)
    assert escalation is not None
    assert escalation.due_at is not None

    # The captain presses the button.
    served.clock.at = T0 + 2 * MINUTE
    status, html = await served.page("POST", link)
    assert status == 200
    assert 'id="outcome"' in html
    assert not offers_the_button(html)
    acknowledged = served.rig.alarms.alarm(alarm_id)
    assert acknowledged is not None
    assert acknowledged.state is AlarmState.ACKNOWLEDGED
    assert acknowledged.acknowledged_by == CAPTAIN
    assert acknowledged.acknowledged_via is Via.LINK
    assert acknowledged.acknowledged_at == T0 + 2 * MINUTE
    assert served.rig.engine.escalate(T0 + 10 * MINUTE) == 0

    # Pressing it again (or a replayed POST) changes nothing.
    served.clock.at = T0 + 3 * MINUTE
    status, html = await served.page("POST", link)
    assert status == 200
    assert not offers_the_button(html)
    assert served.rig.alarms.alarm(alarm_id) == acknowledged
    kinds = [event.kind for event in served.rig.alarms.history(alarm_id)]
    assert kinds.count(AlarmEventKind.ACKNOWLEDGED) == 1


async def test_a_resolve_link_resolves_as_the_person_it_was_made_for(served: Served) -> None:
    alarm_id = raised_alarm(served)
    link = served.link(LinkAction.RESOLVE, alarm_id, BACKUP)
    status, html = await served.page("GET", link)
    assert status == 200
    assert offers_the_button(html)
    assert state_of(served, alarm_id) is AlarmState.RAISED

    served.clock.at = T0 + 5 * MINUTE
    status, html = await served.page("POST", link)
    assert status == 200
    assert 'id="outcome"' in html
    resolved = served.rig.alarms.alarm(alarm_id)
    assert resolved is not None
    assert resolved.state is AlarmState.RESOLVED
    assert (resolved.resolved_by, resolved.resolved_via) == (BACKUP, Via.LINK)
    assert resolved.resolved_at == T0 + 5 * MINUTE

    # An ack link followed after the resolution shows the alarm as handled.
    ack = served.link(LinkAction.ACKNOWLEDGE, alarm_id)
    status, html = await served.page("POST", ack)
    assert status == 200
    assert not offers_the_button(html)
    assert state_of(served, alarm_id) is AlarmState.RESOLVED


def _token(link: str) -> str:
    return link.rsplit("/", 1)[1]


def _decoded(token: str) -> bytes:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


def _encoded(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


async def test_expired_tampered_and_unknown_action_links_give_the_invalid_page(
    served: Served,
) -> None:
    alarm_id = raised_alarm(served)
    good = served.link(LinkAction.ACKNOWLEDGE, alarm_id)
    raw = _decoded(_token(good))
    payload = raw[:-TAG_BYTES]
    # Another alarm id in the payload, the tag left as it was.
    tampered_payload = payload[:5] + bytes([payload[5] ^ 0x01]) + payload[6:]
    tampered = served.url("/l/" + _encoded(tampered_payload + raw[-TAG_BYTES:]))
    # Properly signed, but for an action this server does not know (code 4).
    unknown_payload = bytes([0x14]) + payload[1:]
    unknown_tag = hmac.new(
        SECRET.encode(), SIGNATURE_DOMAIN + unknown_payload, hashlib.sha256
    ).digest()[:TAG_BYTES]
    unknown_action = served.url("/l/" + _encoded(unknown_payload + unknown_tag))
    served.clock.at = T0 + served.rig.settings.links.ttl
    expired = good

    for link in (expired, tampered, unknown_action, served.url("/l/not-a-token")):
        for method in ("GET", "POST"):
            status, html = await served.page(method, link)
            assert status == 403, (method, link)
            assert not offers_the_button(html)
    assert state_of(served, alarm_id) is AlarmState.RAISED
    # The same link a second earlier still worked.
    served.clock.at -= SECOND
    status, _ = await served.page("GET", good)
    assert status == 200


async def test_an_inspection_link_shows_the_checklist_and_its_post_records_it(
    served: Served,
) -> None:
    rig = served.rig
    rig.feed(T0, Device(INSPECTED).start(T0))
    assert rig.alarm(AlarmType.INSPECTION_OVERDUE, INSPECTED).active
    link = served.link(LinkAction.RECORD_INSPECTION, INSPECTED)

    status, html = await served.page("GET", link)
    assert status == 200
    for field in ("ready_light_ok", "pads_expiry", "battery_expiry", "alarm_works", "note"):
        assert f'name="{field}"' in html
    assert f"Station hall {INSPECTED}" in html
    assert rig.alarms.inspections.last([INSPECTED]) == {}

    # A date the form cannot hold is refused, and nothing is recorded.
    status, html = await served.page("POST", link, pads_expiry="next spring")
    assert status == 400
    assert rig.alarms.inspections.last([INSPECTED]) == {}

    at = T0 + 30 * MINUTE
    served.clock.at = at
    new_pads = TODAY + timedelta(days=700)
    status, html = await served.page(
        "POST",
        link,
        ready_light_ok="on",
        pads_expiry=new_pads.isoformat(),
        battery_expiry="",
        cabinet_intact_and_clean="on",
        alarm_works="on",
        note="new pads fitted",
    )
    assert status == 200
    assert 'id="outcome"' in html
    assert rig.alarms.inspections.last([INSPECTED]) == {INSPECTED: at}
    stored = rig.state.cabinet(INSPECTED)
    assert stored is not None
    assert stored.pads_expiry == new_pads
    assert stored.battery_expiry == TODAY + timedelta(days=500)
    assert rig.alarm(AlarmType.INSPECTION_OVERDUE, INSPECTED).clear_since == at


# -- the JSON API ------------------------------------------------------------------------------


def api_endpoints(http: AlertingHttp) -> list[tuple[str, str]]:
    """Every API route the application serves (method, path with its ids filled in)."""
    endpoints = []
    for route in http.application().router.routes():
        path = route.resource.canonical if route.resource else ""
        if path.startswith("/api/") and route.method != "HEAD":
            filled = re.sub(r"\{cabinet_id\}", CABINET, path)
            endpoints.append((route.method, re.sub(r"\{\w+\}", "1", filled)))
    return endpoints


async def test_every_api_endpoint_wants_a_valid_bearer_token(served: Served) -> None:
    """Only a system holding one of ``http.api_tokens`` may call the API: not a captain
    with a signed link, not the links' secret, not a token sent another way."""
    alarm_id = raised_alarm(served)
    link_token = _token(served.link(LinkAction.ACKNOWLEDGE, alarm_id))
    endpoints = api_endpoints(served.http)
    assert len(endpoints) == 10  # those of docs/alerting.md; a new one is covered here too
    for method, path in endpoints:
        for token in (None, "wrong-token", "", link_token, SECRET, TOKEN + "x"):
            status, body = await served.api(method, path, {"by": "intruder"}, token=token)
            assert status == 401, (method, path, token)
            assert body == {"error": "a valid bearer token is required"}
        for header in (f"Basic {TOKEN}", TOKEN, f"Token {TOKEN}"):
            async with served.client.request(
                method, served.url(path), headers={"Authorization": header}
            ) as response:
                assert response.status == 401, (method, path, header)
        async with served.client.request(method, served.url(path) + f"?token={TOKEN}") as response:
            assert response.status == 401, (method, path)
    assert state_of(served, alarm_id) is AlarmState.RAISED
    assert served.rig.alarms.silences.all() == []


async def test_a_read_token_may_read_everything_and_change_nothing(served: Served) -> None:
    alarm_id = raised_alarm(served)
    silence_id = served.rig.alarms.silences.add(
        starts_at=T0,
        ends_at=T0 + 60 * MINUTE,
        reason="maintenance",
        created_by="ops/tests",
        cabinet_id=CABINET,
    ).silence_id
    bodies: dict[str, Any] = {
        "/api/v1/inspections": {"cabinet_id": CABINET, "person_id": CAPTAIN, "at": T0.isoformat()},
        "/api/v1/silences": {
            "cabinet_id": CABINET,
            "ends_at": (T0 + 60 * MINUTE).isoformat(),
            "reason": "r",
            "created_by": "wall",
        },
    }
    changes = 0
    for method, path in api_endpoints(served.http):
        filled = path.replace("/alarms/1", f"/alarms/{alarm_id}").replace(
            "/silences/1", f"/silences/{silence_id}"
        )
        status, body = await served.api(
            method, filled, bodies.get(filled, {"by": "wall"}), token=READ_TOKEN
        )
        if method == "GET":
            assert status in (200, 404), (method, filled, body)
            continue
        changes += 1
        assert status == 403, (method, filled)
        assert body == {"error": "the token 'wall' may read, not change anything"}
    assert changes == 5
    assert state_of(served, alarm_id) is AlarmState.RAISED
    assert [s.ends_at for s in served.rig.alarms.silences.all()] == [T0 + 60 * MINUTE]
    assert served.rig.alarms.inspections.last([CABINET]) == {}


async def test_with_no_token_configured_the_api_is_off(open_rig: OpenRig) -> None:  # noqa: F811
    rig = open_rig(settings=alerting_settings())
    assert rig.settings.http.api_tokens == ()
    http = AlertingHttp(
        HttpSettings(port=0),
        engine=rig.engine,
        alarms=rig.alarms,
        call=_inline,
        signer=signer_for(rig.settings),
        silence_limits=rig.settings.silences,
        clock=HandClock(T0),
    )
    async with http, aiohttp.ClientSession() as client:
        for method, path in api_endpoints(http):
            for token in ("", "None", "null"):
                async with client.request(
                    method,
                    f"http://127.0.0.1:{http.port}{path}",
                    headers={"Authorization": f"Bearer {token}"},
                ) as response:
                    assert response.status == 401, (method, path, token)


async def _inline(work: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    return work(*args, **kwargs)


async def test_an_api_token_is_not_a_link(served: Served) -> None:
    status, html = await served.page("GET", served.url(f"/l/{TOKEN}"))
    assert status == 403
    assert not offers_the_button(html)


BAD_PARAMETERS = [
    ("GET", "/api/v1/alarms?limit=-1", "limit"),
    ("GET", "/api/v1/alarms?limit=0", "limit"),
    ("GET", f"/api/v1/alarms?limit={MAX_LIST_LIMIT + 1}", "limit"),
    ("GET", "/api/v1/alarms?limit=ten", "limit"),
    ("GET", "/api/v1/alarms?limit=99999999999999999999999", "limit"),
    ("GET", "/api/v1/alarms?limit=1&limit=2", "limit"),
    ("GET", "/api/v1/alarms?state=", "state"),
    ("GET", "/api/v1/alarms?state=RAISED", "state"),
    ("GET", "/api/v1/alarms?cabinet_id=", "cabinet_id"),
    ("GET", "/api/v1/alarms?offset=10", "offset"),
    ("GET", "/api/v1/alarms?cabinet=cab-0001", "cabinet"),
    ("GET", f"/api/v1/alarms/{MAX_ID + 1}", "alarm_id"),
    ("GET", "/api/v1/alarms/1?limit=1", "limit"),
    ("POST", f"/api/v1/alarms/{10**30}/ack", "alarm_id"),
    ("POST", "/api/v1/alarms/1/resolve?by=me", "by"),
    ("POST", "/api/v1/inspections?dry_run=1", "dry_run"),
    ("GET", "/api/v1/readiness?region_code=4403", "region_code"),
    ("GET", f"/api/v1/readiness/{CABINET}?at=2025-01-01", "at"),
    ("GET", "/api/v1/silences?active=maybe", "active"),
    ("GET", "/api/v1/silences?active=true&active=false", "active"),
    ("POST", "/api/v1/silences?force=true", "force"),
    ("DELETE", f"/api/v1/silences/{MAX_ID + 1}", "silence_id"),
]


@pytest.mark.parametrize(("method", "path", "parameter"), BAD_PARAMETERS)
async def test_a_bad_query_or_path_parameter_is_a_400_naming_it(
    served: Served, method: str, path: str, parameter: str
) -> None:
    alarm_id = raised_alarm(served)
    before = served.rig.alarms.alarm(alarm_id)
    body = {"by": "ops"} if method == "POST" else None
    status, problem = await served.api(method, path, body)
    assert status == 400, problem
    assert problem["parameter"] == parameter
    assert problem["error"].startswith(f"{parameter}: ")
    assert served.rig.alarms.alarm(alarm_id) == before
    assert served.rig.alarms.silences.all() == []


async def test_the_alarm_list_is_bounded_by_its_limit(served: Served) -> None:
    device = Device()
    first = raised_alarm(served)
    later = T0 + MINUTE
    served.rig.feed(later, [device.consumables(later, pads_present=False)])
    status, listed = await served.api("GET", "/api/v1/alarms?limit=1")
    assert status == 200
    assert len(listed) == 1
    assert listed[0]["alarm_id"] != first
    status, listed = await served.api("GET", "/api/v1/alarms")
    assert len(listed) == 2


async def test_the_api_lists_and_shows_alarms_with_history_and_notifications(
    served: Served,
) -> None:
    alarm_id = raised_alarm(served)

    status, listed = await served.api("GET", "/api/v1/alarms")
    assert status == 200
    assert [a["alarm_id"] for a in listed] == [alarm_id]
    assert listed[0]["type"] == "selftest_failed"
    assert listed[0]["state"] == "raised"
    for query, expected in [
        ("?state=raised", [alarm_id]),
        ("?state=resolved", []),
        (f"?cabinet_id={CABINET}", [alarm_id]),
        ("?cabinet_id=cab-0002", []),
        ("?limit=1", [alarm_id]),
        (f"?limit={MAX_LIST_LIMIT}&state=raised", [alarm_id]),
    ]:
        status, found = await served.api("GET", "/api/v1/alarms" + query)
        assert status == 200
        assert [a["alarm_id"] for a in found] == expected, query
    status, problem = await served.api("GET", "/api/v1/alarms?state=sleeping")
    assert status == 400
    assert problem["parameter"] == "state"
    assert "sleeping" in problem["error"]

    status, shown = await served.api("GET", f"/api/v1/alarms/{alarm_id}")
    assert status == 200
    assert shown["alarm_id"] == alarm_id
    assert [event["kind"] for event in shown["history"]] == ["raised"]
    [notification] = shown["notifications"]
    assert notification["person_id"] == CAPTAIN
    assert notification["kind"] == "page"
    assert notification["state"] == "delivered"
    assert [attempt["channel"] for attempt in notification["attempts"]] == ["email"]

    status, problem = await served.api("GET", "/api/v1/alarms/999")
    assert status == 404
    assert "999" in problem["error"]


async def test_the_api_acknowledges_and_resolves(served: Served) -> None:
    alarm_id = raised_alarm(served)
    served.clock.at = T0 + 4 * MINUTE
    status, acked = await served.api("POST", f"/api/v1/alarms/{alarm_id}/ack", {"by": "ops-desk"})
    assert status == 200
    assert acked["state"] == "acknowledged"
    assert (acked["acknowledged_by"], acked["acknowledged_via"]) == ("ops/ops-desk", "api")
    assert moment(acked["acknowledged_at"]) == T0 + 4 * MINUTE
    status, again = await served.api("POST", f"/api/v1/alarms/{alarm_id}/ack", {"by": "other"})
    assert status == 200
    assert again == acked

    served.clock.at = T0 + 9 * MINUTE
    status, resolved = await served.api(
        "POST", f"/api/v1/alarms/{alarm_id}/resolve", {"by": "ops-desk"}
    )
    assert status == 200
    assert (resolved["state"], resolved["resolved_via"]) == ("resolved", "api")
    kinds = [event.kind for event in served.rig.alarms.history(alarm_id)]
    assert kinds == [AlarmEventKind.RAISED, AlarmEventKind.ACKNOWLEDGED, AlarmEventKind.RESOLVED]

    # Acknowledging a resolved alarm is a conflict; unknown alarms are not found.
    status, problem = await served.api("POST", f"/api/v1/alarms/{alarm_id}/ack", {"by": "late"})
    assert status == 409
    assert "resolved" in problem["error"]
    for action in ("ack", "resolve"):
        status, _ = await served.api("POST", f"/api/v1/alarms/999/{action}", {"by": "ops"})
        assert status == 404
    # Saying who acts is required.
    other = failed_selftest(served.rig, Device(INSPECTED)).alarm_id
    for body in (None, {}, {"by": ""}, {"by": "   "}, {"who": "ops"}, ["ops"]):
        status, problem = await served.api("POST", f"/api/v1/alarms/{other}/ack", body)
        assert status == 400, body
        assert problem["error"]
    assert state_of(served, other) is AlarmState.RAISED


async def test_the_api_records_inspections(served: Served) -> None:
    at = T0 + 20 * MINUTE
    served.clock.at = at
    new_battery = TODAY + timedelta(days=900)
    inspection = {
        "cabinet_id": CABINET,
        "person_id": CAPTAIN,
        "at": at.isoformat(),
        "ready_light_ok": True,
        "pads_expiry": None,
        "battery_expiry": new_battery.isoformat(),
        "cabinet_intact_and_clean": True,
        "alarm_works": False,
        "note": "door alarm silent",
    }
    status, result = await served.api("POST", "/api/v1/inspections", inspection)
    assert status == 201
    assert result["pads_expiry_updated"] is False
    assert result["battery_expiry_updated"] is True
    stored = served.rig.state.cabinet(CABINET)
    assert stored is not None
    assert stored.battery_expiry == new_battery
    assert served.rig.alarms.inspections.last([CABINET]) == {CABINET: at}

    status, problem = await served.api(
        "POST", "/api/v1/inspections", inspection | {"ready_light_ok": "perhaps"}
    )
    assert status == 400
    assert "ready_light_ok" in problem["error"]
    status, problem = await served.api(
        "POST", "/api/v1/inspections", inspection | {"cabinet_id": "cab-9999"}
    )
    assert status == 404
    assert "cab-9999" in problem["error"]


async def test_the_api_reports_fleet_and_cabinet_readiness(served: Served) -> None:
    rig = served.rig
    failed_selftest(rig, Device())
    rig.feed(T0, Device(INSPECTED).start(T0))

    status, fleet = await served.api("GET", "/api/v1/readiness")
    assert status == 200
    assert (fleet["total"], fleet["ready"], fleet["not_ready"]) == (2, 1, 1)
    assert fleet["not_ready_by_reason"] == {"selftest_failed": 1}
    assert fleet["by_region_code"]["440305"]["total"] == 2

    status, one = await served.api("GET", f"/api/v1/readiness/{CABINET}")
    assert status == 200
    assert one["ready"] is False
    assert one["reasons"] == ["selftest_failed"]
    status, other = await served.api("GET", "/api/v1/readiness/cab-0002")
    assert status == 200
    assert (other["ready"], other["reasons"]) == (True, [])
    status, problem = await served.api("GET", "/api/v1/readiness/cab-9999")
    assert status == 404
    assert "cab-9999" in problem["error"]


async def test_the_api_adds_lists_and_ends_silences(served: Served) -> None:
    ends = T0 + 2 * 60 * MINUTE
    request = {
        "cabinet_id": CABINET,
        "ends_at": ends.isoformat(),
        "reason": "replacing the AED",
        "created_by": "ops-desk",
    }
    status, silence = await served.api("POST", "/api/v1/silences", request)
    assert status == 201
    assert silence["cabinet_id"] == CABINET
    assert silence["created_by"] == "ops/ops-desk"
    assert moment(silence["starts_at"]) == T0  # from now
    silence_id = silence["silence_id"]

    refused = {
        "no matcher": {k: v for k, v in request.items() if k != "cabinet_id"},
        "door": request | {"alarm_type": AlarmType.DOOR_OPENED.value},
        "removed AED": request | {"alarm_type": AlarmType.AED_REMOVED.value},
        "over": request | {"ends_at": (T0 - MINUTE).isoformat()},
        "too long": request | {"ends_at": (T0 + timedelta(days=31)).isoformat()},
        "no author": {k: v for k, v in request.items() if k != "created_by"},
        "no reason": request | {"reason": ""},
        "unknown field": request | {"severity": "critical"},
    }
    for case, body in refused.items():
        status, problem = await served.api("POST", "/api/v1/silences", body)
        assert status == 400, case
        assert problem["error"], case
    _, problem = await served.api("POST", "/api/v1/silences", refused["no matcher"])
    assert "at least one of cabinet_id, region_code or alarm_type" in problem["error"]
    _, problem = await served.api("POST", "/api/v1/silences", refused["door"])
    assert "door_opened alarms are never silenced" in problem["error"]
    _, problem = await served.api("POST", "/api/v1/silences", refused["too long"])
    assert "at most 30 days" in problem["error"]

    status, active = await served.api("GET", "/api/v1/silences")
    assert status == 200
    assert [s["silence_id"] for s in active] == [silence_id]

    served.clock.at = T0 + 30 * MINUTE
    status, ended = await served.api("DELETE", f"/api/v1/silences/{silence_id}")
    assert status == 200
    assert moment(ended["ends_at"]) == T0 + 30 * MINUTE
    status, active = await served.api("GET", "/api/v1/silences")
    assert (status, active) == (200, [])
    status, every = await served.api("GET", "/api/v1/silences?active=false")
    assert [s["silence_id"] for s in every] == [silence_id]

    status, problem = await served.api("DELETE", "/api/v1/silences/999")
    assert status == 404
    assert "999" in problem["error"]


async def test_a_link_to_an_alarm_or_cabinet_that_is_not_there_is_not_found(
    served: Served,
) -> None:
    # Validly signed (a restored database, a cabinet taken out of the registry).
    links = [
        served.link(LinkAction.ACKNOWLEDGE, 999),
        served.link(LinkAction.RESOLVE, 999),
        served.link(LinkAction.RECORD_INSPECTION, "cab-9999"),
    ]
    for link in links:
        for method in ("GET", "POST"):
            status, html = await served.page(method, link)
            assert status == 404, (method, link)
            assert not offers_the_button(html)
    assert served.rig.alarms.inspections.last(["cab-9999"]) == {}


# -- the captain's page ------------------------------------------------------------------------


async def test_the_alarm_page_shows_the_map_what_to_do_and_names_and_loads_nothing_else(
    served: Served,
) -> None:
    alarm_id = raised_alarm(served)
    async with served.client.get(served.link(LinkAction.ACKNOWLEDGE, alarm_id)) as response:
        assert response.status == 200
        html = await response.text()
        policy = response.headers["Content-Security-Policy"]
        assert response.headers["Cache-Control"] == "no-store"
    # The browser is told to load nothing: no script, no tile, no font, no frame.
    assert "default-src 'none'" in policy
    assert "script-src" not in policy
    assert 'id="map" viewBox=' in html
    assert 'data-lat="22.500000" data-lon="114.000000"' in html
    assert 'href="geo:22.500000,114.000000"' in html
    assert 'id="guidance"' in html
    assert "What to do" in html
    assert "Access: the cabinet opens freely" in html
    assert "Open: open 24 hours, every day" in html
    # People by name: the paged captain, and the reader the link is for.
    assert f"Paged: Person {CAPTAIN}" in html
    assert f"For: Person {CAPTAIN}" in html
    assert CAPTAIN not in html.replace(f"Person {CAPTAIN}", "")


async def test_an_acknowledgement_is_shown_with_the_name_and_the_cabinets_time(
    served: Served,
) -> None:
    alarm_id = raised_alarm(served)
    served.clock.at = T0 + 2 * MINUTE
    status, html = await served.page("POST", served.link(LinkAction.ACKNOWLEDGE, alarm_id))
    assert status == 200
    assert "Recorded, thank you." in html
    # 10:02 in Shanghai (the rules' default zone: this cabinet never named its own).
    assert f"Acknowledged by Person {CAPTAIN}, 2025-03-03 10:02" in html

    # The backup, paged later, sees who took it and is offered nothing to acknowledge.
    for method in ("GET", "POST"):
        status, html = await served.page(
            method, served.link(LinkAction.ACKNOWLEDGE, alarm_id, BACKUP)
        )
        assert status == 200
        assert f"Person {CAPTAIN} has already acknowledged this alarm" in html
        assert not offers_the_button(html)
    acknowledged = served.rig.alarms.alarm(alarm_id)
    assert acknowledged is not None
    assert acknowledged.acknowledged_by == CAPTAIN


async def test_an_ack_on_a_resolved_alarm_gives_a_clear_page_saying_who_resolved_it(
    served: Served,
) -> None:
    alarm_id = raised_alarm(served)
    served.clock.at = T0 + 5 * MINUTE
    status, _ = await served.api("POST", f"/api/v1/alarms/{alarm_id}/resolve", {"by": "desk"})
    assert status == 200
    link = served.link(LinkAction.ACKNOWLEDGE, alarm_id)
    for method in ("GET", "POST"):
        status, html = await served.page(method, link)
        assert status == 200, method
        assert "State: Resolved" in html
        assert "Resolved by ops/desk, 2025-03-03 10:05" in html
        assert "This alarm is resolved; nothing more to do." in html
        assert not offers_the_button(html)
        assert "<form" not in html
    assert state_of(served, alarm_id) is AlarmState.RESOLVED


async def test_the_checklist_leaves_the_dates_empty_and_shows_the_registered_ones(
    served: Served,
) -> None:
    link = served.link(LinkAction.RECORD_INSPECTION, INSPECTED)
    status, html = await served.page("GET", link)
    assert status == 200
    pads, battery = TODAY + timedelta(days=400), TODAY + timedelta(days=500)
    assert f"Registered pads expiry: {pads.isoformat()}" in html
    assert f"Registered battery expiry: {battery.isoformat()}" in html
    for field in ("pads_expiry", "battery_expiry"):
        [date_input] = re.findall(rf'<input type="date" name="{field}"[^>]*>', html)
        assert "value" not in date_input
    form = html.split("<form", 1)[1].split("</form>", 1)[0]
    assert pads.isoformat() not in form
    assert battery.isoformat() not in form

    # The service still checks what comes back, and names the field in the reader's words.
    status, html = await served.page("POST", link, battery_expiry="31/12/2030")
    assert status == 400
    assert "New battery expiry date" in html
    assert "31/12/2030" not in html
    assert served.rig.alarms.inspections.last([INSPECTED]) == {}


def _person_free(html: str, *ids: str) -> None:
    for known in ids:
        assert known not in html, known
    assert "Traceback" not in html
    assert 'File "' not in html


ERROR_PAGES = {
    # case: method, status, title in Chinese, title in English
    "expired link": ("GET", 403, "链接已过期", "Link expired"),
    "forged link": ("POST", 403, "链接无效", "This link is not valid"),
    "no such page": ("GET", 404, "页面不存在", "Page not found"),
    "wrong method on a link": ("PUT", 405, "无法这样打开此页面", "Not available this way"),
    "wrong method elsewhere": ("DELETE", 405, "无法这样打开此页面", "Not available this way"),
}


@pytest.mark.parametrize("case", list(ERROR_PAGES))
async def test_error_pages_speak_the_readers_language_keep_the_status_and_name_nothing(
    served: Served, case: str
) -> None:
    alarm_id = raised_alarm(served)
    good = served.link(LinkAction.ACKNOWLEDGE, alarm_id)
    raw = _decoded(_token(good))
    url = {
        "expired link": served.signer.make(
            LinkAction.ACKNOWLEDGE, alarm_id, CAPTAIN, T0 - served.rig.settings.links.ttl
        ),
        "forged link": served.url("/l/" + _encoded(raw[:-1] + bytes([raw[-1] ^ 0x01]))),
        "no such page": served.url("/nowhere"),
        "wrong method on a link": good,
        "wrong method elsewhere": served.url("/healthz"),
    }[case]
    method, status, chinese, english = ERROR_PAGES[case]
    for accept, title in (("zh-CN,zh;q=0.9", chinese), ("en-GB,en;q=0.8", english)):
        async with served.client.request(
            method, url, headers={"Accept-Language": accept}
        ) as response:
            assert response.status == status
            assert response.content_type == "text/html"
            if status == 405:
                assert response.headers["Allow"]
            html = await response.text()
        assert f"<h1>{title}</h1>" in html, accept
        _person_free(html, CAPTAIN, CABINET, f"Station hall {CABINET}", _token(url))
    assert state_of(served, alarm_id) is AlarmState.RAISED


async def test_a_link_to_an_unknown_alarm_is_a_404_page_in_its_persons_language(
    served: Served,
) -> None:
    # The link verifies, so it names its person, whose language the page speaks.
    for method in ("GET", "POST"):
        async with served.client.request(
            method,
            served.link(LinkAction.ACKNOWLEDGE, 999),
            headers={"Accept-Language": "zh-CN"},
        ) as response:
            assert response.status == 404
            html = await response.text()
        assert "<h1>Alarm not found</h1>" in html
        _person_free(html, CAPTAIN, "999")


async def test_a_failure_is_a_500_page_without_a_traceback(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    alarm_id = raised_alarm(served)
    link = served.link(LinkAction.ACKNOWLEDGE, alarm_id)
    # The store loses its alarms table under the running service.
    store = sqlalchemy.create_engine(served.rig.url)
    try:
        with store.begin() as connection:
            connection.execute(sqlalchemy.text("ALTER TABLE alarms RENAME TO alarms_gone"))
        for accept, title in (("zh-CN", "出错了"), ("en", "Something went wrong")):
            async with served.client.get(link, headers={"Accept-Language": accept}) as response:
                assert response.status == 500
                assert response.content_type == "text/html"
                html = await response.text()
            assert f"<h1>{title}</h1>" in html
            _person_free(html, CAPTAIN, CABINET, "alarms_gone", "sqlalchemy", _token(link))
    finally:
        with store.begin() as connection:
            connection.execute(sqlalchemy.text("ALTER TABLE alarms_gone RENAME TO alarms"))
        store.dispose()
    # Logged by its route, not by the link it was opened with.
    failures = [r for r in caplog.records if "failed" in r.getMessage()]
    assert failures
    assert all(_token(link) not in r.getMessage() for r in failures)
    assert any("/l/{token}" in r.getMessage() for r in failures)


async def test_a_link_cannot_be_turned_to_another_alarm_person_or_cabinet(
    served: Served,
) -> None:
    """Only the link's own alarm (or cabinet), as its own person: another target or
    person under the same signature grants nothing."""
    alarm_id = raised_alarm(served)
    other_alarm = failed_selftest(served.rig, Device(INSPECTED)).alarm_id
    tag = _decoded(_token(served.link(LinkAction.ACKNOWLEDGE, alarm_id)))[-TAG_BYTES:]
    inspect_tag = _decoded(_token(served.link(LinkAction.RECORD_INSPECTION, CABINET)))[-TAG_BYTES:]

    def under(signature: bytes, action: LinkAction, target: int | str, person: str) -> str:
        payload = _decoded(_token(served.link(action, target, person)))[:-TAG_BYTES]
        return served.url("/l/" + _encoded(payload + signature))

    turned = [
        under(tag, LinkAction.ACKNOWLEDGE, other_alarm, CAPTAIN),
        under(tag, LinkAction.ACKNOWLEDGE, alarm_id, BACKUP),
        under(tag, LinkAction.RESOLVE, alarm_id, CAPTAIN),
        under(inspect_tag, LinkAction.RECORD_INSPECTION, INSPECTED, CAPTAIN),
        under(inspect_tag, LinkAction.RECORD_INSPECTION, CABINET, BACKUP),
    ]
    for link in turned:
        for method in ("GET", "POST"):
            status, html = await served.page(method, link, ready_light_ok="on")
            assert status == 403, (method, link)
            assert not offers_the_button(html)
    for alarm in (alarm_id, other_alarm):
        assert state_of(served, alarm) is AlarmState.RAISED
    assert served.rig.alarms.inspections.last([CABINET, INSPECTED]) == {}
