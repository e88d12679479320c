"""The generic JSON webhook: a notice as a documented JSON document, optionally signed.

A person whose ``chat_webhook`` is not a known group-chat robot (see
:mod:`alerting.notifiers.chat`) receives this body by ``POST`` with
``Content-Type: application/json; charset=utf-8``::

    {
      "version": 1,
      "notice_id": "42:page:0:1:backup",      # idempotency key: drop a repeated id
      "kind": "page",                          # page | reminder | resolved | digest
      "created_at": "2025-05-01T06:03:00Z",
      "language": "zh",
      "recipient": {"person_id": "p-17", "name": "张伟", "role": "backup"},
      "escalated_after": [{"name": "李强", "role": "captain",
                           "paged_at": "2025-05-01T05:53:00Z"}],
      "subject": "…", "text": "…", "markdown": "…", "short_text": "…",
      "alarms": [{
        "alarm_id": 42, "type": "door_opened", "severity": "critical",
        "state": "raised", "detail": "柜门自 2025-05-01 13:51 起一直开着",
        "condition_since": "…", "raised_at": "…",
        "acknowledged_at": null, "resolved_at": null,
        "cabinet": {"cabinet_id": "sz-0001", "name": "…", "address": "…",
                    "floor": "1", "indoor_description": "…", "latitude": 22.5,
                    "longitude": 113.9, "access_mode": "pin", "site_type": "school",
                    "region_code": "440305", "map_url": "https://…"},
        "links": {"ack": "https://…", "resolve": null, "inspect": null}
      }]
    }

An alarm's ``detail`` is in words in the notice's ``language``, its times in the cabinet's
time zone, as in the text ("" when the alarm has none). The same ``notice_id`` is also
sent as the ``X-Aedfleet-Notice-Id`` header. Any 2xx
answer is success; 408, 425, 429 and 5xx are worth retrying, every other status is not.

With a secret configured for the URL (``chat_robots`` in the settings), the request
carries ``X-Aedfleet-Timestamp`` (Unix seconds) and ``X-Aedfleet-Signature:
sha256=<hex>``, the HMAC-SHA256 with the secret of ``"{timestamp}." + body``: a
receiver recomputes it over the raw body and rejects stale timestamps, so a captured
request can neither be altered nor replayed later (:func:`webhook_signature`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime
from typing import Final

from pydantic import BaseModel, ConfigDict

from aedfleet.contract import UtcTimestamp
from aedfleet.registry import AccessMode, Language, Role, SiteType
from alerting.model import AlarmState, AlarmType, NoticeKind, Severity
from alerting.notifiers.base import Channel, ChannelError, PriorPage, RenderedNotice
from alerting.notifiers.transport import HttpAnswer, is_retryable_status
from alerting.render import DEFAULT_MAP_URL_TEMPLATE, map_url

__all__ = [
    "JSON_CONTENT_TYPE",
    "NOTICE_ID_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "WEBHOOK_BODY_VERSION",
    "OutgoingRequest",
    "WebhookBody",
    "check_webhook_answer",
    "generic_webhook_request",
    "json_bytes",
    "webhook_body",
    "webhook_signature",
]

WEBHOOK_BODY_VERSION: Final = 1
NOTICE_ID_HEADER: Final = "X-Aedfleet-Notice-Id"
TIMESTAMP_HEADER: Final = "X-Aedfleet-Timestamp"
SIGNATURE_HEADER: Final = "X-Aedfleet-Signature"
JSON_CONTENT_TYPE: Final = "application/json; charset=utf-8"


class _Body(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class WebhookRecipient(_Body):
    person_id: str
    name: str
    role: Role


class WebhookCabinet(_Body):
    cabinet_id: str
    name: str
    address: str
    floor: str
    indoor_description: str
    latitude: float
    longitude: float
    access_mode: AccessMode
    site_type: SiteType
    region_code: str
    map_url: str


class WebhookLinks(_Body):
    ack: str | None
    resolve: str | None
    inspect: str | None


class WebhookAlarm(_Body):
    alarm_id: int
    type: AlarmType
    severity: Severity
    state: AlarmState
    detail: str
    condition_since: UtcTimestamp
    raised_at: UtcTimestamp
    acknowledged_at: UtcTimestamp | None
    resolved_at: UtcTimestamp | None
    cabinet: WebhookCabinet
    links: WebhookLinks


class WebhookBody(_Body):
    """The documented body of the generic webhook (see the module docstring)."""

    version: int = WEBHOOK_BODY_VERSION
    notice_id: str
    kind: NoticeKind
    created_at: UtcTimestamp
    language: Language
    recipient: WebhookRecipient
    escalated_after: tuple[PriorPage, ...]
    subject: str
    text: str
    markdown: str
    short_text: str
    alarms: tuple[WebhookAlarm, ...]


def webhook_body(
    rendered: RenderedNotice, map_url_template: str = DEFAULT_MAP_URL_TEMPLATE
) -> WebhookBody:
    notice = rendered.notice
    return WebhookBody(
        notice_id=notice.notice_id,
        kind=notice.kind,
        created_at=notice.created_at,
        language=rendered.language,
        recipient=WebhookRecipient(
            person_id=notice.recipient.person_id, name=notice.recipient.name, role=notice.role
        ),
        escalated_after=notice.escalated_after,
        subject=rendered.subject,
        text=rendered.text,
        markdown=rendered.markdown,
        short_text=rendered.short_text,
        alarms=tuple(
            WebhookAlarm(
                alarm_id=brief.alarm.alarm_id,
                type=brief.alarm.type,
                severity=brief.alarm.severity,
                state=brief.alarm.state,
                detail=detail,
                condition_since=brief.alarm.condition_since,
                raised_at=brief.alarm.raised_at,
                acknowledged_at=brief.alarm.acknowledged_at,
                resolved_at=brief.alarm.resolved_at,
                cabinet=WebhookCabinet(
                    cabinet_id=brief.cabinet.cabinet_id,
                    name=brief.cabinet.name,
                    address=brief.cabinet.address,
                    floor=brief.cabinet.floor,
                    indoor_description=brief.cabinet.indoor_description,
                    latitude=brief.cabinet.latitude,
                    longitude=brief.cabinet.longitude,
                    access_mode=brief.cabinet.access_mode,
                    site_type=brief.cabinet.site_type,
                    region_code=brief.cabinet.region_code,
                    map_url=map_url(brief.cabinet, map_url_template),
                ),
                links=WebhookLinks(
                    ack=brief.ack_url, resolve=brief.resolve_url, inspect=brief.inspect_url
                ),
            )
            for brief, detail in zip(notice.alarms, rendered.details, strict=True)
        ),
    )


def json_bytes(document: object) -> bytes:
    """Compact UTF-8 JSON; non-ASCII stays readable rather than \\u-escaped."""
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def webhook_signature(secret: str, timestamp: int, body: bytes) -> str:
    """``sha256=<hex>``: HMAC-SHA256 with ``secret`` over ``b"{timestamp}." + body``."""
    signed = f"{timestamp}.".encode() + body
    return "sha256=" + hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()


class OutgoingRequest(BaseModel):
    """One HTTP request a notifier is about to send (pure; built before any I/O)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str
    body: bytes
    headers: dict[str, str]
    url_is_encoded: bool = False


def generic_webhook_request(
    rendered: RenderedNotice,
    url: str,
    secret: str | None,
    now: datetime,
    map_url_template: str = DEFAULT_MAP_URL_TEMPLATE,
) -> OutgoingRequest:
    body = json_bytes(webhook_body(rendered, map_url_template).model_dump(mode="json"))
    headers = {"Content-Type": JSON_CONTENT_TYPE, NOTICE_ID_HEADER: rendered.notice.notice_id}
    if secret:
        timestamp = int(now.timestamp())
        headers[TIMESTAMP_HEADER] = str(timestamp)
        headers[SIGNATURE_HEADER] = webhook_signature(secret, timestamp, body)
    return OutgoingRequest(url=url, body=body, headers=headers)


def check_webhook_answer(answer: HttpAnswer, endpoint: str) -> None:
    """Raise :class:`ChannelError` unless the receiver accepted the notice (any 2xx)."""
    if 200 <= answer.status < 300:
        return
    raise ChannelError(
        Channel.CHAT,
        endpoint,
        f"answered HTTP {answer.status}: {answer.excerpt()}",
        retryable=is_retryable_status(answer.status),
    )
