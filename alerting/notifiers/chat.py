"""Group-chat robots Chinese organisations use, and the generic webhook, as one channel.

A person's ``chat_webhook`` URL is one of:

- **WeCom** (企业微信群机器人, ``qyapi.weixin.qq.com``): ``POST`` of
  ``{"msgtype": "markdown", "markdown": {"content": …}}``; the robot's key is in the URL
  and there is no signing. Content is at most 4096 bytes of UTF-8. Success is
  ``{"errcode": 0}``; 45009 means the robot's rate limit (20 messages a minute) was hit.
  Docs: https://developer.work.weixin.qq.com/document/path/91770
- **DingTalk** (钉钉自定义机器人, ``oapi.dingtalk.com``): ``POST`` of
  ``{"msgtype": "markdown", "markdown": {"title": …, "text": …}}``. With 加签 signing
  the URL gets ``&timestamp=<ms>&sign=<s>``, where ``s`` is the URL-encoded base64 of
  HMAC-SHA256 keyed with the secret over ``"<ms>\\n<secret>"`` (:func:`dingtalk_sign`).
  Success is ``{"errcode": 0}``; 130101 ("send too fast, exceed 20 times per minute",
  see ccfos/nightingale#369) is the rate limit. Docs:
  https://open.dingtalk.com/document/robots/custom-robot-access
- **Feishu / Lark** (飞书自定义机器人, ``open.feishu.cn``, ``open.larksuite.com``): ``POST``
  of ``{"msg_type": "interactive", "card": …}`` with the subject as the card header and
  the markdown as its body. With signing, the body also carries ``timestamp`` (seconds)
  and ``sign``: the base64 of HMAC-SHA256 keyed with ``"<s>\\n<secret>"`` over an
  *empty* message (:func:`feishu_sign`; the key/message swap against DingTalk is the
  usual pitfall). Success is ``{"code": 0}`` (older deployments answer
  ``{"StatusCode": 0}``); 11232 is the rate limit (openclaw/openclaw#70879). Requests
  are limited to 20 KB. Docs: https://open.feishu.cn/document/client-docs/bot-v3/add-custom-bot
- anything else: the **generic JSON webhook** of :mod:`alerting.notifiers.webhook`.

The kind is inferred from the URL's host, and overridden by ``chat_robots`` settings
(``url_prefix``, ``kind``, ``secret``; the longest matching prefix wins): that is where
DingTalk and Feishu secrets are configured, and how a robot behind a gateway, or a test
receiver on loopback, is declared to be a DingTalk robot.

A robot answering HTTP 200 with a non-zero code has *not* delivered the message: it is
a failure, retryable only for the rate-limit codes above (and, as for any HTTP
endpoint, for 408/425/429/5xx and broken connections).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from typing import Final
from urllib.parse import quote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from aedfleet.clock import Clock, SystemClock
from aedfleet.redact import redact_url
from aedfleet.registry import Person
from alerting.model import Severity
from alerting.notifiers.base import Channel, ChannelError, RenderedNotice
from alerting.notifiers.transport import HttpAnswer, HttpClient, is_retryable_status
from alerting.notifiers.webhook import (
    JSON_CONTENT_TYPE,
    OutgoingRequest,
    check_webhook_answer,
    generic_webhook_request,
    json_bytes,
)
from alerting.render import DEFAULT_MAP_URL_TEMPLATE

__all__ = [
    "ChatNotifier",
    "ChatRobot",
    "RobotKind",
    "check_robot_answer",
    "dingtalk_sign",
    "feishu_sign",
    "robot_for",
    "robot_request",
    "truncate_utf8",
]


class RobotKind(StrEnum):
    WECOM = "wecom"
    DINGTALK = "dingtalk"
    FEISHU = "feishu"
    GENERIC = "generic"


_HOSTS: Final = {
    "qyapi.weixin.qq.com": RobotKind.WECOM,
    "oapi.dingtalk.com": RobotKind.DINGTALK,
    "open.feishu.cn": RobotKind.FEISHU,
    "open.larksuite.com": RobotKind.FEISHU,
}
# Codes a robot answers when it throttles: the same message may go through a minute later.
_RATE_LIMIT_CODES: Final = {
    RobotKind.WECOM: frozenset({45009}),
    RobotKind.DINGTALK: frozenset({130101}),
    RobotKind.FEISHU: frozenset({11232}),
}
_MAX_CONTENT_BYTES: Final = {
    RobotKind.WECOM: 4096,
    # Feishu refuses bodies over 20 KB; the card's other fields need room too.
    RobotKind.FEISHU: 16_000,
    # DingTalk documents no limit for markdown; keep messages as bounded as Feishu's.
    RobotKind.DINGTALK: 16_000,
}
_FEISHU_HEADER_COLOURS: Final = {
    Severity.CRITICAL: "red",
    Severity.HIGH: "orange",
    Severity.WARNING: "yellow",
    Severity.INFO: "blue",
}
_ELLIPSIS: Final = "…"


class ChatRobot(BaseModel):
    """Declares what the chat webhooks under ``url_prefix`` are, and their secret."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url_prefix: str = Field(
        min_length=8,
        pattern=r"^https?://",
        description="A person's chat_webhook starting with this is such a robot; the longest "
        "matching prefix wins",
    )
    kind: RobotKind = Field(
        description="The robot's kind; WeCom, DingTalk and Feishu robots on their own hosts "
        "are recognised without a prefix, any other URL is generic"
    )
    secret: SecretStr | None = Field(
        default=None,
        description="DingTalk 加签 or Feishu 签名校验 secret; for generic webhooks, the "
        "HMAC key of X-Aedfleet-Signature",
    )

    @model_validator(mode="after")
    def _wecom_is_unsigned(self) -> ChatRobot:
        if self.kind is RobotKind.WECOM and self.secret is not None:
            raise ValueError("WeCom group robots are not signed: their key is in the URL")
        return self


