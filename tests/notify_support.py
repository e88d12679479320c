"""Builders and real servers for the notifier tests.

Notices are built from registry and alarm values with overridable defaults. The servers
are real: an aiosmtpd SMTP server on a free loopback port (plain, STARTTLS or implicit
TLS, with or without AUTH) and an aiohttp application on loopback that stands in for
WeCom, DingTalk and Feishu robots, a generic webhook receiver and an SMS gateway,
checking signatures the way those services do and recording every request.
"""

# Chinese text is written with full-width punctuation on purpose.
# ruff: noqa: RUF001

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from types import TracebackType
from typing import Any, Self

from aiohttp import web
from aiosmtpd import smtp as aiosmtpd_smtp
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session

from alerting.model import Alarm, AlarmState, AlarmType, NoticeKind, Severity, Via
from alerting.notifiers.base import AlarmBrief, Notice, PriorPage
from ingest.registry.models import AccessMode, Cabinet, Language, Person, Role, SiteType
from tests.brokers import TlsFiles, free_port

NOW = datetime(2025, 5, 1, 6, 3, tzinfo=UTC)  # 14:03 in Shanghai


def cabinet(**overrides: Any) -> Cabinet:
    values: dict[str, Any] = {
        "cabinet_id": "sz-nanshan-0001",
        "name": "深圳湾小学 东门",
        "latitude": 22.517_614,
        "longitude": 113.944_218,
        "address": "南山区滨海大道 3001 号",
        "floor": "1",
        "indoor_description": "体育馆入口左侧，消防栓旁",
        "site_type": SiteType.SCHOOL,
        "region_code": "440305",
        "access_mode": AccessMode.PIN,
        "pads_expiry": date(2025, 6, 1),
        "battery_expiry": date(2027, 3, 1),
    }
    return Cabinet(**(values | overrides))


def alarm(
    alarm_type: AlarmType = AlarmType.DOOR_OPENED,
    severity: Severity = Severity.CRITICAL,
    **overrides: Any,
) -> Alarm:
    values: dict[str, Any] = {
        "alarm_id": 42,
        "cabinet_id": "sz-nanshan-0001",
        "type": alarm_type,
        "severity": severity,
        "state": AlarmState.RAISED,
        "detail": "",
        "condition_since": NOW - timedelta(minutes=12),
        "raised_at": NOW - timedelta(minutes=11),
    }
    return Alarm(**(values | overrides))


def resolved(source: Alarm) -> Alarm:
    return source.model_copy(
        update={
            "state": AlarmState.RESOLVED,
            "resolved_at": NOW,
            "resolved_by": "王芳",
            "resolved_via": Via.LINK,
        }
    )


def person(language: Language = Language.ZH, **overrides: Any) -> Person:
    values: dict[str, Any] = {
        "person_id": "p-zhang",
        "name": "张伟",
        "phone": "13800138000",
        "email": "zhang@example.cn",
        "language": language,
    }
    return Person(**(values | overrides))


def brief(
    alarm_value: Alarm | None = None, cabinet_value: Cabinet | None = None, **links: str | None
) -> AlarmBrief:
    found = alarm_value or alarm()
    place = cabinet_value or cabinet(cabinet_id=found.cabinet_id)
    values: dict[str, str | None] = {
        "ack_url": f"https://aed.example.cn/a/{found.alarm_id}-ack",
        "resolve_url": f"https://aed.example.cn/r/{found.alarm_id}-fix",
        "inspect_url": f"https://aed.example.cn/i/{found.cabinet_id}",
    }
    return AlarmBrief(alarm=found, cabinet=place, **(values | links))


def notice(
    kind: NoticeKind = NoticeKind.PAGE,
    *briefs: AlarmBrief,
    recipient: Person | None = None,
    role: Role = Role.CAPTAIN,
    escalated_after: tuple[PriorPage, ...] = (),
    notice_id: str = "42:page:0:0:captain",
) -> Notice:
    return Notice(
        notice_id=notice_id,
        kind=kind,
        recipient=recipient or person(),
        role=role,
        alarms=briefs or (brief(),),
        escalated_after=escalated_after,
        created_at=NOW,
    )


class FakeClock:
    """Stands still until slept on; records every sleep instead of waiting."""

    def __init__(self, start: datetime = NOW) -> None:
        self.current = start
        self.sleeps: list[float] = []

    def now(self) -> datetime:
        return self.current

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.current += timedelta(seconds=seconds)


