"""The alerting service's HTTP endpoint: signed links for captains, a JSON API for systems.

Links (``/l/{token}``, see :mod:`alerting.links`): opening one shows a small page in the
person's language that says which alarm or cabinet it is about and offers one button;
only the button's POST acts. Mail and chat scanners fetch every link they see, and a
GET that acknowledged would silence an alarm on behalf of nobody. What the pages say is
:mod:`alerting.pages`; outside ``/api/``, every error (a bad link, an unknown address, a
wrong method, a failure) is a page in the reader's language with its HTTP status, and
no traceback or id.

API (``/api/v1/...``, a bearer token of ``http.api_tokens``; off when none is set): a
``read`` token may GET, a ``write`` token may also POST and DELETE (403 otherwise);
``by`` and ``created_by`` are recorded after the token's name (``grafana/王小明``):

- ``GET  /api/v1/alarms?state=raised&cabinet_id=X&limit=N`` (``limit`` 1 to
  :data:`MAX_LIST_LIMIT`, default :data:`DEFAULT_LIST_LIMIT`), ``GET /api/v1/alarms/{id}``
  (with its history and notifications);
- ``POST /api/v1/alarms/{id}/ack`` and ``/resolve`` with ``{"by": "person or system"}``;
- ``POST /api/v1/inspections`` with an :class:`alerting.model.Inspection`;
- ``GET  /api/v1/readiness`` (the fleet) and ``/api/v1/readiness/{cabinet_id}``;
- ``GET  /api/v1/silences[?active=false]``, ``POST /api/v1/silences`` (a
  :class:`alerting.silences.SilenceRequest` plus ``created_by``), ``DELETE
  /api/v1/silences/{id}``.

``GET /healthz`` answers 200 once the service runs.

Every query parameter is validated: an unknown one, one given twice or a bad value is a
400 whose JSON names it (``{"error": ..., "parameter": "limit"}``), before the store is
asked anything; so are ids in the path beyond what the store can hold.

Every store call goes through the service's store thread (``call``); the handlers hold
no state of their own.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import date, datetime
from typing import Annotated, Any, Final, ParamSpec, Protocol, TypeVar
from zoneinfo import ZoneInfo

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from aedfleet.clock import Clock
from aedfleet.contract import CabinetId
from aedfleet.service import listen_failure
from alerting.config import ApiScope, ApiToken, HttpSettings
from alerting.engine import AlertingEngine
from alerting.links import LinkAction, LinkClaim, LinkError, LinkSigner
from alerting.model import AlarmState, Inspection, Via
from alerting.pages import (
    CONTENT_SECURITY_POLICY,
    ErrorPage,
    alarm_page,
    error_page,
    inspection_page,
    page_language,
    paged_people,
)
from alerting.render import DEFAULT_MAP_URL_TEMPLATE
from alerting.silences import SilenceError, SilenceLimits, SilenceRequest, accept
from alerting.store import AlarmNotFoundError, AlarmStore, AlarmStoreError, TransitionRefusedError

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")
MAX_BODY_BYTES: Final = 64 * 1024
DEFAULT_LIST_LIMIT: Final = 100
MAX_LIST_LIMIT: Final = 10_000
# Ids are 32-bit integers in the store (PostgreSQL's integer): a larger one names nothing.
MAX_ID: Final = 2**31 - 1
# How much of a bad parameter's value an error repeats.
_ECHOED: Final = 100


class StoreCall(Protocol):
    """Runs a synchronous store function on the service's store thread."""

    def __call__(
        self, work: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
    ) -> Awaitable[T]: ...


class _Creator(BaseModel):
    # Who acts is recorded with the alarm: a blank name is a bad request, not a conflict.
    model_config = ConfigDict(extra="forbid")

    by: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]


class _SilenceCreation(SilenceRequest):
    created_by: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)
    ]


