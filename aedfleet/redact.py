"""URLs fit for messages and logs: no password, no query, no token in the path.

Broker, store, SMTP and webhook URLs carry credentials in their user part
(``mqtt://user:pw@host``, ``postgresql+psycopg://user:pw@host/db``), in the query (WeCom
``key``, DingTalk ``access_token``) or in the path (Feishu's hook token), and error
messages end up in logs, in the terminal and in the notifications table.
"""

from __future__ import annotations

import re
from typing import Final

MASK: Final = "***"
_TOKEN_LIKE: Final = re.compile(r"^[A-Za-z0-9_\-=.~%]{20,}$")
_NOT_IN_A_USER: Final = re.compile(r"[/?#]")
_QUERY_OR_FRAGMENT: Final = re.compile(r"[?#]")


def redact_url(url: str) -> str:
    """``url`` with its password masked, its query and fragment dropped and token-like
    path segments masked; the scheme, user, host, port and the rest of the path stay.

    The user part is taken to end at the last ``@``, so that a password holding ``@``,
    ``/``, ``?`` or ``#`` unescaped is masked whole; when that cannot be a user part
    (no scheme, or a ``/``, ``?`` or ``#`` before its first ``:``), all of it is masked.
    """
    scheme, separator, rest = url.partition("://")
    start = f"{scheme}://" if separator else ""
    userinfo, at, location = (rest if separator else url).rpartition("@")
    credentials = ""
    if at:
        user, colon, _password = userinfo.partition(":")
        if not separator or _TOKEN_LIKE.match(user) or _NOT_IN_A_USER.search(user):
            credentials = f"{MASK}@"
        else:
            credentials = f"{user}:{MASK}@" if colon else f"{user}@"
    location = _QUERY_OR_FRAGMENT.split(location, maxsplit=1)[0]
    host, slash, path = location.partition("/")
    segments = [MASK if _TOKEN_LIKE.match(part) else part for part in path.split("/")]
    return f"{start}{credentials}{host}{slash}{'/'.join(segments) if slash else ''}"
