"""What the notifiers are given and what they promise: notices, rendered messages, errors.

The alerting service decides *that* a person must be told something and builds a
:class:`Notice`: its kind, the recipient and their role, one or more :class:`AlarmBrief`
(the alarm, its cabinet and the links the person may follow) and, for an escalated page,
who was paged before. :mod:`alerting.render` turns a notice into a
:class:`RenderedNotice` in the recipient's language; a :class:`Notifier` (email, chat
robot, SMS gateway) delivers that to one person over one :class:`Channel`;
:mod:`alerting.notifiers.delivery` tries the channels in order and records every attempt.

``notice_id`` is the service's idempotency key: it becomes the email Message-ID and is
sent in every webhook body, so that a receiver can drop a notice delivered twice (a
retry after a lost answer, or a restart between sending and recording it).

Exceptions::

    NotifyError          a notice could not be rendered or delivered; .retryable
    ├── ChannelError     one channel failed to deliver; .channel, .endpoint
    │   └── ChannelTimeoutError   the endpoint did not answer in time (always retryable)
    └── RenderError      a template could not render this notice (never retryable)

``retryable`` says whether the same channel may succeed if tried again soon (a refused
connection, a timeout, a 5xx or rate-limit answer); a rejected address, bad credentials
or a robot refusing the message for good are not. No library exception crosses a
notifier's interface: each adapter translates its own at one place.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

from aedfleet.contract import TimeZoneName, UtcTimestamp
from aedfleet.registry import Cabinet, Language, Person, Role
from alerting.errors import AlertingError
from alerting.model import Alarm, NoticeKind

__all__ = [
    "AlarmBrief",
    "Channel",
    "ChannelError",
    "ChannelTimeoutError",
    "Link",
    "Notice",
    "Notifier",
    "NotifyError",
    "PriorPage",
    "RenderError",
    "RenderedNotice",
]


class Channel(StrEnum):
    """A way to reach a person; each needs its own field on :class:`Person`."""

    EMAIL = "email"  # Person.email
    CHAT = "chat"  # Person.chat_webhook: a group-chat robot or a generic JSON webhook
    SMS = "sms"  # Person.phone, through the configured SMS gateway


class _Value(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


Link = Annotated[str, Field(min_length=1, max_length=2000, pattern=r"^https?://\S+$")]
NoticeId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=1000,
        pattern=r"^[\x21-\x7e]+$",
        description="Printable ASCII without spaces: it travels in headers and bodies",
    ),
]
Name = Annotated[str, Field(min_length=1, max_length=500)]


class PriorPage(_Value):
    """Someone paged earlier about the same alarm who has not acknowledged it."""

    name: Name
    role: Role
    paged_at: UtcTimestamp


class AlarmBrief(_Value):
    """One alarm as a person reads about it: where, what, and the links to act on it.

    ``time_zone`` is the cabinet's own (from its birth), in which its times are shown;
    None when it has not said, and the renderer's configured zone stands in.
    """

    alarm: Alarm
    cabinet: Cabinet
    time_zone: TimeZoneName | None = None
    ack_url: Link | None = None
    resolve_url: Link | None = None
    inspect_url: Link | None = None

    @model_validator(mode="after")
    def _same_cabinet(self) -> AlarmBrief:
        if self.alarm.cabinet_id != self.cabinet.cabinet_id:
            raise ValueError(
                f"alarm {self.alarm.alarm_id} is about cabinet {self.alarm.cabinet_id!r}, "
                f"not {self.cabinet.cabinet_id!r}"
            )
        return self


class Notice(_Value):
    """Tell ``recipient`` (in their ``role``) about one alarm, or several grouped together.

    ``escalated_after`` lists, oldest first, who was paged about these alarms before and
    did not acknowledge; empty when the recipient is the first to be told.
    """

    notice_id: NoticeId
    kind: NoticeKind
    recipient: Person
    role: Role
    alarms: tuple[AlarmBrief, ...] = Field(min_length=1, max_length=1000)
    escalated_after: tuple[PriorPage, ...] = ()
    created_at: UtcTimestamp


class RenderedNotice(_Value):
    """A notice in words, one form per kind of channel; the notice travels along.

    ``markdown`` is the subset that WeCom, DingTalk and Feishu robots all display
    (headings, bold, links, quotes); ``short_text`` fits one SMS of at most
    :data:`alerting.render.SMS_MAX_CHARS` characters and ends with the main link.
    """

    notice: Notice
    language: Language
    subject: str = Field(min_length=1, max_length=300)
    text: str
    html: str
    markdown: str
    short_text: str = Field(min_length=1, max_length=300)
    details: tuple[str, ...]
    """Each alarm's detail in words (empty: none), in the order of the notice's alarms."""

    @model_validator(mode="after")
    def _a_detail_per_alarm(self) -> RenderedNotice:
        if len(self.details) != len(self.notice.alarms):
            raise ValueError(
                f"{len(self.details)} details for the {len(self.notice.alarms)} alarms"
            )
        return self


class NotifyError(AlertingError):
    """Root of the notifiers' errors."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class ChannelError(NotifyError):
    """One channel could not deliver; ``endpoint`` names the server without secrets."""

    def __init__(self, channel: Channel, endpoint: str, message: str, *, retryable: bool) -> None:
        super().__init__(f"{channel} via {endpoint}: {message}", retryable=retryable)
        self.channel = channel
        self.endpoint = endpoint


class ChannelTimeoutError(ChannelError):
    """The endpoint did not answer within the configured time."""

    def __init__(self, channel: Channel, endpoint: str, timeout_s: float) -> None:
        super().__init__(channel, endpoint, f"no answer within {timeout_s:g} s", retryable=True)
        self.timeout_s = timeout_s


class RenderError(NotifyError):
    """A template failed on this notice: a broken template, never worth retrying."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)


class Notifier(Protocol):
    """Delivers rendered notices to people over one channel."""

    @property
    def channel(self) -> Channel:
        """The channel this notifier delivers over."""
        ...

    def reaches(self, person: Person) -> bool:
        """Whether ``person`` has what this channel needs (an address, a phone, a URL)."""
        ...

    async def send(self, rendered: RenderedNotice, person: Person) -> None:
        """Deliver ``rendered`` to ``person`` once, within the notifier's timeout.

        Raises :class:`NotifyError` (usually a :class:`ChannelError`) when it was not
        delivered, and nothing else.
        """
        ...
