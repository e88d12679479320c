"""URLs in messages: the password never shows, whatever it holds."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from aedfleet.redact import redact_url

SCHEMES = ("mqtt", "mqtts", "postgresql+psycopg", "http", "https", "smtp")
users = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_.-", min_size=1, max_size=12)
hosts = st.sampled_from(("127.0.0.1", "broker.example.cn", "db", "[::1]"))
paths = st.sampled_from(("", "/", "/aedfleet", "/cgi-bin/webhook/send", "/a/b.sqlite3"))
passwords = st.text(min_size=8, max_size=40).filter(lambda text: "\n" not in text)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("mqtt://cab-0042:s3cret-pass@broker:1883", "mqtt://cab-0042:***@broker:1883"),
        (
            "postgresql+psycopg://aedfleet:pw-of-the-db@127.0.0.1:5432/aedfleet",
            "postgresql+psycopg://aedfleet:***@127.0.0.1:5432/aedfleet",
        ),
        ("http://user:pw@host/path?token=abc", "http://user:***@host/path"),
        (
            "smtp://aed-alerts:change-me@smtp.example.cn:587",
            "smtp://aed-alerts:***@smtp.example.cn:587",
        ),
        ("postgresql://aedfleet@127.0.0.1/aedfleet", "postgresql://aedfleet@127.0.0.1/aedfleet"),
        ("mqtt://u:p/w?x#y@host:1883", "mqtt://u:***@host:1883"),
        ("u:pw@host", "***@host"),
        ("sqlite:////var/lib/aedfleet/store.sqlite3", "sqlite:////var/lib/aedfleet/store.sqlite3"),
    ],
)
def test_the_password_is_masked_and_the_rest_stays(url: str, shown: str) -> None:
    assert redact_url(url) == shown


@given(
    scheme=st.sampled_from(SCHEMES),
    user=users,
    password=passwords,
    host=hosts,
    port=st.integers(min_value=1, max_value=65_535),
    path=paths,
    escaped=st.booleans(),
)
def test_the_password_never_appears(
    scheme: str, user: str, password: str, host: str, port: int, path: str, escaped: bool
) -> None:
    written = quote(password, safe="") if escaped else password
    shape = f"{scheme}://{user}:***@{host}:{port}{path}"
    assume(password not in shape and written not in shape)

    shown = redact_url(f"{scheme}://{user}:{written}@{host}:{port}{path}")

    assert password not in shown
    assert written not in shown
    assert shown.startswith(f"{scheme}://")
    assert f"@{host}:{port}" in shown


@given(password=passwords, host=hosts)
def test_without_a_scheme_everything_before_the_host_is_masked(password: str, host: str) -> None:
    assume(password not in f"***@{host}")

    assert password not in redact_url(f"someone:{password}@{host}")
