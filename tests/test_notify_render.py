"""Rendering notices: every alarm type, notice kind and language, links, escaping, SMS length."""

# Chinese text is written with full-width punctuation on purpose.
# ruff: noqa: RUF001

from __future__ import annotations

import re
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from aedfleet.registry import Language, Role
from alerting.model import AlarmType, NoticeKind, Severity
from alerting.notifiers.base import Notice, PriorPage, RenderedNotice, RenderError
from alerting.render import (
    DEFAULT_MAP_URL_TEMPLATE,
    SMS_MAX_CHARS,
    TEMPLATES,
    Renderer,
    RenderSettings,
    fit_short_text,
    main_link,
    map_url,
)
from tests.notify_support import (
    DETAILS,
    NOW,
    SINCE,
    alarm,
    brief,
    cabinet,
    notice,
    person,
    resolved,
)

RENDERER = Renderer()
MAP = map_url(cabinet())


def every_form(rendered: RenderedNotice) -> dict[str, str]:
    return {
        "subject": rendered.subject,
        "text": rendered.text,
        "html": rendered.html,
        "markdown": rendered.markdown,
        "short": rendered.short_text,
    }


def notice_of(kind: NoticeKind, alarm_type: AlarmType, language: Language) -> Notice:
    found = alarm(alarm_type, Severity.WARNING, detail=DETAILS[alarm_type])
    if kind is NoticeKind.RESOLVED:
        found = resolved(found)
    return notice(kind, brief(found), recipient=person(language))


@pytest.mark.parametrize("language", list(Language))
@pytest.mark.parametrize("kind", list(NoticeKind))
@pytest.mark.parametrize("alarm_type", list(AlarmType))
def test_every_type_kind_and_language_renders_with_place_and_links(
    alarm_type: AlarmType, kind: NoticeKind, language: Language
) -> None:
    rendered = RENDERER.render(notice_of(kind, alarm_type, language))
    place = cabinet()

    assert rendered.language is language
    assert 0 < len(rendered.short_text) <= SMS_MAX_CHARS
    for form in ("text", "html", "markdown"):
        content = every_form(rendered)[form]
        assert place.address in content, form
        assert place.name in content, form
        assert "张伟" in content, form
    for content in (rendered.text, rendered.markdown):
        assert MAP in content
        if kind in (NoticeKind.PAGE, NoticeKind.REMINDER):
            assert place.indoor_description in content
    assert MAP.replace("&", "&amp;") in rendered.html
    if kind is NoticeKind.RESOLVED:
        assert "https://aed.example.cn/a/42-ack" not in rendered.text
        assert "https://aed.example.cn/i/sz-nanshan-0001" in rendered.text
        assert "https://aed.example.cn/" not in rendered.short_text
    else:
        for content in every_form(rendered).values():
            if content is not rendered.subject:
                assert "https://aed.example.cn/a/42-ack" in content
        assert rendered.short_text.endswith("https://aed.example.cn/a/42-ack")


@pytest.mark.parametrize("alarm_type", list(AlarmType))
def test_each_alarm_type_has_its_own_words_in_both_languages(alarm_type: AlarmType) -> None:
    texts = {
        language: RENDERER.render(notice_of(NoticeKind.PAGE, alarm_type, language)).text
        for language in Language
    }
    others = [other for other in AlarmType if other is not alarm_type]
    for language, text in texts.items():
        for other in others:
            other_text = RENDERER.render(notice_of(NoticeKind.PAGE, other, language)).text
            assert other_text != text, (language, other)


def test_english_page_says_what_where_and_what_to_do() -> None:
    page = notice(
        NoticeKind.PAGE,
        brief(alarm(AlarmType.PADS_EXPIRED, Severity.CRITICAL)),
        recipient=person(Language.EN, name="Wei Zhang"),
    )
    rendered = RENDERER.render(page)

    assert rendered.subject == "[CRITICAL] Pads expired - 深圳湾小学 东门"
    assert "Hello Wei Zhang," in rendered.text
    assert "What is wrong: The pads are past their expiry date" in rendered.text
    assert "What to do: Fit a new pair of pads today, then run a self-test." in rendered.text
    assert "Pads expiry date: 2025-06-01" in rendered.text
    assert "Where: 深圳湾小学 东门, 南山区滨海大道 3001 号, floor 1" in rendered.text
    assert "Access: the cabinet opens with its PIN code" in rendered.text
    assert "You receive this as the AED captain." in rendered.text
    # 06:03 UTC is 14:03 in Shanghai; the condition began 12 minutes earlier.
    assert "Since: 2025-05-01 13:51 (Asia/Shanghai)" in rendered.text


