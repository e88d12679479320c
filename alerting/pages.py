"""The captain's link pages in words and pictures (pure): what a page shows, as HTML.

:mod:`alerting.http` verifies the link, reads the store and acts; this module decides
what the page then says and renders it with the Jinja2 templates of
``alerting/templates/web/``. Those templates also import the notices' phrase books
(``alerting/templates/{zh,en}/words.j2``), so an alarm type's title, severity, access
mode and what to do read the same in a captain's message and on the page it links to.

Every page is self-contained: styles inline, the map an inline SVG drawn here from the
cabinet's coordinates (no tiles, no scripts), so a page loads nothing from anywhere, as
:data:`CONTENT_SECURITY_POLICY` also tells the browser. The links out of it ("open in a
map app") are plain anchors the captain chooses to follow.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Final
from zoneinfo import ZoneInfo

import jinja2

from aedfleet.registry import Cabinet, Language
from alerting.links import LinkAction
from alerting.model import Alarm, AlarmState, NoticeKind, Notification, Via
from alerting.phrasing import local_time, phrase_detail, phrase_hours
from alerting.render import DEFAULT_MAP_URL_TEMPLATE, map_url

__all__ = [
    "CONTENT_SECURITY_POLICY",
    "ErrorPage",
    "MapView",
    "Outcome",
    "alarm_page",
    "error_page",
    "inspection_page",
    "outcome",
    "page_language",
    "paged_people",
    "static_map",
]

# Nothing but the page itself: inline styles and SVG, forms posted back to the link.
CONTENT_SECURITY_POLICY: Final = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)

_templates = jinja2.Environment(
    loader=jinja2.PackageLoader("alerting", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


class ErrorPage(StrEnum):
    """Why a page shows no alarm or checklist; each has words in ``web/words.j2``."""

    EXPIRED = "expired"
    BAD_SIGNATURE = "bad_signature"
    MALFORMED = "malformed"
    WRONG_ACTION = "wrong_action"
    UNKNOWN_ALARM = "unknown_alarm"
    UNKNOWN_CABINET = "unknown_cabinet"
    BAD_FORM = "bad_form"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    BAD_REQUEST = "bad_request"
    SERVER_ERROR = "server_error"


def page_language(accept_language: str) -> Language:
    """The language for a page that knows nobody's (a link that did not verify, a wrong
    address): the browser's first preference the pages speak, else Chinese."""
    ranked: list[tuple[float, int, Language]] = []
    for position, item in enumerate(accept_language.split(",")):
        tag, _, parameters = item.strip().partition(";")
        primary = tag.strip().lower().split("-", 1)[0]
        weight = 1.0
        for parameter in parameters.split(";"):
            name, _, value = parameter.strip().partition("=")
            if name.strip() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        if weight > 0 and primary in {language.value for language in Language}:
            ranked.append((-weight, position, Language(primary)))
    return min(ranked)[2] if ranked else Language.ZH


class Outcome(StrEnum):
    """What an alarm page says instead of, or before, offering its button."""

    OFFER = "offer"  # the button: nothing done yet that this link could do
    ACKNOWLEDGED_NOW = "acknowledged_now"  # this person's press acknowledged it
    RESOLVED_NOW = "resolved_now"  # this person's press resolved it
    ACKNOWLEDGED = "acknowledged"  # acknowledged before (by whoever): who and when
    RESOLVED = "resolved"  # resolved (by whoever, or by itself): who and when


def outcome(alarm: Alarm, action: LinkAction, person_id: str, *, pressed: bool) -> Outcome:
    """``pressed``: the page answers the POST of its button (acting is idempotent, so a
    press on an alarm someone else already handled changed nothing, and says so)."""
    if alarm.state is AlarmState.RESOLVED:
        mine = pressed and action is LinkAction.RESOLVE and alarm.resolved_by == person_id
        return Outcome.RESOLVED_NOW if mine else Outcome.RESOLVED
    if action is LinkAction.ACKNOWLEDGE and alarm.state is AlarmState.ACKNOWLEDGED:
        mine = pressed and alarm.acknowledged_by == person_id
        return Outcome.ACKNOWLEDGED_NOW if mine else Outcome.ACKNOWLEDGED
    return Outcome.OFFER


def paged_people(notifications: Iterable[Notification]) -> list[str]:
    """The ids of the people paged or reminded about an alarm, first paged first."""
    paging = (NoticeKind.PAGE, NoticeKind.REMINDER)
    ordered = sorted((n for n in notifications if n.kind in paging), key=lambda n: n.created_at)
    return list(dict.fromkeys(n.person_id for n in ordered))


# -- the map ------------------------------------------------------------------------------------

_WIDTH: Final = 320
_HEIGHT: Final = 180
_METRES_PER_PX: Final = 1.5  # 480 m across: the streets a captain walks to the cabinet
_METRES_PER_DEGREE_LAT: Final = 110_574.0
_METRES_PER_DEGREE_LON_AT_EQUATOR: Final = 111_320.0
_GRID_DEGREES: Final = 0.001  # about 110 m north-south
_SCALE_METRES: Final = 100
_MAX_GRID_LINES: Final = 20


@dataclass(frozen=True)
class GridLine:
    """One graticule line across the map: a meridian or a parallel."""

    position: float  # px from the left (a meridian) or from the top (a parallel)
    label: str  # its latitude or longitude, "22.543°N"


