"""The captain's link pages in a real browser: Chromium on a phone-sized screen.

A Chinese captain acknowledges, an English backup resolves, a captain records an
inspection from the checklist; expired and tampered links act on nothing; the captain's
page shows the cabinet on a map, what to do and who acted, and loads nothing from
elsewhere; every page fits a phone. The link endpoint is a real
:class:`~alerting.http.AlertingHttp` over a real engine and SQLite stores
(:class:`tests.browser.LinkPages`), and what a tap did is read back from the store. One
Chromium serves the whole module (it takes seconds to start); each test gets a fresh
phone (browser context) and a fresh database.
"""

# The pages speak Chinese: full-width punctuation in the expected text is intended.
# ruff: noqa: RUF001

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import date, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, expect

from aedfleet.registry import AccessMode
from alerting.links import LinkAction, LinkErrorReason
from alerting.model import AlarmState, Via
from firmware_sim.registry import person_ids
from tests.browser import (
    CABINET_ID,
    CHROMIUM,
    LINK_TTL,
    PHONE_VIEWPORT,
    LinkPages,
    fonts_rendering,
    phone,
)
from tests.browser import chromium as launch_chromium
from tests.browser import tampered as tampered_link

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason=f"{CHROMIUM} is missing: scripts/setup.sh installs Debian's chromium",
    ),
]
# The browser tests run in the module's event loop, where the one Chromium lives.
in_browser = pytest.mark.asyncio(loop_scope="module")

CAPTAIN, BACKUP = person_ids(1)  # reads Chinese, reads English (see firmware_sim.registry)
MIN_TAP_PX = 44
CJK = re.compile(r"[\u4e00-\u9fff]")
SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with launch_chromium() as instance:
        yield instance


@pytest_asyncio.fixture(loop_scope="module")
async def pages(tmp_path: Path) -> AsyncIterator[LinkPages]:
    async with LinkPages(tmp_path) as serving:
        yield serving


async def open_link(page: Page, url: str, status: int = 200) -> None:
    response = await page.goto(url)
    assert response is not None
    assert response.status == status, await page.content()


async def assert_fits_a_phone(page: Page) -> None:
    """Laid out for the phone's width (no sideways scrolling, not zoomed out from a
    desktop's), with every button and checklist row as tall as a fingertip."""
    widths = await page.evaluate(
        "[document.documentElement.scrollWidth, document.body.scrollWidth, window.innerWidth]"
    )
    assert widths[2] == PHONE_VIEWPORT["width"], f"not laid out for the phone: {widths}"
    assert max(widths[:2]) <= widths[2], f"the page scrolls sideways: {widths}"
    for target in await page.locator("button, label.check, input[type=date]").all():
        box = await target.bounding_box()
        assert box is not None
        described = await target.evaluate("element => element.outerHTML")
        assert box["height"] >= MIN_TAP_PX, f"too small to tap: {described}"
        assert box["x"] >= 0, f"off screen: {described}"
        assert box["x"] + box["width"] <= widths[2], f"off screen: {described}"


@in_browser
async def test_chinese_captain_acknowledges_from_the_page(
    browser: Browser, pages: LinkPages, tmp_path: Path
) -> None:
    alarm = await pages.failed_selftest()
    cabinet = await pages.registered_cabinet(CABINET_ID)
    assert CJK.search(cabinet.name)
    assert CJK.search(cabinet.address)
    async with phone(browser, "zh-CN") as context:
        page = await context.new_page()
        await open_link(page, pages.link(LinkAction.ACKNOWLEDGE, alarm.alarm_id, CAPTAIN))

        await expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
        await expect(page.locator("#alarm-type")).to_have_text("自检失败")
        await expect(page.locator("#alarm-severity")).to_have_text("紧急")
        await expect(page.locator("#alarm-state")).to_contain_text("待处理")
        await expect(page.get_by_text(cabinet.name)).to_be_visible()
        await expect(page.get_by_text(cabinet.address, exact=False)).to_be_visible()
        await expect(page.locator("#act")).to_have_text("我已收到，马上处理")
        await assert_fits_a_phone(page)
        # Drawn with a CJK font (setup.sh installs fonts-noto-cjk), not as tofu boxes.
        fonts = await fonts_rendering(context, page, "#alarm-type")
        assert all("CJK" in family for family in fonts), fonts
        assert sum(fonts.values()) == len("自检失败"), fonts
        await page.screenshot(path=tmp_path / "ack-zh.png", full_page=True)
        # Opening the page acted on nothing: only the button does.
        assert (await pages.alarm(alarm.alarm_id)).state is AlarmState.RAISED

        await page.locator("#act").tap()

        await expect(page.locator("#outcome")).to_have_text(
            "已记录，谢谢。此告警的后续通知已停止。"
        )
        await expect(page.locator("#alarm-state")).to_contain_text("已确认")
        await assert_fits_a_phone(page)
        acknowledged = await pages.alarm(alarm.alarm_id)
        assert acknowledged.state is AlarmState.ACKNOWLEDGED
        assert acknowledged.acknowledged_by == CAPTAIN
        assert acknowledged.acknowledged_via is Via.LINK
        assert acknowledged.acknowledged_at == pages.clock.now()

        # Coming back to the link later shows what happened, without a button.
        await open_link(page, pages.link(LinkAction.ACKNOWLEDGE, alarm.alarm_id, CAPTAIN))
        await expect(page.locator("#outcome")).to_have_text("此告警已由 张敏 确认，正在处理。")
        await expect(page.locator("#act")).to_have_count(0)