class _Query(BaseModel):
    """An endpoint's query parameters; none but those it declares (the base: none)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


Q = TypeVar("Q", bound=_Query)


class _AlarmsQuery(_Query):
    state: AlarmState | None = None
    cabinet_id: CabinetId | None = None
    limit: int = Field(default=DEFAULT_LIST_LIMIT, ge=1, le=MAX_LIST_LIMIT)


class _SilencesQuery(_Query):
    active: bool = True


class _BadParameterError(ValueError):
    """A query or path parameter the API does not take as given."""

    def __init__(self, parameter: str, problem: str) -> None:
        super().__init__(f"{parameter}: {problem}")
        self.parameter = parameter


def _query(request: web.Request, model: type[Q]) -> Q:
    query = request.query
    for name in query:
        if len(query.getall(name)) > 1:
            raise _BadParameterError(name, "given more than once")
    try:
        return model.model_validate(dict(query))
    except ValidationError as exc:
        first = exc.errors()[0]
        name = ".".join(str(part) for part in first["loc"]) or "query"
        problem = (
            "not a parameter of this endpoint"
            if first["type"] == "extra_forbidden"
            else f"{first['msg']}, not {str(first['input'])[:_ECHOED]!r}"
        )
        raise _BadParameterError(name, problem) from exc


def _path_id(request: web.Request, name: str) -> int:
    value = int(request.match_info[name])  # the route admits digits only
    if value > MAX_ID:
        raise _BadParameterError(name, f"must be at most {MAX_ID}")
    return value


def _json(document: object, status: int = 200) -> web.Response:
    return web.Response(
        text=json.dumps(document, ensure_ascii=False, default=str),
        status=status,
        content_type="application/json",
    )


def _problem(status: int, message: str) -> web.Response:
    return _json({"error": message}, status)


_CLIENT: Final = web.RequestKey("api_client", ApiToken)


def _acting(request: web.Request, said: str) -> str:
    """Who acts, as recorded: the token's name vouches for the system, ``said`` is the
    person or process it names, which the API cannot check."""
    return f"{request[_CLIENT].name}/{said}"


class AlertingHttp:
    """The aiohttp application; an async context manager that serves while open."""

    def __init__(
        self,
        settings: HttpSettings,
        *,
        engine: AlertingEngine,
        alarms: AlarmStore,
        call: StoreCall,
        signer: LinkSigner,
        silence_limits: SilenceLimits,
        clock: Clock,
        time_zone: str = "Asia/Shanghai",
        map_url_template: str = DEFAULT_MAP_URL_TEMPLATE,
    ) -> None:
        self.settings = settings
        self.port: int | None = None
        self._engine = engine
        self._alarms = alarms
        self._call = call
        self._signer = signer
        self._limits = silence_limits
        self._clock = clock
        self._zone = ZoneInfo(time_zone)
        self._map_url_template = map_url_template
        self._clients = tuple(
            (client.token.get_secret_value().encode(), client) for client in settings.api_tokens
        )
        self._runner: web.AppRunner | None = None

    def application(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[self._error_pages])
        app.router.add_get("/healthz", self._health)
        app.router.add_get("/l/{token}", self._open_link)
        app.router.add_post("/l/{token}", self._follow_link)
        api = [
            web.get("/api/v1/alarms", self._list_alarms),
            web.get("/api/v1/alarms/{alarm_id:\\d+}", self._show_alarm),
            web.post("/api/v1/alarms/{alarm_id:\\d+}/ack", self._ack),
            web.post("/api/v1/alarms/{alarm_id:\\d+}/resolve", self._resolve),
            web.post("/api/v1/inspections", self._inspect),
            web.get("/api/v1/readiness", self._fleet_readiness),
            web.get("/api/v1/readiness/{cabinet_id}", self._cabinet_readiness),
            web.get("/api/v1/silences", self._list_silences),
            web.post("/api/v1/silences", self._add_silence),
            web.delete("/api/v1/silences/{silence_id:\\d+}", self._end_silence),
        ]
        app.router.add_routes(api)
        return app

    async def __aenter__(self) -> AlertingHttp:
        self._runner = web.AppRunner(self.application(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.host, self.settings.port)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            raise listen_failure(
                "the alerting HTTP endpoint", self.settings.host, self.settings.port, exc
            ) from None
        self.port = int(self._runner.addresses[0][1])
        log.info("alerting: HTTP on %s:%s", self.settings.host, self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _health(self, _: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    # -- links ---------------------------------------------------------------------------

    @web.middleware
    async def _error_pages(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """HTTP errors outside the API as pages in the reader's language, their status
        kept; a failure logged by its route, never its path, which may be a signed link."""
        if request.path.startswith("/api/"):
            return await handler(request)  # the API answers in JSON itself
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            problem = {
                404: ErrorPage.NOT_FOUND,
                405: ErrorPage.METHOD_NOT_ALLOWED,
            }.get(exc.status, ErrorPage.BAD_REQUEST)
            response = self._error(request, problem, exc.status)
            if "Allow" in exc.headers:
                response.headers["Allow"] = exc.headers["Allow"]
            return response
        except Exception:
            route = request.match_info.route.resource
            log.exception(
                "alerting HTTP: %s %s failed",
                request.method,
                route.canonical if route else "an unknown route",
            )
            return self._error(request, ErrorPage.SERVER_ERROR, 500)

    def _claim(self, request: web.Request) -> LinkClaim:
        return self._signer.verify(request.match_info["token"], self._clock.now())

    async def _open_link(self, request: web.Request) -> web.Response:
        try:
            claim = self._claim(request)
        except LinkError as exc:
            return self._error(request, ErrorPage(exc.reason.value), 403)
        return await self._link_page(request, claim, pressed=False)

    async def _follow_link(self, request: web.Request) -> web.Response:
        try:
            claim = self._claim(request)
        except LinkError as exc:
            return self._error(request, ErrorPage(exc.reason.value), 403)
        now = self._clock.now()
        try:
            if claim.action is LinkAction.ACKNOWLEDGE and claim.alarm_id is not None:
                await self._call(
                    self._engine.acknowledge, claim.alarm_id, claim.person_id, Via.LINK, now
                )
            elif claim.action is LinkAction.RESOLVE and claim.alarm_id is not None:
                await self._call(
                    self._engine.resolve, claim.alarm_id, claim.person_id, Via.LINK, now
                )
            elif (
                claim.cabinet_id is not None and self._engine.cabinet(claim.cabinet_id) is not None
            ):
                inspection = _inspection(
                    claim.cabinet_id, claim.person_id, now, await request.post()
                )
                await self._call(self._engine.record_inspection, inspection, now)
        except _FormError as exc:
            person = self._engine.person(claim.person_id)
            language = person.language if person else page_language(_accepted(request))
            html = error_page(ErrorPage.BAD_FORM, language, field=exc.field)
            return _html(html, 400)
        except TransitionRefusedError:
            pass  # resolved meanwhile: the page shows the alarm as it now is
        except AlarmNotFoundError:
            pass  # not in this store (a restored database): the page says it is unknown
        return await self._link_page(request, claim, pressed=True)

    async def _link_page(
        self, request: web.Request, claim: LinkClaim, *, pressed: bool
    ) -> web.Response:
        person = self._engine.person(claim.person_id)
        language = person.language if person else page_language(_accepted(request))
        if claim.alarm_id is not None:
            alarm = await self._call(self._engine.alarm, claim.alarm_id)
            if alarm is None:
                return _html(error_page(ErrorPage.UNKNOWN_ALARM, language), 404)
            cabinet = self._engine.cabinet(alarm.cabinet_id)
            zones = await self._call(self._engine.time_zones, [alarm.cabinet_id])
            zone = ZoneInfo(zones[alarm.cabinet_id]) if alarm.cabinet_id in zones else self._zone
            paged = paged_people(await self._call(self._alarms.notifications, alarm.alarm_id))
            mentioned = {claim.person_id, *paged, alarm.acknowledged_by, alarm.resolved_by}
            names = {
                who: known.name
                for who in mentioned
                if who is not None and (known := self._engine.person(who)) is not None
            }
            html = alarm_page(
                alarm,
                action=claim.action,
                person_id=claim.person_id,
                pressed=pressed,
                cabinet=cabinet,
                language=language,
                zone=zone,
                names=names,
                paged=paged,
                map_url_template=self._map_url_template,
            )
            return _html(html)
        cabinet = self._engine.cabinet(claim.cabinet_id or "")
        if cabinet is None:
            return _html(error_page(ErrorPage.UNKNOWN_CABINET, language), 404)
        html = inspection_page(
            cabinet,
            person_name=person.name if person else claim.person_id,
            recorded=pressed,
            language=language,
            map_url_template=self._map_url_template,
        )
        return _html(html)

    def _error(self, request: web.Request, problem: ErrorPage, status: int) -> web.Response:
        """An error page for a reader the service does not know: in their browser's language."""
        return _html(error_page(problem, page_language(_accepted(request))), status)

    # -- API -----------------------------------------------------------------------------

    def _client(self, request: web.Request) -> ApiToken | None:
        """The API client whose bearer token the request carries, if any."""
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer":
            return None
        offered = token.strip().encode()
        found = None
        for known, client in self._clients:  # every token compared: no timing tells which
            if hmac.compare_digest(offered, known):
                found = client
        return found

    async def _api(
        self,
        request: web.Request,
        work: Callable[[Q], Awaitable[web.Response]],
        query: type[Q],
    ) -> web.Response:
        client = self._client(request)
        if client is None:
            return _problem(401, "a valid bearer token is required")
        if request.method != "GET" and client.scope is not ApiScope.WRITE:
            return _problem(403, f"the token {client.name!r} may read, not change anything")
        request[_CLIENT] = client
        try:
            return await work(_query(request, query))
        except _BadParameterError as exc:
            return _json({"error": str(exc), "parameter": exc.parameter}, 400)
        except AlarmNotFoundError as exc:
            return _problem(404, str(exc))
        except TransitionRefusedError as exc:
            return _problem(409, str(exc))
        except (ValidationError, SilenceError, ValueError) as exc:
            return _problem(400, _first_error(exc))
        except AlarmStoreError as exc:
            log.warning("alerting API: %s", exc)
            return _problem(503, str(exc))

    async def _body(self, request: web.Request, model: type[T]) -> T:
        raw = await request.read()
        validate = getattr(model, "model_validate_json")  # noqa: B009 - any pydantic model
        result: T = validate(raw or b"{}")
        return result

    async def _list_alarms(self, request: web.Request) -> web.Response:
        async def work(query: _AlarmsQuery) -> web.Response:
            found = await self._call(
                self._alarms.alarms, query.state, query.cabinet_id, query.limit
            )
            return _json([alarm.model_dump(mode="json") for alarm in found])

        return await self._api(request, work, _AlarmsQuery)

    async def _show_alarm(self, request: web.Request) -> web.Response:
        async def work(_: _Query) -> web.Response:
            alarm_id = _path_id(request, "alarm_id")
            alarm = await self._call(self._alarms.alarm, alarm_id)
            if alarm is None:
                raise AlarmNotFoundError(alarm_id)
            history = await self._call(self._alarms.history, alarm_id)
            sent = await self._call(self._alarms.notifications, alarm_id)
            return _json(
                {
                    **alarm.model_dump(mode="json"),
                    "history": [event.model_dump(mode="json") for event in history],
                    "notifications": [n.model_dump(mode="json") for n in sent],
                }
            )

        return await self._api(request, work, _Query)

    async def _ack(self, request: web.Request) -> web.Response:
        return await self._act(request, self._engine.acknowledge)

    async def _resolve(self, request: web.Request) -> web.Response:
        return await self._act(request, self._engine.resolve)

    async def _act(self, request: web.Request, action: Callable[..., Any]) -> web.Response:
        async def work(_: _Query) -> web.Response:
            alarm_id = _path_id(request, "alarm_id")
            creator = await self._body(request, _Creator)
            by = _acting(request, creator.by)
            alarm = await self._call(action, alarm_id, by, Via.API, self._clock.now())
            return _json(alarm.model_dump(mode="json"))

        return await self._api(request, work, _Query)

    async def _inspect(self, request: web.Request) -> web.Response:
        async def work(_: _Query) -> web.Response:
            inspection = await self._body(request, Inspection)
            if self._engine.cabinet(inspection.cabinet_id) is None:
                return _problem(404, f"cabinet {inspection.cabinet_id!r} is not in the registry")
            result = await self._call(self._engine.record_inspection, inspection, self._clock.now())
            return _json(result.model_dump(mode="json"), 201)

        return await self._api(request, work, _Query)

    async def _fleet_readiness(self, request: web.Request) -> web.Response:
        async def work(_: _Query) -> web.Response:
            summary = await self._call(self._engine.fleet_readiness)
            return _json(summary.model_dump(mode="json"))

        return await self._api(request, work, _Query)

    async def _cabinet_readiness(self, request: web.Request) -> web.Response:
        cabinet_id = request.match_info["cabinet_id"]

        async def work(_: _Query) -> web.Response:
            state = await self._call(self._engine.cabinet_readiness, cabinet_id)
            if state is None:
                return _problem(404, f"cabinet {cabinet_id!r} is not known")
            return _json(state.model_dump(mode="json"))

        return await self._api(request, work, _Query)

    async def _list_silences(self, request: web.Request) -> web.Response:
        async def work(query: _SilencesQuery) -> web.Response:
            found = await self._call(
                self._alarms.silences.all, self._clock.now() if query.active else None
            )
            return _json([silence.model_dump(mode="json") for silence in found])

        return await self._api(request, work, _SilencesQuery)

    async def _add_silence(self, request: web.Request) -> web.Response:
        async def work(_: _Query) -> web.Response:
            creation = await self._body(request, _SilenceCreation)
            request_only = SilenceRequest.model_validate(
                creation.model_dump(exclude={"created_by"})
            )
            accepted = accept(request_only, limits=self._limits, now=self._clock.now())
            silence = await self._call(
                self._alarms.silences.add,
                starts_at=accepted.starts_at,
                ends_at=accepted.ends_at,
                reason=accepted.reason,
                created_by=_acting(request, creation.created_by),
                cabinet_id=accepted.cabinet_id,
                region_code=accepted.region_code,
                alarm_type=accepted.alarm_type,
            )
            return _json(silence.model_dump(mode="json"), 201)

        return await self._api(request, work, _Query)

    async def _end_silence(self, request: web.Request) -> web.Response:
        async def work(_: _Query) -> web.Response:
            silence_id = _path_id(request, "silence_id")
            # Silences are never deleted, so one not listed now never existed.
            known = await self._call(self._alarms.silences.all, None)
            if all(silence.silence_id != silence_id for silence in known):
                return _problem(404, f"no silence has the id {silence_id}")
            silence = await self._call(self._alarms.silences.end, silence_id, self._clock.now())
            return _json(silence.model_dump(mode="json"))

        return await self._api(request, work, _Query)


