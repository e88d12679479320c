"""Planning an import: what is added, changed or left alone, and what is refused."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from pydantic import ValidationError

from aedfleet.registry import Assignment, Cabinet, Person, Registry, Role
from ingest.registry.errors import RegistryError
from ingest.registry.importer import (
    ImportPlan,
    plan_import,
    read_registry_file,
    read_registry_files,
    read_registry_source,
)
from ingest.registry.records import MAX_RANK


def cabinet(cabinet_id: str, name: str = "AED") -> Cabinet:
    return Cabinet(cabinet_id=cabinet_id, name=name, latitude=22.5, longitude=114.0)


def person(person_id: str, name: str = "张伟") -> Person:
    return Person(person_id=person_id, name=name)


def assign(cabinet_id: str, person_id: str, role: Role, rank: int = 0) -> Assignment:
    return Assignment(cabinet_id=cabinet_id, person_id=person_id, role=role, rank=rank)


EXISTING = Registry(
    cabinets=(cabinet("A"), cabinet("B")),
    people=(person("p1"), person("p2")),
    assignments=(assign("A", "p1", Role.CAPTAIN), assign("A", "p2", Role.BACKUP)),
)


def counts(plan: ImportPlan) -> dict[str, tuple[int, int, int]]:
    return {
        kind: (c.added, c.changed, c.unchanged)
        for kind, c in (
            ("cabinets", plan.cabinets),
            ("people", plan.people),
            ("assignments", plan.assignments),
        )
    }


def test_plan_counts_added_changed_unchanged() -> None:
    incoming = Registry(
        cabinets=(cabinet("A"), cabinet("B", "renamed"), cabinet("C")),
        people=(person("p2", "李娜"), person("p3")),
        assignments=(
            assign("A", "p1", Role.CAPTAIN),
            assign("A", "p2", Role.CAPTAIN),  # a second captain: p1 is not removed
            assign("A", "p2", Role.BACKUP, rank=1),  # rank is a value: a change
            assign("C", "p3", Role.CAPTAIN),
            assign("C", "p1", Role.BACKUP),  # an existing person, not in this import
        ),
    )

    plan = plan_import(EXISTING, incoming)

    assert counts(plan) == {"cabinets": (1, 1, 1), "people": (1, 1, 0), "assignments": (3, 1, 1)}
    assert (plan.added, plan.changed, plan.unchanged) == (5, 3, 2)
    assert plan.upserts.cabinets == (cabinet("B", "renamed"), cabinet("C"))
    assert plan.upserts.people == (person("p2", "李娜"), person("p3"))
    assert plan.upserts.assignments == (
        assign("A", "p2", Role.CAPTAIN),
        assign("A", "p2", Role.BACKUP, rank=1),
        assign("C", "p3", Role.CAPTAIN),
        assign("C", "p1", Role.BACKUP),
    )
    assert not plan.is_empty


def test_same_data_plans_nothing() -> None:
    plan = plan_import(EXISTING, EXISTING)

    assert plan.is_empty
    assert plan.upserts == Registry()
    assert counts(plan) == {"cabinets": (0, 0, 2), "people": (0, 0, 2), "assignments": (0, 0, 2)}


def test_import_never_deletes() -> None:
    plan = plan_import(EXISTING, Registry(cabinets=(cabinet("A"),)))

    assert plan.is_empty
    assert plan.upserts == Registry()


def test_reimporting_a_file_is_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "cabinets.csv"
    path.write_text(
        "cabinet_id,name,latitude,longitude,captain,backups\nA,深圳北站,22.6,114.0,p1,p2\n",
        encoding="utf-8",
    )
    first = plan_import(EXISTING, read_registry_file(path))
    assert counts(first) == {"cabinets": (0, 1, 0), "people": (0, 0, 0), "assignments": (0, 0, 2)}

    applied = Registry(
        cabinets=(*first.upserts.cabinets, cabinet("B")),
        people=EXISTING.people,
        assignments=EXISTING.assignments,
    )
    assert plan_import(applied, read_registry_file(path)).is_empty


def test_unknown_people_are_reported_at_the_cabinet_line(tmp_path: Path) -> None:
    path = tmp_path / "cabinets.csv"
    path.write_text(
        "cabinet_id,name,latitude,longitude,captain,backups,coordinator\n"
        "A,a,22.6,114.0,p1,p2,\n"
        "N,new,22.6,114.0,ghost,p1;phantom,p2\n",
        encoding="utf-8",
    )
    parsed = read_registry_source(path)

    with pytest.raises(RegistryError) as caught:
        plan_import(EXISTING, parsed)

    assert [str(problem) for problem in caught.value.problems] == [
        "cabinets.csv line 3: captain: no person 'ghost' in this import or in the registry",
        "cabinets.csv line 3: backups: no person 'phantom' in this import or in the registry",
    ]


def test_bad_rows_and_unknown_people_are_reported_together(tmp_path: Path) -> None:
    path = tmp_path / "cabinets.csv"
    path.write_text(
        "cabinet_id,name,latitude,longitude,captain,backups,coordinator\n"
        "A,a,22.6,114.0,ghost,,\n"
        "B,b,123.4,114.0,p1,,\n"
        "C,c,22.6,114.0,p1,phantom,\n",
        encoding="utf-8",
    )

    with pytest.raises(RegistryError) as caught:
        plan_import(EXISTING, read_registry_source(path))

    assert [str(problem) for problem in caught.value.problems] == [
        "cabinets.csv line 2: captain: no person 'ghost' in this import or in the registry",
        "cabinets.csv line 3: latitude: Input should be less than or equal to 90 (got 123.4)",
        "cabinets.csv line 4: backups: no person 'phantom' in this import or in the registry",
    ]


def test_a_person_whose_row_is_bad_is_reported_there_not_where_named(tmp_path: Path) -> None:
    people = tmp_path / "people.csv"
    people.write_text("person_id,name,language\np-new,新人,klingon\n", encoding="utf-8")
    cabinets = tmp_path / "cabinets.csv"
    cabinets.write_text(
        "cabinet_id,name,latitude,longitude,captain\nN,new,22.6,114.0,p-new\n", encoding="utf-8"
    )

    with pytest.raises(RegistryError) as caught:
        plan_import(EXISTING, read_registry_files([cabinets, people]))

    (problem,) = caught.value.problems
    assert (problem.record, problem.line) == ("people.csv", 2)
    assert problem.reason.startswith("language: ")


def test_a_file_with_bad_rows_is_refused_when_read_alone(tmp_path: Path) -> None:
    path = tmp_path / "cabinets.csv"
    path.write_text("cabinet_id,name,latitude,longitude\nB,b,123.4,114.0\n", encoding="utf-8")

    assert [str(problem) for problem in read_registry_source(path).problems] == [
        "cabinets.csv line 2: latitude: Input should be less than or equal to 90 (got 123.4)"
    ]
    with pytest.raises(RegistryError):
        read_registry_file(path)


def test_people_of_the_same_import_may_be_named(tmp_path: Path) -> None:
    people = tmp_path / "people.csv"
    people.write_text("person_id,name\nghost,鬼\n", encoding="utf-8")
    cabinets = tmp_path / "cabinets.csv"
    cabinets.write_text(
        "cabinet_id,name,latitude,longitude,captain\nN,new,22.6,114.0,ghost\n", encoding="utf-8"
    )
    parsed = read_registry_files([cabinets, people])

    plan = plan_import(Registry(), parsed)

    assert counts(plan) == {"cabinets": (1, 0, 0), "people": (1, 0, 0), "assignments": (1, 0, 0)}


def test_an_id_in_two_files_names_both(tmp_path: Path) -> None:
    header = "cabinet_id,name,latitude,longitude\n"
    (tmp_path / "a.csv").write_text(header + "A,a,1,2\n", encoding="utf-8")
    (tmp_path / "b.csv").write_text(header + "B,b,1,2\n\nA,again,1,2\n", encoding="utf-8")

    with pytest.raises(RegistryError) as caught:
        plan_import(Registry(), read_registry_files([tmp_path / "a.csv", tmp_path / "b.csv"]))

    assert [str(problem) for problem in caught.value.problems] == [
        "b.csv line 4: duplicate cabinet_id 'A', first at a.csv line 2"
    ]


@pytest.mark.slow
def test_hundred_thousand_cabinets_parse_and_plan(tmp_path: Path) -> None:
    count = 100_000
    path = tmp_path / "cabinets.csv"
    with path.open("w", encoding="utf-8", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(
            [
                "cabinet_id",
                "name",
                "latitude",
                "longitude",
                "address",
                "site_type",
                "pads_expiry",
                "captain",
                "backups",
            ]
        )
        for index in range(count):
            writer.writerow(
                [
                    f"SZ-{index:06d}",
                    f"深圳 AED {index}",
                    22.5 + index * 1e-6,
                    114.0,
                    f"深圳市福田区深南大道{index}号",
                    "school",
                    "2027-06-30",
                    "p1",
                    "p2;p1"[: 2 + index % 2 * 3],
                ]
            )
    progress: list[int] = []

    parsed = read_registry_source(path, on_progress=progress.append)
    plan = plan_import(EXISTING, parsed)

    assert len(parsed.registry.cabinets) == count
    assert progress[-1] == count
    assert progress == sorted(progress)
    assert plan.cabinets.added == count
    assert plan.assignments.added == len(parsed.registry.assignments) == 250_000
    stored = parsed.registry.model_copy(update={"people": EXISTING.people})
    assert plan_import(stored, parsed.registry).is_empty


def test_max_rank_is_the_models_bound() -> None:
    assign("A", "p1", Role.BACKUP, MAX_RANK)
    with pytest.raises(ValidationError):
        assign("A", "p1", Role.BACKUP, MAX_RANK + 1)