@in_browser
async def test_the_page_says_the_detail_in_the_readers_words_and_the_cabinets_time(
    browser: Browser, pages: LinkPages
) -> None:
    opened = pages.clock.now() - timedelta(minutes=5)
    alarm = await pages.door_left_open(opened)
    # Shenzhen keeps UTC+8 all year.
    shenzhen = (opened + timedelta(hours=8)).strftime("%Y-%m-%d %H:%M")
    async with phone(browser, "zh-CN") as context:
        page = await context.new_page()
        await open_link(page, pages.link(LinkAction.ACKNOWLEDGE, alarm.alarm_id, CAPTAIN))
        await expect(page.locator("#alarm-detail")).to_have_text(
            f"详情：柜门自 {shenzhen} 起一直开着"
        )
        await expect(page.locator("#alarm-since")).to_have_text(
            f"发生于 {shenzhen} (Asia/Shanghai)"
        )
        await expect(page.locator("body")).not_to_contain_text("UTC")
    async with phone(browser, "en-US") as context:
        page = await context.new_page()
        await open_link(page, pages.link(LinkAction.RESOLVE, alarm.alarm_id, BACKUP))
        await expect(page.locator("#alarm-detail")).to_have_text(
            f"Detail: door open since {shenzhen}"
        )


@in_browser
async def test_english_backup_resolves_from_the_page(browser: Browser, pages: LinkPages) -> None:
    alarm = await pages.failed_selftest()
    async with phone(browser, "en-US") as context:
        page = await context.new_page()
        await open_link(page, pages.link(LinkAction.RESOLVE, alarm.alarm_id, BACKUP))

        await expect(page.locator("html")).to_have_attribute("lang", "en")
        await expect(page.locator("#alarm-type")).to_have_text("Self-test failed")
        await expect(page.locator("#alarm-severity")).to_have_text("CRITICAL")
        await expect(page.locator("#act")).to_have_text("Fixed: resolve the alarm")
        await assert_fits_a_phone(page)

        await page.locator("#act").tap()

        await expect(page.locator("#outcome")).to_have_text("The alarm is resolved, thank you.")
        await expect(page.locator("#alarm-state")).to_have_text("State: Resolved")
        await assert_fits_a_phone(page)
    resolved = await pages.alarm(alarm.alarm_id)
    assert resolved.state is AlarmState.RESOLVED
    assert (resolved.resolved_by, resolved.resolved_via) == (BACKUP, Via.LINK)
    assert resolved.resolved_at == pages.clock.now()


@in_browser
async def test_captain_records_an_inspection_and_the_pads_expiry(
    browser: Browser, pages: LinkPages
) -> None:
    before = await pages.registered_cabinet(CABINET_ID)
    assert before.pads_expiry is None
    new_pads = date(2027, 3, 31)
    async with phone(browser, "zh-CN") as context:
        page = await context.new_page()
        await open_link(page, pages.link(LinkAction.RECORD_INSPECTION, CABINET_ID, CAPTAIN))
        await expect(page.locator("#cabinet")).to_contain_text(before.name)
        await assert_fits_a_phone(page)

        # A thumb taps the words beside each box, not the box itself.
        await page.get_by_text("AED 就绪指示灯正常").tap()
        await page.get_by_text("机柜完好、清洁").tap()
        await page.get_by_text("打开柜门时报警器会响").tap()
        await page.locator("#pads_expiry").fill(new_pads.isoformat())
        await page.locator("#note").fill("更换了电极片")
        for box in ("#ready_light_ok", "#cabinet_intact_and_clean", "#alarm_works"):
            await expect(page.locator(box)).to_be_checked()
        await page.locator("#act").tap()

        await expect(page.locator("#outcome")).to_have_text("巡检已记录，谢谢。")
        await expect(page.locator("#pads-expiry")).to_have_text(
            f"登记的电极片有效期：{new_pads.isoformat()}"
        )
        await assert_fits_a_phone(page)
    after = await pages.registered_cabinet(CABINET_ID)
    assert after.pads_expiry == new_pads
    assert after.battery_expiry is None  # left empty: not read, not changed
    [inspection] = await pages.inspections(CABINET_ID)
    assert inspection["person_id"] == CAPTAIN
    assert inspection["at"] == pages.clock.now()
    assert inspection["ready_light_ok"] is True
    assert inspection["cabinet_intact_and_clean"] is True
    assert inspection["alarm_works"] is True
    assert inspection["pads_expiry"] == new_pads
    assert inspection["note"] == "更换了电极片"


