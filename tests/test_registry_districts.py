"""Districts in the registry: the model, the CSV and YAML formats, import plans, export."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from aedfleet.registry import Cabinet, District, Registry
from ingest.registry.errors import RegistryError
from ingest.registry.importer import (
    plan_import,
    read_registry_file,
    read_registry_files,
    read_registry_source,
    write_registry_file,
)

DISTRICTS_CSV = """\
region_code,name,population,target_per_100k
440309,龙华区,2528872,
440304,福田区,1553225,40
"""


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_a_district_needs_a_positive_population() -> None:
    District(region_code="440309", name="龙华区", population=1)
    for population in (0, -5):
        with pytest.raises(ValidationError, match="population"):
            District(region_code="440309", name="龙华区", population=population)
    with pytest.raises(ValidationError, match="target_per_100k"):
        District(region_code="440309", name="龙华区", population=10, target_per_100k=0)
    with pytest.raises(ValidationError, match="region_code"):
        District(region_code="", name="龙华区", population=10)


def test_districts_csv_is_told_apart_by_its_header(tmp_path: Path) -> None:
    registry = read_registry_file(write(tmp_path / "districts.csv", DISTRICTS_CSV))

    assert registry.districts == (
        District(region_code="440309", name="龙华区", population=2_528_872),
        District(region_code="440304", name="福田区", population=1_553_225, target_per_100k=40),
    )
    assert registry == Registry(districts=registry.districts)


def test_every_bad_district_row_is_reported_with_its_line(tmp_path: Path) -> None:
    text = (
        "region_code,name,population,target_per_100k\n"
        "440309,龙华区,0,\n"
        "440304,福田区,many,\n"
        "440309,龙华区,100,\n"
        ",无编码,100,\n"
        "440305,南山区,1795826,-1\n"
        "440306,宝安区,4476554,25\n"
    )
    parsed = read_registry_source(write(tmp_path / "districts.csv", text))

    reasons = [(problem.line, problem.reason.split(":")[0]) for problem in parsed.problems]
    # Line 2 was refused, so line 4 is the first good row of 440309, not a duplicate.
    assert reasons == [
        (2, "population"),
        (3, "population"),
        (5, "region_code"),
        (6, "target_per_100k"),
    ]
    assert [(d.region_code, d.population) for d in parsed.registry.districts] == [
        ("440309", 100),
        ("440306", 4_476_554),
    ]


def test_a_districts_file_without_population_names_the_column(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="districts file without required columns: population"):
        read_registry_file(write(tmp_path / "d.csv", "region_code,name\n440309,龙华区\n"))


def test_yaml_districts_section(tmp_path: Path) -> None:
    text = (
        "districts:\n"
        "  - region_code: 0755\n"
        "    name: 深圳市\n"
        "    population: 17681600\n"
        "    target_per_100k: 30\n"
        "  - {region_code: '440309', name: 龙华区, population: -3}\n"
    )
    parsed = read_registry_source(write(tmp_path / "fleet.yaml", text))

    assert parsed.registry.districts == (
        District(region_code="0755", name="深圳市", population=17_681_600, target_per_100k=30),
    )
    (problem,) = parsed.problems
    assert problem.line == 6
    assert problem.reason.startswith("population: Input should be greater than 0")


def test_csv_export_writes_a_districts_file_beside_the_cabinets(tmp_path: Path) -> None:
    original = read_registry_file(write(tmp_path / "d.csv", DISTRICTS_CSV))

    written = write_registry_file(original, tmp_path / "out.csv")

    assert written == (tmp_path / "out.csv", tmp_path / "out.districts.csv")
    assert read_registry_files(list(written)).registry == original


def test_a_district_defined_in_two_files_names_both(tmp_path: Path) -> None:
    first = write(tmp_path / "a.csv", DISTRICTS_CSV)
    second = write(
        tmp_path / "b.yaml", "districts:\n  - {region_code: '440309', name: 龙华, population: 1}\n"
    )

    parsed = read_registry_files([first, second])

    (problem,) = parsed.problems
    assert str(problem) == (
        "b.yaml line 2: duplicate district region_code '440309', first at a.csv line 2"
    )


def test_import_plans_districts_by_region_code_and_ignores_unknown_region_codes() -> None:
    longhua = District(region_code="440309", name="龙华区", population=2_528_872)
    futian = District(region_code="440304", name="福田区", population=1_553_225)
    # A cabinet whose region code no district describes is imported all the same.
    lonely = Cabinet(
        cabinet_id="SZ-1", name="大鹏新区 AED", latitude=22.6, longitude=114.5, region_code="440399"
    )
    existing = Registry(districts=(longhua,))
    incoming = Registry(
        cabinets=(lonely,),
        districts=(longhua, futian, longhua.model_copy(update={"population": 2_600_000})),
    )
    with pytest.raises(RegistryError, match="district '440309' is given twice"):
        plan_import(existing, incoming)

    moved = longhua.model_copy(update={"population": 2_600_000})
    plan = plan_import(existing, Registry(cabinets=(lonely,), districts=(moved, futian)))

    assert (plan.districts.added, plan.districts.changed, plan.districts.unchanged) == (1, 1, 0)
    assert plan.upserts.districts == (moved, futian)
    assert plan.added == 2
    assert plan_import(Registry(districts=(moved, futian)), Registry(districts=(futian,))).is_empty
