"""The one place the HTTP notifiers (chat robots, webhooks, SMS gateways) touch aiohttp.

:class:`HttpClient` owns one aiohttp session for all of them and turns every request
into an :class:`HttpAnswer` (status and at most ``max_answer_bytes`` of the body) or a
:class:`~alerting.notifiers.base.ChannelError`: no aiohttp exception leaves this module.

- every request is bounded by its own ``timeout_s`` (connect, send and read together);
  running out of time is a :class:`~alerting.notifiers.base.ChannelTimeoutError`;
- refused or broken connections are retryable; a certificate that does not verify and a
  malformed URL are not (trying again in a minute will not fix them);
- redirects are not followed: a notice is addressed to one endpoint, and a redirect
  would carry its body (and any signature) somewhere else;
- the environment's proxy settings are not read (``trust_env`` off), like every other
  component, which takes its configuration from the settings layer only.

Endpoints in error messages go through :func:`aedfleet.redact.redact_url`: robot URLs
carry their credentials in the query (WeCom ``key``, DingTalk ``access_token``) or in the
path (Feishu's hook token), and error messages end up in logs and in the notifications
table.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Final, Self

import aiohttp
import yarl

from aedfleet.redact import redact_url
from alerting.notifiers.base import Channel, ChannelError, ChannelTimeoutError

__all__ = ["HttpAnswer", "HttpClient", "is_retryable_status"]

_RETRYABLE_STATUSES: Final = frozenset({408, 425, 429})
_MAX_DETAIL: Final = 300


def is_retryable_status(status: int) -> bool:
    """Whether an HTTP answer with ``status`` may turn out differently on a later try."""
    return status >= 500 or status in _RETRYABLE_STATUSES


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> object:
        """The body as JSON, or None when it is not JSON."""
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def excerpt(self) -> str:
        return " ".join(self.text.split())[:_MAX_DETAIL]


class HttpClient:
    """Use as ``async with HttpClient() as http``; share one between notifiers."""

    def __init__(
        self, *, user_agent: str = "aedfleet-notifier", max_answer_bytes: int = 64 * 1024
    ) -> None:
        self._user_agent = user_agent
        self._max_answer_bytes = max_answer_bytes
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        # The session binds to the running loop, so it is made here rather than in __init__.
        self._session = aiohttp.ClientSession(
            headers={"User-Agent": self._user_agent}, trust_env=False
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self,
        channel: Channel,
        method: str,
        url: str,
        *,
        timeout_s: float,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        url_is_encoded: bool = False,
    ) -> HttpAnswer:
        """Send one request and read the answer, all within ``timeout_s``.

        ``url_is_encoded`` passes ``url`` on byte for byte (a signature already
        percent-encoded into the query must not be encoded a second time).
        """
        if self._session is None:
            raise RuntimeError("HttpClient is used outside its 'async with' block")
        endpoint = redact_url(url)
        try:
            target = yarl.URL(url, encoded=url_is_encoded)
            async with (
                asyncio.timeout(timeout_s),
                self._session.request(
                    method,
                    target,
                    data=body,
                    headers=dict(headers or {}),
                    allow_redirects=False,
                ) as response,
            ):
                answer = await response.content.read(self._max_answer_bytes)
                return HttpAnswer(response.status, answer)
        except TimeoutError:
            # asyncio.timeout and aiohttp's own socket timeouts (a TimeoutError too).
            raise ChannelTimeoutError(channel, endpoint, timeout_s) from None
        except aiohttp.ClientSSLError as exc:
            raise ChannelError(channel, endpoint, f"TLS failed: {exc}", retryable=False) from None
        except (aiohttp.InvalidURL, ValueError) as exc:
            raise ChannelError(channel, endpoint, f"bad URL: {exc}", retryable=False) from None
        except (aiohttp.ClientError, OSError) as exc:
            reason = str(exc) or type(exc).__name__
            raise ChannelError(channel, endpoint, reason, retryable=True) from None
