"""Deliver a notice: render it, try the person's channels in order, record every attempt.

:class:`Deliverer` renders a :class:`~alerting.notifiers.base.Notice` in the recipient's
language, then walks the configured channel order (default email, chat, SMS), skipping
channels that are not configured or that the person lacks (no email address, no chat
webhook, no phone). Each channel is tried up to ``retry.attempts_per_channel`` times
while its errors are retryable, waiting between tries by :mod:`aedfleet.backoff`
(exponential with full jitter, so a relay that is down is not hammered by every page at
the same instant); a non-retryable error, or running out of tries, falls through to the
next channel. The first success ends the walk.

The outcome is a :class:`DeliveryReport`, never an exception: every attempt with its
channel, time, success and error, whether it was delivered and by which channel. The
caller (the alerting service) stores it with the notice and decides what to do with an
undelivered one. Only cancellation propagates.

Time is injected: ``clock.now()`` stamps attempts and signs robot requests, and
``clock.sleep`` waits between tries, so tests drive the backoff without real waiting.
Each attempt is bounded twice: by the notifier's own network timeout, and by
``retry.attempt_timeout_s`` here, which also catches a notifier that hangs for a reason
its own timeout does not cover.

:func:`alerting.notifiers.setup.notifiers_for` builds the notifiers that
:class:`NotifySettings` configures.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Sequence
from typing import Final

from pydantic import BaseModel, ConfigDict, Field, field_validator

from aedfleet.backoff import BackoffSettings, reconnect_delay
from aedfleet.clock import Clock, SystemClock
from aedfleet.contract import UtcTimestamp
from alerting.notifiers.base import (
    Channel,
    ChannelTimeoutError,
    Notice,
    Notifier,
    NotifyError,
    RenderedNotice,
)
from alerting.notifiers.chat import ChatRobot
from alerting.notifiers.email import SmtpSettings
from alerting.notifiers.sms import SmsSettings
from alerting.render import Renderer, RenderSettings

__all__ = [
    "DEFAULT_CHANNEL_ORDER",
    "Attempt",
    "Deliverer",
    "DeliveryReport",
    "NotifySettings",
    "RetryPolicy",
]

log = logging.getLogger(__name__)

DEFAULT_CHANNEL_ORDER: Final = (Channel.EMAIL, Channel.CHAT, Channel.SMS)
_MAX_ERROR: Final = 500


class _Value(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RetryPolicy(_Value):
    attempts_per_channel: int = Field(
        default=3, ge=1, le=10, description="Tries of one channel while its errors are retryable"
    )
    backoff: BackoffSettings = Field(
        default=BackoffSettings(initial_s=2.0, max_s=30.0),
        description="Wait between tries of one channel",
    )
    attempt_timeout_s: float = Field(
        default=120.0, gt=0, le=900, description="Upper bound of one attempt, whatever the channel"
    )


class NotifySettings(_Value):
    """Everything the notifiers need; a section of the alerting service's settings."""

    smtp: SmtpSettings | None = Field(
        default=None, description="The email relay; unset: no email channel"
    )
    chat_robots: tuple[ChatRobot, ...] = Field(
        default=(), description="Kinds and secrets of chat webhooks, by URL prefix"
    )
    chat_timeout_s: float = Field(default=10.0, gt=0, le=120, description="Per webhook request")
    sms: SmsSettings | None = Field(
        default=None, description="The SMS gateway; unset: no SMS channel"
    )
    retry: RetryPolicy = Field(
        default=RetryPolicy(),
        description="How often and how long each channel is tried before the next one",
    )
    channel_order: tuple[Channel, ...] = Field(
        default=DEFAULT_CHANNEL_ORDER,
        min_length=1,
        description="Channels in the order they are tried, each once; the first success ends "
        "the walk, and a channel left out is never used",
    )
    render: RenderSettings = Field(
        default=RenderSettings(), description="How notices show times and map links"
    )

    @field_validator("channel_order")
    @classmethod
    def _each_channel_once(cls, order: tuple[Channel, ...]) -> tuple[Channel, ...]:
        if len(set(order)) != len(order):
            raise ValueError(f"a channel appears twice in {[c.value for c in order]}")
        return order


class Attempt(_Value):
    channel: Channel
    at: UtcTimestamp
    ok: bool
    error: str | None = None
    retryable: bool = False


