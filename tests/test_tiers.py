"""The test tiers: how a test gets its markers, and how a missing marker is caught."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aedfleet_testing import tiers
from aedfleet_testing.brokers import MosquittoBroker
from tests.postgres import STORE_BACKENDS, must_reach_postgres

SHARED_FIXTURES = sorted(tiers.FIXTURE_TIERS)
OTHER_FIXTURES = ["tmp_path", "monkeypatch", "request", "ticker", "store_url", "pki"]
MARKERS = [*tiers.SERVER_TIERS, tiers.PURE, "asyncio", "parametrize", "skipif"]


@pytest.mark.parametrize(
    ("fixture", "tier"),
    [
        ("broker", "broker"),
        ("persistent_broker", "broker"),
        ("influx_server", "influx"),
        ("influx_database", "influx"),
        ("fresh_influx_server", "influx"),
        ("postgres_database", "postgres"),
    ],
)
def test_a_shared_server_fixture_marks_its_tier(fixture: str, tier: str) -> None:
    assert tiers.markers_to_add(["request", fixture, "tmp_path"], ["asyncio"]) == {tier}


def test_a_test_without_servers_is_pure() -> None:
    assert tiers.markers_to_add(OTHER_FIXTURES, ["asyncio", "parametrize"]) == {"pure"}


def test_a_test_marked_by_hand_is_not_pure() -> None:
    assert tiers.markers_to_add(["tmp_path"], ["broker"]) == set()
    assert tiers.markers_to_add(["influx_database"], ["broker"]) == {"influx"}


def test_the_fixtures_of_an_end_to_end_test_mark_every_tier_it_needs() -> None:
    fixtures = ["broker", "influx_server", "influx_database", "postgres_database", "tmp_path"]
    assert tiers.markers_to_add(fixtures, []) == {"broker", "influx", "postgres"}


@given(
    fixtures=st.lists(st.sampled_from(SHARED_FIXTURES + OTHER_FIXTURES)),
    markers=st.lists(st.sampled_from(MARKERS)),
)
def test_a_test_is_pure_exactly_when_it_needs_no_server(
    fixtures: list[str], markers: list[str]
) -> None:
    added = tiers.markers_to_add(fixtures, markers)
    final = added | set(markers)
    assert not added & set(markers)
    assert tiers.tiers_of(fixtures) <= final
    needs_a_server = bool(final & set(tiers.SERVER_TIERS))
    if tiers.PURE not in markers:
        assert (tiers.PURE in final) != needs_a_server


def test_the_postgresql_backend_of_a_contract_suite_carries_its_tier() -> None:
    sqlite, postgresql = STORE_BACKENDS
    assert sqlite == "sqlite"
    assert postgresql.values == ("postgresql",)
    assert [mark.name for mark in postgresql.marks] == ["postgres"]


def test_a_server_started_outside_a_test_is_not_checked() -> None:
    assert tiers.unmarked_server(None, tiers.BROKER) is None


def test_a_server_of_a_marked_tier_is_allowed() -> None:
    test = tiers.RunningTest("tests/test_x.py::test_y", frozenset({"broker", "influx"}))
    assert tiers.unmarked_server(test, tiers.BROKER) is None
    assert tiers.unmarked_server(test, tiers.INFLUX) is None


def test_a_server_of_an_unmarked_tier_is_refused_naming_the_test_and_the_marker() -> None:
    test = tiers.RunningTest("tests/test_x.py::test_y", frozenset({"pure", "asyncio"}))
    refusal = tiers.unmarked_server(test, tiers.POSTGRES)
    assert refusal is not None
    assert refusal.startswith("tests/test_x.py::test_y starts PostgreSQL but is not marked")
    assert "@pytest.mark.postgres" in refusal


def test_this_pure_test_may_not_start_a_broker(tmp_path: Path) -> None:
    """The hooks of tests/conftest.py at work: this test is marked pure, so the broker
    helper refuses to start Mosquitto (before any process is spawned)."""
    broker = MosquittoBroker(tmp_path / "broker")
    with pytest.raises(tiers.UnmarkedServerError, match="is not marked 'broker'"):
        broker.start()
    assert not broker.running


def test_the_collection_hook_marks_a_test_without_servers_pure(
    request: pytest.FixtureRequest,
) -> None:
    assert request.node.get_closest_marker("pure") is not None
    assert request.node.get_closest_marker("broker") is None


def test_the_collection_hook_marks_a_test_using_a_broker(
    broker: MosquittoBroker, request: pytest.FixtureRequest
) -> None:
    assert broker.running
    assert request.node.get_closest_marker("broker") is not None
    assert request.node.get_closest_marker("pure") is None


@pytest.mark.parametrize("value", ["true", "TRUE", "True", "1", " true\n"])
def test_on_a_ci_runner_postgresql_must_be_reachable(value: str) -> None:
    assert must_reach_postgres({"CI": value, "HOME": "/root"})


@pytest.mark.parametrize("environment", [{}, {"CI": ""}, {"CI": "false"}, {"CI": "0"}])
def test_elsewhere_an_unreachable_postgresql_is_skipped(environment: dict[str, str]) -> None:
    assert not must_reach_postgres(environment)
