"""Email against a real aiosmtpd server on loopback: plain, STARTTLS, TLS, AUTH, failures."""

# Chinese text is written with full-width punctuation on purpose.
# ruff: noqa: RUF001

from __future__ import annotations

import re
from collections.abc import Iterator
from email.message import EmailMessage
from email.policy import default as default_policy

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr, ValidationError

from aedfleet.registry import Language, Person
from aedfleet_testing.brokers import TlsFiles, free_port, make_test_pki
from aedfleet_testing.mailbox import Mailbox, SilentServer
from alerting.model import AlarmType, NoticeKind, Severity
from alerting.notifiers.base import ChannelError, ChannelTimeoutError, RenderedNotice
from alerting.notifiers.email import EmailNotifier, SmtpSecurity, SmtpSettings, message_id
from alerting.render import Renderer
from tests.notify_support import DETAILS, alarm, brief, notice, person

RENDERER = Renderer()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_test_pki(tmp_path_factory.mktemp("smtp-pki"))


@pytest.fixture
def plain_server() -> Iterator[Mailbox]:
    with Mailbox() as server:
        yield server


def smtp_settings(port: int | None, **overrides: object) -> SmtpSettings:
    values: dict[str, object] = {
        "host": "127.0.0.1",
        "port": port,
        "security": SmtpSecurity.NONE,
        "from_address": "aed-alerts@fleet.example.cn",
        "from_name": "AED 值班系统",
        "timeout_s": 10,
    }
    return SmtpSettings.model_validate(values | overrides)


def starttls_login(server: Mailbox, pki: TlsFiles, password: str) -> SmtpSettings:
    """Settings that log in as ``aedfleet`` over STARTTLS, trusting the test CA."""
    return smtp_settings(
        server.port,
        host="localhost",
        security=SmtpSecurity.STARTTLS,
        ca_file=pki.ca_cert,
        username="aedfleet",
        password=password,
    )


def chinese_page() -> RenderedNotice:
    return RENDERER.render(notice(NoticeKind.PAGE, brief(alarm(AlarmType.AED_NOT_RETURNED))))


def only_message(server: Mailbox) -> EmailMessage:
    (message,) = server.messages
    return message


async def test_plain_smtp_delivers_both_parts_with_chinese_headers_encoded(
    plain_server: Mailbox,
) -> None:
    rendered = chinese_page()
    recipient = person()

    await EmailNotifier(smtp_settings(plain_server.port)).send(rendered, recipient)

    (delivery,) = plain_server.deliveries
    assert delivery.sender == "aed-alerts@fleet.example.cn"
    assert delivery.recipients == ("zhang@example.cn",)
    header_block = delivery.raw.split(b"\r\n\r\n", 1)[0]
    header_block.decode("ascii")  # every non-ASCII header travelled as RFC 2047 words
    assert b"=?utf-8?" in header_block

    received = delivery.message
    assert received["Subject"] == rendered.subject == "【紧急】AED 未归还 - 深圳湾小学 东门"
    assert received["To"].addresses[0].display_name == "张伟"
    assert received["To"].addresses[0].addr_spec == "zhang@example.cn"
    assert received["From"].addresses[0].display_name == "AED 值班系统"
    assert received["Message-ID"] == "<aedfleet.42=3Apage=3A0=3A0=3Acaptain@fleet.example.cn>"
    assert received["X-Aedfleet-Notice-Id"] == "42:page:0:0:captain"
    assert received["X-Aedfleet-Notice-Kind"] == "page"
    assert received["Auto-Submitted"] == "auto-generated"
    assert received["Importance"] == "high"
    assert received["Date"].datetime == rendered.notice.created_at
    assert received.get_content_type() == "multipart/alternative"
    parts = list(received.iter_parts())
    assert [part.get_content_type() for part in parts] == ["text/plain", "text/html"]
    assert all(isinstance(part, EmailMessage) for part in parts)
    plain, html = (part.get_content() for part in parts if isinstance(part, EmailMessage))
    # Text travels with CRLF line ends, as RFC 5322 wants.
    assert plain.replace("\r\n", "\n") == rendered.text
    assert html.replace("\r\n", "\n") == rendered.html
    assert "请找到 AED 并放回机柜" in plain
    assert "https://aed.example.cn/a/42-ack" in html


