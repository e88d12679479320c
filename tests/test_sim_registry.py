"""The registry written for a simulated fleet, and the fleet without expiring consumables."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

from aedfleet.registry import Language, Role
from firmware_sim.cabinet import CabinetModel
from firmware_sim.registry import coordinator_id, person_ids, simulated_registry
from firmware_sim.scenario import FleetDefaults, Scenario, fleet_specs


def test_every_cabinet_has_a_captain_a_backup_and_a_coordinator() -> None:
    registry = simulated_registry(Scenario(), 25)
    roles = Counter((a.cabinet_id, a.role) for a in registry.assignments)
    people = {person.person_id for person in registry.people}
    assert len(registry.cabinets) == 25
    for index, cabinet in enumerate(registry.cabinets):
        for role in Role:
            assert roles[(cabinet.cabinet_id, role)] == 1
        assert {*person_ids(index), coordinator_id(index)} <= people
    # one coordinator per unit of ten cabinets
    assert sum(p.person_id.startswith("coordinator-") for p in registry.people) == 3


def test_the_registry_is_repeatable_and_speaks_both_languages() -> None:
    first = simulated_registry(Scenario(seed=7), 12)
    assert first == simulated_registry(Scenario(seed=7), 12)
    by_id = {person.person_id: person for person in first.people}
    assert by_id[person_ids(3)[0]].language is Language.EN
    assert by_id[person_ids(0)[0]].language is Language.ZH
    assert by_id[person_ids(1)[1]].language is Language.EN


def test_fresh_consumables_expire_after_every_notice_period() -> None:
    start = datetime(2026, 11, 26, 8, tzinfo=UTC)
    scenario = Scenario(fleet=FleetDefaults(fresh_consumables=True))
    for spec in fleet_specs(scenario, 200):
        report = CabinetModel(spec, start).consumables()
        assert report.pads_expiry is not None
        assert report.battery_expiry is not None
        assert report.pads_expiry > (start + timedelta(days=90)).date()
        assert report.battery_expiry > (start + timedelta(days=90)).date()
