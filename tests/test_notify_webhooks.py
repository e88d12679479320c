"""Chat robots, the generic webhook and the SMS gateway against a real aiohttp receiver."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr, ValidationError

from aedfleet.redact import redact_url
from aedfleet.registry import Language, Person
from aedfleet_testing.brokers import free_port
from alerting.model import AlarmType, NoticeKind, Severity
from alerting.notifiers.base import Channel, ChannelError, ChannelTimeoutError, RenderedNotice
from alerting.notifiers.chat import (
    ChatNotifier,
    ChatRobot,
    RobotKind,
    robot_for,
    robot_request,
    truncate_utf8,
)
from alerting.notifiers.sms import SmsNotifier, SmsSettings
from alerting.notifiers.transport import HttpClient
from alerting.notifiers.webhook import WebhookBody, webhook_signature
from alerting.render import Renderer
from tests.notify_support import (
    DETAILS,
    NOW,
    FakeClock,
    alarm,
    brief,
    cabinet,
    notice,
    person,
)
from tests.receiver import RobotReceiver, dingtalk_expected_sign, json_reply

RENDERER = Renderer()


@pytest.fixture
async def receiver() -> AsyncIterator[RobotReceiver]:
    async with RobotReceiver(clock_now=NOW.timestamp) as instance:
        yield instance


@pytest.fixture
async def http() -> AsyncIterator[HttpClient]:
    async with HttpClient() as client:
        yield client


def page(language: Language = Language.ZH) -> RenderedNotice:
    return RENDERER.render(
        notice(NoticeKind.PAGE, brief(alarm(AlarmType.DOOR_OPENED)), recipient=person(language))
    )


def with_webhook(url: str) -> Person:
    return person(chat_webhook=url)


def chat(http: HttpClient, *robots: ChatRobot, timeout_s: float = 5.0) -> ChatNotifier:
    return ChatNotifier(http, robots, timeout_s=timeout_s, clock=FakeClock())


def robot(receiver: RobotReceiver, path: str, kind: RobotKind, secret: str | None) -> ChatRobot:
    return ChatRobot.model_validate(
        {"url_prefix": receiver.url(path), "kind": kind, "secret": secret}
    )


# -- DingTalk ----------------------------------------------------------------------------------


async def test_dingtalk_markdown_with_a_valid_signature(
    receiver: RobotReceiver, http: HttpClient
) -> None:
    dingtalk = robot(receiver, "/dingtalk", RobotKind.DINGTALK, receiver.dingtalk_secret)
    rendered = page()

    await chat(http, dingtalk).send(
        rendered, with_webhook(receiver.url("/dingtalk/robot/send?access_token=tok-123"))
    )

    (request,) = receiver.on("/dingtalk/robot/send")
    assert request.query["access_token"] == "tok-123"  # noqa: S105 - test value
    assert request.query["timestamp"] == str(int(NOW.timestamp() * 1000))
    assert request.headers["Content-Type"] == "application/json; charset=utf-8"
    assert request.json() == {
        "msgtype": "markdown",
        "markdown": {"title": rendered.subject, "text": rendered.markdown},
    }
    assert "深圳湾小学 东门" in request.body.decode("utf-8")


async def test_dingtalk_refusing_the_signature_with_http_200_is_a_failure(
    receiver: RobotReceiver, http: HttpClient
) -> None:
    dingtalk = robot(receiver, "/dingtalk", RobotKind.DINGTALK, "SEC-not-the-right-one")

    with pytest.raises(ChannelError, match="code 310000") as caught:
        await chat(http, dingtalk).send(
            page(), with_webhook(receiver.url("/dingtalk/robot/send?access_token=tok-123"))
        )

    assert caught.value.retryable is False
    assert caught.value.channel is Channel.CHAT
    assert "tok-123" not in str(caught.value)


async def test_dingtalk_rate_limit_is_retryable(receiver: RobotReceiver, http: HttpClient) -> None:
    receiver.replies["/dingtalk/robot/send"] = json_reply(
        {"errcode": 130101, "errmsg": "send too fast, exceed 20 times per minute"}
    )
    dingtalk = robot(receiver, "/dingtalk", RobotKind.DINGTALK, receiver.dingtalk_secret)

    with pytest.raises(ChannelError, match="send too fast") as caught:
        await chat(http, dingtalk).send(
            page(), with_webhook(receiver.url("/dingtalk/robot/send?access_token=t"))
        )

    assert caught.value.retryable is True


@given(
    secret=st.text(min_size=1, max_size=80),
    offset_ms=st.integers(min_value=0, max_value=10**9),
)
def test_dingtalk_signature_survives_url_encoding(secret: str, offset_ms: int) -> None:
    now = NOW + timedelta(milliseconds=offset_ms)
    request = robot_request(
        RobotKind.DINGTALK,
        page(),
        "https://oapi.dingtalk.com/robot/send?access_token=abc",
        secret,
        now,
    )

    query = parse_qs(urlsplit(request.url).query, strict_parsing=True)
    assert query["access_token"] == ["abc"]
    assert query["sign"] == [dingtalk_expected_sign(secret, query["timestamp"][0])]
    assert request.url_is_encoded


# -- Feishu ------------------------------------------------------------------------------------


async def test_feishu_card_with_a_valid_signature(
    receiver: RobotReceiver, http: HttpClient
) -> None:
    feishu = robot(receiver, "/feishu", RobotKind.FEISHU, receiver.feishu_secret)
    rendered = page(Language.EN)

    await chat(http, feishu).send(
        rendered, with_webhook(receiver.url("/feishu/open-apis/bot/v2/hook/abc"))
    )

    (request,) = receiver.on("/feishu/open-apis/bot/v2/hook/abc")
    body = request.json()
    assert body["timestamp"] == str(int(NOW.timestamp()))
    assert body["msg_type"] == "interactive"
    assert body["card"]["header"] == {
        "title": {"tag": "plain_text", "content": rendered.subject},
        "template": "red",
    }
    (element,) = body["card"]["elements"]
    assert element["tag"] == "markdown"
    assert "https://aed.example.cn/a/42-ack" in element["content"]
    assert not element["content"].startswith("#")


async def test_feishu_refusing_the_signature_is_a_failure(
    receiver: RobotReceiver, http: HttpClient
) -> None:
    feishu = robot(receiver, "/feishu", RobotKind.FEISHU, "wrong secret")

    with pytest.raises(ChannelError, match=r"HTTP 400.*19021") as caught:
        await chat(http, feishu).send(page(), with_webhook(receiver.url("/feishu/hook/x")))

    assert caught.value.retryable is False


@pytest.mark.parametrize(
    ("answer", "retryable"),
    [
        ({"code": 11232, "msg": "frequency limited"}, True),
        ({"code": 9499, "msg": "Bad Request"}, False),
        ({"StatusCode": 0, "StatusMessage": "success"}, None),
        ({"msg": "no code at all"}, False),
    ],
)
async def test_feishu_answers(
    receiver: RobotReceiver, http: HttpClient, answer: dict[str, Any], retryable: bool | None
) -> None:
    receiver.replies["/feishu/hook/y"] = json_reply(answer)
    feishu = robot(receiver, "/feishu", RobotKind.FEISHU, None)
    send = chat(http, feishu).send(page(), with_webhook(receiver.url("/feishu/hook/y")))

    if retryable is None:
        await send
        return
    with pytest.raises(ChannelError) as caught:
        await send
    assert caught.value.retryable is retryable


# -- WeCom -------------------------------------------------------------------------------------


async def test_wecom_markdown(receiver: RobotReceiver, http: HttpClient) -> None:
    wecom = robot(receiver, "/wecom", RobotKind.WECOM, None)
    rendered = page()

    await chat(http, wecom).send(
        rendered, with_webhook(receiver.url("/wecom/cgi-bin/webhook/send?key=k-1"))
    )

    (request,) = receiver.on("/wecom/cgi-bin/webhook/send")
    assert request.query == {"key": "k-1"}
    assert request.json() == {"msgtype": "markdown", "markdown": {"content": rendered.markdown}}


async def test_wecom_errcode_is_a_failure_without_leaking_the_key(
    receiver: RobotReceiver, http: HttpClient
) -> None:
    receiver.replies["/wecom/cgi-bin/webhook/send"] = json_reply(
        {"errcode": 45009, "errmsg": "api freq out of limit"}
    )
    wecom = robot(receiver, "/wecom", RobotKind.WECOM, None)

    with pytest.raises(ChannelError, match="code 45009") as caught:
        await chat(http, wecom).send(
            page(), with_webhook(receiver.url("/wecom/cgi-bin/webhook/send?key=SECRET-KEY-123"))
        )

    assert caught.value.retryable is True
    assert "SECRET-KEY-123" not in str(caught.value)


def test_wecom_content_is_cut_to_4096_bytes() -> None:
    many = [
        brief(alarm(AlarmType.OFFLINE, Severity.WARNING, alarm_id=index)) for index in range(60)
    ]
    rendered = RENDERER.render(notice(NoticeKind.DIGEST, *many))
    request = robot_request(
        RobotKind.WECOM, rendered, "https://qyapi.weixin.qq.com/cgi-bin/webhook/send", None, NOW
    )

    content = json.loads(request.body)["markdown"]["content"]
    assert len(rendered.markdown.encode("utf-8")) > 4096
    assert 4000 < len(content.encode("utf-8")) <= 4096
    assert content.endswith("…")
    assert rendered.markdown.startswith(content.removesuffix("…"))


@given(st.text(max_size=300), st.integers(min_value=3, max_value=400))
def test_truncate_utf8_fits_and_keeps_a_prefix(text: str, limit: int) -> None:
    cut = truncate_utf8(text, limit)

    assert len(cut.encode("utf-8")) <= max(limit, len(text.encode("utf-8")) if cut == text else 0)
    if cut != text:
        assert len(cut.encode("utf-8")) <= limit
        assert text.startswith(cut.removesuffix("…").rstrip())


def test_a_signed_wecom_robot_is_a_configuration_error() -> None:
    with pytest.raises(ValidationError, match="WeCom group robots are not signed"):
        ChatRobot(
            url_prefix="https://qyapi.weixin.qq.com/",
            kind=RobotKind.WECOM,
            secret=SecretStr("x"),
        )


# -- which robot -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k", RobotKind.WECOM),
        ("https://oapi.dingtalk.com/robot/send?access_token=t", RobotKind.DINGTALK),
        ("https://open.feishu.cn/open-apis/bot/v2/hook/h", RobotKind.FEISHU),
        ("https://open.larksuite.com/open-apis/bot/v2/hook/h", RobotKind.FEISHU),
        ("https://OAPI.DingTalk.com/robot/send?access_token=t", RobotKind.DINGTALK),
        ("https://hooks.example.cn/aed", RobotKind.GENERIC),
        ("https://oapi.dingtalk.com.evil.example/robot/send", RobotKind.GENERIC),
    ],
)
def test_robot_kind_is_inferred_from_the_host(url: str, kind: RobotKind) -> None:
    assert robot_for(url, ()) == (kind, None)


def test_configured_robots_override_the_host_and_the_longest_prefix_wins() -> None:
    robots = (
        ChatRobot(url_prefix="http://127.0.0.1:9000/", kind=RobotKind.GENERIC),
        ChatRobot(
            url_prefix="http://127.0.0.1:9000/ding/",
            kind=RobotKind.DINGTALK,
            secret=SecretStr("SEC-1"),
        ),
        ChatRobot(
            url_prefix="https://oapi.dingtalk.com/robot/send?access_token=team-a",
            kind=RobotKind.DINGTALK,
            secret=SecretStr("SEC-team-a"),
        ),
    )

    assert robot_for("http://127.0.0.1:9000/ding/send", robots) == (RobotKind.DINGTALK, "SEC-1")
    assert robot_for("http://127.0.0.1:9000/other", robots) == (RobotKind.GENERIC, None)
    assert robot_for("https://oapi.dingtalk.com/robot/send?access_token=team-a", robots) == (
        RobotKind.DINGTALK,
        "SEC-team-a",
    )
    assert robot_for("https://oapi.dingtalk.com/robot/send?access_token=b", robots) == (
        RobotKind.DINGTALK,
        None,
    )


def test_redacted_endpoints_keep_host_and_path_but_no_credentials() -> None:
    assert redact_url("https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=abc") == (
        "https://qyapi.weixin.qq.com/cgi-bin/webhook/send"
    )
    assert redact_url(
        "https://open.feishu.cn/open-apis/bot/v2/hook/0d5e8a3c-1b2f-4c8d-9e0f-123456789abc"
    ) == ("https://open.feishu.cn/open-apis/bot/v2/hook/***")


# -- the generic webhook -----------------------------------------------------------------------


async def test_generic_webhook_body_is_the_documented_document(
    receiver: RobotReceiver, http: HttpClient
) -> None:
    rendered = page()

    await chat(http).send(rendered, with_webhook(receiver.url("/generic/aed")))

    (request,) = receiver.on("/generic/aed")
    body = WebhookBody.model_validate_json(request.body)
    assert body.notice_id == "42:page:0:0:captain"
    assert request.headers["X-Aedfleet-Notice-Id"] == "42:page:0:0:captain"
    assert "X-Aedfleet-Signature" not in request.headers
    assert body.kind is NoticeKind.PAGE
    assert body.recipient.name == "张伟"
    assert body.subject == rendered.subject
    (item,) = body.alarms
    assert item.type is AlarmType.DOOR_OPENED
    assert item.cabinet.address == cabinet().address
    assert item.cabinet.map_url.startswith("https://www.openstreetmap.org/?mlat=22.517614")
    assert item.links.ack == "https://aed.example.cn/a/42-ack"
    assert "张伟".encode() in request.body  # UTF-8, not \\u escapes


async def test_generic_webhook_carries_the_detail_in_the_readers_words_and_local_time(
    receiver: RobotReceiver, http: HttpClient
) -> None:
    door = alarm(AlarmType.DOOR_OPENED, detail=DETAILS[AlarmType.DOOR_OPENED])
    rendered = RENDERER.render(notice(NoticeKind.PAGE, brief(door, time_zone="Asia/Shanghai")))

    await chat(http).send(rendered, with_webhook(receiver.url("/generic/aed")))

    (request,) = receiver.on("/generic/aed")
    (item,) = WebhookBody.model_validate_json(request.body).alarms
    assert item.detail == "柜门自 2025-05-01 13:51 起一直开着"  # 05:51 UTC in Shenzhen
    assert item.condition_since == door.condition_since


async def test_generic_webhook_is_signed_when_a_secret_is_configured(
    receiver: RobotReceiver, http: HttpClient
) -> None:
    signed = robot(receiver, "/generic", RobotKind.GENERIC, "hook-secret")

    await chat(http, signed).send(page(), with_webhook(receiver.url("/generic/signed")))

    (request,) = receiver.on("/generic/signed")
    timestamp = request.headers["X-Aedfleet-Timestamp"]
    assert timestamp == str(int(NOW.timestamp()))
    assert request.headers["X-Aedfleet-Signature"] == webhook_signature(
        "hook-secret", int(timestamp), request.body
    )
    assert (
        webhook_signature("hook-secret", int(timestamp), request.body + b" ")
        != (request.headers["X-Aedfleet-Signature"])
    )


@pytest.mark.parametrize(("status", "retryable"), [(500, True), (429, True), (404, False)])
async def test_generic_webhook_failures(
    receiver: RobotReceiver, http: HttpClient, status: int, retryable: bool
) -> None:
    receiver.replies["/generic/fail"] = json_reply({"error": "nope"}, status=status)

    with pytest.raises(ChannelError, match=f"HTTP {status}") as caught:
        await chat(http).send(page(), with_webhook(receiver.url("/generic/fail")))

    assert caught.value.retryable is retryable


async def test_a_webhook_that_does_not_answer_times_out(
    receiver: RobotReceiver, http: HttpClient
) -> None:
    receiver.replies["/generic/slow"] = receiver.hang

    with pytest.raises(ChannelTimeoutError) as caught:
        await chat(http, timeout_s=0.2).send(page(), with_webhook(receiver.url("/generic/slow")))

    assert caught.value.retryable is True
    assert caught.value.timeout_s == 0.2


async def test_a_refused_connection_is_retryable(http: HttpClient) -> None:
    url = f"http://127.0.0.1:{free_port()}/generic"

    with pytest.raises(ChannelError) as caught:
        await chat(http).send(page(), with_webhook(url))

    assert caught.value.retryable is True
    assert not isinstance(caught.value, ChannelTimeoutError)


async def test_redirects_are_not_followed(receiver: RobotReceiver, http: HttpClient) -> None:
    async def redirect(received: object) -> Any:
        from aiohttp import web  # noqa: PLC0415 - only this reply needs it

        raise web.HTTPFound(receiver.url("/generic/elsewhere"))

    receiver.replies["/generic/moved"] = redirect

    with pytest.raises(ChannelError, match="HTTP 302") as caught:
        await chat(http).send(page(), with_webhook(receiver.url("/generic/moved")))

    assert caught.value.retryable is False
    assert receiver.on("/generic/elsewhere") == []


def test_chat_reaches_only_people_with_a_webhook() -> None:
    notifier = ChatNotifier(HttpClient(), ())

    assert notifier.reaches(with_webhook("https://hooks.example.cn/x"))
    assert not notifier.reaches(person())


# -- SMS gateway -------------------------------------------------------------------------------


def sms(receiver: RobotReceiver, **overrides: Any) -> SmsSettings:
    return SmsSettings.model_validate({"url": receiver.url("/sms/send")} | overrides)


async def test_sms_default_json_body(receiver: RobotReceiver, http: HttpClient) -> None:
    rendered = page()
    settings = sms(receiver, headers={"Authorization": "Bearer gateway-token"})

    await SmsNotifier(http, settings).send(rendered, person())

    (request,) = receiver.on("/sms/send")
    assert request.method == "POST"
    assert request.headers["Authorization"] == "Bearer gateway-token"
    assert request.json() == {"phone": "13800138000", "text": rendered.short_text}
    assert len(rendered.short_text) <= 300
    assert "gateway-token" not in repr(settings)


async def test_sms_form_body_and_get_gateways(receiver: RobotReceiver, http: HttpClient) -> None:
    rendered = page()
    form = sms(
        receiver,
        body_template=(
            "to={{ phone|urlencode }}&msg={{ text|urlencode }}&ref={{ notice_id|urlencode }}"
        ),
        content_type="application/x-www-form-urlencoded",
    )
    query = sms(
        receiver,
        url=receiver.url("/sms/get") + "?to={{ phone|urlencode }}&msg={{ text|urlencode }}",
        method="GET",
        body_template=None,
    )

    await SmsNotifier(http, form).send(rendered, person())
    await SmsNotifier(http, query).send(rendered, person())

    (posted,) = receiver.on("/sms/send")
    assert posted.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert parse_qs(posted.body.decode()) == {
        "to": ["13800138000"],
        "msg": [rendered.short_text],
        "ref": ["42:page:0:0:captain"],
    }
    (fetched,) = receiver.on("/sms/get")
    assert fetched.method == "GET"
    assert fetched.query == {"to": "13800138000", "msg": rendered.short_text}
    assert fetched.body == b""


async def test_sms_gateway_answering_200_with_an_error_code_is_a_failure(
    receiver: RobotReceiver, http: HttpClient
) -> None:
    receiver.replies["/sms/send"] = json_reply({"Code": "isv.BUSINESS_LIMIT_CONTROL"})
    settings = sms(receiver, success_json={"Code": "OK"})

    with pytest.raises(
        ChannelError, match=re.escape("'isv.BUSINESS_LIMIT_CONTROL' at 'Code'")
    ) as caught:
        await SmsNotifier(http, settings).send(page(), person())

    assert caught.value.retryable is False
    receiver.replies["/sms/send"] = json_reply({"Code": "OK", "BizId": "1"})
    await SmsNotifier(http, settings).send(page(), person())


async def test_sms_gateway_failures_by_status(receiver: RobotReceiver, http: HttpClient) -> None:
    receiver.replies["/sms/send"] = json_reply({"error": "down"}, status=503)
    with pytest.raises(ChannelError, match="HTTP 503") as unavailable:
        await SmsNotifier(http, sms(receiver)).send(page(), person())
    receiver.replies["/sms/send"] = json_reply({"error": "bad number"}, status=400)
    with pytest.raises(ChannelError, match="HTTP 400") as refused:
        await SmsNotifier(http, sms(receiver)).send(page(), person())

    assert unavailable.value.retryable is True
    assert refused.value.retryable is False


def test_sms_templates_are_checked_when_settings_load() -> None:
    with pytest.raises(ValidationError, match="body_template"):
        SmsSettings(url="https://sms.example.cn/send", body_template="{{ phone ")
    with pytest.raises(ValidationError, match="url"):
        SmsSettings(url="https://sms.example.cn/send?to={% if %}")


async def test_sms_template_naming_an_unknown_variable_fails_the_send(http: HttpClient) -> None:
    settings = SmsSettings(url="https://sms.example.cn/send", body_template="{{ mobile }}")

    with pytest.raises(ChannelError, match=r"template failed.*mobile") as caught:
        await SmsNotifier(http, settings).send(page(), person())

    assert caught.value.retryable is False


def test_sms_reaches_only_people_with_a_phone() -> None:
    notifier = SmsNotifier(HttpClient(), SmsSettings(url="https://sms.example.cn/send"))

    assert notifier.reaches(person())
    assert not notifier.reaches(person(phone=""))
