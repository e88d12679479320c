"""Alarm details, instants and durations in a reader's words (pure).

The rules say what they found as an :class:`~alerting.model.AlarmDetail`: a key and its
values, no language. This module says it in Chinese or English, with every instant in
the cabinet's own time zone, for the notices (:mod:`alerting.render`), the captain's web
pages (:mod:`alerting.http`) and the operator's command line. The phrases are here, not
in the templates' phrase books, because the notices and the pages each load templates
from a folder of their own and one detail must read the same in both.
"""

# Chinese text is written with full-width punctuation on purpose.
# ruff: noqa: RUF001, RUF002

from __future__ import annotations

import math
import re
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Final
from zoneinfo import ZoneInfo

from aedfleet.registry import Language
from alerting.model import AlarmDetail, DetailKey

__all__ = ["duration", "local_time", "phrase_detail", "phrase_hours"]

_TIME_FORMAT: Final = "%Y-%m-%d %H:%M"
_MINUTE: Final = 60
_HOUR: Final = 60 * _MINUTE
_DAY: Final = 24 * _HOUR

# {at}, {heartbeat_at}: local times; {day}: a date; {kind}: a self-test kind (or "the
# last"); {codes}: the fault codes; {percent}, {low_c}, {high_c}: numbers.
_PHRASES: Final[dict[Language, dict[DetailKey, str]]] = {
    Language.ZH: {
        DetailKey.DOOR_OPEN: "柜门自 {at} 起一直开着",
        DetailKey.DOOR_OPENED_AND_CLOSED: "柜门于 {at} 被打开，之后已关上",
        DetailKey.AED_OUT: "AED 自 {at} 起不在柜内",
        DetailKey.AED_TAKEN_AND_RETURNED: "AED 于 {at} 被取出，之后已放回",
        DetailKey.AED_NOT_RETURNED: "AED 于 {at} 被取出，至今未归还",
        DetailKey.AED_BACK_UNCHECKED: "AED 自 {at} 起已放回：需要更换电极片并通过一次自检",
        DetailKey.SELFTEST_FAILED: "{kind}自检未通过",
        DetailKey.FAULT_CODES: "{kind}自检通过，但报告了故障代码 {codes}",
        DetailKey.READY_LIGHT_OFF: "AED 的就绪指示灯熄灭",
        DetailKey.BATTERY_BELOW: "电池电量低于 {percent}%",
        DetailKey.NO_PADS: "未检测到电极片",
        DetailKey.PADS_EXPIRE: "电极片将于 {day} 过期",
        DetailKey.PADS_EXPIRED: "电极片已于 {day} 过期",
        DetailKey.BATTERY_EXPIRES: "电池将于 {day} 到期",
        DetailKey.BATTERY_EXPIRED: "电池已于 {day} 到期",
        DetailKey.LAST_HEARD: "最后一次收到机柜消息是 {at}",
        DetailKey.NEVER_HEARD: "登记以来从未收到机柜的消息",
        DetailKey.NO_SELFTEST_SINCE: "自 {at} 以来没有收到自检报告",
        DetailKey.NO_SELFTEST_YET: "还没有收到过自检报告",
        DetailKey.ABOVE_STORAGE_RANGE: "柜内温度高于存放范围 {low_c}–{high_c} °C",
        DetailKey.BELOW_STORAGE_RANGE: "柜内温度低于存放范围 {low_c}–{high_c} °C",
        DetailKey.ON_BACKUP_POWER: "市电断开，正在使用备用电源",
        DetailKey.TAMPER_REPORTED: "机柜于 {at} 报告被撬动",
        DetailKey.INSPECTION_DUE: "巡检自 {at} 起逾期",
    },
    Language.EN: {
        DetailKey.DOOR_OPEN: "door open since {at}",
        DetailKey.DOOR_OPENED_AND_CLOSED: "door opened at {at} and closed again",
        DetailKey.AED_OUT: "AED out of its cabinet since {at}",
        DetailKey.AED_TAKEN_AND_RETURNED: "AED taken at {at} and put back",
        DetailKey.AED_NOT_RETURNED: "AED taken at {at} and not returned",
        DetailKey.AED_BACK_UNCHECKED: (
            "AED back since {at}: needs new pads and a passing self-test"
        ),
        DetailKey.SELFTEST_FAILED: "{kind} self-test failed",
        DetailKey.FAULT_CODES: "{kind} self-test passed with fault codes {codes}",
        DetailKey.READY_LIGHT_OFF: "the AED's ready indicator is off",
        DetailKey.BATTERY_BELOW: "battery below {percent} %",
        DetailKey.NO_PADS: "no pads",
        DetailKey.PADS_EXPIRE: "pads expire on {day}",
        DetailKey.PADS_EXPIRED: "pads expired on {day}",
        DetailKey.BATTERY_EXPIRES: "battery expires on {day}",
        DetailKey.BATTERY_EXPIRED: "battery expired on {day}",
        DetailKey.LAST_HEARD: "last heard from at {at}",
        DetailKey.NEVER_HEARD: "never heard from since it was registered",
        DetailKey.NO_SELFTEST_SINCE: "no self-test reported since {at}",
        DetailKey.NO_SELFTEST_YET: "no self-test reported yet",
        DetailKey.ABOVE_STORAGE_RANGE: "cabinet above the storage range {low_c} to {high_c} °C",
        DetailKey.BELOW_STORAGE_RANGE: "cabinet below the storage range {low_c} to {high_c} °C",
        DetailKey.ON_BACKUP_POWER: "mains lost, on backup power",
        DetailKey.TAMPER_REPORTED: "tamper reported at {at}",
        DetailKey.INSPECTION_DUE: "inspection due since {at}",
    },
}
# What some details add when a value says so.
_NO_HEARTBEAT: Final = {
    Language.ZH: "，自 {heartbeat_at} 起没有心跳",
    Language.EN: ", no heartbeat since {heartbeat_at}",
}
_NEEDS_HEAT: Final = {Language.ZH: "，机柜需要加热", Language.EN: " and the cabinet needs heating"}
_SELFTEST_KINDS: Final = {
    Language.ZH: {
        "daily": "每日",
        "weekly": "每周",
        "monthly": "每月",
        "manual": "手动",
        None: "最近一次",
    },
    Language.EN: {
        "daily": "daily",
        "weekly": "weekly",
        "monthly": "monthly",
        "manual": "manual",
        None: "last",
    },
}
_CODE_SEPARATOR: Final = {Language.ZH: "、", Language.EN: ", "}
_FAULT_CODES: Final = {Language.ZH: "，故障代码 {codes}", Language.EN: ", fault codes {codes}"}
_NO_FAULT_CODE: Final = {Language.ZH: "，未报告故障代码", Language.EN: ", no fault code reported"}
_UNITS: Final = {
    Language.ZH: ("{} 秒", "{} 分钟", "{} 小时", "{} 天"),
    Language.EN: ("{} s", "{} min", "{} h", "{} d"),
}


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def local_time(moment: datetime, time_zone: str) -> str:
    """``moment`` as the wall clock of ``time_zone`` shows it, to the minute."""
    return moment.astimezone(_zone(time_zone)).strftime(_TIME_FORMAT)


