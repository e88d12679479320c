"""``aedfleet registry import`` against real state stores (SQLite and PostgreSQL): every
problem of a file is reported in one pass, those only the store can tell included, and
nothing is written."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from aedfleet.db.state import StateStore
from aedfleet.registry import Registry
from aedfleet_testing.commands import AEDFLEET, command_env
from tests.postgres import (  # noqa: F401 - a fixture
    STORE_BACKENDS,
    empty_postgres,
    postgres_database,
)

PEOPLE_CSV = "person_id,name\np-zhang,张伟\n"
# One good row naming the stored captain, one out of range, one naming nobody.
CABINETS_CSV = """\
cabinet_id,name,latitude,longitude,captain,backups
SZ-0001,好,22.6,114.0,p-zhang,
SZ-0002,坏,123.4,114.0,p-zhang,
SZ-0003,鬼,22.6,114.0,p-zhang,ghost
"""
FLEET_YAML = """\
cabinets:
  - cabinet_id: SZ-0001
    name: 好
    latitude: 22.6
    longitude: 114.0
    captain: p-zhang
  - cabinet_id: SZ-0002
    name: 坏
    latitude: 123.4
    longitude: 114.0
  - cabinet_id: SZ-0003
    name: 鬼
    latitude: 22.6
    longitude: 114.0
    backups: [p-zhang, ghost]
"""
LATITUDE = "latitude: Input should be less than or equal to 90 (got 123.4)"
GHOST = "backups: no person 'ghost' in this import or in the registry"


@pytest.fixture(params=STORE_BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.sqlite3'}"
    return empty_postgres(request.getfixturevalue("postgres_database"))


def import_files(store_url: str, *paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [AEDFLEET, "registry", "import", *map(str, paths), "--store", store_url],
        capture_output=True,
        text=True,
        timeout=120,
        env=command_env(),
        check=False,
    )


def stored(store_url: str) -> Registry:
    with StateStore.open(store_url) as store:
        return store.load_registry()


@pytest.mark.parametrize(
    ("name", "text", "problems"),
    [
        ("cabinets.csv", CABINETS_CSV, [f"line 3: {LATITUDE}", f"line 4: {GHOST}"]),
        ("fleet.yaml", FLEET_YAML, [f"line 7: {LATITUDE}", f"line 11: {GHOST}"]),
    ],
)
def test_a_bad_row_and_an_unknown_person_are_reported_together_and_nothing_is_written(
    store_url: str, tmp_path: Path, name: str, text: str, problems: list[str]
) -> None:
    people = tmp_path / "people.csv"
    people.write_text(PEOPLE_CSV, encoding="utf-8")
    seeded = import_files(store_url, people)
    assert seeded.returncode == 0, seeded.stderr
    before = stored(store_url)
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")

    result = import_files(store_url, path)

    assert result.returncode == 2, result.stdout
    assert result.stderr.splitlines() == [
        f"nothing imported: {len(problems)} problem(s)",
        *(f"  {name} {problem}" for problem in problems),
    ]
    assert stored(store_url) == before
