"""Broker security, pure: who may log in to Mosquitto and which topics each login may use.

Every cabinet logs in with its cabinet id as user name and a password derived from one
provisioning secret, so the broker host stores only hashes and the provisioning tool can
print any cabinet's password for its ``cabinet.toml``. The ACL ties the cabinet id in a
topic to the login (``%u``): Mosquitto does not tell a subscriber who published, so the
ACL is what makes the topic's cabinet id trustworthy. Services get named accounts with
the topics their code uses and nothing more. Documented in ``docs/security.md``.

Nothing here does I/O: the files' text is built from values, and the salts of the
password hashes come from the caller.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import PurePosixPath
from types import MappingProxyType
from typing import Final, Literal

from aedfleet.contract import (
    DEAD_LETTER_PREFIX,
    Channel,
    cabinet_id_problem,
    dispatch_subscription,
    subscription,
    topic,
)

MIN_SECRET_BYTES: Final = 32
PASSWORD_CHARS: Final = 32
"""Characters of base64url kept from the HMAC: 192 bits, far beyond guessing."""
PBKDF2_ITERATIONS: Final = 101
"""Mosquitto 2's own default. The passwords are 192-bit random values, so stretching them
buys nothing, while every connect (20,000 cabinets after a broker restart) pays for it."""
SALT_BYTES: Final = 12
"""The salt length ``mosquitto_passwd`` writes."""
LOGIN_SEPARATOR: Final = ":"

EMPTY_GENERATIONS: Final[Mapping[str, int]] = MappingProxyType({})
"""No cabinet past its first password."""

REPORT_CHANNELS: Final = tuple(channel for channel in Channel if channel is not Channel.CMD)
"""What a cabinet sends: every channel but ``cmd``, which flows to it."""


class BrokerAuthError(ValueError):
    """An account or secret that the broker's files cannot hold."""


class ServiceAccount(StrEnum):
    """The server-side logins. Their names are reserved: no cabinet may have one as id."""

    INGEST = "aedfleet-ingest"
    ALERTING = "aedfleet-alerting"
    DISPATCH = "aedfleet-dispatch"
    OPERATOR = "aedfleet-operator"
    DISPATCH_BRIDGE = "aedfleet-dispatch-bridge"
    """The command centre's side of the republication, which carries captains' phones."""


@dataclass(frozen=True, slots=True)
class Grant:
    access: Literal["read", "write"]
    topic_filter: str


def _report_reads() -> tuple[Grant, ...]:
    return tuple(Grant("read", subscription(channel)) for channel in REPORT_CHANNELS)


_DEAD_LETTERS: Final = Grant("write", f"{DEAD_LETTER_PREFIX}/#")

SERVICE_GRANTS: Final[dict[ServiceAccount, tuple[Grant, ...]]] = {
    # ingest/service.py subscribes $share/{group}/aed/v1/# and ignores cmd; Mosquitto checks
    # read rights per delivered message, so cmd never reaches it.
    ServiceAccount.INGEST: (*_report_reads(), _DEAD_LETTERS),
    # alerting/service.py runs the same ingest pipeline in its own process.
    ServiceAccount.ALERTING: (*_report_reads(), _DEAD_LETTERS),
    # dispatch/service.py subscribes aed/v1/+/event and parks the events it refuses
    # (identity_mismatch, unknown_cabinet); dispatch/sender.py republishes.
    ServiceAccount.DISPATCH: (
        Grant("read", subscription(Channel.EVENT)),
        Grant("write", dispatch_subscription()),
        _DEAD_LETTERS,
    ),
    # Commands to cabinets, their answers, and what the ingest refused, to inspect.
    ServiceAccount.OPERATOR: (
        Grant("write", subscription(Channel.CMD)),
        Grant("read", subscription(Channel.CMD_RESULT)),
        Grant("read", _DEAD_LETTERS.topic_filter),
    ),
    ServiceAccount.DISPATCH_BRIDGE: (Grant("read", dispatch_subscription()),),
}

