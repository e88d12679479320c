"""SMS through whatever HTTP gateway the deployment has, described by settings alone.

SMS providers each have their own API (a JSON ``POST``, a form, a ``GET`` with query
parameters, a signature header), so the request is configured rather than coded:
:class:`SmsSettings` gives the URL, method, headers and a body template, and which
answers mean "accepted". The URL and the body are Jinja2 templates, rendered in a
sandbox with undefined names an error, over these variables:

- ``phone``: the person's number as the registry holds it (e.g. ``13800138000``);
- ``text``: the notice's short text (at most 300 characters, ending with its main link);
- ``notice_id``: the idempotency key, for gateways that accept a client reference;
- ``name``: the person's name.

Use the ``tojson`` filter inside JSON bodies (``{"mobile": {{ phone|tojson }}}``) and
``urlencode`` in query strings and form bodies, so a name or text with quotes,
ampersands or Chinese characters cannot break the request. Templates are compiled when
the settings are loaded, so a typo fails at start-up naming ``sms.body_template``.

Success is a status in ``success_statuses`` and, if ``success_json`` is set, every
dotted path in it holding the expected value (many gateways answer 200 with an error
code in the body, e.g. ``{"Code": "OK"}`` means sent). 408, 425, 429 and 5xx answers are
retryable; other refusals are not.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from aedfleet.redact import redact_url
from aedfleet.registry import Person
from alerting.notifiers.base import Channel, ChannelError, RenderedNotice
from alerting.notifiers.transport import HttpAnswer, HttpClient, is_retryable_status

__all__ = ["DEFAULT_SMS_BODY", "SmsNotifier", "SmsSettings", "check_sms_answer"]

DEFAULT_SMS_BODY: Final = '{"phone": {{ phone|tojson }}, "text": {{ text|tojson }}}'
JsonScalar = str | int | bool | None

_ENVIRONMENT: Final = ImmutableSandboxedEnvironment(
    undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True
)


def _compile(source: str) -> jinja2.Template:
    try:
        return _ENVIRONMENT.from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise ValueError(
            f"not a valid Jinja2 template: {exc.message} (line {exc.lineno})"
        ) from None


class SmsSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str = Field(
        min_length=8, pattern=r"^https?://", description="Gateway URL; a template like the body"
    )
    method: Literal["POST", "PUT", "GET"] = Field(
        default="POST", description="HTTP method of the gateway request"
    )
    headers: dict[str, SecretStr] = Field(
        default_factory=dict, description="Extra headers, e.g. an Authorization token"
    )
    body_template: str | None = Field(
        default=DEFAULT_SMS_BODY, description="Request body; None sends none (GET gateways)"
    )
    content_type: str = Field(
        default="application/json; charset=utf-8",
        description="Content-Type of the body, unless headers sets one; not sent without a body",
    )
    success_statuses: frozenset[Annotated[int, Field(ge=100, le=599)]] = Field(
        default=frozenset({200, 201, 202, 204}),
        description="HTTP statuses that mean accepted; of the others, 408, 425, 429 and 5xx "
        "are retried",
    )
    success_json: dict[str, JsonScalar] = Field(
        default_factory=dict,
        description='Dotted paths of the JSON answer and their values on success: {"Code": "OK"}',
    )
    timeout_s: float = Field(
        default=10.0, gt=0, le=120, description="Seconds for one gateway request, all included"
    )

    @field_validator("url", "body_template")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            _compile(value)
        return value


_MISSING: Final = object()


def _lookup(document: object, path: str) -> object:
    for key in path.split("."):
        if not isinstance(document, dict) or key not in document:
            return _MISSING
        document = document[key]
    return document


def check_sms_answer(settings: SmsSettings, answer: HttpAnswer, endpoint: str) -> None:
    """Raise :class:`ChannelError` unless the gateway accepted the message."""
    if answer.status not in settings.success_statuses:
        raise ChannelError(
            Channel.SMS,
            endpoint,
            f"answered HTTP {answer.status}: {answer.excerpt()}",
            retryable=is_retryable_status(answer.status),
        )
    if not settings.success_json:
        return
    document = answer.json()
    for path, expected in settings.success_json.items():
        found = _lookup(document, path)
        if found is _MISSING or found != expected:
            shown = "nothing" if found is _MISSING else repr(found)
            raise ChannelError(
                Channel.SMS,
                endpoint,
                f"answer has {shown} at {path!r}, not {expected!r}: {answer.excerpt()}",
                retryable=False,
            )


class SmsNotifier:
    channel: Final = Channel.SMS

    def __init__(self, http: HttpClient, settings: SmsSettings) -> None:
        self._http = http
        self.settings = settings
        self._url = _compile(settings.url)
        self._body = _compile(settings.body_template) if settings.body_template else None

    def reaches(self, person: Person) -> bool:
        return bool(person.phone.strip())

    def request_parts(self, rendered: RenderedNotice, person: Person) -> tuple[str, bytes | None]:
        """The URL and body for ``rendered`` to ``person`` (pure)."""
        variables = {
            "phone": person.phone.strip(),
            "text": rendered.short_text,
            "notice_id": rendered.notice.notice_id,
            "name": person.name,
        }
        try:
            url = self._url.render(variables).strip()
            body = self._body.render(variables).encode("utf-8") if self._body else None
        except jinja2.TemplateError as exc:
            raise ChannelError(
                Channel.SMS,
                redact_url(self.settings.url),
                f"template failed: {exc}",
                retryable=False,
            ) from None
        return url, body

    async def send(self, rendered: RenderedNotice, person: Person) -> None:
        if not self.reaches(person):
            raise ChannelError(
                Channel.SMS, "(none)", f"{person.person_id} has no phone number", retryable=False
            )
        url, body = self.request_parts(rendered, person)
        headers = {name: value.get_secret_value() for name, value in self.settings.headers.items()}
        if body is not None:
            headers.setdefault("Content-Type", self.settings.content_type)
        endpoint = redact_url(url)
        answer = await self._http.request(
            Channel.SMS,
            self.settings.method,
            url,
            timeout_s=self.settings.timeout_s,
            body=body,
            headers=headers,
        )
        check_sms_answer(self.settings, answer, endpoint)
