"""The captain's link pages as rendered HTML (pure): every alarm type has words and
guidance in every language, every error page has its words, the map's pin sits on the
cabinet's coordinates, and the page's outcome follows the alarm's state and who acted."""

# The pages speak Chinese: full-width punctuation in the expected text is intended.
# ruff: noqa: RUF001

from __future__ import annotations

import html as markup
import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import jinja2
import pytest

from aedfleet.registry import AccessMode, Cabinet, Language
from alerting.links import LinkAction, LinkErrorReason
from alerting.model import Alarm, AlarmDetail, AlarmState, AlarmType, DetailKey, Severity, Via
from alerting.pages import (
    ErrorPage,
    Outcome,
    alarm_page,
    error_page,
    inspection_page,
    outcome,
    page_language,
    static_map,
)
from alerting.render import TEMPLATES

SHANGHAI = ZoneInfo("Asia/Shanghai")
AT = datetime(2026, 12, 4, 8, 5, tzinfo=UTC)  # 16:05 in Shenzhen
CABINET = Cabinet(
    cabinet_id="cab-0042",
    name="福田站 42号AED",
    latitude=22.5431,
    longitude=114.0579,
    address="深圳市福田区深南大道 1 号",
    floor="B1",
    indoor_description="B 出口闸机旁",
    access_mode=AccessMode.PIN,
    availability_hours="Mo-Fr 07:00-22:00; PH off",
)


def alarm(kind: AlarmType = AlarmType.SELFTEST_FAILED, /, **changes: object) -> Alarm:
    values: dict[str, object] = {
        "alarm_id": 7,
        "cabinet_id": CABINET.cabinet_id,
        "type": kind,
        "severity": Severity.CRITICAL,
        "state": AlarmState.RAISED,
        "condition_since": AT,
        "raised_at": AT,
    }
    return Alarm.model_validate(values | changes)


def page(shown: Alarm, language: Language = Language.ZH, **changes: object) -> str:
    values: dict[str, object] = {
        "action": LinkAction.ACKNOWLEDGE,
        "person_id": "cap-1",
        "pressed": False,
        "cabinet": CABINET,
        "language": language,
        "zone": SHANGHAI,
        "names": {"cap-1": "张敏", "bak-1": "Jamie 李"},
        "paged": ["cap-1"],
    }
    return alarm_page(shown, **(values | changes))  # type: ignore[arg-type]


def text_of(html: str, element_id: str) -> str:
    """The text of the element with ``element_id`` (tags dropped, spaces collapsed)."""
    match = re.search(rf'<(\w+)[^>]* id="{element_id}"[^>]*>(.*?)</\1>', html, re.S)
    assert match, f"no #{element_id}"
    return " ".join(markup.unescape(re.sub(r"<[^>]+>", " ", match[2])).split())


def phrase_book(language: Language) -> object:
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True)
    return environment.get_template(f"{language.value}/words.j2").module


@pytest.mark.parametrize("language", list(Language))
@pytest.mark.parametrize("kind", list(AlarmType))
def test_every_alarm_type_has_its_title_and_what_to_do_in_every_language(
    kind: AlarmType, language: Language
) -> None:
    words = phrase_book(language)
    html = page(alarm(kind), language)
    assert text_of(html, "alarm-type") == words.titles[kind.value]  # type: ignore[attr-defined]
    guidance = text_of(html, "guidance")
    assert words.actions[kind.value] in guidance  # type: ignore[attr-defined]
    assert set(words.actions) == {k.value for k in AlarmType}  # type: ignore[attr-defined]


def test_a_failed_self_test_names_its_fault_codes_beside_what_to_do() -> None:
    detail = AlarmDetail(key=DetailKey.SELFTEST_FAILED, codes=("E12", "B3"))
    html = page(alarm(detail=detail), Language.EN)
    assert text_of(html, "fault-codes") == "Fault codes: E12, B3"
    assert "no fault code" not in html
    assert 'id="fault-codes"' not in page(alarm(AlarmType.BATTERY_LOW))


def test_the_page_says_where_the_cabinet_is_and_how_to_get_at_it() -> None:
    html = page(alarm())
    assert text_of(html, "access") == "开门方式：柜门需输入密码打开"
    assert text_of(html, "hours") == "开放时间：周一至周五 07:00–22:00；节假日 不开放"
    assert "B1 层" in html
    assert text_of(html, "indoor") == "B 出口闸机旁"
    english = page(alarm(), Language.EN)
    assert text_of(english, "access") == "Access: the cabinet opens with its PIN code"
    assert text_of(english, "hours") == "Open: Mon–Fri 07:00–22:00; public holidays closed"
    assert 'href="geo:22.543100,114.057900"' in html
    assert "https://www.openstreetmap.org/?mlat=22.543100&amp;mlon=114.057900" in html


