"""Alarm details, instants and durations in words (pure): every detail key in both
languages, instants in the cabinet's zone, durations in their largest units."""

# Chinese text is written with full-width punctuation on purpose.
# ruff: noqa: RUF001

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from aedfleet.contract import SelftestKind
from aedfleet.registry import Language
from alerting.model import AlarmDetail, DetailKey
from alerting.phrasing import duration, local_time, phrase_detail, phrase_hours

AT = datetime(2026, 12, 4, 8, 5, tzinfo=UTC)  # 16:05 in Shenzhen
BEAT = datetime(2026, 12, 4, 7, 30, tzinfo=UTC)


def full(key: DetailKey) -> AlarmDetail:
    """A detail of ``key`` with every value given (each key uses those it needs)."""
    return AlarmDetail(
        key=key,
        at=AT,
        heartbeat_at=BEAT,
        day=date(2027, 1, 31),
        selftest_kind=SelftestKind.WEEKLY,
        codes=("E-12", "B-3"),
        percent=25,
        low_c=0,
        high_c=50,
        needs_heat=True,
    )


@pytest.mark.parametrize("key", list(DetailKey))
def test_every_detail_is_said_in_chinese_without_english_words(key: DetailKey) -> None:
    words = phrase_detail(full(key), Language.ZH, "Asia/Shanghai")

    assert re.search(r"[\u4e00-\u9fff]", words), words
    latin = set(re.findall(r"[A-Za-z]+", words.replace("E-12", "").replace("B-3", "")))
    assert latin <= {"AED", "C"}, words  # the device's name, and °C
    assert "UTC" not in words
    assert "08:05" not in words
    assert "07:30" not in words


@pytest.mark.parametrize("key", list(DetailKey))
def test_every_detail_is_said_in_english(key: DetailKey) -> None:
    words = phrase_detail(full(key), Language.EN, "Asia/Shanghai")

    assert re.fullmatch(r"[\x20-\x7e°]+", words), words
    assert "UTC" not in words


def test_instants_are_the_cabinets_wall_clock() -> None:
    offline = AlarmDetail(key=DetailKey.LAST_HEARD, at=AT, heartbeat_at=BEAT)

    assert phrase_detail(offline, Language.ZH, "Asia/Shanghai") == (
        "最后一次收到机柜消息是 2026-12-04 16:05，自 2026-12-04 15:30 起没有心跳"
    )
    assert phrase_detail(offline, Language.EN, "Europe/Berlin") == (
        "last heard from at 2026-12-04 09:05, no heartbeat since 2026-12-04 08:30"
    )
    said_offline = AlarmDetail(key=DetailKey.LAST_HEARD, at=AT)
    assert phrase_detail(said_offline, Language.EN, "UTC") == "last heard from at 2026-12-04 08:05"
    assert local_time(datetime(2026, 7, 1, 12, tzinfo=UTC), "Europe/Berlin") == "2026-07-01 14:00"


@pytest.mark.parametrize(
    ("detail", "zh", "en"),
    [
        (
            AlarmDetail(key=DetailKey.SELFTEST_FAILED),
            "最近一次自检未通过，未报告故障代码",
            "last self-test failed, no fault code reported",
        ),
        (
            AlarmDetail(
                key=DetailKey.SELFTEST_FAILED, selftest_kind=SelftestKind.DAILY, codes=("E-12",)
            ),
            "每日自检未通过，故障代码 E-12",
            "daily self-test failed, fault codes E-12",
        ),
        (
            AlarmDetail(key=DetailKey.FAULT_CODES, codes=("E-12", "B-3")),
            "最近一次自检通过，但报告了故障代码 E-12、B-3",
            "last self-test passed with fault codes E-12, B-3",
        ),
        (
            AlarmDetail(key=DetailKey.BATTERY_BELOW, percent=12.5),
            "电池电量低于 12.5%",
            "battery below 12.5 %",
        ),
        (
            AlarmDetail(key=DetailKey.ABOVE_STORAGE_RANGE, low_c=0, high_c=50),
            "柜内温度高于存放范围 0–50 °C",
            "cabinet above the storage range 0 to 50 °C",
        ),
        (
            AlarmDetail(key=DetailKey.ON_BACKUP_POWER),
            "市电断开，正在使用备用电源",
            "mains lost, on backup power",
        ),
        (
            AlarmDetail(key=DetailKey.ON_BACKUP_POWER, needs_heat=True),
            "市电断开，正在使用备用电源，机柜需要加热",
            "mains lost, on backup power and the cabinet needs heating",
        ),
        (
            AlarmDetail(key=DetailKey.PADS_EXPIRED, day=date(2026, 11, 30)),
            "电极片已于 2026-11-30 过期",
            "pads expired on 2026-11-30",
        ),
    ],
)
def test_values_in_both_languages(detail: AlarmDetail, zh: str, en: str) -> None:
    assert phrase_detail(detail, Language.ZH, "Asia/Shanghai") == zh
    assert phrase_detail(detail, Language.EN, "Asia/Shanghai") == en


