"""The InfluxDB fixtures: one server for the session, a database per test, or a server of
the test's own (the server itself is :class:`aedfleet_testing.influx.InfluxServer`)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from aedfleet_testing.influx import InfluxServer


@pytest.fixture(scope="session")
def influx_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxServer]:
    """One influxd + nginx shim for the whole session; tests take their own database."""
    server = InfluxServer(tmp_path_factory.mktemp("influx"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def influx_database(influx_server: InfluxServer) -> str:
    """A fresh, empty database (the bucket, for the writer) on the session's server."""
    name = f"test_{uuid.uuid4().hex}"
    influx_server.create_database(name)
    return name


@pytest.fixture
def fresh_influx_server(tmp_path: Path) -> Iterator[InfluxServer]:
    """A server of this test's own, for tests that stop, pause or restart it."""
    server = InfluxServer(tmp_path / "influx")
    server.start()
    yield server
    server.stop()