@dataclass(frozen=True)
class MapView:
    """A static map: the cabinet's pin at the centre of a graticule, north up."""

    width: int
    height: int
    pin_x: float
    pin_y: float
    latitude: float
    longitude: float
    meridians: tuple[GridLine, ...]
    parallels: tuple[GridLine, ...]
    scale_px: float
    scale_label: str
    geo_uri: str
    map_url: str


def static_map(cabinet: Cabinet, map_url_template: str = DEFAULT_MAP_URL_TEMPLATE) -> MapView:
    """The cabinet on a map with no tiles: an equirectangular view around its
    coordinates, with the round thousandths of a degree drawn and labelled so the pin
    can be read off against them, a 100 m scale bar, and links for a map app."""
    lat, lon = cabinet.latitude, cabinet.longitude
    x_per_degree = (
        _METRES_PER_DEGREE_LON_AT_EQUATOR * max(math.cos(math.radians(lat)), 1e-6)
    ) / _METRES_PER_PX
    y_per_degree = _METRES_PER_DEGREE_LAT / _METRES_PER_PX
    centre_x, centre_y = _WIDTH / 2, _HEIGHT / 2

    def lines(centre: float, per_degree: float, span_px: float) -> list[tuple[float, float]]:
        """(offset from the centre in px, degrees) of each round line in the span."""
        half = span_px / 2 / per_degree
        first = math.ceil((centre - half) / _GRID_DEGREES)
        last = math.floor((centre + half) / _GRID_DEGREES)
        if last - first > _MAX_GRID_LINES:  # near a pole the meridians crowd together
            return []
        return [
            ((step * _GRID_DEGREES - centre) * per_degree, step * _GRID_DEGREES)
            for step in range(first, last + 1)
        ]

    meridians = tuple(
        GridLine(centre_x + offset, _degrees((degrees + 180) % 360 - 180, "E", "W"))
        for offset, degrees in lines(lon, x_per_degree, _WIDTH)
    )
    parallels = tuple(
        GridLine(centre_y - offset, _degrees(degrees, "N", "S"))
        for offset, degrees in lines(lat, y_per_degree, _HEIGHT)
        if abs(degrees) <= 90  # nothing beyond the pole
    )
    return MapView(
        width=_WIDTH,
        height=_HEIGHT,
        pin_x=centre_x,
        pin_y=centre_y,
        latitude=lat,
        longitude=lon,
        meridians=meridians,
        parallels=parallels,
        scale_px=_SCALE_METRES / _METRES_PER_PX,
        scale_label=f"{_SCALE_METRES} m",
        geo_uri=f"geo:{lat:.6f},{lon:.6f}",
        map_url=map_url(cabinet, map_url_template),
    )


def _degrees(value: float, positive: str, negative: str) -> str:
    return f"{abs(value):.3f}°{positive if value >= 0 else negative}"


# -- pages --------------------------------------------------------------------------------------


def _render(name: str, language: Language, **values: Any) -> str:
    return _templates.get_template(f"web/{name}").render(lang=language.value, **values)


def _cabinet_values(
    cabinet: Cabinet | None, language: Language, map_url_template: str
) -> dict[str, Any]:
    if cabinet is None:
        return {"cabinet": None, "map": None, "hours": ""}
    return {
        "cabinet": cabinet,
        "map": static_map(cabinet, map_url_template),
        "hours": phrase_hours(cabinet.availability_hours, language),
    }


def alarm_page(
    alarm: Alarm,
    *,
    action: LinkAction,
    person_id: str,
    pressed: bool,
    cabinet: Cabinet | None,
    language: Language,
    zone: ZoneInfo,
    names: Mapping[str, str],
    paged: Iterable[str],
    map_url_template: str = DEFAULT_MAP_URL_TEMPLATE,
) -> str:
    """The page an acknowledge or resolve link opens. ``names``: person id → name, for
    the people the page mentions (anyone else is shown as recorded: ``ops/王小明``)."""

    def name(who: str | None) -> str:
        return "" if who is None else names.get(who, who)

    def when(moment: datetime | None) -> str:
        return "" if moment is None else local_time(moment, zone.key)

    return _render(
        "alarm.html.j2",
        language,
        zone=zone,
        alarm=alarm,
        action=action.value,
        outcome=outcome(alarm, action, person_id, pressed=pressed).value,
        detail=phrase_detail(alarm.detail, language, zone.key),
        codes=alarm.detail.codes if alarm.detail else (),
        since=when(alarm.condition_since),
        person=name(person_id),
        acknowledged_by=name(alarm.acknowledged_by),
        acknowledged_at=when(alarm.acknowledged_at),
        resolved_by="" if alarm.resolved_via is Via.AUTO else name(alarm.resolved_by),
        resolved_at=when(alarm.resolved_at),
        paged=[name(who) for who in paged],
        **_cabinet_values(cabinet, language, map_url_template),
    )


def inspection_page(
    cabinet: Cabinet,
    *,
    person_name: str,
    recorded: bool,
    language: Language,
    map_url_template: str = DEFAULT_MAP_URL_TEMPLATE,
) -> str:
    """The checklist an inspection link opens, or what it recorded (``recorded``)."""
    return _render(
        "inspect.html.j2",
        language,
        done=recorded,
        person=person_name,
        **_cabinet_values(cabinet, language, map_url_template),
    )


def error_page(problem: ErrorPage, language: Language, field: str = "") -> str:
    """A page that says what went wrong and what to do, naming no alarm, cabinet or
    person: whoever sees it may not be the one the link was for. ``field``: the form
    field a :attr:`ErrorPage.BAD_FORM` refused."""
    return _render("error.html.j2", language, problem=problem.value, field=field)
