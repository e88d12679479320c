"""A real SMTP server (aiosmtpd) on a free loopback port that keeps what it receives."""

from __future__ import annotations

import threading
from email import message_from_bytes, policy
from email.message import EmailMessage
from types import TracebackType
from typing import Any, Self, cast

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope, Session

from tests.brokers import free_port


class Mailbox:
    """Every message accepted, parsed with the modern email policy, in arrival order."""

    def __init__(self) -> None:
        self.port = free_port()
        self._lock = threading.Lock()
        self._messages: list[tuple[tuple[str, ...], EmailMessage]] = []
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)

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
        self, server: Any, session: Session, envelope: Envelope
    ) -> str:
        content = envelope.original_content or b""
        parsed = message_from_bytes(content, policy=policy.default)
        with self._lock:
            self._messages.append((tuple(envelope.rcpt_tos), parsed))
        return "250 OK"

    @property
    def messages(self) -> list[EmailMessage]:
        with self._lock:
            return [message for _, message in self._messages]

    def to(self, address: str) -> list[EmailMessage]:
        """Messages whose envelope named ``address`` as a recipient."""
        with self._lock:
            return [message for rcpts, message in self._messages if address in rcpts]


def text_of(message: EmailMessage) -> str:
    """The plain-text part of a message."""
    part = message.get_body(preferencelist=("plain",))
    assert part is not None, "no text/plain part"
    return cast(EmailMessage, part).get_content()  # type: ignore[no-any-return]
