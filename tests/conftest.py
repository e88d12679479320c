from __future__ import annotations

from collections.abc import AsyncIterator, Generator, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from aedfleet.mqtt import KeepAliveTicker
from aedfleet_testing import tiers
from aedfleet_testing.brokers import MosquittoBroker
from tests.influx import fresh_influx_server, influx_database, influx_server  # noqa: F401 - fixtures

# The machine is shared and its load varies: a property test's time proves nothing, so
# neither a slow example (deadline) nor slow generation (too_slow) fails it.
settings.register_profile("aedfleet", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("aedfleet")


# Before the mark plugin's own hook, which deselects by ``-m``.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test with the server tiers its fixtures need, or ``pure``."""
    for item in items:
        fixture_names = getattr(item, "fixturenames", ())
        marker_names = [marker.name for marker in item.iter_markers()]
        for name in sorted(tiers.markers_to_add(fixture_names, marker_names)):
            item.add_marker(name)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, object, object]:
    """While a test runs, the server helpers refuse servers its markers do not name."""
    with tiers.running(item.nodeid, [marker.name for marker in item.iter_markers()]):
        return (yield)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """A fresh Mosquitto of this test's own, without persistence."""
    instance = MosquittoBroker(tmp_path / "broker")
    instance.start()
    yield instance
    instance.stop()


@pytest.fixture
def persistent_broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """A Mosquitto that keeps sessions and queued messages across a restart."""
    instance = MosquittoBroker(tmp_path / "broker", persistence=True)
    instance.start()
    yield instance
    instance.stop()


@pytest.fixture
async def ticker() -> AsyncIterator[KeepAliveTicker]:
    async with KeepAliveTicker() as instance:
        yield instance
