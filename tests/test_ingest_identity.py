"""The ingest (and so alerting, which runs it) refuses a message published under another
cabinet's login, against a real Mosquitto and InfluxDB."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import uuid
from pathlib import Path

from aedfleet.contract import (
    Channel,
    DeadLetter,
    Reason,
    dead_letter_topic,
    topic,
)
from aedfleet.influx.writer import InfluxSettings
from aedfleet.mqtt import KeepAliveTicker
from aedfleet_testing.brokers import MosquittoBroker, broker_settings
from aedfleet_testing.influx import InfluxServer
from aedfleet_testing.ingest_support import seed_registry
from ingest.config import IngestSettings
from ingest.service import IngestService
from tests.identity_support import claiming, door_opened
from tests.recorder import Recorder, eventually


async def test_a_message_under_another_cabinets_login_is_parked_not_written(
    broker: MosquittoBroker, influx_server: InfluxServer, influx_database: str, tmp_path: Path
) -> None:
    store_url = f"sqlite:///{tmp_path / 'state.sqlite3'}"
    seed_registry(store_url, ["cab-a", "cab-b"])
    mqtt = broker_settings(broker)
    spoof = door_opened("cab-b", 7)
    service = IngestService(
        IngestSettings(
            mqtt=mqtt,
            client_id=f"ingest-{uuid.uuid4().hex[:8]}",
            share_group=f"identity-{uuid.uuid4().hex[:8]}",
            influx=InfluxSettings(url=influx_server.url, bucket=influx_database),
            store_url=store_url,
            batch_max_delay_s=0.1,
        )
    )
    run = asyncio.create_task(service.run())
    try:
        async with KeepAliveTicker() as ticker:
            await asyncio.wait_for(service.subscribed.wait(), 20)
            async with (
                Recorder(mqtt, ticker, dead_letter_topic(Reason.IDENTITY_MISMATCH), "dl") as parked,
                claiming(mqtt, ticker, "cab-a") as cabinet_a,
                claiming(mqtt, ticker, "cab-b") as cabinet_b,
            ):
                event_topic = topic("cab-b", Channel.EVENT)
                await cabinet_a.publish_confirmed(event_topic, spoof)
                await cabinet_b.publish_confirmed(event_topic, door_opened("cab-b", 8))
                await eventually(lambda: len(parked.messages) >= 1, 20, "the spoof was not parked")
                await eventually(
                    lambda: bool(
                        influx_server.query(
                            'SELECT * FROM "event" WHERE "seq" = 8', influx_database
                        )
                    ),
                    20,
                    "cab-b's own event was not written",
                    every_s=0.1,
                )
    finally:
        run.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await run
    letter = DeadLetter.model_validate_json(parked.messages[0].payload)
    assert letter.service == "ingest"
    assert letter.topic == topic("cab-b", Channel.EVENT)
    assert "'cab-a'" in letter.detail
    assert base64.b64decode(letter.payload_b64) == spoof
    assert not influx_server.query('SELECT * FROM "event" WHERE "seq" = 7', influx_database)
    refused = service.metrics.registry.get_sample_value(
        "aedfleet_ingest_invalid_total", {"reason": "identity_mismatch"}
    )
    assert refused is not None
    assert refused >= 1  # at least once, like every dead letter