def test_chinese_page_is_in_chinese() -> None:
    rendered = RENDERER.render(
        notice(NoticeKind.PAGE, brief(alarm(AlarmType.AED_REMOVED)), recipient=person())
    )

    assert rendered.subject == "【紧急】AED 被取出 - 深圳湾小学 东门"
    assert rendered.text.startswith("张伟，您好：")
    assert "请拨打 120" in rendered.text
    assert "位置：深圳湾小学 东门，南山区滨海大道 3001 号，1 层" in rendered.text
    assert "开柜方式：柜门需输入密码打开" in rendered.text
    assert "开始时间：2025-05-01 13:51（Asia/Shanghai）" in rendered.text
    assert 'lang="zh-CN"' in rendered.html


def test_time_zone_is_configurable() -> None:
    renderer = Renderer(RenderSettings(time_zone="Europe/Berlin"))
    rendered = renderer.render(notice(recipient=person(Language.EN)))

    assert "Since: 2025-05-01 07:51 (Europe/Berlin)" in rendered.text


def test_map_link_follows_the_configured_template() -> None:
    template = "https://maps.example.cn/pin?lat={lat}&lon={lon}"
    rendered = Renderer(RenderSettings(map_url_template=template)).render(notice())

    assert "https://maps.example.cn/pin?lat=22.517614&lon=113.944218" in rendered.text
    assert map_url(cabinet(), DEFAULT_MAP_URL_TEMPLATE) == (
        "https://www.openstreetmap.org/?mlat=22.517614&mlon=113.944218#map=18/22.517614/113.944218"
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("map_url_template", "https://maps.example.cn/?q=somewhere"),
        ("map_url_template", "ftp://maps.example.cn/{lat}/{lon}"),
        ("map_url_template", "https://maps.example.cn/{lat}/{lon}/{zoom}"),
        ("time_zone", "Asia/Atlantis"),
    ],
)
def test_bad_render_settings_are_refused_naming_the_field(field: str, value: str) -> None:
    with pytest.raises(ValidationError, match=field):
        RenderSettings.model_validate({field: value})


def test_escalated_page_names_who_was_paged_and_how_long_ago() -> None:
    prior = (
        PriorPage(name="李强", role=Role.CAPTAIN, paged_at=NOW - timedelta(minutes=10, seconds=30)),
        PriorPage(name="Anna Müller", role=Role.BACKUP, paged_at=NOW - timedelta(minutes=3)),
    )
    zh = RENDERER.render(notice(role=Role.BACKUP, escalated_after=prior))
    en = RENDERER.render(
        notice(role=Role.BACKUP, escalated_after=prior, recipient=person(Language.EN))
    )

    assert "已升级给您：李强（AED 负责人，2025-05-01 13:52 已通知）、Anna Müller" in zh.text
    assert "在 10 分钟内未确认" in zh.text
    assert "您以AED 后备负责人的身份收到此消息" in zh.text
    assert "Escalated to you: 李强 (AED captain, paged 2025-05-01 13:52), Anna Müller" in en.text
    assert "did not acknowledge within 10 min." in en.text
    assert "李强" in zh.markdown
    assert "Anna Müller" in en.html


def test_first_page_mentions_no_escalation() -> None:
    rendered = RENDERER.render(notice())

    assert "升级" not in rendered.text
    assert "升级" not in rendered.markdown


def test_html_escapes_registry_text_but_plain_text_keeps_it() -> None:
    hostile = cabinet(
        name="<script>alert(1)</script> 东门",
        address='Road "A" & <b>B</b>',
        indoor_description="<img src=x onerror=alert(2)>",
        floor="<i>2</i>",
    )
    found = alarm()
    rendered = RENDERER.render(notice(NoticeKind.PAGE, brief(found, hostile)))

    assert "<script>" not in rendered.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; 东门" in rendered.html
    assert "Road &#34;A&#34; &amp; &lt;b&gt;B&lt;/b&gt;" in rendered.html
    assert "&lt;img src=x onerror=alert(2)&gt;" in rendered.html
    assert "&lt;i&gt;2&lt;/i&gt;" in rendered.html
    assert "<script>alert(1)</script> 东门" in rendered.text


