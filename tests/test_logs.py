"""Logging at the default level: the services' own lines, not their libraries' chatter."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from aedfleet.influx.writer import InfluxSettings
from aedfleet.logs import CHATTY_LIBRARIES, configure_logging
from aedfleet_app.alerting_process import AlertingProcess, AlertingProcessSettings
from aedfleet_testing.alerting_e2e_support import running, seed_fleet_registry, store_url_in
from aedfleet_testing.brokers import MosquittoBroker, broker_settings, free_port
from alerting.config import HttpSettings, LinkSettings, SchedulerSettings
from firmware_sim.scenario import Scenario
from ingest.config import IngestSettings
from tests.recorder import eventually


@pytest.fixture
def library_levels() -> Iterator[None]:
    """configure_logging sets the libraries' loggers; put them back for other tests."""
    saved = {name: logging.getLogger(name).level for name in CHATTY_LIBRARIES}
    yield
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)


@pytest.mark.usefixtures("library_levels")
async def test_the_alerting_scheduler_says_nothing_at_the_default_level(
    broker: MosquittoBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    configure_logging()  # the level `aedfleet alerting` runs at unless told otherwise
    caplog.set_level(logging.INFO)
    store_url = store_url_in(tmp_path)
    settings = AlertingProcessSettings(
        ingest=IngestSettings(
            mqtt=broker_settings(broker),
            client_id=f"quiet-{uuid.uuid4().hex[:8]}",
            influx=InfluxSettings(url=f"http://127.0.0.1:{free_port()}", bucket="none"),
            store_url=store_url,
        ),
        links=LinkSettings(secrets=(SecretStr("k" * 32),)),
        http=HttpSettings(port=0),
        scheduler=SchedulerSettings(tick_s=0.05, registry_refresh_s=0.05),
    )
    service = AlertingProcess(settings)

    async with running(service):
        # The registry arrives after the start: only the scheduled refresh can load it,
        # so once the engine knows the cabinets, the scheduler has run its jobs.
        seed_fleet_registry(store_url, Scenario())
        await eventually(
            lambda: bool(service.alerting.engine.cabinet_ids), 30, "registry refreshed"
        )

    assert any(record.name == "alerting.service" for record in caplog.records)
    chatter = [r.getMessage() for r in caplog.records if r.name.startswith("apscheduler")]
    assert chatter == []
