"""Where the report's figures come from: InfluxDB (each cabinet's latest readiness point)
and the state store (registry, twins, open alarms). The only I/O of the report.

InfluxDB is asked in InfluxQL over ``GET /query``, which InfluxDB 1.x serves natively and
2.x and 3.x serve for the database (bucket) their DBRP mapping names; the token goes in
``Authorization: Token …`` as all three accept. No aiohttp or SQLAlchemy error leaves
this module: each becomes a :class:`ReportError` naming the server or the database.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import aiohttp
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from aedfleet.db.errors import StoreError
from aedfleet.db.state import StateStore
from aedfleet.influx.writer import InfluxSettings
from aedfleet.registry import Registry
from aedfleet.twin import Twin
from alerting.errors import AlertingError
from alerting.model import AlarmType
from alerting.readiness import CabinetState, cabinet_state
from alerting.report.figures import Reading
from alerting.store import AlarmStore, AlarmStoreError

# The newest point of each cabinet, whatever its other tags (a cabinet whose region
# changed has two series).
LATEST_READINESS: Final = (
    'SELECT "state", "ready", "reasons" FROM "readiness" '
    'GROUP BY "cabinet_id" ORDER BY time DESC LIMIT 1'
)
_MAX_DETAIL: Final = 300
_KNOWN_TYPES: Final = frozenset(AlarmType)


class ReportError(AlertingError):
    """The report cannot be made: a source is unreachable, missing or answers nonsense."""


@dataclass(frozen=True)
class StoredFleet:
    registry: Registry
    twins: dict[str, Twin]
    open_alarms: dict[str, int]


async def read_readings(settings: InfluxSettings) -> dict[str, Reading]:
    """Each cabinet's latest readiness, by cabinet id, within ``settings.timeout_s``."""
    url = f"{settings.url.rstrip('/')}/query"
    token = settings.token.get_secret_value()
    headers = {"Authorization": f"Token {token}"} if token else {}
    params = {"db": settings.bucket, "q": LATEST_READINESS, "epoch": "ns"}
    timeout = aiohttp.ClientTimeout(total=settings.timeout_s)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(url, params=params, headers=headers) as answer,
        ):
            text = await answer.text()
            status = answer.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        reason = "no answer in time" if isinstance(exc, TimeoutError) else str(exc) or repr(exc)
        raise ReportError(f"cannot reach InfluxDB at {settings.url}: {reason}") from None
    if status in {401, 403}:
        raise ReportError(f"InfluxDB at {settings.url} refused the token ({status})")
    if status != 200:
        raise ReportError(
            f"InfluxDB at {settings.url} answered {status}: {text[:_MAX_DETAIL].strip()}"
        )
    return parse_readings(text, f"InfluxDB at {settings.url}", settings.bucket)


def parse_readings(text: str, server: str, database: str) -> dict[str, Reading]:
    """The readings in an InfluxQL answer to :data:`LATEST_READINESS`."""
    try:
        (result,) = json.loads(text)["results"]
        if "error" in result:
            raise ReportError(f"{server}, database {database!r}: {result['error']}")
        readings: dict[str, Reading] = {}
        for series in result.get("series", ()):
            cabinet_id = series["tags"]["cabinet_id"]
            row = dict(zip(series["columns"], series["values"][0], strict=True))
            at = datetime.fromtimestamp(row["time"] / 1e9, UTC)
            readings[cabinet_id] = Reading(cabinet_id=cabinet_id, state=_state(row), at=at)
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise ReportError(
            f"{server} answered something other than readiness points: {exc}"
        ) from None
    return readings


def _state(row: dict[str, Any]) -> CabinetState:
    """The point's state; derived as alerting derives it for points written before
    readiness points carried one."""
    if row.get("state") in set(CabinetState):
        return CabinetState(row["state"])
    reasons = [
        AlarmType(reason)
        for reason in str(row.get("reasons") or "").split(",")
        if reason in _KNOWN_TYPES
    ]
    return cabinet_state(bool(row.get("ready")), reasons)


def read_store(url: str) -> StoredFleet:
    """The registry, the twins and the open alarms per cabinet of the store at ``url``.

    A SQLite store that does not exist is an error, not a new empty database.
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ReportError(f"not a state store URL: {url!r}") from None
    sqlite = parsed.get_backend_name() == "sqlite"
    if sqlite and not (parsed.database and Path(parsed.database).is_file()):
        raise ReportError(f"no state store at {parsed.database or url!r}")
    try:
        with StateStore.open(url) as state:
            registry = state.load_registry()
            twins = {twin.cabinet_id: twin for twin in state.twins()}
        with AlarmStore.open(url) as alarms:
            active = alarms.active_alarms(c.cabinet_id for c in registry.cabinets)
    except (StoreError, AlarmStoreError) as exc:
        raise ReportError(str(exc)) from None
    return StoredFleet(
        registry=registry,
        twins=twins,
        open_alarms={cabinet_id: len(by_type) for cabinet_id, by_type in active.items()},
    )