def test_grouped_page_lists_every_alarm_and_counts_cabinets() -> None:
    second = cabinet(cabinet_id="sz-nanshan-0002", name="科技园地铁站 A 口", address="科苑路")
    briefs = [
        brief(alarm(alarm_type, Severity.HIGH, alarm_id=index))
        for index, alarm_type in enumerate(
            [AlarmType.BATTERY_LOW, AlarmType.SELFTEST_MISSING, AlarmType.TEMPERATURE], start=1
        )
    ]
    briefs.append(
        brief(
            alarm(AlarmType.OFFLINE, Severity.WARNING, alarm_id=9, cabinet_id="sz-nanshan-0002"),
            second,
        )
    )
    briefs.append(
        brief(
            alarm(
                AlarmType.POWER_LOST, Severity.CRITICAL, alarm_id=10, cabinet_id="sz-nanshan-0002"
            ),
            second,
        )
    )
    en = RENDERER.render(notice(NoticeKind.REMINDER, *briefs, recipient=person(Language.EN)))
    zh = RENDERER.render(notice(NoticeKind.REMINDER, *briefs))

    assert en.subject == "Reminder: [CRITICAL] 5 AED alarms at 2 cabinets"
    assert zh.subject == "提醒：【紧急】2 个机柜的 5 条 AED 告警"
    assert "Reminder: these 5 AED alarms are still open." in en.text
    for index in range(1, 6):
        assert f"\n{index}. [" in en.text
    assert "科技园地铁站 A 口" in en.text
    assert "+2 more." in en.short_text
    assert "另有 2 条" in zh.short_text


def test_digest_and_resolution_have_their_own_wording() -> None:
    expiring = brief(alarm(AlarmType.BATTERY_EXPIRING, Severity.INFO))
    digest = RENDERER.render(notice(NoticeKind.DIGEST, expiring, recipient=person(Language.EN)))
    fixed = RENDERER.render(
        notice(NoticeKind.RESOLVED, brief(resolved(alarm())), recipient=person(Language.EN))
    )

    assert digest.subject == "AED daily digest: 1 open item at 1 cabinet"
    assert "Battery expiry date: 2027-03-01" in digest.text
    assert "None of them stops an AED from working today" in digest.text
    assert fixed.subject == "Resolved: Cabinet door opened - 深圳湾小学 东门"
    assert "Resolved: 2025-05-01 14:03 by 王芳, with the link in a message" in fixed.text
    assert "nothing more needs to be done" in fixed.text


def test_short_text_falls_back_to_the_inspection_link_without_an_ack_link() -> None:
    overdue = brief(alarm(AlarmType.INSPECTION_OVERDUE, Severity.WARNING), ack_url=None)
    rendered = RENDERER.render(notice(NoticeKind.REMINDER, overdue, recipient=person(Language.EN)))

    assert main_link(rendered.notice) == ("inspect", "https://aed.example.cn/i/sz-nanshan-0001")
    assert rendered.short_text.endswith(
        "Record inspection: https://aed.example.cn/i/sz-nanshan-0001"
    )


def test_short_text_without_any_link() -> None:
    bare = brief(alarm(), ack_url=None, resolve_url=None, inspect_url=None)
    rendered = RENDERER.render(notice(NoticeKind.PAGE, bare, recipient=person(Language.EN)))

    assert main_link(rendered.notice) is None
    assert "https://" not in rendered.short_text
    assert "Acknowledge:" not in rendered.short_text


def test_a_link_too_long_for_an_sms_is_left_out_with_its_label() -> None:
    long_link = "https://aed.example.cn/a/" + "z" * 280
    rendered = RENDERER.render(
        notice(NoticeKind.PAGE, brief(alarm(), ack_url=long_link), recipient=person(Language.EN))
    )

    assert "https://" not in rendered.short_text
    assert "Acknowledge:" not in rendered.short_text
    assert long_link in rendered.text


def test_fit_short_text_cuts_only_the_words() -> None:
    link = "https://aed.example.cn/a/" + "x" * 60

    assert fit_short_text("a  b\n c", link) == f"a b c {link}"
    fitted = fit_short_text("字" * 400, link)
    assert len(fitted) == SMS_MAX_CHARS
    assert fitted.endswith("… " + link)
    assert fit_short_text("word " * 100, None).endswith("…")
    assert len(fit_short_text("word " * 100, None)) == SMS_MAX_CHARS
    too_long = "https://aed.example.cn/a/" + "y" * 260
    assert fit_short_text("words", too_long) == "words"


names = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zl", "Zp")),
    min_size=1,
    max_size=200,
).filter(lambda text: text.strip() != "")