def phrase_detail(detail: AlarmDetail | None, language: Language, time_zone: str) -> str:
    """``detail`` in ``language``, its instants in ``time_zone``; empty for no detail."""
    if detail is None:
        return ""

    def at(moment: datetime | None) -> str:
        return "" if moment is None else local_time(moment, time_zone)

    text = _PHRASES[language][detail.key].format(
        at=at(detail.at),
        day=_day(detail.day),
        kind=_SELFTEST_KINDS[language][
            detail.selftest_kind.value if detail.selftest_kind else None
        ],
        codes=_CODE_SEPARATOR[language].join(detail.codes),
        percent=_number(detail.percent),
        low_c=_number(detail.low_c),
        high_c=_number(detail.high_c),
    )
    if detail.key is DetailKey.LAST_HEARD and detail.heartbeat_at is not None:
        text += _NO_HEARTBEAT[language].format(heartbeat_at=at(detail.heartbeat_at))
    if detail.key is DetailKey.ON_BACKUP_POWER and detail.needs_heat:
        text += _NEEDS_HEAT[language]
    if detail.key is DetailKey.SELFTEST_FAILED:
        text += (_FAULT_CODES if detail.codes else _NO_FAULT_CODE)[language].format(
            codes=_CODE_SEPARATOR[language].join(detail.codes)
        )
    return text


