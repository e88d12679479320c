"""Delivery: channel order, retries with backoff on an injected clock, fallback, the report.

End-to-end cases use the real servers (aiosmtpd, the aiohttp robot receiver); the
invariants of the retry walk are checked with scripted notifiers standing in for the
``Notifier`` port, which is what they are about.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from aedfleet.backoff import BackoffSettings
from aedfleet.registry import Language, Person
from aedfleet.settings import ConfigError, FileThenEnvSettings, load_settings
from aedfleet_testing.brokers import free_port
from aedfleet_testing.mailbox import Mailbox
from alerting.model import AlarmType, NoticeKind
from alerting.notifiers.base import (
    Channel,
    ChannelError,
    Notifier,
    NotifyError,
    RenderedNotice,
)
from alerting.notifiers.chat import ChatNotifier, RobotKind
from alerting.notifiers.delivery import (
    DEFAULT_CHANNEL_ORDER,
    Deliverer,
    DeliveryReport,
    NotifySettings,
    RetryPolicy,
)
from alerting.notifiers.email import EmailNotifier
from alerting.notifiers.setup import notifiers_for
from alerting.notifiers.sms import SmsNotifier
from alerting.render import Renderer
from tests.notify_support import (
    NOW,
    FakeClock,
    alarm,
    brief,
    notice,
    person,
)
from tests.receiver import RobotReceiver, json_reply

BACKOFF = BackoffSettings(initial_s=2.0, max_s=30.0)
RENDERER = Renderer()  # compiling the templates once keeps the property test fast


@pytest.fixture
async def receiver() -> AsyncIterator[RobotReceiver]:
    async with RobotReceiver(clock_now=NOW.timestamp) as instance:
        yield instance


@pytest.fixture
def smtp() -> Iterator[Mailbox]:
    with Mailbox() as server:
        yield server


def notify_settings(receiver: RobotReceiver, smtp_port: int, **overrides: Any) -> NotifySettings:
    values: dict[str, Any] = {
        "smtp": {
            "host": "127.0.0.1",
            "port": smtp_port,
            "security": "none",
            "from_address": "aed-alerts@fleet.example.cn",
            "timeout_s": 5,
        },
        "chat_robots": [
            {
                "url_prefix": receiver.url("/dingtalk"),
                "kind": "dingtalk",
                "secret": receiver.dingtalk_secret,
            }
        ],
        "sms": {"url": receiver.url("/sms/send")},
        "retry": {"attempts_per_channel": 3, "backoff": BACKOFF.model_dump()},
    }
    return NotifySettings.model_validate(values | overrides)


def reachable_everywhere(receiver: RobotReceiver, **overrides: Any) -> Person:
    values = {
        "chat_webhook": receiver.url("/dingtalk/robot/send?access_token=tok-secret-9")
    } | overrides
    return person(**values)


async def deliver(settings: NotifySettings, recipient: Person) -> tuple[DeliveryReport, FakeClock]:
    clock = FakeClock()
    async with notifiers_for(settings, clock) as notifiers:
        deliverer = Deliverer.configured(notifiers, settings, clock=clock, rng=random.Random(7))
        report = await deliverer.deliver(notice(recipient=recipient))
    return report, clock


async def test_smtp_refused_is_retried_then_falls_back_to_the_chat_robot(
    receiver: RobotReceiver,
) -> None:
    settings = notify_settings(receiver, smtp_port=free_port())

    report, clock = await deliver(settings, reachable_everywhere(receiver))

    assert report.delivered
    assert report.channel is Channel.CHAT
    assert report.error is None
    assert [(a.channel, a.ok, a.retryable) for a in report.attempts] == [
        (Channel.EMAIL, False, True),
        (Channel.EMAIL, False, True),
        (Channel.EMAIL, False, True),
        (Channel.CHAT, True, False),
    ]
    assert all("smtp://127.0.0.1" in (a.error or "") for a in report.attempts[:3])
    # Two waits between three email tries, inside backoff's full-jitter windows.
    assert len(clock.sleeps) == 2
    assert BACKOFF.initial_s / 2 <= clock.sleeps[0] <= BACKOFF.initial_s
    assert BACKOFF.initial_s / 2 <= clock.sleeps[1] <= BACKOFF.initial_s * 2
    stamps = [attempt.at for attempt in report.attempts]
    assert stamps == sorted(stamps)
    assert (stamps[1] - stamps[0]).total_seconds() == pytest.approx(clock.sleeps[0])
    (posted,) = receiver.on("/dingtalk/robot/send")
    assert posted.json()["msgtype"] == "markdown"
    assert receiver.on("/sms/send") == []


async def test_email_first_when_it_works(receiver: RobotReceiver, smtp: Mailbox) -> None:
    settings = notify_settings(receiver, smtp_port=smtp.port)

    report, clock = await deliver(settings, reachable_everywhere(receiver))

    assert report.delivered
    assert report.channel is Channel.EMAIL
    assert [(a.channel, a.ok) for a in report.attempts] == [(Channel.EMAIL, True)]
    assert clock.sleeps == []
    assert len(smtp.messages) == 1
    assert receiver.received == []


async def test_a_non_retryable_failure_moves_on_at_once(
    receiver: RobotReceiver, smtp: Mailbox
) -> None:
    smtp.refuse_with = "554 5.7.1 Rejected"
    settings = notify_settings(receiver, smtp_port=smtp.port)

    report, clock = await deliver(settings, reachable_everywhere(receiver))

    assert report.channel is Channel.CHAT
    assert [(a.channel, a.ok, a.retryable) for a in report.attempts] == [
        (Channel.EMAIL, False, False),
        (Channel.CHAT, True, False),
    ]
    assert "554" in (report.attempts[0].error or "")
    assert clock.sleeps == []


async def test_a_robot_refusing_with_errcode_falls_through_to_sms(
    receiver: RobotReceiver,
) -> None:
    receiver.replies["/dingtalk/robot/send"] = json_reply(
        {"errcode": 300001, "errmsg": "token is not exist"}
    )
    settings = notify_settings(receiver, smtp_port=free_port(), channel_order=["chat", "sms"])

    report, _ = await deliver(settings, reachable_everywhere(receiver))

    assert report.delivered
    assert report.channel is Channel.SMS
    assert [(a.channel, a.ok) for a in report.attempts] == [
        (Channel.CHAT, False),
        (Channel.SMS, True),
    ]
    assert "300001" in (report.attempts[0].error or "")
    assert "tok-secret-9" not in (report.attempts[0].error or "")
    (message,) = receiver.on("/sms/send")
    assert message.json()["phone"] == "13800138000"


async def test_when_every_channel_fails_each_attempt_is_reported(
    receiver: RobotReceiver,
) -> None:
    receiver.replies["/dingtalk/robot/send"] = json_reply({"errcode": 130101, "errmsg": "slow"})
    receiver.replies["/sms/send"] = json_reply({"error": "unavailable"}, status=503)
    settings = notify_settings(
        receiver,
        smtp_port=free_port(),
        retry={"attempts_per_channel": 2, "backoff": BACKOFF.model_dump()},
    )

    report, clock = await deliver(settings, reachable_everywhere(receiver))

    assert not report.delivered
    assert report.channel is None
    assert [a.channel for a in report.attempts] == [
        Channel.EMAIL,
        Channel.EMAIL,
        Channel.CHAT,
        Channel.CHAT,
        Channel.SMS,
        Channel.SMS,
    ]
    assert not any(attempt.ok for attempt in report.attempts)
    assert report.error is not None
    assert "HTTP 503" in report.error
    assert len(clock.sleeps) == 3
    assert len(receiver.on("/dingtalk/robot/send")) == 2


async def test_channels_the_person_lacks_or_nobody_configured_are_skipped(
    receiver: RobotReceiver,
) -> None:
    phone_only = Person(person_id="p-li", name="李娜", phone="13900139000")
    no_smtp = notify_settings(receiver, smtp_port=free_port(), smtp=None)

    report, _ = await deliver(no_smtp, phone_only)

    assert report.channel is Channel.SMS
    assert [a.channel for a in report.attempts] == [Channel.SMS]


async def test_a_person_with_no_reachable_channel_gets_an_explained_report(
    receiver: RobotReceiver,
) -> None:
    settings = notify_settings(receiver, smtp_port=free_port(), sms=None)
    unreachable = Person(person_id="p-wang", name="王芳", phone="13700137000")

    report, _ = await deliver(settings, unreachable)

    assert not report.delivered
    assert report.attempts == ()
    assert report.error == "p-wang has no address for any configured channel (email, chat)"


async def test_a_webhook_timeout_is_recorded_and_retried(receiver: RobotReceiver) -> None:
    receiver.replies["/generic/slow"] = receiver.hang
    settings = notify_settings(
        receiver,
        smtp_port=free_port(),
        smtp=None,
        sms=None,
        chat_timeout_s=0.1,
        retry={"attempts_per_channel": 2, "backoff": BACKOFF.model_dump()},
    )

    report, _ = await deliver(settings, person(chat_webhook=receiver.url("/generic/slow")))

    assert not report.delivered
    assert [(a.channel, a.retryable) for a in report.attempts] == [
        (Channel.CHAT, True),
        (Channel.CHAT, True),
    ]
    assert all("no answer within 0.1 s" in (a.error or "") for a in report.attempts)


def test_notifiers_for_builds_what_is_configured() -> None:
    async def build(settings: NotifySettings) -> list[type]:
        async with notifiers_for(settings) as notifiers:
            return [type(notifier) for notifier in notifiers]

    everything = NotifySettings.model_validate(
        {
            "smtp": {"from_address": "a@fleet.example.cn"},
            "sms": {"url": "https://sms.example.cn/send"},
        }
    )

    assert asyncio.run(build(everything)) == [EmailNotifier, ChatNotifier, SmsNotifier]
    assert asyncio.run(build(NotifySettings())) == [ChatNotifier]


def test_notify_settings_load_from_a_file_and_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class ServiceSettings(FileThenEnvSettings):
        notify: NotifySettings = NotifySettings()

    config = tmp_path / "alerting.toml"
    config.write_text(
        """
