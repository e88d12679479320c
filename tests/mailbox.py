"""A real SMTP server (aiosmtpd) on a free loopback port that keeps what it receives."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from types import TracebackType
from typing import Any, Self, cast

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope, Session

from tests.brokers import free_port


@dataclass(frozen=True)
class Delivery:
    at: float  # time.monotonic() on arrival
    recipients: tuple[str, ...]
    message: EmailMessage


class Mailbox:
    """Every message accepted, parsed with the modern email policy, in arrival order."""

    def __init__(self) -> None:
        self.port = free_port()
        self._lock = threading.Lock()
        self._deliveries: list[Delivery] = []
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
            self._deliveries.append(Delivery(time.monotonic(), tuple(envelope.rcpt_tos), parsed))
        return "250 OK"

    @property
    def deliveries(self) -> list[Delivery]:
        with self._lock:
            return list(self._deliveries)

    @property
    def messages(self) -> list[EmailMessage]:
        return [delivery.message for delivery in self.deliveries]

    def to(self, address: str) -> list[EmailMessage]:
        """Messages whose envelope named ``address`` as a recipient."""
        return [d.message for d in self.deliveries if address in d.recipients]


def text_of(message: EmailMessage) -> str:
    """The plain-text part of a message."""
    part = message.get_body(preferencelist=("plain",))
    assert part is not None, "no text/plain part"
    return cast(EmailMessage, part).get_content()  # type: ignore[no-any-return]
