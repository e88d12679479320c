"""What ``aedfleet dispatch`` runs: the service, and ``list`` of recent deliveries.

The Typer commands themselves are in :mod:`aedfleet_app.cli`, which imports this module only
when a dispatch command runs (an edge install has none of the server dependencies).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from aedfleet.settings import ConfigError, load_settings
from dispatch.config import DispatchSettings
from dispatch.errors import OutboxError
from dispatch.outbox import DeliveryRecord, DeliveryStatus, DispatchOutbox
from dispatch.service import DispatchService

LATENCY_SWITCH_INTERVAL_S: Final = 0.0005


def prepare_service(config: Path | None) -> DispatchService:
    """The service of the TOML file (and environment); raises ConfigError.

    The process is the service's own, so it is tuned for latency: the interpreter hands
    the GIL between threads every 0.5 ms instead of 5 ms, so the event loop does not wait
    for a store thread's Python work when a door event arrives.
    """
    service = DispatchService(load_settings(DispatchSettings, config))
    sys.setswitchinterval(LATENCY_SWITCH_INTERVAL_S)
    return service


def outbox_url(config: Path | None, store: str | None) -> str:
    """The outbox to read: ``--store`` if given, else the one the configuration names."""
    if store:
        return store
    return load_settings(DispatchSettings, config).outbox_store_url


def _time(moment: datetime | None) -> str:
    if moment is None:
        return "-"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def describe(record: DeliveryRecord) -> list[str]:
    """A delivery and its attempts as lines of text, newest delivery first."""
    status = record.status.value
    if record.status is DeliveryStatus.PENDING:
        status += f", next attempt {_time(record.next_attempt_at)}"
    lines = [
        f"#{record.delivery_id}  {_time(record.created_at)}  {record.cabinet_id}  "
        f"{record.event_type}  {record.kind} {record.number} of incident {record.incident_id}  "
        f"-> {record.endpoint}: {status} after {record.attempts} attempt(s)",
    ]
    for attempt in record.attempt_log:
        outcome = "delivered" if attempt.ok else f"failed: {attempt.error or 'no detail'}"
        http = f"HTTP {attempt.http_status}  " if attempt.http_status else ""
        lines.append(
            f"    attempt {attempt.number}  {_time(attempt.started_at)}  "
            f"{attempt.duration_ms:.0f} ms  {http}{outcome}"
        )
    return lines


def list_deliveries(
    url: str,
    echo: Callable[[str], None],
    *,
    limit: int,
    cabinet_id: str | None,
    endpoint: str | None,
    status: DeliveryStatus | None,
    as_json: bool,
) -> int:
    """Print recent deliveries; returns how many. Raises OutboxError or ConfigError."""
    with DispatchOutbox.open(url) as outbox:
        records = outbox.recent(limit, cabinet_id=cabinet_id, endpoint=endpoint, status=status)
    for record in records:
        if as_json:
            echo(record.model_dump_json())
        else:
            for line in describe(record):
                echo(line)
    if not records and not as_json:
        echo("no deliveries")
    return len(records)


__all__ = [
    "ConfigError",
    "OutboxError",
    "describe",
    "list_deliveries",
    "outbox_url",
    "prepare_service",
]
