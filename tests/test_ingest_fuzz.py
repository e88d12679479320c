"""Fuzzed input through the real service: every refused message is parked with the
reason the pure screen gives, and the service keeps accepting good messages after."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from aedfleet.contract import DEAD_LETTER_PREFIX, DeadLetter
from aedfleet.influx.writer import InfluxSettings
from aedfleet.mqtt import KeepAliveTicker, MqttConnection
from aedfleet_testing.brokers import MosquittoBroker, broker_settings
from aedfleet_testing.influx import InfluxServer
from aedfleet_testing.ingest_support import seed_registry
from ingest.config import IngestSettings
from ingest.screening import Refused, screen
from ingest.service import IngestService
from tests.recorder import Recorder, eventually

CABINET = "FZ-1"
VALID: dict[str, Any] = {
    "v": 1,
    "cabinet_id": CABINET,
    "boot_id": "fedcba9876543210fedcba9876543210",
    "seq": 1,
    "ts": "2026-11-25T08:00:00Z",
    "event": "door_opened",
    "detail": None,
}
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=10,
)
mutated = st.builds(
    lambda field, value: json.dumps({**VALID, field: value}).encode(),
    st.sampled_from(sorted(VALID)),
    json_values,
)
payloads = st.one_of(st.binary(max_size=120), mutated)
# Only the v1 tree: the service subscribes to aed/v1/#, so another version's topics
# never reach it (a v2 ingest would serve them side by side).
topics = st.sampled_from(
    [
        f"aed/v1/{CABINET}/event",
        f"aed/v1/{CABINET}/heartbeat",
        f"aed/v1/{CABINET}/nonsense",
        "aed/v1/FZ-2/event",
        f"aed/v1/{CABINET}/event/x",
    ]
)


@pytest.mark.timeout(300)
@settings(
    max_examples=3,
    deadline=None,
    # Each example runs a real service: shrinking a failure would take many minutes.
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(deliveries=st.lists(st.tuples(topics, payloads), min_size=20, max_size=40))
def test_fuzzed_deliveries_are_parked_with_the_right_reason(
    broker: MosquittoBroker,
    influx_server: InfluxServer,
    influx_database: str,
    tmp_path: Path,
    deliveries: list[tuple[str, bytes]],
) -> None:
    asyncio.run(_exercise(broker, influx_server, influx_database, tmp_path, deliveries))


async def _exercise(
    broker: MosquittoBroker,
    influx: InfluxServer,
    database: str,
    tmp_path: Path,
    deliveries: list[tuple[str, bytes]],
) -> None:
    store_url = f"sqlite:///{tmp_path / f'{uuid.uuid4().hex}.sqlite3'}"
    seed_registry(store_url, [CABINET])
    expected = [
        (topic_name, payload, result.reason)
        for topic_name, payload in deliveries
        if isinstance(result := screen(topic_name, payload, {CABINET}), Refused)
    ]
    settings_ = broker_settings(broker)
    service = IngestService(
        IngestSettings(
            mqtt=settings_,
            client_id=f"fuzz-{uuid.uuid4().hex[:8]}",
            # Each example's worker has a group of its own: the sessions of earlier
            # examples' workers stay in theirs and would take a share of the messages.
            share_group=f"fuzz-{uuid.uuid4().hex[:8]}",
            influx=InfluxSettings(url=influx.url, bucket=database),
            store_url=store_url,
            batch_max_delay_s=0.1,
        )
    )
    sentinel = uuid.uuid4().int % 10**12 + 10**6
    run = asyncio.create_task(service.run())
    try:
        async with KeepAliveTicker() as ticker:
            await asyncio.wait_for(service.subscribed.wait(), 20)
            reader = f"dlq-{uuid.uuid4().hex[:8]}"
            async with (
                Recorder(settings_, ticker, f"{DEAD_LETTER_PREFIX}/#", reader) as letters,
                MqttConnection(settings_, f"fuzzer-{uuid.uuid4().hex[:8]}", ticker) as fuzzer,
            ):
                for topic_name, payload in deliveries:
                    await fuzzer.publish_confirmed(topic_name, payload)
                await fuzzer.publish_confirmed(
                    f"aed/v1/{CABINET}/event", json.dumps({**VALID, "seq": sentinel}).encode()
                )
                try:
                    wanted = Counter((topic_name, payload) for topic_name, payload, _ in expected)

                    def all_parked() -> bool:
                        seen = Counter(
                            (letter.topic, base64.b64decode(letter.payload_b64))
                            for letter in (
                                DeadLetter.model_validate_json(m.payload) for m in letters.messages
                            )
                        )
                        return all(seen[key] >= count for key, count in wanted.items())

                    await eventually(all_parked, 30, "", every_s=0.05)
                except TimeoutError:
                    letters_seen = [
                        DeadLetter.model_validate_json(m.payload) for m in letters.messages
                    ]
                    pytest.fail(
                        f"{len(letters_seen)} of {len(expected)} refusals parked: "
                        f"{[(p.topic, p.reason.value) for p in letters_seen]}; expected {expected}"
                    )
                await eventually(
                    lambda: bool(
                        influx.query(f'SELECT * FROM "event" WHERE "seq" = {sentinel}', database)  # noqa: S608
                    ),
                    30,
                    "the service stopped accepting good messages",
                    every_s=0.2,
                )
    finally:
        run.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await run
    parked = Counter(
        (letter.topic, base64.b64decode(letter.payload_b64), letter.reason.value)
        for letter in (DeadLetter.model_validate_json(m.payload) for m in letters.messages)
    )
    required = Counter(
        (topic_name, payload, reason.value) for topic_name, payload, reason in expected
    )
    # Dead letters are at-least-once like everything else: a redelivery may park twice.
    assert set(parked) == set(required)
    assert all(parked[key] >= count for key, count in required.items())
