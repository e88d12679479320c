"""Email over SMTP with aiosmtplib: a plain-text part and an HTML alternative.

:meth:`EmailNotifier.message` builds the message (pure) with the standard library's
:class:`~email.message.EmailMessage` under the SMTP policy, which encodes non-ASCII
display names and subjects as RFC 2047 words (``张伟 <zhang@example.cn>``, a Chinese
subject) and the bodies as UTF-8. ``Message-ID`` is derived from the notice id
(:func:`message_id`), so a notice sent twice (a retry after a lost answer) is the same
message to a mail client or archive; ``Date`` is the notice's creation time;
``X-Aedfleet-Notice-Id`` and ``X-Aedfleet-Notice-Kind`` let mail rules sort notices;
``Auto-Submitted: auto-generated`` (RFC 3834) keeps vacation responders quiet, and
critical and high notices are flagged urgent for clients that sort by importance.

Connection security is explicit (:class:`SmtpSecurity`): ``tls`` (implicit TLS,
port 465), ``starttls`` (upgrade on port 587, refusing a server that cannot) or
``none`` (plain, for a relay on the same host). Certificates are verified against the
system's CAs, or ``ca_file`` for a relay with a private CA. The whole exchange of one
message is bounded by ``timeout_s``.

aiosmtplib's errors become :class:`~alerting.notifiers.base.ChannelError` here and
nowhere else: refused or dropped connections, timeouts and 4xx replies are retryable;
5xx replies, refused credentials, a missing STARTTLS or AUTH and TLS failures are not.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import ssl
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from enum import StrEnum
from pathlib import Path
from typing import Final

import aiosmtplib
from pydantic import BaseModel, ConfigDict, EmailStr, Field, SecretStr, model_validator

from aedfleet.registry import Person
from alerting.model import Severity
from alerting.notifiers.base import Channel, ChannelError, ChannelTimeoutError, RenderedNotice

__all__ = ["EmailNotifier", "SmtpSecurity", "SmtpSettings", "message_id"]

NOTICE_ID_HEADER: Final = "X-Aedfleet-Notice-Id"
NOTICE_KIND_HEADER: Final = "X-Aedfleet-Notice-Kind"
_DEFAULT_PORTS: Final = {"none": 25, "starttls": 587, "tls": 465}
# Characters kept as they are in a Message-ID's left part; every other byte becomes =XX,
# which keeps the mapping from notice ids injective ("=" itself is always encoded).
_ID_SAFE: Final = re.compile(r"[A-Za-z0-9_\-]")
_MAX_ENCODED_ID: Final = 120


class SmtpSecurity(StrEnum):
    NONE = "none"
    STARTTLS = "starttls"
    TLS = "tls"


class SmtpSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = Field(default="127.0.0.1", min_length=1, description="The SMTP relay")
    port: int | None = Field(
        default=None, ge=1, le=65_535, description="Default: 25, 587 or 465 by security"
    )
    security: SmtpSecurity = Field(
        default=SmtpSecurity.STARTTLS,
        description="tls: implicit TLS; starttls: upgrade, refusing a server that cannot; "
        "none: plain, for a relay on the same host",
    )
    username: str | None = Field(
        default=None, description="Login user; set together with password, or neither"
    )
    password: SecretStr | None = Field(
        default=None, description="Login password; set together with username, or neither"
    )
    from_address: EmailStr = Field(
        description="The sender's address; its domain also ends every Message-ID"
    )
    from_name: str = Field(
        default="aedfleet", max_length=200, description="The sender's display name"
    )
    timeout_s: float = Field(default=30.0, gt=0, le=600, description="For one whole message")
    ca_file: Path | None = Field(
        default=None, description="Trust this CA bundle instead of the system's"
    )
    local_hostname: str | None = Field(default=None, description="Name sent in EHLO")

    @model_validator(mode="after")
    def _credentials_in_pairs(self) -> SmtpSettings:
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together: set both or neither")
        return self

    @property
    def effective_port(self) -> int:
        return self.port or _DEFAULT_PORTS[self.security.value]

    @property
    def endpoint(self) -> str:
        return f"smtp://{self.host}:{self.effective_port} ({self.security})"


def message_id(notice_id: str, domain: str) -> str:
    """``<aedfleet.{encoded notice id}@{domain}>``: equal ids, equal Message-IDs.

    A long id (a digest grouping many notifications) is replaced by its SHA-256, in a
    separate ``aedfleet-sha256.`` namespace, so that the header stays one short line.
    """
    encoded = "".join(
        char if _ID_SAFE.match(char) else "".join(f"={byte:02X}" for byte in char.encode())
        for char in notice_id
    )
    if len(encoded) > _MAX_ENCODED_ID:
        return f"<aedfleet-sha256.{hashlib.sha256(notice_id.encode()).hexdigest()}@{domain}>"
    return f"<aedfleet.{encoded}@{domain}>"


class EmailNotifier:
    channel: Final = Channel.EMAIL

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings
        self._tls_context: ssl.SSLContext | None = None
        if settings.security is not SmtpSecurity.NONE:
            # Reading the CA file blocks, but only once, when the service is wired.
            self._tls_context = ssl.create_default_context(
                cafile=str(settings.ca_file) if settings.ca_file else None
            )
        self._domain = settings.from_address.rpartition("@")[2]

    def reaches(self, person: Person) -> bool:
        return person.email is not None

    def message(self, rendered: RenderedNotice, person: Person) -> EmailMessage:
        """The message for ``rendered`` to ``person`` (pure)."""
        if person.email is None:
            raise ChannelError(
                Channel.EMAIL,
                self.settings.endpoint,
                f"{person.person_id} has no email address",
                retryable=False,
            )
        notice = rendered.notice
        message = EmailMessage(policy=SMTP)
        message["From"] = Address(
            display_name=self.settings.from_name, addr_spec=self.settings.from_address
        )
        message["To"] = Address(display_name=person.name, addr_spec=person.email)
        message["Subject"] = rendered.subject
        message["Date"] = format_datetime(notice.created_at)
        message["Message-ID"] = message_id(notice.notice_id, self._domain)
        message[NOTICE_ID_HEADER] = notice.notice_id
        message[NOTICE_KIND_HEADER] = notice.kind.value
        message["Auto-Submitted"] = "auto-generated"
        if any(brief.alarm.severity.rank >= Severity.HIGH.rank for brief in notice.alarms):
            message["Importance"] = "high"
            message["X-Priority"] = "1"
        message.set_content(rendered.text, subtype="plain", charset="utf-8")
        message.add_alternative(rendered.html, subtype="html", charset="utf-8")
        # After the parts: set_content clears every Content-* header it finds.
        message["Content-Language"] = rendered.language.value
        # Fixed per notice, so that a retried notice is the very same bytes; "=_" never
        # occurs in base64 or quoted-printable text.
        digest = hashlib.sha256(notice.notice_id.encode()).hexdigest()[:32]
        message.set_boundary(f"=_aedfleet_{digest}")
        return message

    async def send(self, rendered: RenderedNotice, person: Person) -> None:
        message = self.message(rendered, person)
        settings = self.settings
        endpoint = settings.endpoint
        try:
            async with asyncio.timeout(settings.timeout_s):
                await aiosmtplib.send(
                    message,
                    hostname=settings.host,
                    port=settings.effective_port,
                    username=settings.username,
                    password=settings.password.get_secret_value() if settings.password else None,
                    use_tls=settings.security is SmtpSecurity.TLS,
                    start_tls=settings.security is SmtpSecurity.STARTTLS,
                    tls_context=self._tls_context,
                    timeout=settings.timeout_s,
                    local_hostname=settings.local_hostname,
                )
        except (TimeoutError, aiosmtplib.SMTPTimeoutError):
            raise ChannelTimeoutError(Channel.EMAIL, endpoint, settings.timeout_s) from None
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [refusal.code for refusal in exc.recipients]
            raise ChannelError(
                Channel.EMAIL,
                endpoint,
                f"recipient refused: {'; '.join(str(r) for r in exc.recipients)}",
                retryable=all(400 <= code < 500 for code in codes),
            ) from None
        except aiosmtplib.SMTPAuthenticationError as exc:
            raise ChannelError(
                Channel.EMAIL, endpoint, f"login refused: {exc.code} {exc.message}", retryable=False
            ) from None
        except aiosmtplib.SMTPResponseException as exc:
            raise ChannelError(
                Channel.EMAIL,
                endpoint,
                f"server replied {exc.code} {exc.message}",
                retryable=400 <= exc.code < 500,
            ) from None
        except aiosmtplib.SMTPNotSupported as exc:
            raise ChannelError(Channel.EMAIL, endpoint, str(exc), retryable=False) from None
        except ssl.SSLError as exc:
            raise ChannelError(
                Channel.EMAIL, endpoint, f"TLS failed: {exc}", retryable=False
            ) from None
        except aiosmtplib.SMTPException as exc:
            if type(exc) is aiosmtplib.SMTPException:
                # aiosmtplib raises the bare class only when the server lacks what the
                # settings demand (STARTTLS, AUTH): no retry will grow it.
                raise ChannelError(Channel.EMAIL, endpoint, str(exc), retryable=False) from None
            raise _connection_error(exc, endpoint) from None
        except OSError as exc:
            raise _connection_error(exc, endpoint) from None


def _connection_error(exc: Exception, endpoint: str) -> ChannelError:
    if isinstance(exc.__cause__, ssl.SSLError):
        # aiosmtplib wraps a failed handshake as a connection error.
        return ChannelError(Channel.EMAIL, endpoint, f"TLS failed: {exc}", retryable=False)
    # Refused or dropped connections: the relay may be back in a minute.
    reason = str(exc) or type(exc).__name__
    return ChannelError(Channel.EMAIL, endpoint, reason, retryable=True)
