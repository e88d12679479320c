"""Shared set-up for alerting tests: settings against real servers, a fleet with a
registry, and reading what the captains received."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from aedfleet.db.state import StateStore
from aedfleet.influx.writer import InfluxSettings
from aedfleet_app.alerting_process import AlertingProcess, AlertingProcessSettings
from aedfleet_testing.brokers import MosquittoBroker, broker_settings, free_port
from aedfleet_testing.influx import InfluxServer
from aedfleet_testing.mailbox import Mailbox
from alerting.config import (
    ApiScope,
    ApiToken,
    HttpSettings,
    LinkSettings,
    SchedulerSettings,
)
from alerting.notifiers.delivery import NotifySettings
from alerting.notifiers.email import SmtpSecurity, SmtpSettings
from alerting.quiet import QuietSettings
from alerting.store import AlarmStore
from firmware_sim.registry import simulated_registry
from firmware_sim.scenario import Scenario
from ingest.config import IngestSettings

EMAIL_DOMAIN = "aed-captains.example.cn"
LINK_SECRET = secrets.token_hex(32)


def alerting_settings(
    broker: MosquittoBroker,
    influx: InfluxServer,
    database: str,
    store_url: str,
    mailbox: Mailbox,
    **sections: Any,
) -> AlertingProcessSettings:
    """Settings against this test's servers: no quiet hours, a fast scheduler."""
    http_port = free_port()
    values: dict[str, Any] = {
        "ingest": IngestSettings(
            mqtt=broker_settings(broker),
            client_id=f"alerting-{uuid.uuid4().hex[:8]}",
            share_group=f"alerting-{uuid.uuid4().hex[:8]}",
            influx=InfluxSettings(url=influx.url, bucket=database),
            store_url=store_url,
            batch_max_delay_s=0.05,
        ),
        "notify": NotifySettings(
            smtp=SmtpSettings(
                host="127.0.0.1",
                port=mailbox.port,
                security=SmtpSecurity.NONE,
                from_address="alerts@aed-fleet.example.cn",
                from_name="AED 值守",
            )
        ),
        "quiet": QuietSettings(default=None),
        "links": LinkSettings(
            secrets=(SecretStr(LINK_SECRET),), base_url=f"http://127.0.0.1:{http_port}/l/"
        ),
        "http": HttpSettings(
            port=http_port,
            api_tokens=(
                ApiToken(name="tests", token=SecretStr("test-token"), scope=ApiScope.WRITE),
            ),
        ),
        "scheduler": SchedulerSettings(tick_s=0.1),
    }
    values.update(sections)
    return AlertingProcessSettings(**values)


def seed_fleet_registry(store_url: str, scenario: Scenario) -> None:
    store = StateStore.open(store_url)
    try:
        store.apply_registry(simulated_registry(scenario, email_domain=EMAIL_DOMAIN))
    finally:
        store.close()


def email_of(person_id: str) -> str:
    return f"{person_id}@{EMAIL_DOMAIN}"


@contextlib.asynccontextmanager
async def running(service: AlertingProcess) -> AsyncIterator[AlertingProcess]:
    task = asyncio.create_task(service.run())
    try:
        async with asyncio.timeout(30):
            ready = asyncio.create_task(service.ready.wait())
            done, _ = await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
            if task in done:
                ready.cancel()
                task.result()  # raises what stopped the service
        yield service
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def notice_alarms(store_url: str, notice_id: str) -> list[int]:
    """The alarm ids a notice (``n<notification ids>``) spoke for."""
    ids = [int(part) for part in notice_id.removeprefix("n").split("-")]
    with AlarmStore.open(store_url) as store:
        found: list[int] = []
        for notification_id in ids:
            notification = store.notification(notification_id)
            assert notification is not None
            found += notification.alarm_ids
    return found


def store_url_in(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.sqlite3'}"
