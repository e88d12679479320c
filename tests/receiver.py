"""A real HTTP receiver (aiohttp) on a free loopback port that records what it is sent."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from aiohttp import web

from tests.brokers import free_port


@dataclass(frozen=True)
class Received:
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes = field(repr=False)

    def json(self) -> Any:
        return json.loads(self.body)


# Given a request, the answer: (HTTP status, JSON body).
Responder = Callable[[Received], tuple[int, object]]


def accept_all(_: Received) -> tuple[int, object]:
    return 200, {"errcode": 0, "errmsg": "ok", "code": 0}


class Receiver:
    """Answers every POST with ``responder`` and keeps every request, answered or not."""

    def __init__(self, responder: Responder = accept_all) -> None:
        self.port = free_port()
        self.responder = responder
        self.requests: list[Received] = []
        self._runner: web.AppRunner | None = None

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def on(self, path: str) -> list[Received]:
        return [request for request in self.requests if request.path == path]

    async def __aenter__(self) -> Self:
        app = web.Application()
        app.router.add_route("POST", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        received = Received(
            path=request.path,
            query=dict(request.query),
            headers=dict(request.headers),
            body=await request.read(),
        )
        self.requests.append(received)
        status, answer = self.responder(received)
        return web.json_response(answer, status=status)
