"""Wiring: the notifiers that :class:`~alerting.notifiers.delivery.NotifySettings` configures.

Email when ``smtp`` is set, SMS when ``sms`` is set, and always the chat channel (a
person's own ``chat_webhook`` needs no settings; ``chat_robots`` only adds kinds and
secrets). Chat and SMS share one HTTP client, open for the ``async with`` block.

The clock given here signs DingTalk and Feishu requests, and the robots check those
timestamps against real time (within an hour), so outside tests keep the system clock,
even when the service itself runs on a scaled one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aedfleet.clock import Clock
from alerting.notifiers.base import Notifier
from alerting.notifiers.chat import ChatNotifier
from alerting.notifiers.delivery import NotifySettings
from alerting.notifiers.email import EmailNotifier
from alerting.notifiers.sms import SmsNotifier
from alerting.notifiers.transport import HttpClient

__all__ = ["notifiers_for"]


@asynccontextmanager
async def notifiers_for(
    settings: NotifySettings, clock: Clock | None = None
) -> AsyncIterator[tuple[Notifier, ...]]:
    """The configured notifiers, open for the duration of the block."""
    async with HttpClient() as http:
        notifiers: list[Notifier] = []
        if settings.smtp is not None:
            notifiers.append(EmailNotifier(settings.smtp))
        notifiers.append(
            ChatNotifier(
                http,
                settings.chat_robots,
                timeout_s=settings.chat_timeout_s,
                clock=clock,
                map_url_template=settings.render.map_url_template,
            )
        )
        if settings.sms is not None:
            notifiers.append(SmsNotifier(http, settings.sms))
        yield tuple(notifiers)