# OpenStreetMap opening_hours (https://wiki.openstreetmap.org/wiki/Key:opening_hours): the
# common rules a registry holds ("24/7", "Mo-Fr 08:00-18:00; Sa 09:00-12:00", "PH off").
_DAY_CODES: Final = ("Mo", "Tu", "We", "Th", "Fr", "Sa", "Su")
_WEEKDAY: Final = r"(?:Mo|Tu|We|Th|Fr|Sa|Su|PH)"
_SPAN: Final = r"\d\d:\d\d-\d\d:\d\d"
_RULE: Final = re.compile(
    rf"(?:(?P<days>{_WEEKDAY}(?:-{_WEEKDAY})?(?:,{_WEEKDAY}(?:-{_WEEKDAY})?)*)\s+)?"
    rf"(?P<times>{_SPAN}(?:,{_SPAN})*|off|closed)"
)
_DAY_NAMES: Final = {
    Language.ZH: dict(
        zip(
            (*_DAY_CODES, "PH"),
            ("周一", "周二", "周三", "周四", "周五", "周六", "周日", "节假日"),
            strict=True,
        )
    ),
    Language.EN: dict(
        zip(
            (*_DAY_CODES, "PH"),
            ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun", "public holidays"),
            strict=True,
        )
    ),
}
_HOURS_WORDS: Final = {
    # always, every day, a range of days, between days, between rules, closed
    Language.ZH: ("全天 24 小时开放", "每天", "{}至{}", "、", "；", "不开放"),
    Language.EN: ("open 24 hours, every day", "daily", "{}–{}", ", ", "; ", "closed"),
}


def phrase_hours(hours: str, language: Language) -> str:
    """A cabinet's ``availability_hours`` (OpenStreetMap ``opening_hours``) in words:
    ``Mo-Fr 08:00-18:00; PH off`` is "周一至周五 08:00–18:00；节假日 不开放". Syntax
    beyond day and time ranges (months, weeks, sunrise) is shown as written."""
    always, daily, day_range, and_day, between, closed = _HOURS_WORDS[language]
    text = hours.strip()
    if text == "24/7":
        return always
    names = _DAY_NAMES[language]
    phrased = []
    for rule in (part.strip() for part in text.split(";")):
        match = _RULE.fullmatch(rule)
        if match is None:
            return text
        days = match["days"]
        if days in {None, "Mo-Su"}:
            said_days = daily
        else:
            said_days = and_day.join(
                day_range.format(*(names[d] for d in group.split("-")))
                if "-" in group
                else names[group]
                for group in days.split(",")
            )
        times = match["times"]
        said_times = (
            closed
            if times in {"off", "closed"}
            else and_day.join(span.replace("-", "–") for span in times.split(","))
        )
        phrased.append(f"{said_days} {said_times}")
    return between.join(phrased)


def duration(span: timedelta, language: Language) -> str:
    """A span as people say it, to its two largest units: "45 s", "12 min",
    "1 h 5 min", "2 d 3 h" ("45 秒", "12 分钟", "1 小时 5 分钟", "2 天 3 小时"). Rounded
    down: never longer than it was; a negative span is no time at all."""
    seconds = max(0, math.floor(span.total_seconds()))
    second, minute, hour, day = _UNITS[language]
    if seconds < _MINUTE:
        return second.format(seconds)
    if seconds < _HOUR:
        return minute.format(seconds // _MINUTE)
    if seconds < _DAY:
        hours, rest = divmod(seconds, _HOUR)
        return _two(hour.format(hours), minute.format(rest // _MINUTE) if rest >= _MINUTE else "")
    days, rest = divmod(seconds, _DAY)
    return _two(day.format(days), hour.format(rest // _HOUR) if rest >= _HOUR else "")


def _two(first: str, second: str) -> str:
    return f"{first} {second}" if second else first


def _day(day: date | None) -> str:
    return "" if day is None else day.isoformat()


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:g}"