@in_browser
async def test_a_checklist_the_service_refuses_records_nothing_and_says_so(
    browser: Browser, pages: LinkPages
) -> None:
    async with phone(browser, "zh-CN") as context:
        page = await context.new_page()
        await open_link(page, pages.link(LinkAction.RECORD_INSPECTION, CABINET_ID, CAPTAIN))
        # A browser that does not check URL fields sends what was typed as it is.
        await page.locator("#photo_url").evaluate("field => field.setAttribute('type', 'text')")
        await page.locator("#photo_url").fill("照片在微信群里")
        await page.locator("#pads_expiry").fill("2027-03-31")

        async with page.expect_response(lambda response: response.request.method == "POST") as sent:
            await page.locator("#act").tap()
        assert (await sent.value).status == 400
        await expect(page.locator("h1").first).to_have_text("提交的内容无效")
        await expect(page.locator("#reason")).to_contain_text("photo_url")
        await assert_fits_a_phone(page)
    assert await pages.inspections(CABINET_ID) == []
    assert (await pages.registered_cabinet(CABINET_ID)).pads_expiry is None


@in_browser
@pytest.mark.parametrize("spoiled", ["expired", "tampered"])
async def test_an_expired_or_tampered_link_shows_the_invalid_page_and_acts_on_nothing(
    browser: Browser, pages: LinkPages, spoiled: str
) -> None:
    alarm = await pages.failed_selftest()
    now = pages.clock.now()
    if spoiled == "expired":
        signed_at = now - LINK_TTL - timedelta(seconds=1)
        ack = pages.link(LinkAction.ACKNOWLEDGE, alarm.alarm_id, CAPTAIN, signed_at)
        inspect = pages.link(LinkAction.RECORD_INSPECTION, CABINET_ID, CAPTAIN, signed_at)
        reason, title, words = LinkErrorReason.EXPIRED, "链接已过期", "链接已过期。"
    else:
        ack = tampered_link(pages.link(LinkAction.ACKNOWLEDGE, alarm.alarm_id, CAPTAIN))
        inspect = tampered_link(pages.link(LinkAction.RECORD_INSPECTION, CABINET_ID, CAPTAIN))
        reason, title = LinkErrorReason.BAD_SIGNATURE, "链接无效"
        words = "链接不完整或被改动过。"
    async with phone(browser, "zh-CN") as context:
        page = await context.new_page()
        await open_link(page, ack, status=403)
        await expect(page.locator("h1")).to_have_text(title)
        await expect(page.get_by_text(words)).to_be_visible()
        await expect(page.locator("#reason")).to_have_text(reason.value)
        await expect(page.locator("#act")).to_have_count(0)
        await expect(page.locator("form")).to_have_count(0)
        await assert_fits_a_phone(page)

        # Whatever posts to the link (a form kept from before, a script) changes nothing.
        acting = await page.request.post(ack)
        assert acting.status == 403
        await acting.dispose()
        checklist: dict[str, str | float | bool] = {
            "ready_light_ok": "on",
            "cabinet_intact_and_clean": "on",
            "alarm_works": "on",
            "pads_expiry": "2030-01-01",
        }
        recording = await page.request.post(inspect, form=checklist)
        assert recording.status == 403
        await recording.dispose()
    unchanged = await pages.alarm(alarm.alarm_id)
    assert unchanged.state is AlarmState.RAISED
    assert unchanged.acknowledged_by is None
    assert await pages.inspections(CABINET_ID) == []
    assert (await pages.registered_cabinet(CABINET_ID)).pads_expiry is None