def test_the_page_loads_nothing_from_anywhere() -> None:
    html = page(alarm()) + inspection_page(
        CABINET, person_name="张敏", recorded=False, language=Language.ZH
    )
    assert not re.search(r"<(script|link|img|iframe|object|embed)\b", html)
    assert not re.search(r"\bsrc=|url\(|@import", html)


def test_the_pin_sits_on_the_cabinets_coordinates_among_the_graticule() -> None:
    view = static_map(CABINET)
    assert (view.pin_x, view.pin_y) == (view.width / 2, view.height / 2)
    # 22.5431° N: the 22.543 parallel is 0.0001° (11 m, 7.4 px at 1.5 m/px) south of the pin.
    parallel = next(line for line in view.parallels if line.label == "22.543°N")
    assert parallel.position == pytest.approx(view.pin_y + 0.0001 * 110_574 / 1.5, abs=0.01)
    # 114.0579° E: the 114.058 meridian is 0.0001° east, shortened by cos(latitude).
    meridian = next(line for line in view.meridians if line.label == "114.058°E")
    east = 0.0001 * 111_320 * 0.92356 / 1.5
    assert meridian.position == pytest.approx(view.pin_x + east, abs=0.05)
    for line in view.meridians:
        assert 0 <= line.position <= view.width
    for line in view.parallels:
        assert 0 <= line.position <= view.height
    south_west = static_map(CABINET.model_copy(update={"latitude": -33.9, "longitude": -70.6}))
    assert any(line.label.endswith("°S") for line in south_west.parallels)
    assert any(line.label.endswith("°W") for line in south_west.meridians)
    # At a pole the meridians would crowd into a solid block: none are drawn.
    pole = static_map(CABINET.model_copy(update={"latitude": 90.0}))
    assert pole.meridians == ()
    assert max(line.label for line in pole.parallels) == "90.000°N"
    # Across the antimeridian the labels stay within 180°.
    date_line = static_map(CABINET.model_copy(update={"longitude": 179.9999}))
    assert {"179.999°E", "180.000°W"} <= {line.label for line in date_line.meridians}


def test_names_stand_for_ids_and_times_are_the_cabinets() -> None:
    acknowledged = alarm(
        state=AlarmState.ACKNOWLEDGED,
        acknowledged_by="cap-1",
        acknowledged_at=AT + timedelta(minutes=2),
        acknowledged_via=Via.LINK,
    )
    html = page(acknowledged, action=LinkAction.ACKNOWLEDGE, person_id="bak-1")
    assert text_of(html, "acknowledged") == "确认：张敏，2026-12-04 16:07"
    assert text_of(html, "outcome") == "此告警已由 张敏 确认，正在处理。"
    assert text_of(html, "paged") == "已通知：张敏"
    assert text_of(html, "person") == "致：Jamie 李"
    assert "cap-1" not in html
    assert "bak-1" not in html
    # Someone the registry does not know is shown as recorded.
    by_api = acknowledged.model_copy(update={"acknowledged_by": "ops/王小明"})
    assert text_of(page(by_api), "acknowledged") == "确认：ops/王小明，2026-12-04 16:07"


def test_a_resolved_alarm_says_by_whom_and_when_and_offers_nothing() -> None:
    resolved = alarm(
        state=AlarmState.RESOLVED,
        resolved_by="bak-1",
        resolved_at=AT + timedelta(hours=1),
        resolved_via=Via.LINK,
    )
    for action in (LinkAction.ACKNOWLEDGE, LinkAction.RESOLVE):
        for pressed in (False, True):
            html = page(resolved, Language.EN, action=action, pressed=pressed)
            assert text_of(html, "alarm-state") == "State: Resolved"
            assert text_of(html, "resolved") == "Resolved by Jamie 李, 2026-12-04 17:05"
            assert 'id="act"' not in html
            assert "<form" not in html
    by_itself = resolved.model_copy(update={"resolved_by": "auto", "resolved_via": Via.AUTO})
    assert text_of(page(by_itself, Language.EN), "resolved") == (
        "Resolved by itself once the problem cleared, 2026-12-04 17:05"
    )