async def test_a_chinese_body_says_the_detail_in_chinese_and_the_cabinets_local_time(
    plain_server: Mailbox,
) -> None:
    taken = alarm(AlarmType.AED_NOT_RETURNED, detail=DETAILS[AlarmType.AED_NOT_RETURNED])
    rendered = RENDERER.render(notice(NoticeKind.PAGE, brief(taken, time_zone="Asia/Shanghai")))

    await EmailNotifier(smtp_settings(plain_server.port)).send(rendered, person())

    parts = [p for p in only_message(plain_server).iter_parts() if isinstance(p, EmailMessage)]
    plain, html = (part.get_content().replace("\r\n", "\n") for part in parts)
    # Taken at 05:51 UTC: 13:51 on the wall clocks of Shenzhen (UTC+8).
    assert "详情：AED 于 2025-05-01 13:51 被取出，至今未归还" in plain
    assert "开始时间：2025-05-01 13:51（Asia/Shanghai）" in plain
    assert "<strong>详情：</strong>AED 于 2025-05-01 13:51 被取出，至今未归还" in html
    for body in (plain, html):
        assert "UTC" not in body
        assert "05:51" not in body


async def test_a_warning_is_not_flagged_urgent_and_english_stays_english(
    plain_server: Mailbox,
) -> None:
    rendered = RENDERER.render(
        notice(
            NoticeKind.REMINDER,
            brief(alarm(AlarmType.PADS_EXPIRING, Severity.WARNING)),
            recipient=person(Language.EN, name="Anna Müller", email="anna@example.de"),
        )
    )

    await EmailNotifier(smtp_settings(plain_server.port)).send(rendered, rendered.notice.recipient)

    received = only_message(plain_server)
    assert received["Importance"] is None
    assert received["Subject"] == "Reminder: [Warning] Pads expiring soon - 深圳湾小学 东门"
    assert received["To"].addresses[0].display_name == "Anna Müller"
    assert received["Content-Language"] == "en"


async def test_starttls_with_login(pki: TlsFiles) -> None:
    with Mailbox("starttls", tls=pki, users={"aedfleet": "s3cret-口令"}) as server:
        settings = starttls_login(server, pki, "s3cret-口令")

        await EmailNotifier(settings).send(chinese_page(), person())

        assert server.logins == ["aedfleet"]
        assert only_message(server)["Subject"] == "【紧急】AED 未归还 - 深圳湾小学 东门"


async def test_implicit_tls(pki: TlsFiles) -> None:
    with Mailbox("tls", tls=pki) as server:
        settings = smtp_settings(
            server.port, host="localhost", security=SmtpSecurity.TLS, ca_file=pki.ca_cert
        )

        await EmailNotifier(settings).send(chinese_page(), person())

        assert only_message(server)["X-Aedfleet-Notice-Id"] == "42:page:0:0:captain"


async def test_wrong_password_is_not_retryable(pki: TlsFiles) -> None:
    with Mailbox("starttls", tls=pki, users={"aedfleet": "right"}) as server:
        settings = starttls_login(server, pki, "wrong")

        with pytest.raises(ChannelError, match="login refused: 535") as caught:
            await EmailNotifier(settings).send(chinese_page(), person())

        assert caught.value.retryable is False
        assert "wrong" not in str(caught.value)
        assert server.messages == []


async def test_an_untrusted_certificate_is_not_retryable(pki: TlsFiles) -> None:
    with Mailbox("tls", tls=pki) as server:
        settings = smtp_settings(server.port, host="localhost", security=SmtpSecurity.TLS)

        with pytest.raises(ChannelError, match="TLS failed") as caught:
            await EmailNotifier(settings).send(chinese_page(), person())

        assert caught.value.retryable is False