CABINET_LOGIN: Final = "%u"
"""Mosquitto's pattern token for the login; the cabinet's user name is its id."""


def cabinet_grants() -> tuple[Grant, ...]:
    """What every login may do on the topics named after it (a cabinet on its own)."""
    # Birth and status are retained: the ACL file grants retaining with "write".
    writes = tuple(Grant("write", topic(CABINET_LOGIN, channel)) for channel in REPORT_CHANNELS)
    return (
        *writes,
        Grant("read", topic(CABINET_LOGIN, Channel.CMD)),
        # edge_agent/agent.py reads back its own retained status to replace a stale one.
        Grant("read", topic(CABINET_LOGIN, Channel.STATUS)),
    )


def account_problem(cabinet_id: str) -> str | None:
    """Why ``cabinet_id`` cannot be a broker login, or None when it can."""
    problem = cabinet_id_problem(cabinet_id)
    if problem:
        return problem
    if LOGIN_SEPARATOR in cabinet_id:
        return "cabinet id contains ':', which separates user and hash in Mosquitto's file"
    if "%" in cabinet_id:
        return "cabinet id contains '%', which Mosquitto's ACL patterns would substitute"
    if cabinet_id in set(ServiceAccount):
        return f"cabinet id {cabinet_id!r} is the name of a service account"
    return None


def check_secret(secret: bytes) -> bytes:
    if len(secret) < MIN_SECRET_BYTES:
        raise BrokerAuthError(
            f"the provisioning secret has {len(secret)} bytes; at least {MIN_SECRET_BYTES} "
            "are needed (openssl rand -base64 48)"
        )
    return secret


def _derive(secret: bytes, label: str) -> str:
    digest = hmac.new(check_secret(secret), label.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii")[:PASSWORD_CHARS]


def cabinet_password(secret: bytes, cabinet_id: str, generation: int = 1) -> str:
    """The broker password of ``cabinet_id``: base64url(HMAC-SHA256(secret, "cabinet:" + id)),
    with ":" + generation appended from the second generation on (a login has no ":")."""
    problem = account_problem(cabinet_id)
    if problem:
        raise BrokerAuthError(f"cabinet {cabinet_id!r}: {problem}")
    if generation < 1:
        raise BrokerAuthError(f"cabinet {cabinet_id!r} is revoked (generation {generation})")
    label = f"cabinet:{cabinet_id}" if generation == 1 else f"cabinet:{cabinet_id}:{generation}"
    return _derive(secret, label)


def service_password(secret: bytes, account: ServiceAccount) -> str:
    """A service's password, in a domain of its own so it can equal no cabinet's."""
    return _derive(secret, f"service:{account.value}")


def login_password(
    secret: bytes, login: str, generations: Mapping[str, int] = EMPTY_GENERATIONS
) -> str:
    """The password of a service account or, for any other name, of that cabinet."""
    if login in set(ServiceAccount):
        return service_password(secret, ServiceAccount(login))
    return cabinet_password(secret, login, generations.get(login, 1))


def parse_generations(text: str) -> dict[str, int]:
    """The generations file: ``CABINET_ID GENERATION`` per line, ``#`` starts a comment.

    Generation 1 is every cabinet's first password; a higher one replaces a stolen or
    leaked password; 0 revokes the login. The generation is the last word of the line,
    since a cabinet id may hold inner spaces.
    """
    generations: dict[str, int] = {}
    problems: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        content = line.strip()
        if not content or content.startswith("#"):
            continue
        words = content.rsplit(maxsplit=1)
        cabinet_id, value = (words[0], words[1]) if len(words) == 2 else ("", content)
        if not cabinet_id or not (value.isascii() and value.isdigit()):
            problems.append(f"line {number}: expected CABINET_ID GENERATION, got {content!r}")
        elif cabinet_id in generations:
            problems.append(f"line {number}: cabinet {cabinet_id!r} is listed twice")
        else:
            generations[cabinet_id] = int(value)
    if problems:
        raise BrokerAuthError("; ".join(problems))
    return generations


def hash_password(password: str, salt: bytes, iterations: int = PBKDF2_ITERATIONS) -> str:
    """Mosquitto 2's stored form: ``$7$iterations$base64(salt)$base64(PBKDF2-SHA512)``."""
    derived = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    encode = base64.b64encode
    return f"$7${iterations}${encode(salt).decode()}${encode(derived).decode()}"


def password_file_text(
    secret: bytes,
    cabinet_ids: Iterable[str],
    new_salt: Callable[[], bytes],
    generations: Mapping[str, int] = EMPTY_GENERATIONS,
) -> str:
    """Mosquitto's password file: every service account, then every cabinet whose login
    is not revoked (generation 0)."""
    cabinet_ids = sorted(set(cabinet_ids))
    problems = [
        f"cabinet {cabinet_id!r}: {problem}"
        for cabinet_id in cabinet_ids
        if (problem := account_problem(cabinet_id))
    ]
    if problems:
        raise BrokerAuthError("; ".join(problems))
    logins = [(account.value, service_password(secret, account)) for account in ServiceAccount] + [
        (cabinet_id, cabinet_password(secret, cabinet_id, generations.get(cabinet_id, 1)))
        for cabinet_id in cabinet_ids
        if generations.get(cabinet_id, 1) > 0
    ]
    return "".join(f"{login}:{hash_password(password, new_salt())}\n" for login, password in logins)


def acl_text() -> str:
    """Mosquitto's ACL file: cabinet patterns for every login, then each service's grants."""
    lines = [
        "# Generated by `aedfleet broker config`; see docs/security.md.",
        "# Every login may use the topics named after it: a cabinet's login is its id.",
    ]
    lines += [f"pattern {grant.access} {grant.topic_filter}" for grant in cabinet_grants()]
    for account, grants in SERVICE_GRANTS.items():
        lines += ["", f"user {account.value}"]
        lines += [f"topic {grant.access} {grant.topic_filter}" for grant in grants]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True, slots=True)