def robot_for(url: str, robots: Sequence[ChatRobot]) -> tuple[RobotKind, str | None]:
    """The kind of robot at ``url`` and its secret: configured, else inferred from the host."""
    matching = [robot for robot in robots if url.startswith(robot.url_prefix)]
    if matching:
        robot = max(matching, key=lambda candidate: len(candidate.url_prefix))
        return robot.kind, robot.secret.get_secret_value() if robot.secret else None
    host = (urlsplit(url).hostname or "").lower()
    return _HOSTS.get(host, RobotKind.GENERIC), None


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """DingTalk's 加签: base64(HMAC-SHA256(key=secret, msg="<ms>\\n<secret>")), not URL-encoded."""
    message = f"{timestamp_ms}\n{secret}".encode()
    digest = hmac.new(secret.encode("utf-8"), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def feishu_sign(secret: str, timestamp_s: int) -> str:
    """Feishu's 签名校验: base64(HMAC-SHA256(key="<s>\\n<secret>", msg=b""))."""
    key = f"{timestamp_s}\n{secret}".encode()
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode("ascii")


def truncate_utf8(text: str, max_bytes: int) -> str:
    """``text`` cut at a character boundary so that its UTF-8 fits ``max_bytes``."""
    if len(text.encode("utf-8")) <= max_bytes:
        return text
    room = max_bytes - len(_ELLIPSIS.encode("utf-8"))
    cut = text.encode("utf-8")[:room].decode("utf-8", errors="ignore")
    return cut.rstrip() + _ELLIPSIS


def _without_heading(markdown: str) -> str:
    """The markdown minus its leading heading (a Feishu card shows the subject instead)."""
    first, _, rest = markdown.partition("\n")
    return rest.lstrip("\n") if first.startswith("#") else markdown


def _worst(rendered: RenderedNotice) -> Severity:
    return max((brief.alarm.severity for brief in rendered.notice.alarms), key=lambda s: s.rank)


def robot_request(
    kind: RobotKind,
    rendered: RenderedNotice,
    url: str,
    secret: str | None,
    now: datetime,
    map_url_template: str = DEFAULT_MAP_URL_TEMPLATE,
) -> OutgoingRequest:
    """The request that posts ``rendered`` to the robot at ``url`` (pure; ``now`` signs)."""
    if kind is RobotKind.GENERIC:
        return generic_webhook_request(rendered, url, secret, now, map_url_template)
    limit = _MAX_CONTENT_BYTES[kind]
    headers = {"Content-Type": JSON_CONTENT_TYPE}
    if kind is RobotKind.WECOM:
        content = truncate_utf8(rendered.markdown, limit)
        body = {"msgtype": "markdown", "markdown": {"content": content}}
        return OutgoingRequest(url=url, body=json_bytes(body), headers=headers)
    if kind is RobotKind.DINGTALK:
        text = truncate_utf8(rendered.markdown, limit)
        body = {"msgtype": "markdown", "markdown": {"title": rendered.subject, "text": text}}
        if not secret:
            return OutgoingRequest(url=url, body=json_bytes(body), headers=headers)
        timestamp_ms = int(now.timestamp() * 1000)
        sign = quote(dingtalk_sign(secret, timestamp_ms), safe="")
        separator = "&" if urlsplit(url).query else "?"
        signed_url = f"{url}{separator}timestamp={timestamp_ms}&sign={sign}"
        return OutgoingRequest(
            url=signed_url, body=json_bytes(body), headers=headers, url_is_encoded=True
        )
    card = {
        "header": {
            "title": {"tag": "plain_text", "content": rendered.subject},
            "template": _FEISHU_HEADER_COLOURS[_worst(rendered)],
        },
        "elements": [
            {
                "tag": "markdown",
                "content": truncate_utf8(_without_heading(rendered.markdown), limit),
            }
        ],
    }
    feishu: dict[str, object] = {"msg_type": "interactive", "card": card}
    if secret:
        timestamp_s = int(now.timestamp())
        feishu = {"timestamp": str(timestamp_s), "sign": feishu_sign(secret, timestamp_s)} | feishu
    return OutgoingRequest(url=url, body=json_bytes(feishu), headers=headers)


def check_robot_answer(kind: RobotKind, answer: HttpAnswer, endpoint: str) -> None:
    """Raise :class:`ChannelError` unless the robot says it posted the message."""
    if kind is RobotKind.GENERIC:
        check_webhook_answer(answer, endpoint)
        return
    document = answer.json()
    code = _answer_code(kind, document)
    if 200 <= answer.status < 300 and code == 0:
        return
    if not 200 <= answer.status < 300:
        retryable = is_retryable_status(answer.status) or code in _RATE_LIMIT_CODES[kind]
        problem = f"answered HTTP {answer.status}: {answer.excerpt()}"
    elif code is None:
        retryable = False
        problem = f"answered without a result code: {answer.excerpt()}"
    else:
        retryable = code in _RATE_LIMIT_CODES[kind]
        problem = f"{kind} robot refused the message (code {code}): {answer.excerpt()}"
    raise ChannelError(Channel.CHAT, endpoint, problem, retryable=retryable)


def _answer_code(kind: RobotKind, document: object) -> int | None:
    if not isinstance(document, dict):
        return None
    keys = ("code", "StatusCode") if kind is RobotKind.FEISHU else ("errcode",)
    for key in keys:
        value = document.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


class ChatNotifier:
    """Posts notices to each person's ``chat_webhook``: a robot or a generic webhook."""

    channel: Final = Channel.CHAT

    def __init__(
        self,
        http: HttpClient,
        robots: Sequence[ChatRobot] = (),
        *,
        timeout_s: float = 10.0,
        clock: Clock | None = None,
        map_url_template: str = DEFAULT_MAP_URL_TEMPLATE,
    ) -> None:
        self._http = http
        self._robots = tuple(robots)
        self._timeout_s = timeout_s
        self._clock = clock or SystemClock()
        self._map_url_template = map_url_template

    def reaches(self, person: Person) -> bool:
        return person.chat_webhook is not None

    async def send(self, rendered: RenderedNotice, person: Person) -> None:
        if person.chat_webhook is None:
            raise ChannelError(
                Channel.CHAT, "(none)", f"{person.person_id} has no chat webhook", retryable=False
            )
        url = str(person.chat_webhook)
        kind, secret = robot_for(url, self._robots)
        request = robot_request(
            kind, rendered, url, secret, self._clock.now(), self._map_url_template
        )
        answer = await self._http.request(
            Channel.CHAT,
            "POST",
            request.url,
            timeout_s=self._timeout_s,
            body=request.body,
            headers=request.headers,
            url_is_encoded=request.url_is_encoded,
        )
        check_robot_answer(kind, answer, redact_url(url))