class _FormError(ValueError):
    """A checklist field the service cannot take as sent."""

    def __init__(self, field: str) -> None:
        super().__init__(field)
        self.field = field


def _inspection(
    cabinet_id: str, person_id: str, at: datetime, form: Mapping[str, object]
) -> Inspection:
    """The checklist as an inspection: a ticked box is there, an empty date unchanged."""

    def day(field: str) -> date | None:
        value = form.get(field)
        if not value:
            return None
        try:
            return date.fromisoformat(str(value))
        except ValueError:
            raise _FormError(field) from None

    try:
        return Inspection(
            cabinet_id=cabinet_id,
            person_id=person_id,
            at=at,
            ready_light_ok="ready_light_ok" in form,
            pads_expiry=day("pads_expiry"),
            battery_expiry=day("battery_expiry"),
            cabinet_intact_and_clean="cabinet_intact_and_clean" in form,
            alarm_works="alarm_works" in form,
            note=str(form.get("note") or "")[:500],
            photo_url=str(form.get("photo_url")) if form.get("photo_url") else None,
        )
    except ValidationError as exc:
        raise _FormError(str(exc.errors()[0]["loc"][0])) from None


def _accepted(request: web.Request) -> str:
    return request.headers.get("Accept-Language", "")


def _html(html: str, status: int = 200) -> web.Response:
    return web.Response(
        text=html,
        status=status,
        content_type="text/html",
        charset="utf-8",
        headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY, "Cache-Control": "no-store"},
    )


def _first_error(error: Exception) -> str:
    if isinstance(error, ValidationError):
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        return f"{where}: {first['msg']}" if where else str(first["msg"])
    return str(error)
