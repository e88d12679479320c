"""The state store takes a registry of a whole province's cabinets in one batch (SQLite)."""

from __future__ import annotations

from pathlib import Path

import pytest

from aedfleet.db import StateStore
from aedfleet.registry import Assignment, Cabinet, Person, Registry, Role, SiteType

CABINETS = 100_000


@pytest.mark.slow
def test_a_hundred_thousand_cabinets_in_one_batch(tmp_path: Path) -> None:
    cabinets = tuple(
        Cabinet(
            cabinet_id=f"GD-{number:06d}",
            name=f"广东省 第 {number} 号 AED 柜",
            latitude=20 + number % 500 / 100,
            longitude=110 + number % 700 / 100,
            site_type=SiteType.TRANSPORT_HUB,
            region_code="440305",
        )
        for number in range(CABINETS)
    )
    captain = Person(person_id="captain-1", name="陈队长")
    assignments = tuple(
        Assignment(cabinet_id=cabinet.cabinet_id, person_id="captain-1", role=Role.CAPTAIN)
        for cabinet in cabinets[:1_000]
    )
    with StateStore.open(f"sqlite:///{tmp_path / 'bulk.sqlite3'}") as store:
        store.apply_registry(
            Registry(cabinets=cabinets, people=(captain,), assignments=assignments)
        )
        # Updating them all again goes through the same upsert.
        renamed = tuple(cabinet.model_copy(update={"floor": "B1"}) for cabinet in cabinets)
        store.apply_registry(Registry(cabinets=renamed))

        loaded = store.load_registry()
        assert len(loaded.cabinets) == CABINETS
        assert loaded.cabinets[-1] == renamed[-1]
        assert len(loaded.assignments) == 1_000
        assert len(store.cabinet_ids()) == CABINETS
