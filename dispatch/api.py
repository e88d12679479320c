"""The service's small read-only HTTP API (aiohttp), on loopback by default.

- ``GET /metrics``: Prometheus metrics;
- ``GET /api/deliveries?limit=20&cabinet=…&endpoint=…&status=pending``: the newest
  deliveries first, each with its attempts (what ``aedfleet dispatch list`` prints);
- ``GET /api/health``: whether the service is subscribed, and how much is pending.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Final, Self

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from aedfleet.service import listen_failure
from dispatch.metrics import DispatchMetrics
from dispatch.outbox import DeliveryRecord, DeliveryStatus

MAX_LIMIT: Final = 1_000

ListDeliveries = Callable[
    [int, str | None, str | None, DeliveryStatus | None], Awaitable[list[DeliveryRecord]]
]
Health = Callable[[], dict[str, Any]]


class ApiServer:
    """Serves the API while entered; ``port`` is the bound port (useful with port 0)."""

    def __init__(
        self,
        host: str,
        port: int,
        metrics: DispatchMetrics,
        deliveries: ListDeliveries,
        health: Health,
    ) -> None:
        self._host = host
        self._requested_port = port
        self._metrics = metrics
        self._deliveries = deliveries
        self._health = health
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    async def __aenter__(self) -> Self:
        app = web.Application()
        app.router.add_get("/metrics", self._serve_metrics)
        app.router.add_get("/api/deliveries", self._serve_deliveries)
        app.router.add_get("/api/health", self._serve_health)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._requested_port)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            raise listen_failure(
                "the dispatch API", self._host, self._requested_port, exc
            ) from None
        self.port = self._requested_port or _bound_port(self._runner)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _serve_metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self._metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _serve_deliveries(self, request: web.Request) -> web.Response:
        query = request.query
        try:
            limit = int(query.get("limit", "20"))
            status = DeliveryStatus(query["status"]) if "status" in query else None
        except ValueError as exc:
            raise web.HTTPBadRequest(text=f"bad query: {exc}") from None
        if not 1 <= limit <= MAX_LIMIT:
            raise web.HTTPBadRequest(text=f"limit must be between 1 and {MAX_LIMIT}")
        records = await self._deliveries(limit, query.get("cabinet"), query.get("endpoint"), status)
        body = "[" + ",".join(record.model_dump_json() for record in records) + "]"
        return web.Response(text=body, content_type="application/json")

    async def _serve_health(self, request: web.Request) -> web.Response:
        return web.Response(text=json.dumps(self._health()), content_type="application/json")


def _bound_port(runner: web.AppRunner) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    raise RuntimeError("the API server is bound to no TCP port")