def test_no_detail_is_no_words() -> None:
    assert phrase_detail(None, Language.ZH, "Asia/Shanghai") == ""


@pytest.mark.parametrize(
    ("span", "zh", "en"),
    [
        (timedelta(seconds=-3), "0 秒", "0 s"),
        (timedelta(seconds=0.9), "0 秒", "0 s"),
        (timedelta(seconds=45), "45 秒", "45 s"),
        (timedelta(seconds=59.99), "59 秒", "59 s"),
        (timedelta(minutes=1), "1 分钟", "1 min"),
        (timedelta(minutes=12, seconds=59), "12 分钟", "12 min"),
        (timedelta(hours=1), "1 小时", "1 h"),
        (timedelta(hours=1, minutes=5, seconds=30), "1 小时 5 分钟", "1 h 5 min"),
        (timedelta(hours=23, minutes=59), "23 小时 59 分钟", "23 h 59 min"),
        (timedelta(days=1), "1 天", "1 d"),
        (timedelta(days=2, hours=3, minutes=59), "2 天 3 小时", "2 d 3 h"),
        (timedelta(days=400), "400 天", "400 d"),
    ],
)
def test_durations_in_their_largest_units(span: timedelta, zh: str, en: str) -> None:
    assert duration(span, Language.ZH) == zh
    assert duration(span, Language.EN) == en


@given(seconds=st.integers(min_value=0, max_value=10**8))
def test_a_duration_never_says_more_than_it_was(seconds: int) -> None:
    units = {"s": 1, "min": 60, "h": 3600, "d": 86400}
    said = duration(timedelta(seconds=seconds), Language.EN).split()
    total = sum(
        int(number) * units[unit] for number, unit in zip(said[::2], said[1::2], strict=True)
    )
    assert 0 <= seconds - total < units[said[-1]]


@pytest.mark.parametrize(
    ("key", "missing"),
    [
        (DetailKey.DOOR_OPEN, "at"),
        (DetailKey.FAULT_CODES, "codes"),
        (DetailKey.PADS_EXPIRE, "day"),
        (DetailKey.BATTERY_BELOW, "percent"),
        (DetailKey.ABOVE_STORAGE_RANGE, "low_c, high_c"),
    ],
)
def test_a_detail_without_the_values_its_key_needs_is_refused(key: DetailKey, missing: str) -> None:
    with pytest.raises(ValidationError, match=f"needs {missing}"):
        AlarmDetail(key=key)


def test_a_detail_round_trips_through_its_stored_json() -> None:
    detail = full(DetailKey.LAST_HEARD)
    assert AlarmDetail.model_validate_json(detail.model_dump_json(exclude_defaults=True)) == detail
    zero = AlarmDetail(key=DetailKey.BELOW_STORAGE_RANGE, low_c=0, high_c=0)
    assert AlarmDetail.model_validate_json(zero.model_dump_json(exclude_defaults=True)) == zero


@pytest.mark.parametrize(
    ("hours", "chinese", "english"),
    [
        ("24/7", "全天 24 小时开放", "open 24 hours, every day"),
        ("Mo-Su 06:00-24:00", "每天 06:00–24:00", "daily 06:00–24:00"),
        ("08:00-20:00", "每天 08:00–20:00", "daily 08:00–20:00"),
        (
            "Mo-Fr 08:00-18:00; Sa 09:00-12:00,14:00-17:00; PH off",
            "周一至周五 08:00–18:00；周六 09:00–12:00、14:00–17:00；节假日 不开放",
            "Mon–Fri 08:00–18:00; Sat 09:00–12:00, 14:00–17:00; public holidays closed",
        ),
        ("Mo,We-Fr 07:30-12:00", "周一、周三至周五 07:30–12:00", "Mon, Wed–Fri 07:30–12:00"),
        # Beyond days and times: shown as the registry has it, in either language.
        ("sunrise-sunset", "sunrise-sunset", "sunrise-sunset"),
        ("Mo-Fr 08:00-18:00; Jan off", "Mo-Fr 08:00-18:00; Jan off", "Mo-Fr 08:00-18:00; Jan off"),
    ],
)
def test_availability_hours_in_words(hours: str, chinese: str, english: str) -> None:
    assert phrase_hours(hours, Language.ZH) == chinese
    assert phrase_hours(hours, Language.EN) == english
