"""Broker security, pure: password derivation, Mosquitto's hash format, the ACL's rules."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import itertools
import re
import subprocess
from pathlib import Path, PurePosixPath

import pytest
from hypothesis import given
from hypothesis import strategies as st
from paho.mqtt.client import topic_matches_sub

from aedfleet.broker_auth import (
    PASSWORD_CHARS,
    PBKDF2_ITERATIONS,
    REPORT_CHANNELS,
    BrokerAuthError,
    BrokerLayout,
    ServiceAccount,
    account_problem,
    acl_text,
    cabinet_password,
    hash_password,
    login_password,
    mosquitto_conf_text,
    parse_generations,
    password_file_text,
    service_password,
)
from aedfleet.contract import DEAD_LETTER_PREFIX, Channel, dispatch_topic, topic
from aedfleet_testing.commands import REPO

SECRET = bytes(range(48))
SALTS = itertools.count()


def counting_salt() -> bytes:
    return next(SALTS).to_bytes(12, "big")


cabinet_ids = st.text(
    alphabet=st.characters(
        blacklist_categories=("Cs", "Cc", "Cf", "Zl", "Zp", "Co", "Cn"),
        blacklist_characters="+#/:%$ ",
    ),
    min_size=1,
    max_size=64,
).filter(lambda value: account_problem(value) is None)


class Acl:
    """Mosquitto's acl_file semantics for read and write: pattern lines apply to every
    login with %u replaced, topic lines to the login of the ``user`` line above them."""

    def __init__(self, text: str) -> None:
        self.patterns: list[tuple[str, str]] = []
        self.users: dict[str, list[tuple[str, str]]] = {}
        user: str | None = None
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            keyword, rest = line.split(" ", 1)
            if keyword == "user":
                user = rest
                self.users[user] = []
            elif keyword == "pattern":
                access, topic_filter = rest.split(" ", 1)
                self.patterns.append((access, topic_filter))
            else:
                assert keyword == "topic", line
                assert user is not None, line
                access, topic_filter = rest.split(" ", 1)
                self.users[user].append((access, topic_filter))

    def allows(self, login: str, access: str, topic_name: str) -> bool:
        rules = [(a, f.replace("%u", login)) for a, f in self.patterns]
        rules += self.users.get(login, [])
        return any(
            a in (access, "readwrite") and topic_matches_sub(f, topic_name) for a, f in rules
        )


ACL = Acl(acl_text())


def test_password_is_the_truncated_base64url_hmac_of_the_cabinet_label() -> None:
    expected = base64.urlsafe_b64encode(
        hmac.new(SECRET, b"cabinet:SZ-0001", hashlib.sha256).digest()
    ).decode()[:PASSWORD_CHARS]
    assert cabinet_password(SECRET, "SZ-0001") == expected
    assert re.fullmatch(r"[A-Za-z0-9_-]{32}", expected)
    assert login_password(SECRET, "SZ-0001") == expected
    assert login_password(SECRET, "aedfleet-ingest") == service_password(
        SECRET, ServiceAccount.INGEST
    )


@given(st.lists(cabinet_ids, min_size=2, max_size=20, unique=True))
def test_different_cabinets_never_share_a_password(ids: list[str]) -> None:
    passwords = {cabinet_password(SECRET, cabinet_id) for cabinet_id in ids}
    services = {service_password(SECRET, account) for account in ServiceAccount}
    assert len(passwords) == len(ids)
    assert not passwords & services


@given(cabinet_ids)
def test_another_secret_gives_another_password(cabinet_id: str) -> None:
    assert cabinet_password(SECRET, cabinet_id) != cabinet_password(SECRET[::-1], cabinet_id)


@pytest.mark.parametrize("secret", [b"", b"x" * 31])
def test_a_short_secret_is_refused(secret: bytes) -> None:
    with pytest.raises(BrokerAuthError, match="at least 32"):
        cabinet_password(secret, "SZ-0001")


@pytest.mark.parametrize(
    ("cabinet_id", "problem"),
    [
        ("a:b", "':'"),
        ("a%u", "'%'"),
        ("aedfleet-ingest", "service account"),
        ("a/b", "reserved in MQTT"),
        ("", "empty"),
    ],
)
def test_ids_that_cannot_be_logins_are_refused(cabinet_id: str, problem: str) -> None:
    assert problem in (account_problem(cabinet_id) or "")
    with pytest.raises(BrokerAuthError, match=re.escape(problem)):
        cabinet_password(SECRET, cabinet_id)


def test_the_hash_matches_what_mosquitto_passwd_writes(tmp_path: Path) -> None:
    """Mosquitto's own tool hashes a password; the same salt and iterations give the
    same line here."""
    password_file = tmp_path / "passwd"
    password_file.write_text("")
    subprocess.run(["mosquitto_passwd", "-b", str(password_file), "SZ-0001", "pw"], check=True)
    login, stored = password_file.read_text().strip().split(":", 1)
    _, kind, iterations, salt, _ = stored.split("$")
    assert (login, kind) == ("SZ-0001", "7")
    assert hash_password("pw", base64.b64decode(salt), int(iterations)) == stored


def test_the_password_file_holds_every_service_then_every_cabinet_once() -> None:
    text = password_file_text(SECRET, ["SZ-2", "SZ-1", "SZ-2"], counting_salt)
    lines = text.splitlines()
    logins = [line.split(":", 1)[0] for line in lines]
    assert logins == [*(account.value for account in ServiceAccount), "SZ-1", "SZ-2"]
    for line in lines:
        login, stored = line.split(":", 1)
        _, _, iterations, salt, digest = stored.split("$")
        assert int(iterations) == PBKDF2_ITERATIONS
        derived = hashlib.pbkdf2_hmac(
            "sha512", login_password(SECRET, login).encode(), base64.b64decode(salt), 101
        )
        assert base64.b64decode(digest) == derived


def test_the_password_file_names_every_cabinet_it_cannot_hold() -> None:
    with pytest.raises(BrokerAuthError) as raised:
        password_file_text(SECRET, ["ok", "a:b", "aedfleet-operator"], counting_salt)
    assert "'a:b'" in str(raised.value)
    assert "'aedfleet-operator'" in str(raised.value)


@given(cabinet_ids, cabinet_ids, st.sampled_from(list(Channel)))
def test_a_cabinet_writes_and_reads_only_its_own_topics(
    login: str, other: str, channel: Channel
) -> None:
    own, theirs = topic(login, channel), topic(other, channel)
    assert ACL.allows(login, "write", own) is (channel is not Channel.CMD)
    assert ACL.allows(login, "read", own) is (channel in (Channel.CMD, Channel.STATUS))
    if other != login:
        assert not ACL.allows(login, "write", theirs)
        assert not ACL.allows(login, "read", theirs)
    for server_topic in (dispatch_topic(other), f"{DEAD_LETTER_PREFIX}/schema_violation"):
        assert not ACL.allows(login, "read", server_topic)
        assert not ACL.allows(login, "write", server_topic)


@pytest.mark.parametrize("account", [ServiceAccount.INGEST, ServiceAccount.ALERTING])
def test_the_ingest_reads_every_report_and_writes_only_dead_letters(
    account: ServiceAccount,
) -> None:
    for channel in Channel:
        assert ACL.allows(account, "read", topic("SZ-1", channel)) is (channel in REPORT_CHANNELS)
        assert not ACL.allows(account, "write", topic("SZ-1", channel))
    assert ACL.allows(account, "write", f"{DEAD_LETTER_PREFIX}/unknown_cabinet")
    assert not ACL.allows(account, "read", dispatch_topic("SZ-1"))


def test_dispatch_operator_and_bridge_have_only_their_topics() -> None:
    dispatch, operator, bridge = (
        ServiceAccount.DISPATCH,
        ServiceAccount.OPERATOR,
        ServiceAccount.DISPATCH_BRIDGE,
    )
    for channel in Channel:
        cabinet_topic = topic("SZ-1", channel)
        assert ACL.allows(dispatch, "read", cabinet_topic) is (channel is Channel.EVENT)
        assert ACL.allows(operator, "write", cabinet_topic) is (channel is Channel.CMD)
        assert ACL.allows(operator, "read", cabinet_topic) is (channel is Channel.CMD_RESULT)
        assert not ACL.allows(bridge, "read", cabinet_topic)
        assert not ACL.allows(dispatch, "write", cabinet_topic)
    assert ACL.allows(dispatch, "write", dispatch_topic("SZ-1"))
    assert ACL.allows(bridge, "read", dispatch_topic("SZ-1"))
    assert not ACL.allows(bridge, "write", dispatch_topic("SZ-1"))
    assert not ACL.allows(operator, "read", dispatch_topic("SZ-1"))
    assert ACL.allows(operator, "read", f"{DEAD_LETTER_PREFIX}/oversized")


def test_the_acl_is_written_from_the_contracts_channels() -> None:
    text = acl_text()
    for channel in REPORT_CHANNELS:
        assert f"pattern write aed/v1/%u/{channel.value}\n" in text
    assert "pattern read aed/v1/%u/cmd\n" in text
    assert "readwrite" not in text


def test_the_listeners_repeat_the_security_settings_and_the_tls_one_fixes_client_ids() -> None:
    layout = BrokerLayout(
        config_dir=PurePosixPath("/etc/mosquitto/aedfleet"),
        ca_file=PurePosixPath("/c/ca.crt"),
        cert_file=PurePosixPath("/c/s.crt"),
        key_file=PurePosixPath("/c/s.key"),
    )
    text = mosquitto_conf_text(layout)
    tls, local = text.split("\nlistener ")[1:]
    for block in (tls, local):
        assert "allow_anonymous false" in block
        assert "password_file /etc/mosquitto/aedfleet/passwd" in block
        assert "acl_file /etc/mosquitto/aedfleet/acl" in block
    assert tls.startswith("8883\n")
    assert "use_username_as_clientid true" in tls
    assert "cafile /c/ca.crt" in tls
    assert local.startswith("1883 127.0.0.1\n")
    assert "use_username_as_clientid" not in local
    assert text.startswith("# Generated")
    assert "per_listener_settings true" in text
    without_local = mosquitto_conf_text(
        dataclasses.replace(layout, tls_port=8884, tls_bind="10.0.0.1", local_port=None)
    )
    assert without_local.count("\nlistener ") == 1
    assert "listener 8884 10.0.0.1\n" in without_local


def test_the_shipped_examples_are_what_the_generator_writes() -> None:
    shipped = REPO / "deploy" / "mosquitto"
    assert (shipped / "acl.example").read_text() == acl_text()
    layout = BrokerLayout(
        config_dir=PurePosixPath("/etc/mosquitto/aedfleet"),
        ca_file=PurePosixPath("/etc/mosquitto/certs/ca.crt"),
        cert_file=PurePosixPath("/etc/mosquitto/certs/server.crt"),
        key_file=PurePosixPath("/etc/mosquitto/certs/server.key"),
    )
    assert (shipped / "aedfleet.conf.example").read_text() == mosquitto_conf_text(layout)


def test_a_new_generation_replaces_a_password_and_generation_zero_revokes_the_login() -> None:
    first = cabinet_password(SECRET, "SZ-1")
    assert cabinet_password(SECRET, "SZ-1", generation=1) == first
    second = cabinet_password(SECRET, "SZ-1", generation=2)
    assert second not in (first, cabinet_password(SECRET, "SZ-1", generation=3))
    assert login_password(SECRET, "SZ-1", {"SZ-1": 2}) == second
    with pytest.raises(BrokerAuthError, match="revoked"):
        login_password(SECRET, "SZ-1", {"SZ-1": 0})
    text = password_file_text(SECRET, ["SZ-1", "SZ-2"], counting_salt, {"SZ-1": 2, "SZ-2": 0})
    logins = dict(line.split(":", 1) for line in text.splitlines())
    assert "SZ-2" not in logins
    _, _, _, salt, digest = logins["SZ-1"].split("$")
    derived = hashlib.pbkdf2_hmac("sha512", second.encode(), base64.b64decode(salt), 101)
    assert base64.b64decode(digest) == derived


def test_the_generations_file_takes_ids_with_spaces_and_names_bad_lines() -> None:
    text = "# rekeyed after a theft\n\nSZ 0001 2\n  柜-3\t0\n"
    assert parse_generations(text) == {"SZ 0001": 2, "柜-3": 0}
    with pytest.raises(BrokerAuthError) as raised:
        parse_generations("SZ-1 two\nSZ-2 1\nSZ-2 3\n7\nSZ-4 ٣\n")
    message = str(raised.value)
    for expected in ("line 1:", "line 3: cabinet 'SZ-2' is listed twice", "line 4:", "line 5:"):
        assert expected in message
    assert "line 2" not in message
