"""Notices in words: subject, plain text, HTML, chat markdown and one SMS, in zh or en.

Pure: :meth:`Renderer.render` reads nothing but the notice and the templates loaded at
construction, and takes its times from the notice (``created_at``, the alarms' own
stamps), never from a clock, so the same notice always renders the same message.

Templates live in ``alerting/templates/{language}/``, one folder per
:class:`~aedfleet.registry.Language`, each with the same files:

- ``words.j2``: the phrase book (per alarm type: a title, what is wrong in plain words
  a school janitor understands, and what to do; severities, roles, access modes), which
  the captain's web pages (:mod:`alerting.pages`) import as well;
- ``subject.j2``: one line for every kind of notice;
- ``alarm.*.j2`` for pages and reminders (one alarm or several grouped together),
  ``resolved.*.j2`` for resolution notices, ``digest.*.j2`` for the daily round-up;
  each as ``txt`` (email plain part), ``html`` (email HTML part), ``md`` (the markdown
  WeCom, DingTalk and Feishu robots share) and ``short`` (chat text and SMS).

Jinja2 runs with :class:`~jinja2.StrictUndefined`, so a phrase missing for an alarm type
or a misspelt variable fails the render instead of leaving a blank in a page, and
autoescapes only the HTML templates: cabinet names and addresses come from a registry
file and must not become markup in an email. The markdown is not escaped: the robots
have no common escape syntax, and registry text is written by the fleet's own staff.

The SMS text is at most :data:`SMS_MAX_CHARS` characters and ends with the main link
(the first acknowledge link, else the first inspection link): whitespace is collapsed,
and if the words are still too long they are cut and marked with an ellipsis, never the
link. An alarm's details (:mod:`alerting.phrasing`) are said in the recipient's language,
and its times in its cabinet's time zone (``AlarmBrief.time_zone``, from the cabinet's
birth; ``RenderSettings.time_zone``, Asia/Shanghai by default, for a cabinet that has not
said); the other times of a notice in those of its first alarm. Every cabinet carries a
map link made from its coordinates by ``RenderSettings.map_url_template`` (OpenStreetMap
by default; a deployment may point it at a map its users' phones open more readily).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any, Final

import jinja2
from pydantic import BaseModel, ConfigDict, Field, field_validator

from aedfleet.contract import TimeZoneName
from aedfleet.registry import Cabinet, Language
from alerting.model import AlarmType, NoticeKind, Severity
from alerting.notifiers.base import AlarmBrief, Notice, RenderedNotice, RenderError
from alerting.phrasing import duration, local_time, phrase_detail

__all__ = [
    "DEFAULT_MAP_URL_TEMPLATE",
    "SMS_MAX_CHARS",
    "TEMPLATES",
    "RenderSettings",
    "Renderer",
    "fit_short_text",
    "main_link",
    "map_url",
]

SMS_MAX_CHARS: Final = 300
SUBJECT_MAX_CHARS: Final = 300
DEFAULT_MAP_URL_TEMPLATE: Final = (
    "https://www.openstreetmap.org/?mlat={lat}&mlon={lon}#map=18/{lat}/{lon}"
)
TEMPLATES: Final = Path(__file__).parent / "templates"
_ELLIPSIS: Final = "…"
_MIN_WORDS: Final = 40
_FAMILY: Final = {
    NoticeKind.PAGE: "alarm",
    NoticeKind.REMINDER: "alarm",
    NoticeKind.RESOLVED: "resolved",
    NoticeKind.DIGEST: "digest",
}


class RenderSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    time_zone: TimeZoneName = Field(
        default="Asia/Shanghai",
        description="Times of an alarm whose cabinet's zone is not known are shown in this zone",
    )
    map_url_template: str = Field(
        default=DEFAULT_MAP_URL_TEMPLATE,
        description="A map link for a cabinet; {lat} and {lon} are its WGS84 coordinates",
    )

    @field_validator("map_url_template")
    @classmethod
    def _has_coordinates(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("the map link must be an http(s) URL")
        if "{lat}" not in value or "{lon}" not in value:
            raise ValueError("the map link must contain {lat} and {lon}")
        try:
            value.format(lat=0.0, lon=0.0)
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"the map link may use only {{lat}} and {{lon}}: {exc}") from None
        return value


def map_url(cabinet: Cabinet, template: str = DEFAULT_MAP_URL_TEMPLATE) -> str:
    """A link to the cabinet on a map; six decimals locate it to about 10 cm."""
    return template.format(lat=f"{cabinet.latitude:.6f}", lon=f"{cabinet.longitude:.6f}")


def fit_short_text(words: str, link: str | None, limit: int = SMS_MAX_CHARS) -> str:
    """``words`` and ``link`` in at most ``limit`` characters, cutting only the words.

    A link too long to leave room for a few words is left out rather than cut (a cut
    link is worse than none) or allowed to fail the whole notice, email included.
    """
    words = " ".join(words.split())
    room = limit - len(link) - 1 if link else 0
    if link is None or room < _MIN_WORDS:
        return words if len(words) <= limit else words[: limit - 1].rstrip() + _ELLIPSIS
    if len(words) > room:
        words = words[: room - 1].rstrip() + _ELLIPSIS
    return f"{words} {link}" if words else link


def main_link(notice: Notice) -> tuple[str, str] | None:
    """What the short text links to: ``("ack", url)``, ``("inspect", url)`` or nothing.

    A resolution notice links nowhere: there is nothing left to acknowledge.
    """
    if notice.kind is NoticeKind.RESOLVED:
        return None
    for brief in notice.alarms:
        if brief.ack_url:
            return "ack", brief.ack_url
    for brief in notice.alarms:
        if brief.inspect_url:
            return "inspect", brief.inspect_url
    return None


class Renderer:
    """Renders notices with the templates of ``templates`` (the packaged ones by default).

    Templates compile on first use and stay cached in the renderer: make one and keep it.
    """

    def __init__(
        self, settings: RenderSettings | None = None, templates: Path | None = None
    ) -> None:
        self.settings = settings or RenderSettings()
        self._environment = jinja2.Environment(
            loader=jinja2.FileSystemLoader(templates or TEMPLATES),
            autoescape=jinja2.select_autoescape(
                enabled_extensions=("html.j2",), default_for_string=False, default=False
            ),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=False,
        )
        self._environment.filters["local"] = _local_time

    def render(self, notice: Notice) -> RenderedNotice:
        """The notice in the recipient's language, in every form a channel needs."""
        language = notice.recipient.language
        family = _FAMILY[notice.kind]
        link = main_link(notice)
        if link and SMS_MAX_CHARS - len(link[1]) - 1 < _MIN_WORDS:
            link = None  # fit_short_text would leave it out: no label for a missing link
        alarms = [self._alarm_view(brief, language) for brief in notice.alarms]
        context = self._context(notice, alarms) | {"main_link": link[0] if link else None}
        try:
            subject = " ".join(self._render(language, "subject.j2", context).split())
            text = self._render(language, f"{family}.txt.j2", context).strip() + "\n"
            html = self._render(language, f"{family}.html.j2", context).strip() + "\n"
            markdown = self._render(language, f"{family}.md.j2", context).strip()
            short = self._render(language, f"{family}.short.j2", context)
        except jinja2.TemplateError as exc:
            raise RenderError(
                f"rendering {notice.kind} notice {notice.notice_id} in {language}: {exc}"
            ) from exc
        if len(subject) > SUBJECT_MAX_CHARS:
            subject = subject[: SUBJECT_MAX_CHARS - 1] + _ELLIPSIS
        return RenderedNotice(
            notice=notice,
            language=language,
            subject=subject,
            text=text,
            html=html,
            markdown=markdown,
            short_text=fit_short_text(short, link[1] if link else None),
            details=tuple(view["detail"] for view in alarms),
        )

    def _render(self, language: Language, name: str, context: Mapping[str, Any]) -> str:
        return self._environment.get_template(f"{language.value}/{name}").render(context)

    def _context(self, notice: Notice, alarms: list[dict[str, Any]]) -> dict[str, Any]:
        language = notice.recipient.language
        prior = notice.escalated_after
        worst = max((brief.alarm.severity for brief in notice.alarms), key=lambda s: s.rank)
        return {
            "notice": notice,
            "kind": notice.kind.value,
            "person": notice.recipient,
            "role": notice.role.value,
            "alarms": alarms,
            "count": len(alarms),
            "cabinet_count": len({brief.cabinet.cabinet_id for brief in notice.alarms}),
            "worst": worst.value,
            "urgent": worst.rank >= Severity.HIGH.rank,
            "prior": prior,
            "waited": duration(notice.created_at - prior[0].paged_at, language) if prior else "",
            "created_at": notice.created_at,
            "time_zone": alarms[0]["time_zone"],
        }

    def _alarm_view(self, brief: AlarmBrief, language: Language) -> dict[str, Any]:
        alarm = brief.alarm
        time_zone = brief.time_zone or self.settings.time_zone
        return {
            "alarm": alarm,
            "type": alarm.type.value,
            "severity": alarm.severity.value,
            "cabinet": brief.cabinet,
            "access": brief.cabinet.access_mode.value,
            "map_url": map_url(brief.cabinet, self.settings.map_url_template),
            "ack_url": brief.ack_url,
            "resolve_url": brief.resolve_url,
            "inspect_url": brief.inspect_url,
            "via": alarm.resolved_via.value if alarm.resolved_via else None,
            "expiry": _relevant_expiry(brief),
            "time_zone": time_zone,
            "detail": phrase_detail(alarm.detail, language, time_zone),
            # The short forms (SMS, chat) have no room for the detail but the codes a
            # technician needs to bring the right part.
            "codes": " ".join(alarm.detail.codes) if alarm.detail else "",
        }


def _local_time(moment: datetime | None, time_zone: str) -> str:
    return "" if moment is None else local_time(moment, time_zone)


_PADS_TYPES: Final = frozenset({AlarmType.PADS_EXPIRING, AlarmType.PADS_EXPIRED})
_BATTERY_TYPES: Final = frozenset({AlarmType.BATTERY_EXPIRING, AlarmType.BATTERY_EXPIRED})


def _relevant_expiry(brief: AlarmBrief) -> tuple[str, date] | None:
    """The registry's expiry date an expiry alarm is about, if the registry knows it."""
    cabinet = brief.cabinet
    if brief.alarm.type in _PADS_TYPES and cabinet.pads_expiry:
        return "pads", cabinet.pads_expiry
    if brief.alarm.type in _BATTERY_TYPES and cabinet.battery_expiry:
        return "battery", cabinet.battery_expiry
    return None