@settings(max_examples=60, deadline=None)
@given(
    cabinet_name=names,
    address=names,
    person_name=names,
    language=st.sampled_from(list(Language)),
    kind=st.sampled_from([NoticeKind.PAGE, NoticeKind.REMINDER, NoticeKind.DIGEST]),
    alarm_type=st.sampled_from(list(AlarmType)),
    token=st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=10, max_size=80),
)
def test_short_text_always_fits_one_sms_and_keeps_the_ack_link(
    cabinet_name: str,
    address: str,
    person_name: str,
    language: Language,
    kind: NoticeKind,
    alarm_type: AlarmType,
    token: str,
) -> None:
    place = cabinet(name=cabinet_name, address=address)
    link = f"https://aed.example.cn/a/{token}"
    rendered = RENDERER.render(
        notice(
            kind,
            brief(alarm(alarm_type), place, ack_url=link),
            recipient=person(language, name=person_name),
        )
    )

    assert len(rendered.short_text) <= SMS_MAX_CHARS
    assert rendered.short_text.endswith(" " + link)
    assert place.name in rendered.text
    assert place.address in rendered.text
    assert place.name in rendered.markdown


def test_non_ascii_survives_every_form() -> None:
    place = cabinet(
        name="Ürümqi 站 🚑", address="乌鲁木齐市 新华北路 1 号", indoor_description="大厅"
    )
    rendered = RENDERER.render(
        notice(NoticeKind.PAGE, brief(alarm(), place), recipient=person(name="阿依古丽·买买提"))
    )

    for form, content in every_form(rendered).items():
        assert "Ürümqi 站 🚑" in content, form
    assert "阿依古丽·买买提" in rendered.text
    assert "阿依古丽·买买提" in rendered.html


def test_a_broken_template_is_a_render_error(tmp_path: Path) -> None:
    shutil.copytree(TEMPLATES, tmp_path / "templates")
    page = tmp_path / "templates" / "en" / "alarm.txt.j2"
    page.write_text(page.read_text() + "{{ no_such_variable }}\n")
    renderer = Renderer(templates=tmp_path / "templates")

    with pytest.raises(RenderError, match="no_such_variable"):
        renderer.render(notice(recipient=person(Language.EN)))
    assert renderer.render(notice()).language is Language.ZH


def test_a_phrase_missing_for_an_alarm_type_is_a_render_error(tmp_path: Path) -> None:
    shutil.copytree(TEMPLATES, tmp_path / "templates")
    words = tmp_path / "templates" / "zh" / "words.j2"
    words.write_text(words.read_text().replace('"tamper": "检查机柜是否损坏。",', ""))
    renderer = Renderer(templates=tmp_path / "templates")

    with pytest.raises(RenderError, match="tamper"):
        renderer.render(notice(NoticeKind.PAGE, brief(alarm(AlarmType.TAMPER))))


def test_a_brief_must_be_about_the_alarms_cabinet() -> None:
    with pytest.raises(ValidationError, match="not 'sz-nanshan-0002'"):
        brief(alarm(), cabinet(cabinet_id="sz-nanshan-0002"))


def test_a_notice_needs_at_least_one_alarm_and_a_header_safe_id() -> None:
    with pytest.raises(ValidationError, match="alarms"):
        Notice(
            notice_id="n-1",
            kind=NoticeKind.PAGE,
            recipient=person(),
            role=Role.CAPTAIN,
            alarms=(),
            created_at=NOW,
        )
    with pytest.raises(ValidationError, match="notice_id"):
        notice(notice_id="has space")


# -- details in the reader's words, times in the cabinet's zone --------------------------------


def latin_words(detail: str, codes: tuple[str, ...]) -> set[str]:
    """The words in Latin letters, but for the fault codes the AED reported and °C."""
    for code in (*codes, "°C"):
        detail = detail.replace(code, "")
    return set(re.findall(r"[A-Za-z]+", detail))


@pytest.mark.parametrize("kind", [NoticeKind.PAGE, NoticeKind.REMINDER, NoticeKind.DIGEST])
@pytest.mark.parametrize("alarm_type", list(AlarmType))
def test_a_chinese_notice_says_the_detail_in_chinese_in_shanghai_time(
    alarm_type: AlarmType, kind: NoticeKind
) -> None:
    shenzhen = brief(alarm(alarm_type, detail=DETAILS[alarm_type]), time_zone="Asia/Shanghai")
    rendered = RENDERER.render(notice(kind, shenzhen))

    (detail,) = rendered.details
    assert detail
    # "AED" is how the Chinese phrase book names the device, in every title too.
    assert latin_words(detail, DETAILS[alarm_type].codes) <= {"AED"}, detail
    assert "UTC" not in rendered.text
    assert f"详情：{detail}" in rendered.text
    assert f"详情：</strong>{detail}" in rendered.html or f"详情：{detail}" in rendered.html
    assert "开始时间：2025-05-01 13:51（Asia/Shanghai）" in rendered.text
    if DETAILS[alarm_type].at == SINCE:
        assert "2025-05-01 13:51" in detail  # 05:51 UTC, UTC+8