[notify]
channel_order = ["chat", "email"]

[notify.smtp]
host = "smtp.example.cn"
security = "tls"
from_address = "aed@example.cn"
from_name = "AED 值班"

[[notify.chat_robots]]
url_prefix = "https://oapi.dingtalk.com/robot/send?access_token=abc"
kind = "dingtalk"
secret = "SEC123"

[notify.retry]
attempts_per_channel = 5
""",
        encoding="utf-8",
    )
    monkeypatch.setenv("AEDFLEET_NOTIFY__SMTP__PASSWORD", "from-env")
    monkeypatch.setenv("AEDFLEET_NOTIFY__SMTP__USERNAME", "aed")

    loaded = load_settings(ServiceSettings, config).notify

    assert loaded.channel_order == (Channel.CHAT, Channel.EMAIL)
    assert loaded.smtp is not None
    assert loaded.smtp.effective_port == 465
    assert loaded.smtp.from_name == "AED 值班"
    assert loaded.smtp.password is not None
    assert loaded.smtp.password.get_secret_value() == "from-env"
    assert loaded.chat_robots[0].kind is RobotKind.DINGTALK
    assert loaded.retry.attempts_per_channel == 5

    config.write_text("[notify.retry]\nattempts_per_channel = 0\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=re.escape("notify.retry.attempts_per_channel")):
        load_settings(ServiceSettings, config)


def test_a_channel_listed_twice_is_refused() -> None:
    with pytest.raises(ValidationError, match="a channel appears twice"):
        NotifySettings(channel_order=(Channel.EMAIL, Channel.SMS, Channel.EMAIL))
    assert NotifySettings().channel_order == DEFAULT_CHANNEL_ORDER


# -- the retry walk, with scripted notifiers ---------------------------------------------------


class Scripted:
    """A notifier for one channel that plays back outcomes: "ok", "retry", "fail", "boom"."""

    def __init__(self, channel: Channel, outcomes: list[str], reaches: bool = True) -> None:
        self.channel = channel
        self.outcomes = list(outcomes)
        self.calls = 0
        self._reaches = reaches

    def reaches(self, person: Person) -> bool:
        return self._reaches

    async def send(self, rendered: RenderedNotice, person: Person) -> None:
        self.calls += 1
        outcome = self.outcomes.pop(0) if self.outcomes else "ok"
        if outcome == "retry":
            raise ChannelError(self.channel, "scripted", "try again", retryable=True)
        if outcome == "fail":
            raise ChannelError(self.channel, "scripted", "gone for good", retryable=False)
        if outcome == "boom":
            raise RuntimeError("a bug in a notifier")


class Hanging:
    channel = Channel.EMAIL

    def __init__(self) -> None:
        self.sending = asyncio.Event()

    def reaches(self, person: Person) -> bool:
        return True

    async def send(self, rendered: RenderedNotice, person: Person) -> None:
        self.sending.set()
        await asyncio.Event().wait()


def walk(
    notifiers: list[Notifier], attempts_per_channel: int = 3, **retry: Any
) -> tuple[Deliverer, FakeClock]:
    clock = FakeClock()
    policy = RetryPolicy(attempts_per_channel=attempts_per_channel, backoff=BACKOFF, **retry)
    return Deliverer(notifiers, RENDERER, retry=policy, clock=clock, rng=random.Random(1)), clock


outcome_lists = st.lists(st.sampled_from(["ok", "retry", "fail", "boom"]), max_size=5)


@settings(max_examples=200, deadline=None)
@given(
    email=outcome_lists,
    chat=outcome_lists,
    sms=outcome_lists,
    attempts_per_channel=st.integers(min_value=1, max_value=4),
)
def test_the_walk_tries_channels_in_order_and_stops_at_the_first_success(
    email: list[str], chat: list[str], sms: list[str], attempts_per_channel: int
) -> None:
    scripts = {
        Channel.EMAIL: Scripted(Channel.EMAIL, email),
        Channel.CHAT: Scripted(Channel.CHAT, chat),
        Channel.SMS: Scripted(Channel.SMS, sms),
    }
    deliverer, clock = walk(list(scripts.values()), attempts_per_channel)

    report = asyncio.run(deliverer.deliver(notice()))

    channels = [attempt.channel for attempt in report.attempts]
    assert channels == sorted(channels, key=DEFAULT_CHANNEL_ORDER.index)
    assert report.delivered == any(attempt.ok for attempt in report.attempts)
    assert report.delivered == (report.attempts[-1].ok if report.attempts else False)
    assert [attempt.ok for attempt in report.attempts].count(True) <= 1
    if report.delivered:
        assert report.channel is report.attempts[-1].channel
        assert report.error is None
    else:
        assert report.channel is None
        assert report.error
    retries = 0
    for channel, script in scripts.items():
        tried = [attempt for attempt in report.attempts if attempt.channel is channel]
        assert len(tried) == script.calls <= attempts_per_channel
        for earlier in tried[:-1]:
            assert not earlier.ok
            assert earlier.retryable
        retries += max(0, len(tried) - 1)
    assert len(clock.sleeps) == retries


async def test_an_unexpected_notifier_bug_is_recorded_and_the_next_channel_used() -> None:
    deliverer, _ = walk([Scripted(Channel.EMAIL, ["boom"]), Scripted(Channel.SMS, ["ok"])])

    report = await deliverer.deliver(notice())

    assert report.channel is Channel.SMS
    first = report.attempts[0]
    assert (first.channel, first.ok, first.retryable) == (Channel.EMAIL, False, False)
    assert first.error == "email: unexpected RuntimeError: a bug in a notifier"


async def test_an_attempt_that_hangs_is_cut_by_the_attempt_timeout() -> None:
    deliverer, _ = walk(
        [Hanging(), Scripted(Channel.SMS, ["ok"])], attempts_per_channel=1, attempt_timeout_s=0.05
    )

    report = await deliverer.deliver(notice())

    assert report.channel is Channel.SMS
    assert report.attempts[0].channel is Channel.EMAIL
    assert "no answer within 0.05 s" in (report.attempts[0].error or "")


async def test_a_notice_that_cannot_render_is_reported_not_raised(tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    (templates / "zh").mkdir(parents=True)
    sms = Scripted(Channel.SMS, ["ok"])
    deliverer = Deliverer([sms], Renderer(templates=templates))

    report = await deliverer.deliver(notice())

    assert not report.delivered
    assert report.attempts == ()
    assert report.error is not None
    assert report.error.startswith("not rendered:")
    assert sms.calls == 0


async def test_cancellation_is_not_swallowed() -> None:
    hanging = Hanging()
    deliverer, _ = walk([hanging], attempt_timeout_s=60)
    task = asyncio.create_task(deliverer.deliver(notice()))
    async with asyncio.timeout(5):
        await hanging.sending.wait()  # cancelled inside the attempt, not before it

    task.cancel()

    with pytest.raises(asyncio.CancelledError):
        await task


def test_two_notifiers_for_one_channel_are_refused() -> None:
    with pytest.raises(ValueError, match="two notifiers for the same channel"):
        Deliverer([Scripted(Channel.SMS, []), Scripted(Channel.SMS, [])], Renderer())


async def test_channels_for_follows_order_and_reach() -> None:
    deliverer = Deliverer(
        [
            Scripted(Channel.EMAIL, [], reaches=False),
            Scripted(Channel.CHAT, []),
            Scripted(Channel.SMS, []),
        ],
        Renderer(),
        order=(Channel.SMS, Channel.EMAIL, Channel.CHAT),
    )

    assert deliverer.channels_for(notice()) == (Channel.SMS, Channel.CHAT)


async def test_a_grouped_english_notice_is_delivered_as_one_message(smtp: Mailbox) -> None:
    settings = NotifySettings.model_validate(
        {
            "smtp": {
                "host": "127.0.0.1",
                "port": smtp.port,
                "security": "none",
                "from_address": "aed-alerts@fleet.example.cn",
            }
        }
    )
    grouped = notice(
        NoticeKind.REMINDER,
        brief(alarm(AlarmType.BATTERY_LOW, alarm_id=1)),
        brief(alarm(AlarmType.SELFTEST_MISSING, alarm_id=2)),
        recipient=person(Language.EN),
    )

    async with notifiers_for(settings) as notifiers:
        report = await Deliverer.configured(notifiers, settings).deliver(grouped)

    assert report.channel is Channel.EMAIL
    (message,) = smtp.messages
    assert message["Subject"] == "Reminder: [CRITICAL] 2 AED alarms at 1 cabinet"


def test_errors_are_notify_errors() -> None:
    assert issubclass(ChannelError, NotifyError)
