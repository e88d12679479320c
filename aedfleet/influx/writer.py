"""The InfluxDB adapter: write batches of line protocol, one HTTP request per batch.

Talks to anything that serves the InfluxDB 2 write endpoint ``/api/v2/write`` (InfluxDB
1.8+, 2.x, 3.x) through influxdb-client's asyncio client (aiohttp underneath), posting
each batch, compressed here, through its ``WriteService``. Lines come from
:func:`ingest.telemetry.to_line`; this module neither builds nor inspects them.

Exceptions::

    InfluxError                  root of this adapter's errors
    └── InfluxWriteError         a batch was not (or not entirely) written;
                                 .endpoint, .status (HTTP status or None), .retryable

``retryable`` says whether sending the same batch again can succeed: network errors,
timeouts, 5xx and 429 (and 408) are retryable; every other answer (400 for a bad line,
401/403 for a bad token, 404 for a missing bucket, 413 for an oversized body) is not.
A retry is safe: every point carries its own timestamp, so writing a batch twice leaves
the same points. No aiohttp or influxdb-client exception leaves this module.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
from collections.abc import Sequence
from types import TracebackType
from typing import Final, Self

import aiohttp
from influxdb_client.client.exceptions import InfluxDBError
from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync
from influxdb_client.domain.write_precision import WritePrecision
from influxdb_client.rest import ApiException
from influxdb_client.service.write_service import WriteService
from pydantic import BaseModel, ConfigDict, Field, SecretStr

__all__ = ["InfluxError", "InfluxSettings", "InfluxWriteError", "InfluxWriter"]

log = logging.getLogger(__name__)

WRITE_PATH: Final = "/api/v2/write"
_RETRYABLE_STATUSES: Final = frozenset({408, 429})
_MAX_DETAIL: Final = 500
_ACCEPTED: Final = frozenset({201, 204})
# influxdb-client would compress at level 9 on the event loop, about 10 µs a line; level 1
# in a worker thread (zlib lets go of the GIL) costs a fifth of that for a body ~25 %
# bigger, and the event loop goes on meanwhile (docs/benchmarks.md).
_GZIP_LEVEL: Final = 1


class InfluxSettings(BaseModel):
    """Where and how to write; the configuration layer fills it in."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str = Field(default="http://127.0.0.1:8086", description="Base URL of the server")
    token: SecretStr = Field(default=SecretStr(""), description="API token; empty for none")
    org: str = Field(default="aedfleet", description="InfluxDB organisation of the bucket")
    bucket: str = Field(
        default="aedfleet",
        min_length=1,
        description="Bucket the points go to; it must exist: writing to an unknown bucket "
        "stops the ingest",
    )
    timeout_s: float = Field(
        default=10.0, gt=0, le=600, description="Limit for one whole write request"
    )
    gzip: bool = Field(
        default=True,
        description=(
            "Compress request bodies (about 50 times smaller for telemetry). Without it, "
            "keep batches under 1 MiB: aiohttp warns about larger raw bodies"
        ),
    )


class InfluxError(Exception):
    """Root of the InfluxDB adapter's errors."""


class InfluxWriteError(InfluxError):
    """A batch was not written, or (``status`` 400, partial write) not entirely."""

    def __init__(self, endpoint: str, message: str, *, status: int | None, retryable: bool) -> None:
        where = f"{endpoint} answered {status}" if status is not None else endpoint
        super().__init__(f"writing to {where}: {message}")
        self.endpoint = endpoint
        self.status = status
        self.retryable = retryable


def _is_retryable_status(status: int) -> bool:
    return status >= 500 or status in _RETRYABLE_STATUSES


def _answer_text(body: object) -> str:
    """The server's own words: ``{"error": ...}`` (1.x, 3.x) or ``{"message": ...}`` (2.x)."""
    if isinstance(body, bytes):
        body = body.decode("utf-8", errors="replace")
    text = str(body or "").strip()
    try:
        document = json.loads(text)
    except ValueError:
        return text[:_MAX_DETAIL]
    if isinstance(document, dict):
        for key in ("message", "error"):
            if isinstance(document.get(key), str):
                return str(document[key])[:_MAX_DETAIL]
    return text[:_MAX_DETAIL]


class InfluxWriter:
    """An open connection pool to one InfluxDB; use as ``async with InfluxWriter(s) as w``."""

    def __init__(self, settings: InfluxSettings) -> None:
        self._settings = settings
        self.endpoint = f"{settings.url.rstrip('/')}{WRITE_PATH}"
        self._client: InfluxDBClientAsync | None = None
        self._write_service: WriteService | None = None

    async def __aenter__(self) -> Self:
        settings = self._settings
        # The async client must be made inside the running loop (aiohttp binds to it).
        self._client = InfluxDBClientAsync(
            url=settings.url,
            token=settings.token.get_secret_value(),  # empty: no Authorization header
            org=settings.org,
            timeout=int(settings.timeout_s * 1000),
            enable_gzip=False,  # compressed here instead; see _GZIP_LEVEL
        )
        # What the client's write API does underneath, without its serialisation.
        self._write_service = WriteService(self._client.api_client)  # type: ignore[no-untyped-call]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        client, self._client, self._write_service = self._client, None, None
        if client is not None:
            await client.close()  # type: ignore[no-untyped-call]  # closes the aiohttp session

    async def write(self, lines: Sequence[str]) -> None:
        """Write one batch of line protocol (nanosecond timestamps) in one request.

        Raises :class:`InfluxWriteError`. On a 400 the server may have kept the good lines
        of the batch (InfluxDB reports a "partial write"); sending the batch again after
        fixing nothing will fail the same way, so it is not retryable.
        """
        if not lines:
            return
        write_service = self._write_service
        if write_service is None:
            raise RuntimeError("InfluxWriter is not open; use it with 'async with'")
        settings = self._settings
        body = "\n".join(lines).encode()
        encoding: dict[str, str] = {}
        if settings.gzip:
            body = await asyncio.to_thread(gzip.compress, body, _GZIP_LEVEL)
            encoding["content_encoding"] = "gzip"
        try:
            _, status, _ = await write_service.post_write_async(  # type: ignore[no-untyped-call]
                org=settings.org,
                bucket=settings.bucket,
                body=body,
                precision=WritePrecision.NS,
                content_type="text/plain; charset=utf-8",
                async_req=False,
                _return_http_data_only=False,
                **encoding,
            )
        except ApiException as exc:
            status = exc.status if isinstance(exc.status, int) else None
            raise InfluxWriteError(
                self.endpoint,
                _answer_text(exc.body) or str(exc.reason),
                status=status or None,
                retryable=status is not None and _is_retryable_status(status),
            ) from exc
        except TimeoutError as exc:  # also aiohttp's ServerTimeoutError
            raise InfluxWriteError(
                self.endpoint,
                f"no answer within {settings.timeout_s} s",
                status=None,
                retryable=True,
            ) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise InfluxWriteError(
                self.endpoint, f"{type(exc).__name__}: {exc}", status=None, retryable=True
            ) from exc
        except InfluxDBError as exc:
            raise InfluxWriteError(
                self.endpoint, exc.message, status=None, retryable=False
            ) from exc
        if status not in _ACCEPTED:
            # A 2xx other than 201/204: something that is not InfluxDB answered.
            raise InfluxWriteError(
                self.endpoint,
                "the answer was a success code InfluxDB never sends; is this InfluxDB?",
                status=None,
                retryable=False,
            )
        log.debug("wrote %d lines to %s", len(lines), self.endpoint)