class DeliveryReport(_Value):
    notice_id: str
    delivered: bool
    channel: Channel | None = Field(description="The channel that delivered, if any")
    attempts: tuple[Attempt, ...]
    error: str | None = Field(
        default=None, description="Why it was not delivered; None when it was"
    )


class Deliverer:
    """Renders notices and delivers each over the first channel that takes it."""

    def __init__(
        self,
        notifiers: Sequence[Notifier],
        renderer: Renderer,
        *,
        order: Sequence[Channel] = DEFAULT_CHANNEL_ORDER,
        retry: RetryPolicy | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._notifiers = {notifier.channel: notifier for notifier in notifiers}
        if len(self._notifiers) != len(notifiers):
            raise ValueError("two notifiers for the same channel")
        self._renderer = renderer
        self._order = tuple(order)
        self._retry = retry or RetryPolicy()
        self._clock = clock or SystemClock()
        self._rng = rng or random.Random()

    @classmethod
    def configured(
        cls,
        notifiers: Sequence[Notifier],
        settings: NotifySettings,
        *,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> Deliverer:
        """A deliverer with the renderer, channel order and retry policy of ``settings``."""
        return cls(
            notifiers,
            Renderer(settings.render),
            order=settings.channel_order,
            retry=settings.retry,
            clock=clock,
            rng=rng,
        )

    def channels_for(self, notice: Notice) -> tuple[Channel, ...]:
        """The channels a delivery of ``notice`` tries, in order."""
        person = notice.recipient
        return tuple(
            channel
            for channel in self._order
            if channel in self._notifiers and self._notifiers[channel].reaches(person)
        )

    async def deliver(self, notice: Notice) -> DeliveryReport:
        try:
            rendered = self._renderer.render(notice)
        except NotifyError as exc:
            log.exception("notice %s cannot be rendered", notice.notice_id)
            return self._undelivered(notice, (), f"not rendered: {exc}")
        channels = self.channels_for(notice)
        if not channels:
            configured = ", ".join(
                channel.value for channel in self._order if channel in self._notifiers
            )
            return self._undelivered(
                notice,
                (),
                f"{notice.recipient.person_id} has no address for any configured channel "
                f"({configured or 'none configured'})",
            )
        attempts: list[Attempt] = []
        for channel in channels:
            if await self._try_channel(channel, rendered, attempts):
                return DeliveryReport(
                    notice_id=notice.notice_id,
                    delivered=True,
                    channel=channel,
                    attempts=tuple(attempts),
                )
        return self._undelivered(notice, tuple(attempts), attempts[-1].error or "")

    async def _try_channel(
        self, channel: Channel, rendered: RenderedNotice, attempts: list[Attempt]
    ) -> bool:
        notifier = self._notifiers[channel]
        person = rendered.notice.recipient
        for failures in range(self._retry.attempts_per_channel):
            if failures:
                await self._clock.sleep(
                    reconnect_delay(self._retry.backoff, failures - 1, self._rng)
                )
            at = self._clock.now()
            try:
                async with asyncio.timeout(self._retry.attempt_timeout_s):
                    await notifier.send(rendered, person)
            except TimeoutError:
                error: NotifyError = ChannelTimeoutError(
                    channel, type(notifier).__name__, self._retry.attempt_timeout_s
                )
            except NotifyError as exc:
                error = exc
            except Exception as exc:  # one broken notifier must not stop the others
                log.exception("%s notifier failed unexpectedly", channel)
                error = NotifyError(
                    f"{channel}: unexpected {type(exc).__name__}: {exc}", retryable=False
                )
            else:
                attempts.append(Attempt(channel=channel, at=at, ok=True))
                log.info("notice %s delivered by %s", rendered.notice.notice_id, channel)
                return True
            attempts.append(
                Attempt(
                    channel=channel,
                    at=at,
                    ok=False,
                    error=str(error)[:_MAX_ERROR],
                    retryable=error.retryable,
                )
            )
            log.warning(
                "notice %s not delivered by %s (try %d): %s",
                rendered.notice.notice_id,
                channel,
                failures + 1,
                error,
            )
            if not error.retryable:
                return False
        return False

    @staticmethod
    def _undelivered(notice: Notice, attempts: tuple[Attempt, ...], error: str) -> DeliveryReport:
        return DeliveryReport(
            notice_id=notice.notice_id,
            delivered=False,
            channel=None,
            attempts=attempts,
            error=error[:_MAX_ERROR],
        )