@pytest.mark.parametrize("alarm_type", list(AlarmType))
def test_an_english_notice_says_the_detail_in_english(alarm_type: AlarmType) -> None:
    rendered = RENDERER.render(
        notice(
            NoticeKind.PAGE,
            brief(alarm(alarm_type, detail=DETAILS[alarm_type]), time_zone="Asia/Shanghai"),
            recipient=person(Language.EN),
        )
    )

    (detail,) = rendered.details
    assert re.fullmatch(r"[\x20-\x7e°–]+", detail), detail
    assert f"Details: {detail}" in rendered.text
    assert f"({detail})" in rendered.markdown
    assert "UTC" not in detail


def test_the_detail_and_times_are_in_the_cabinets_zone_not_the_configured_one() -> None:
    berlin_renderer = Renderer(RenderSettings(time_zone="Europe/Berlin"))
    open_door = alarm(AlarmType.DOOR_OPENED, detail=DETAILS[AlarmType.DOOR_OPENED])

    shenzhen = berlin_renderer.render(
        notice(NoticeKind.PAGE, brief(open_door, time_zone="Asia/Shanghai"))
    )
    unknown = berlin_renderer.render(notice(NoticeKind.PAGE, brief(open_door)))

    assert shenzhen.details == ("柜门自 2025-05-01 13:51 起一直开着",)
    assert "开始时间：2025-05-01 13:51（Asia/Shanghai）" in shenzhen.text
    # A cabinet that has not named its zone is shown in the configured one (CEST, UTC+2).
    assert unknown.details == ("柜门自 2025-05-01 07:51 起一直开着",)
    assert "开始时间：2025-05-01 07:51（Europe/Berlin）" in unknown.text


def test_grouped_alarms_of_cabinets_in_two_zones_each_keep_their_own() -> None:
    door = alarm(AlarmType.DOOR_OPENED, detail=DETAILS[AlarmType.DOOR_OPENED])
    far = cabinet(cabinet_id="de-berlin-0001", name="Hauptbahnhof")
    tamper = alarm(
        AlarmType.TAMPER,
        alarm_id=43,
        cabinet_id=far.cabinet_id,
        detail=DETAILS[AlarmType.TAMPER],
    )
    rendered = RENDERER.render(
        notice(
            NoticeKind.PAGE,
            brief(door, time_zone="Asia/Shanghai"),
            brief(tamper, far, time_zone="Europe/Berlin"),
            recipient=person(Language.EN),
        )
    )

    assert rendered.details == (
        "door open since 2025-05-01 13:51",
        "tamper reported at 2025-05-01 07:51",
    )
    assert "Since: 2025-05-01 13:51 (Asia/Shanghai)" in rendered.text
    assert "Since: 2025-05-01 07:51 (Europe/Berlin)" in rendered.text


@pytest.mark.parametrize(
    ("waited", "zh", "en"),
    [
        (timedelta(seconds=45), "在 45 秒内未确认", "did not acknowledge within 45 s."),
        (timedelta(minutes=2, seconds=5), "在 2 分钟内未确认", "within 2 min."),
        (timedelta(hours=1, minutes=30), "在 1 小时 30 分钟内未确认", "within 1 h 30 min."),
        (timedelta(days=1, hours=2), "在 1 天 2 小时内未确认", "within 1 d 2 h."),
    ],
)
def test_the_time_an_escalation_waited_is_said_in_its_units(
    waited: timedelta, zh: str, en: str
) -> None:
    prior = (PriorPage(name="李强", role=Role.CAPTAIN, paged_at=NOW - waited),)
    for recipient, words in ((person(), zh), (person(Language.EN), en)):
        rendered = RENDERER.render(
            notice(role=Role.BACKUP, escalated_after=prior, recipient=recipient)
        )
        for form in (rendered.text, rendered.html, rendered.markdown):
            assert words in form
            assert not re.search(r"(?<![0-9])0 (min|分钟)", form)
