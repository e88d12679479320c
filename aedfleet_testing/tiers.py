"""The test tiers: which real servers a test needs, as pytest markers.

A test is marked by the fixtures it uses (:data:`FIXTURE_TIERS`, applied by the
collection hook in ``tests/conftest.py``); a test that starts a server in its own body,
or through a fixture of its module's own, carries the marker itself. Every test that
needs none of the servers is marked ``pure``, so ``pytest -m pure`` runs the tests that
need nothing but Python (docs/testing.md).

The markers are also enforced while the tests run: the helpers that start a server call
:func:`require_tier`, which fails a test that starts Mosquitto, InfluxDB, PostgreSQL or
Chromium without the matching marker. A forgotten marker therefore fails the suite
instead of slipping a server into the pure tier unnoticed.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Final

BROKER: Final = "broker"
INFLUX: Final = "influx"
POSTGRES: Final = "postgres"
BROWSER: Final = "browser"
PURE: Final = "pure"
SERVER_TIERS: Final = (BROKER, INFLUX, POSTGRES, BROWSER)

# The shared fixtures that start a server (tests/conftest.py, tests/influx.py,
# tests/postgres.py); using one, directly or through another fixture, marks the test.
FIXTURE_TIERS: Final[Mapping[str, str]] = {
    "broker": BROKER,
    "persistent_broker": BROKER,
    "influx_server": INFLUX,
    "influx_database": INFLUX,
    "fresh_influx_server": INFLUX,
    "postgres_database": POSTGRES,
}

# What each server is called in the error of a test that starts it unmarked.
SERVER_NAMES: Final[Mapping[str, str]] = {
    BROKER: "Mosquitto",
    INFLUX: "InfluxDB",
    POSTGRES: "PostgreSQL",
    BROWSER: "Chromium",
}


class UnmarkedServerError(Exception):
    """A test started a server its markers do not declare."""


def tiers_of(fixture_names: Iterable[str]) -> set[str]:
    """The server tiers that a test using these fixtures (its fixture closure) needs."""
    return {FIXTURE_TIERS[name] for name in fixture_names if name in FIXTURE_TIERS}


def markers_to_add(fixture_names: Iterable[str], marker_names: Iterable[str]) -> set[str]:
    """The markers to add to a test that uses ``fixture_names`` and already carries
    ``marker_names``: its fixtures' tiers, or ``pure`` when it needs no server at all."""
    present = set(marker_names)
    fixture_tiers = tiers_of(fixture_names)
    if fixture_tiers or present & set(SERVER_TIERS):
        return fixture_tiers - present
    return {PURE} - present


@dataclass(frozen=True)
class RunningTest:
    node_id: str
    marker_names: frozenset[str]


_running: RunningTest | None = None


@contextmanager
def running(node_id: str, marker_names: Iterable[str]) -> Iterator[None]:
    """While the block runs (a test's setup, call and teardown), servers started must
    match the test's markers."""
    global _running  # noqa: PLW0603 - one test runs at a time; the hooks own this state
    _running = RunningTest(node_id, frozenset(marker_names))
    try:
        yield
    finally:
        _running = None


def unmarked_server(test: RunningTest | None, tier: str) -> str | None:
    """Why starting a server of ``tier`` is refused for ``test``, or None if it is not.

    Outside a test (a benchmark reusing the helpers) there is nothing to enforce.
    """
    if test is None or tier in test.marker_names:
        return None
    return (
        f"{test.node_id} starts {SERVER_NAMES[tier]} but is not marked {tier!r}: add "
        f"@pytest.mark.{tier}, or use a fixture of aedfleet_testing/tiers.py's FIXTURE_TIERS"
    )


def require_tier(tier: str) -> None:
    """Called by the helpers that start a server of ``tier``; raises
    :class:`UnmarkedServerError` when the running test does not declare that tier."""
    refusal = unmarked_server(_running, tier)
    if refusal is not None:
        raise UnmarkedServerError(refusal)