class BrokerLayout:
    """Where the generated files and the TLS material live on the broker host, and its
    listeners."""

    config_dir: PurePosixPath
    ca_file: PurePosixPath
    cert_file: PurePosixPath
    key_file: PurePosixPath
    tls_port: int = 8883
    tls_bind: str | None = None
    """None: every interface (the cabinets' listener)."""
    local_port: int | None = 1883
    """A plain listener on 127.0.0.1 for services on the broker host; None for none."""

    @property
    def password_file(self) -> PurePosixPath:
        return self.config_dir / "passwd"

    @property
    def acl_file(self) -> PurePosixPath:
        return self.config_dir / "acl"


def mosquitto_conf_text(layout: BrokerLayout) -> str:
    """The listeners of ``mosquitto.conf``; each repeats the security settings because
    ``per_listener_settings`` keeps them per listener."""
    security = [
        "allow_anonymous false",
        f"password_file {layout.password_file}",
        f"acl_file {layout.acl_file}",
    ]
    bind = f" {layout.tls_bind}" if layout.tls_bind else ""
    lines = [
        "# Generated by `aedfleet broker config`; see docs/security.md.",
        "per_listener_settings true",
        "",
        "# Cabinets (and remote services): TLS only. The client id is forced to the login,",
        "# so that one cabinet's login cannot take over another's session.",
        f"listener {layout.tls_port}{bind}",
        f"cafile {layout.ca_file}",
        f"certfile {layout.cert_file}",
        f"keyfile {layout.key_file}",
        "tls_version tlsv1.2",
        "use_username_as_clientid true",
        *security,
    ]
    if layout.local_port is not None:
        lines += [
            "",
            "# Services on this host: loopback only, no TLS; they keep their own client ids",
            "# (ingest workers of one share group log in with the same account).",
            f"listener {layout.local_port} 127.0.0.1",
            *security,
        ]
    return "\n".join(lines) + "\n"