# -- SMTP --------------------------------------------------------------------------------------


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[Envelope, EmailMessage]] = []
        self.refuse_with: str | None = None

    async def handle_DATA(  # noqa: N802 - aiosmtpd's handler hook name
        self, server: aiosmtpd_smtp.SMTP, session: Session, envelope: Envelope
    ) -> str:
        if self.refuse_with is not None:
            return self.refuse_with
        content = envelope.original_content or envelope.content
        assert isinstance(content, bytes)
        parsed = message_from_bytes(content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append((envelope, parsed))
        return "250 OK"


class _Authenticator:
    def __init__(self, users: dict[str, str]) -> None:
        self.users = users
        self.logins: list[str] = []

    def __call__(
        self,
        server: aiosmtpd_smtp.SMTP,
        session: Session,
        envelope: Envelope,
        mechanism: str,
        auth_data: Any,
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        user = auth_data.login.decode()
        if self.users.get(user) != auth_data.password.decode():
            return AuthResult(success=False, handled=False)
        self.logins.append(user)
        return AuthResult(success=True)


def _server_context(tls: TlsFiles) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls.server_cert, tls.server_key)
    return context


class SmtpServer:
    """A real aiosmtpd server in its own thread: ``with SmtpServer(...) as server``.

    ``security`` is ``none``, ``starttls`` (required before MAIL) or ``tls`` (implicit).
    With ``users``, AUTH is required (over TLS only, as aiosmtpd insists by default).
    """

    def __init__(
        self,
        security: str = "none",
        tls: TlsFiles | None = None,
        users: dict[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        self.inbox = _Inbox()
        self.authenticator = _Authenticator(users or {})
        kwargs: dict[str, Any] = {}
        if security == "starttls":
            assert tls is not None
            kwargs |= {"tls_context": _server_context(tls), "require_starttls": True}
        elif security == "tls":
            assert tls is not None
            kwargs |= {"ssl_context": _server_context(tls)}
        if users:
            kwargs |= {"authenticator": self.authenticator, "auth_required": True}
        self._controller = Controller(
            self.inbox, hostname="127.0.0.1", port=self.port, server_hostname="localhost", **kwargs
        )

    def __enter__(self) -> Self:
        self._controller.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._controller.stop()


class SilentServer:
    """Accepts TCP connections and never says a word: every client wait times out."""

    def __init__(self) -> None:
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> Self:
        async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self._writers.append(writer)

        self._server = await asyncio.start_server(hold, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        await self._server.wait_closed()


# -- HTTP receivers ----------------------------------------------------------------------------


@dataclass
class Received:
    path: str
    method: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


Reply = Callable[[Received], Awaitable[web.StreamResponse]]


def dingtalk_expected_sign(secret: str, timestamp_ms: str) -> str:
    """What DingTalk computes: base64(HMAC-SHA256(secret, "<ms>\\n<secret>"))."""
    digest = hmac.new(
        secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256
    ).digest()
    return base64.b64encode(digest).decode()


def feishu_expected_sign(secret: str, timestamp_s: str) -> str:
    """What Feishu computes: base64(HMAC-SHA256(key="<s>\\n<secret>", msg=""))."""
    digest = hmac.new(f"{timestamp_s}\n{secret}".encode(), b"", hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


@dataclass
class RobotReceiver:
    """Robots and gateways on one loopback aiohttp server, answering like the real ones.

    ``/dingtalk`` and ``/feishu`` check signatures with their secrets (errcode 310000 and
    code 19021 are the services' own answers to a bad signature); ``/wecom``,
    ``/generic`` and ``/sms`` accept everything. ``replies`` overrides a path's answer;
    :meth:`hang` is a reply that does not come until the receiver shuts down.
    """

    dingtalk_secret: str = "SEC0123456789abcdef-test"  # noqa: S105 - test key
    feishu_secret: str = "feishu-secret-for-tests"  # noqa: S105 - test key
    clock_now: Callable[[], float] = time.time
    replies: dict[str, Reply] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    port: int = 0
    _runner: web.AppRunner | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def on(self, path: str) -> list[Received]:
        return [request for request in self.received if request.path == path]

    async def __aenter__(self) -> Self:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.Server)
        self.port = server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self._runner is not None
        self.release.set()
        await self._runner.cleanup()

    async def hang(self, received: Received) -> web.StreamResponse:
        """A reply that never comes while the test runs (it is released at teardown)."""
        await self.release.wait()
        return web.json_response({"errcode": 0})

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        received = Received(
            path=request.path,
            method=request.method,
            query=dict(request.query),
            headers=dict(request.headers),
            body=await request.read(),
        )
        self.received.append(received)
        reply = self.replies.get(request.path)
        if reply is not None:
            return await reply(received)
        if request.path.startswith("/dingtalk"):
            return self._dingtalk(received)
        if request.path.startswith("/feishu"):
            return self._feishu(received)
        if request.path.startswith("/wecom"):
            return web.json_response({"errcode": 0, "errmsg": "ok"})
        return web.json_response({"ok": True})

    def _dingtalk(self, received: Received) -> web.Response:
        timestamp, sign = received.query.get("timestamp"), received.query.get("sign")
        fresh = timestamp is not None and abs(int(timestamp) / 1000 - self.clock_now()) < 3600
        if not fresh or sign != dingtalk_expected_sign(self.dingtalk_secret, str(timestamp)):
            return web.json_response({"errcode": 310000, "errmsg": "sign not match"})
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    def _feishu(self, received: Received) -> web.Response:
        body = received.json()
        timestamp, sign = body.get("timestamp"), body.get("sign")
        fresh = isinstance(timestamp, str) and abs(int(timestamp) - self.clock_now()) < 3600
        if not fresh or sign != feishu_expected_sign(self.feishu_secret, str(timestamp)):
            return web.json_response(
                {"code": 19021, "msg": "sign match fail or timestamp is not within one hour"},
                status=400,
            )
        return web.json_response({"code": 0, "msg": "success", "data": {}})


def json_reply(document: object, status: int = 200) -> Reply:
    async def reply(received: Received) -> web.StreamResponse:
        return web.json_response(document, status=status)

    return reply