@in_browser
async def test_a_page_left_open_until_its_link_expires_acts_on_nothing(
    browser: Browser, pages: LinkPages
) -> None:
    alarm = await pages.failed_selftest()
    async with phone(browser, "en-US") as context:
        page = await context.new_page()
        await open_link(page, pages.link(LinkAction.RESOLVE, alarm.alarm_id, BACKUP))
        pages.clock.advance(LINK_TTL)

        async with page.expect_response(lambda response: response.request.method == "POST") as sent:
            await page.locator("#act").tap()
        assert (await sent.value).status == 403
        await expect(page.get_by_text("The link has expired.")).to_be_visible()
    assert (await pages.alarm(alarm.alarm_id)).state is AlarmState.RAISED


@in_browser
async def test_the_english_checklist_fits_a_phone(browser: Browser, pages: LinkPages) -> None:
    # The English labels are the longest words on any page.
    async with phone(browser, "en-US") as context:
        page = await context.new_page()
        await open_link(page, pages.link(LinkAction.RECORD_INSPECTION, CABINET_ID, BACKUP))
        await expect(page.locator("#act")).to_have_text("Record the inspection")
        await assert_fits_a_phone(page)


@in_browser
async def test_the_captains_page_shows_the_cabinet_what_to_do_who_and_loads_nothing_else(
    browser: Browser, pages: LinkPages, tmp_path: Path
) -> None:
    """The captain's page for a real alarm, as it goes from open to resolved; then the
    pages a wrong link or address gets. No request leaves the alerting service."""
    alarm = await pages.failed_selftest()
    cabinet = await pages.registered_cabinet(CABINET_ID)
    own = f"http://127.0.0.1:{pages.port}/"
    async with phone(browser, "zh-CN") as context:
        requested: list[str] = []
        context.on("request", lambda request: requested.append(request.url))
        page = await context.new_page()
        await open_link(page, pages.link(LinkAction.ACKNOWLEDGE, alarm.alarm_id, CAPTAIN))

        await expect(page.locator("#person")).to_have_text("致：张敏")
        await expect(page.locator("#guidance")).to_contain_text("请查看 AED 的屏幕或指示灯")
        await expect(page.locator("#fault-codes")).to_have_text("故障代码：E12")
        assert cabinet.access_mode is AccessMode.QR
        await expect(page.locator("#access")).to_have_text("开门方式：柜门需扫码打开")
        await expect(page.locator("#hours")).to_have_text("开放时间：全天 24 小时开放")
        await expect(page.locator("#indoor")).to_have_text(cabinet.indoor_description)
        # The pin is drawn, inside the map, at its middle: the cabinet's coordinates.
        pin = await page.locator("#map-pin").bounding_box()
        drawn = await page.locator("#map").bounding_box()
        assert pin is not None
        assert drawn is not None
        tip_x, tip_y = pin["x"] + pin["width"] / 2, pin["y"] + pin["height"]
        assert tip_x == pytest.approx(drawn["x"] + drawn["width"] / 2, abs=1.5)
        assert tip_y == pytest.approx(drawn["y"] + drawn["height"] / 2, abs=1.5)
        await expect(page.locator("#map")).to_have_attribute("data-lat", f"{cabinet.latitude:.6f}")
        await expect(page.locator("#geo-link")).to_have_attribute(
            "href", f"geo:{cabinet.latitude:.6f},{cabinet.longitude:.6f}"
        )
        await expect(page.locator("#act")).to_be_visible()
        await assert_fits_a_phone(page)
        await page.screenshot(path=tmp_path / "captain-page-zh.png", full_page=True)

        # The English backup resolves it; the captain's link now shows who did, and when.
        await pages.call(pages.engine.resolve, alarm.alarm_id, BACKUP, Via.LINK, pages.clock.now())
        await page.reload()
        resolved_at = pages.clock.now().astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M")
        await expect(page.locator("#alarm-state")).to_have_text("状态: 已解决")
        await expect(page.locator("#resolved")).to_have_text(f"解决：Jamie 李，{resolved_at}")
        await expect(page.locator("#outcome")).to_have_text("此告警已解决，无需再处理。")
        await expect(page.locator("#act")).to_have_count(0)
        await expect(page.locator("#guidance")).to_have_count(0)
        await page.screenshot(path=tmp_path / "captain-page-resolved-zh.png", full_page=True)

        # A link to an alarm the store does not have, and an address that is no page.
        await open_link(page, pages.link(LinkAction.ACKNOWLEDGE, 999, CAPTAIN), status=404)
        await expect(page.locator("h1")).to_have_text("找不到告警")
        await expect(page.locator("body")).not_to_contain_text("999")
        await assert_fits_a_phone(page)
        await page.screenshot(path=tmp_path / "error-unknown-alarm-zh.png", full_page=True)
        await open_link(page, own + "l/", status=404)
        await expect(page.locator("h1")).to_have_text("页面不存在")
    assert requested
    assert all(url.startswith(own) for url in requested), requested
