"""Real SMTP servers on free loopback ports, for the tests of everything that sends email.

:class:`Mailbox` is an aiosmtpd server in its own thread that keeps what it accepts:
plain, STARTTLS (required before MAIL) or implicit TLS, with AUTH when given users, and
able to refuse every message with a reply of the test's choosing. :class:`SilentServer`
accepts connections and never greets, so that every wait of a client times out.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from types import TracebackType
from typing import Any, Literal, Self, cast

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from aedfleet_testing.brokers import TlsFiles, free_port

Security = Literal["none", "starttls", "tls"]


@dataclass(frozen=True)
class Delivery:
    at: float  # time.monotonic() on arrival
    sender: str
    recipients: tuple[str, ...]
    message: EmailMessage
    raw: bytes = field(repr=False)  # as the client sent it: headers still encoded


class Mailbox:
    """Every message accepted, parsed with the modern email policy, in arrival order.

    ``security`` is ``none``, ``starttls`` or ``tls`` (the last two need ``tls``, a
    certificate for ``localhost``). With ``users`` (name to password), AUTH is required,
    over TLS only as aiosmtpd insists. While ``refuse_with`` holds an SMTP reply, every
    message is answered with it and not kept.
    """

    def __init__(
        self,
        security: Security = "none",
        tls: TlsFiles | None = None,
        users: Mapping[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        self.refuse_with: str | None = None
        self._users = dict(users or {})
        self._lock = threading.Lock()
        self._deliveries: list[Delivery] = []
        self._logins: list[str] = []
        options: dict[str, Any] = {}
        if security != "none":
            if tls is None:
                raise ValueError(f"{security} needs a certificate: pass tls")
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(tls.server_cert, tls.server_key)
            if security == "starttls":
                options |= {"tls_context": context, "require_starttls": True}
            else:
                options |= {"ssl_context": context}
        if self._users:
            options |= {"authenticator": self._authenticate, "auth_required": True}
        self._controller = Controller(
            self, hostname="127.0.0.1", port=self.port, server_hostname="localhost", **options
        )

    def __enter__(self) -> Self:
        self._controller.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._controller.stop()

    async def handle_DATA(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        if self.refuse_with is not None:
            return self.refuse_with
        raw = envelope.original_content or b""
        parsed = message_from_bytes(raw, policy=policy.default)
        delivery = Delivery(
            time.monotonic(), envelope.mail_from or "", tuple(envelope.rcpt_tos), parsed, raw
        )
        with self._lock:
            self._deliveries.append(delivery)
        return "250 OK"

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        user = auth_data.login.decode()
        if self._users.get(user) != auth_data.password.decode():
            return AuthResult(success=False, handled=False)
        with self._lock:
            self._logins.append(user)
        return AuthResult(success=True)

    @property
    def deliveries(self) -> list[Delivery]:
        with self._lock:
            return list(self._deliveries)

    @property
    def messages(self) -> list[EmailMessage]:
        return [delivery.message for delivery in self.deliveries]

    @property
    def logins(self) -> list[str]:
        """The users who logged in successfully, in order."""
        with self._lock:
            return list(self._logins)

    def to(self, address: str) -> list[EmailMessage]:
        """Messages whose envelope named ``address`` as a recipient."""
        return [d.message for d in self.deliveries if address in d.recipients]


def text_of(message: EmailMessage) -> str:
    """The plain-text part of a message."""
    part = message.get_body(preferencelist=("plain",))
    assert part is not None, "no text/plain part"
    return cast(EmailMessage, part).get_content()  # type: ignore[no-any-return]


class SilentServer:
    """Accepts TCP connections and never says a word: every client wait times out."""

    def __init__(self) -> None:
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> Self:
        async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self._writers.append(writer)

        self._server = await asyncio.start_server(hold, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        await self._server.wait_closed()
