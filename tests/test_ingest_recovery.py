"""Ingest survives SIGKILL and an InfluxDB outage without losing or doubling a point.

Each gap lasts until it has done what a long one would: messages published while no ingest
runs, and failed writes retried until the backoff reaches its ceiling while messages keep
coming. A fixed 30 s outage added only wall time to that."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pytest

from aedfleet.clock import ScaledClock
from aedfleet.contract import subscription
from aedfleet.mqtt import KeepAliveTicker
from aedfleet_testing.brokers import MosquittoBroker, broker_settings, free_port
from aedfleet_testing.commands import AEDFLEET, REPO, command_env
from aedfleet_testing.influx import InfluxServer
from aedfleet_testing.ingest_support import (
    duplicates,
    published,
    seed_registry,
    stored_points,
    write_ingest_config,
)
from firmware_sim.fleet import FleetSettings, SimulatedFleet
from firmware_sim.scenario import FleetDefaults, Scenario
from tests.recorder import Recorder, eventually


def start_ingest(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as output:
        return subprocess.Popen(
            [AEDFLEET, "ingest", "--config", str(config)],
            cwd=REPO,
            env=command_env(),
            stdout=output,
            stderr=output,
        )


def write_failures(metrics_port: int) -> float:
    """The running ingest's count of failed InfluxDB writes (0 before it serves metrics)."""
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return 0.0
    for line in text.splitlines():
        if line.startswith("aedfleet_ingest_write_failures_total "):
            return float(line.split()[1])
    return 0.0


WRITE_RETRY = {"initial_s": 0.2, "max_s": 2.0}
FAILURES_TO_THE_CEILING = 5
"""0.2 s doubled four times passes 2 s: the fifth failed write waits the longest delay."""
MESSAGES_IN_A_GAP = 100
"""About two messages per cabinet: every cabinet publishes into each gap."""


@pytest.mark.timeout(300)
async def test_sigkill_and_an_influxdb_outage_lose_nothing_and_double_nothing(
    broker: MosquittoBroker,
    fresh_influx_server: InfluxServer,
    ticker: KeepAliveTicker,
    tmp_path: Path,
) -> None:
    influx = fresh_influx_server
    database = "recovery"
    influx.create_database(database)
    cabinets = 60
    scenario = Scenario(
        seed=5,
        fleet=FleetDefaults(size=cabinets, id_prefix="rec-", door_openings_per_day=300),
        fault_rates={},
    )
    store_url = f"sqlite:///{tmp_path / 'state.sqlite3'}"
    metrics_port = free_port()
    seed_registry(store_url, [scenario.cabinet_id(i) for i in range(cabinets)])
    config = write_ingest_config(
        tmp_path / "ingest.toml",
        client_id="ingest-recovery",
        store_url=store_url,
        batch_max_delay_s=0.2,
        **{
            "mqtt.port": broker.port,
            "influx.url": influx.url,
            "influx.bucket": database,
            "influx.timeout_s": 2,
            "write_retry.initial_s": WRITE_RETRY["initial_s"],
            "write_retry.max_s": WRITE_RETRY["max_s"],
            "metrics_port": metrics_port,
        },
    )
    log = tmp_path / "ingest.log"
    fleet = SimulatedFleet(
        FleetSettings(
            cabinets=cabinets, broker=broker_settings(broker), work_dir=tmp_path / "sim", tick_s=10
        ),
        scenario,
        ScaledClock(datetime.now(UTC), 10),
    )
    first = start_ingest(config, log)
    second: subprocess.Popen[bytes] | None = None
    try:
        # Until its first subscription the broker has no session to keep messages in.
        await eventually(
            lambda: "subscribed to" in log.read_text(), 30, "ingest never subscribed", every_s=0.1
        )
        async with Recorder(broker_settings(broker), ticker, subscription(), "witness") as witness:
            run = asyncio.create_task(fleet.run(duration_s=None))

            async def messages_published(more: int, what: str) -> None:
                target = len(published(witness.messages)) + more
                await eventually(
                    lambda: len(published(witness.messages)) >= target, 60, what, every_s=0.1
                )

            await eventually(
                lambda: len(stored_points(influx, database)) > 100,
                30,
                "ingest wrote nothing",
                every_s=0.5,
            )
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=10)
            await messages_published(MESSAGES_IN_A_GAP, "nothing published while ingest was down")
            second = start_ingest(config, log)
            await eventually(
                lambda: len(stored_points(influx, database)) > len(published(witness.messages)) / 2,
                30,
                "the restarted ingest does not write",
                every_s=0.5,
            )
            failures_before = write_failures(metrics_port)
            influx.stop_influxd()
            await messages_published(MESSAGES_IN_A_GAP, "nothing published during the outage")
            await eventually(
                lambda: write_failures(metrics_port) >= failures_before + FAILURES_TO_THE_CEILING,
                60,
                "the ingest did not retry its writes",
                every_s=0.2,
            )
            influx.start_influxd()
            await messages_published(MESSAGES_IN_A_GAP, "nothing published after the outage")
            run.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await run

            def all_stored() -> bool:
                return set(stored_points(influx, database)) >= published(witness.messages)

            try:
                await eventually(all_stored, 90, "backlog not drained", every_s=0.5)
            except TimeoutError:
                sent = published(witness.messages)
                missing = sorted(sent - set(stored_points(influx, database)))
                pytest.fail(
                    f"{len(missing)} of {len(sent)} missing, e.g. {missing[:5]}; "
                    f"ingest alive: {second.poll() is None}"
                )
            points = stored_points(influx, database)
            sent = published(witness.messages)
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(timeout=15)
    assert not duplicates(points)
    assert set(points) == sent, log.read_text()[-3000:]
    assert "retrying" in log.read_text()
