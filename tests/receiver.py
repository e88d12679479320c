"""A real HTTP receiver (aiohttp) on loopback that records every request it is sent.

It stands in for the services the notifiers post to, answering as they do: WeCom,
DingTalk and Feishu robots (the last two checking signatures the way those services do),
a generic webhook and an SMS gateway. A test can set any path's answer, including one
that never comes.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from aiohttp import web


@dataclass(frozen=True)
class Received:
    path: str
    method: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes = field(repr=False)

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
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]
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