@pytest.mark.parametrize(
    ("state", "by", "action", "pressed", "expected"),
    [
        (AlarmState.RAISED, None, LinkAction.ACKNOWLEDGE, False, Outcome.OFFER),
        (AlarmState.RAISED, None, LinkAction.RESOLVE, True, Outcome.OFFER),
        (AlarmState.ACKNOWLEDGED, "me", LinkAction.ACKNOWLEDGE, True, Outcome.ACKNOWLEDGED_NOW),
        (AlarmState.ACKNOWLEDGED, "me", LinkAction.ACKNOWLEDGE, False, Outcome.ACKNOWLEDGED),
        (AlarmState.ACKNOWLEDGED, "other", LinkAction.ACKNOWLEDGE, True, Outcome.ACKNOWLEDGED),
        # Acknowledged is not resolved: a resolve link still offers its button.
        (AlarmState.ACKNOWLEDGED, "other", LinkAction.RESOLVE, False, Outcome.OFFER),
        (AlarmState.RESOLVED, "me", LinkAction.RESOLVE, True, Outcome.RESOLVED_NOW),
        (AlarmState.RESOLVED, "me", LinkAction.RESOLVE, False, Outcome.RESOLVED),
        (AlarmState.RESOLVED, "other", LinkAction.RESOLVE, True, Outcome.RESOLVED),
        (AlarmState.RESOLVED, "me", LinkAction.ACKNOWLEDGE, True, Outcome.RESOLVED),
    ],
)
def test_the_outcome_follows_the_state_and_who_acted(
    state: AlarmState, by: str | None, action: LinkAction, pressed: bool, expected: Outcome
) -> None:
    acted = {"acknowledged_by": by, "acknowledged_at": AT} if by else {}
    if state is AlarmState.RESOLVED:
        acted = {"resolved_by": by, "resolved_at": AT}
    shown = alarm(state=state, **acted)
    assert outcome(shown, action, "me", pressed=pressed) is expected


def test_the_checklist_shows_the_registered_dates_and_leaves_the_fields_empty() -> None:
    dated = CABINET.model_copy(
        update={"pads_expiry": datetime(2027, 5, 1).date(), "battery_expiry": None}
    )
    html = inspection_page(dated, person_name="张敏", recorded=False, language=Language.ZH)
    assert text_of(html, "pads-expiry") == "登记的电极片有效期：2027-05-01"
    assert text_of(html, "battery-expiry") == "登记的电池有效期：未登记"
    for field in ("pads_expiry", "battery_expiry"):
        [date_input] = re.findall(rf'<input type="date" name="{field}"[^>]*>', html)
        assert "value=" not in date_input
    assert "2027-05-01" not in html.split("<form", 1)[1].split("</form>", 1)[0]


@pytest.mark.parametrize("language", list(Language))
@pytest.mark.parametrize("problem", list(ErrorPage))
def test_every_error_page_has_words_in_every_language(
    problem: ErrorPage, language: Language
) -> None:
    html = error_page(problem, language)
    assert f'lang="{"zh-CN" if language is Language.ZH else "en"}"' in html
    assert text_of(html, "problem")
    assert text_of(html, "todo")
    if language is Language.ZH:
        assert re.search(r"[\u4e00-\u9fff]", text_of(html, "problem"))
    else:
        assert not re.search(r"[\u4e00-\u9fff]", html)


def test_every_link_failure_has_its_error_page() -> None:
    assert {reason.value for reason in LinkErrorReason} <= {page.value for page in ErrorPage}


def test_a_refused_form_field_is_named_in_the_readers_words() -> None:
    html = error_page(ErrorPage.BAD_FORM, Language.ZH, field="battery_expiry")
    assert text_of(html, "field") == "新的电池有效期（见电池标签）"
    assert text_of(html, "reason") == "bad_form: battery_expiry"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("", Language.ZH),
        ("en-US,en;q=0.9", Language.EN),
        ("zh-CN,zh;q=0.9,en;q=0.8", Language.ZH),
        ("de-DE,de;q=0.9,en;q=0.5,zh;q=0.4", Language.EN),
        ("fr, zh-TW;q=0.3, en;q=0.7", Language.EN),
        ("en;q=0, zh;q=0.1", Language.ZH),
        ("en;q=bad", Language.ZH),
        ("*", Language.ZH),
        ("EN-gb", Language.EN),
    ],
)
def test_a_page_for_nobody_in_particular_speaks_the_browsers_language(
    header: str, expected: Language
) -> None:
    assert page_language(header) is expected