async def test_starttls_demanded_from_a_server_without_it_is_not_retryable(
    plain_server: Mailbox,
) -> None:
    settings = smtp_settings(plain_server.port, security=SmtpSecurity.STARTTLS)

    with pytest.raises(ChannelError, match="STARTTLS") as caught:
        await EmailNotifier(settings).send(chinese_page(), person())

    assert caught.value.retryable is False
    assert plain_server.messages == []


async def test_a_refused_connection_is_retryable() -> None:
    settings = smtp_settings(free_port())

    with pytest.raises(ChannelError) as caught:
        await EmailNotifier(settings).send(chinese_page(), person())

    assert caught.value.retryable is True
    assert caught.value.endpoint == f"smtp://127.0.0.1:{settings.port} (none)"


async def test_a_server_that_never_greets_times_out() -> None:
    async with SilentServer() as silent:
        settings = smtp_settings(silent.port, timeout_s=0.3)

        with pytest.raises(ChannelTimeoutError) as caught:
            await EmailNotifier(settings).send(chinese_page(), person())

    assert caught.value.retryable is True
    assert caught.value.timeout_s == 0.3


@pytest.mark.parametrize(
    ("reply", "retryable"),
    [("451 4.3.0 Mailbox busy, try later", True), ("554 5.7.1 Rejected as spam", False)],
)
async def test_a_refused_message_is_retryable_only_for_4xx(
    plain_server: Mailbox, reply: str, retryable: bool
) -> None:
    plain_server.refuse_with = reply

    with pytest.raises(ChannelError, match=reply.split(maxsplit=1)[0]) as caught:
        await EmailNotifier(smtp_settings(plain_server.port)).send(chinese_page(), person())

    assert caught.value.retryable is retryable


def test_a_person_without_an_address_is_not_reached() -> None:
    notifier = EmailNotifier(smtp_settings(25))
    nobody = Person(person_id="p-no-mail", name="无邮箱")

    assert notifier.reaches(person())
    assert not notifier.reaches(nobody)
    with pytest.raises(ChannelError, match="has no email address"):
        notifier.message(chinese_page(), nobody)


def test_the_message_is_the_same_for_the_same_notice() -> None:
    notifier = EmailNotifier(smtp_settings(25))
    first = notifier.message(chinese_page(), person())
    second = notifier.message(chinese_page(), person())

    assert first.as_bytes(policy=default_policy) == second.as_bytes(policy=default_policy)


@given(st.text(min_size=1, max_size=200), st.text(min_size=1, max_size=200))
def test_message_ids_are_valid_and_distinct_per_notice(first: str, second: str) -> None:
    ids = {message_id(first, "fleet.example.cn"), message_id(second, "fleet.example.cn")}

    for value in ids:
        assert re.fullmatch(r"<aedfleet(-sha256)?\.[A-Za-z0-9_\-=]+@fleet\.example\.cn>", value)
        assert len(value) <= 160
    assert len(ids) == (1 if first == second else 2)


async def test_a_long_digest_id_still_makes_a_valid_message(plain_server: Mailbox) -> None:
    long_id = "n" + "-".join(str(number) for number in range(1000, 1200))
    assert len(long_id) > 900
    rendered = RENDERER.render(notice(NoticeKind.DIGEST, brief(), notice_id=long_id))

    await EmailNotifier(smtp_settings(plain_server.port)).send(rendered, person())

    received = only_message(plain_server)
    assert received["X-Aedfleet-Notice-Id"] == long_id
    assert received["Message-ID"].startswith("<aedfleet-sha256.")


def test_smtp_settings_defaults_and_validation() -> None:
    assert smtp_settings(None, security="tls").effective_port == 465
    assert smtp_settings(None, security="starttls").effective_port == 587
    assert smtp_settings(None).effective_port == 25
    secret = smtp_settings(25, username="u", password="p").password  # noqa: S106 - test value
    assert isinstance(secret, SecretStr)
    assert "p" not in repr(secret)
    with pytest.raises(ValidationError, match="username and password go together"):
        smtp_settings(25, username="only-a-user")
    with pytest.raises(ValidationError, match="security"):
        smtp_settings(25, security="ssl")
