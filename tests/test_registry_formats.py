"""Registry file formats: CSV, YAML and OpenStreetMap GeoJSON, read and written."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aedfleet.registry import (
    AccessMode,
    Assignment,
    Cabinet,
    District,
    Language,
    Person,
    Registry,
    Role,
    SiteType,
)
from ingest.registry.errors import RegistryError, RowProblem
from ingest.registry.importer import (
    read_registry_file,
    read_registry_files,
    read_registry_source,
    write_registry_file,
)

CABINETS_CSV = (
    "cabinet_id,name,latitude,longitude,address,floor,site_type,access_mode,install_date,"
    "captain,backups,coordinator\n"
    "SZ-LH-0001,深圳北站 B1层 东出口,22.6094,114.0290,深圳市龙华区民治街道致远中路28号,B1,"
    "transport_hub,qr,2023-05-17,p-zhang,p-li;p-wang,p-chen\n"
    "SZ-FT-0002,福田中心区体育馆,22.5411,114.0583,,,sports_venue,,,p-li,,\n"
)
PEOPLE_CSV = """\
person_id,name,phone,email,chat_webhook,language
p-zhang,张伟,13800138000,zhang@example.com,https://chat.example.com/hook/1,zh
p-li,李娜,13900139000,,,
p-wang,Wang Fang,,,,en
p-chen,陈静,,,,
"""


def write(path: Path, text: str, *, bom: bool = False) -> Path:
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode())
    return path


def problems_of(path: Path) -> list[RowProblem]:
    with pytest.raises(RegistryError) as caught:
        read_registry_file(path)
    return list(caught.value.problems)


@pytest.mark.parametrize("bom", [False, True])
def test_cabinets_csv_with_chinese_text(tmp_path: Path, bom: bool) -> None:
    registry = read_registry_file(write(tmp_path / "cabinets.csv", CABINETS_CSV, bom=bom))

    first, second = registry.cabinets
    assert first.cabinet_id == "SZ-LH-0001"
    assert first.name == "深圳北站 B1层 东出口"
    assert first.address == "深圳市龙华区民治街道致远中路28号"
    assert first.site_type is SiteType.TRANSPORT_HUB
    assert first.access_mode is AccessMode.QR
    assert first.install_date == date(2023, 5, 17)
    assert second.access_mode is AccessMode.OPEN  # empty cell: the default
    assert second.install_date is None
    assert second.availability_hours == "24/7"
    assert registry.assignments == (
        Assignment(cabinet_id="SZ-LH-0001", person_id="p-zhang", role=Role.CAPTAIN),
        Assignment(cabinet_id="SZ-LH-0001", person_id="p-li", role=Role.BACKUP, rank=0),
        Assignment(cabinet_id="SZ-LH-0001", person_id="p-wang", role=Role.BACKUP, rank=1),
        Assignment(cabinet_id="SZ-LH-0001", person_id="p-chen", role=Role.COORDINATOR),
        Assignment(cabinet_id="SZ-FT-0002", person_id="p-li", role=Role.CAPTAIN),
    )
    assert registry.people == ()


@pytest.mark.parametrize("bom", [False, True])
def test_people_csv_is_told_apart_by_its_header(tmp_path: Path, bom: bool) -> None:
    registry = read_registry_file(write(tmp_path / "people.csv", PEOPLE_CSV, bom=bom))

    assert [person.name for person in registry.people] == ["张伟", "李娜", "Wang Fang", "陈静"]
    zhang = registry.people[0]
    assert zhang.phone == "13800138000"
    assert zhang.email == "zhang@example.com"
    assert str(zhang.chat_webhook) == "https://chat.example.com/hook/1"
    assert registry.people[2].language is Language.EN
    assert registry.people[1].email is None
    assert registry.cabinets == ()


def test_every_bad_row_is_reported_with_its_line(tmp_path: Path) -> None:
    text = """\
cabinet_id,name,latitude,longitude,site_type,install_date
OK-1,fine,22.5,114.1,school,2024-01-01
BAD-LAT,bad latitude,123.4,114.1,,
BAD-SITE,unknown site type,22.5,114.1,bus_stop,

BAD-DATE,bad date,22.5,114.1,,2024/03/01
BAD-REQ,,,114.1,,
OK-1,duplicate,22.5,114.1,,
"""
    problems = problems_of(write(tmp_path / "cabinets.csv", text))

    by_line = {(problem.line, problem.reason.split(":")[0]) for problem in problems}
    assert by_line == {
        (3, "latitude"),
        (4, "site_type"),
        (6, "install_date"),
        (7, "name"),
        (7, "latitude"),
        (8, "duplicate cabinet_id 'OK-1', first at cabinets.csv line 2"),
    }
    assert all(problem.record == "cabinets.csv" for problem in problems)
    rendered = str(RegistryError(problems))
    assert (
        "cabinets.csv line 3: latitude: Input should be less than or equal to 90 (got 123.4)"
        in rendered
    )
    assert "cabinets.csv line 4: site_type: Input should be 'school'" in rendered


def test_unknown_columns_are_named_and_rows_still_checked(tmp_path: Path) -> None:
    text = "cabinet_id,name,latitude,longitude,colour,Phone\nA,a,99,0,red,1\n"
    problems = problems_of(write(tmp_path / "cabinets.csv", text))

    assert problems[0].line == 1
    assert "'colour', 'Phone'" in problems[0].reason
    assert [(problem.line, problem.reason[:8]) for problem in problems[1:]] == [(2, "latitude")]


def test_missing_required_column_and_unknown_kind(tmp_path: Path) -> None:
    (missing,) = problems_of(write(tmp_path / "a.csv", "cabinet_id,name,latitude\nA,a,1\n"))
    assert missing.line == 1
    assert "longitude" in missing.reason
    (unknown,) = problems_of(write(tmp_path / "b.csv", "id,title\n1,x\n"))
    assert "cannot tell" in unknown.reason


def test_multi_line_quoted_fields_keep_record_start_lines(tmp_path: Path) -> None:
    text = (
        "cabinet_id,name,latitude,longitude,indoor_description\n"
        'A-1,one,22.5,114.1,"进门左转\n第二根柱子旁\n红色箱子"\n'
        'A-2,two,95,114.1,"line one\r\nline two"\n'
        "A-3,three,22.5,514.1,\n"
    )
    problems = problems_of(write(tmp_path / "cabinets.csv", text))

    assert [(problem.line, problem.reason[:9]) for problem in problems] == [
        (5, "latitude:"),
        (7, "longitude"),
    ]


def test_not_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "gbk.csv"
    path.write_bytes("cabinet_id,name,latitude,longitude\nA,深圳,1,2\n".encode("gbk"))
    (problem,) = problems_of(path)
    assert problem.line == 2
    assert "UTF-8" in problem.reason


def test_backups_people_ids_are_checked(tmp_path: Path) -> None:
    text = "cabinet_id,name,latitude,longitude,captain,backups\nA,a,1,2,has space,p1;p1\n"
    problems = problems_of(write(tmp_path / "cabinets.csv", text))
    assert [problem.reason.split(":")[0] for problem in problems] == ["captain", "backups"]


REGISTRY_YAML = """\
cabinets:
  - cabinet_id: SZ-LH-0001
    name: 深圳北站 B1层 东出口
    latitude: 22.6094
    longitude: 114.0290
    region_code: 0755
    pads_expiry: 2026-01-31
    captain: p-zhang
    backups: [p-li]
  - cabinet_id: SZ-FT-0002
    name: 福田体育馆
    latitude: 22.5411
    longitude: 114.0583
    floor: ~
    backups: p-zhang; p-li
people:
  - person_id: p-zhang
    name: 张伟
    phone: 13800138000
  - {person_id: p-li, name: 李娜}
"""


def test_yaml_reads_scalars_as_text(tmp_path: Path) -> None:
    registry = read_registry_file(write(tmp_path / "fleet.yaml", REGISTRY_YAML))

    first, second = registry.cabinets
    assert first.region_code == "0755"
    assert first.pads_expiry == date(2026, 1, 31)
    assert second.floor == ""
    assert registry.people[0].phone == "13800138000"
    assert [(a.cabinet_id, a.person_id, a.role, a.rank) for a in registry.assignments] == [
        ("SZ-LH-0001", "p-zhang", Role.CAPTAIN, 0),
        ("SZ-LH-0001", "p-li", Role.BACKUP, 0),
        ("SZ-FT-0002", "p-zhang", Role.BACKUP, 0),
        ("SZ-FT-0002", "p-li", Role.BACKUP, 1),
    ]


def test_yaml_problems_name_the_item_line(tmp_path: Path) -> None:
    text = """\
cabinets:
  - cabinet_id: A
    name: fine
    latitude: 1
    longitude: 2
  - cabinet_id: B
    name: bad
    latitude: north
    longitude: 2
    colour: red
  - just text
people:
  - person_id: p 1
    name: x
  - person_id: p2
    name: y
    email: not-an-email
gadgets: []
"""
    problems = problems_of(write(tmp_path / "fleet.yml", text))

    assert [(problem.line, problem.reason.split(":")[0]) for problem in problems] == [
        (6, "unknown field"),
        (11, "cabinets"),
        (13, "person_id"),
        (15, "email"),
        (18, "unknown section 'gadgets' (known"),
    ]


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    (problem,) = problems_of(
        write(tmp_path / "fleet.yaml", "cabinets:\n  - cabinet_id: A\n   name: [unclosed\n")
    )
    assert problem.line is not None
    assert problem.line >= 3
    assert "not valid YAML" in problem.reason


def _feature(osm_id: str, tags: dict[str, str], geometry: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "Feature",
        "properties": {"@id": osm_id, **tags},
        "geometry": geometry,
        "id": osm_id,
    }


OVERPASS_EXPORT = {
    "type": "FeatureCollection",
    "generator": "overpass-turbo",
    "copyright": "The data included in this document is from www.openstreetmap.org.",
    "timestamp": "2025-03-01T08:00:00Z",
    "features": [
        _feature(
            "node/1234567890",
            {
                "emergency": "defibrillator",
                "name": "深圳北站 AED",
                "defibrillator:location": "B1层 东出口 客服中心旁",
                "defibrillator:location:en": "B1, east exit, next to the service desk",
                "indoor": "yes",
                "level": "-1",
                "opening_hours": "Mo-Su 06:00-24:00",
                "access": "yes",
                "operator": "深圳地铁",
                "phone": "+86 755 12345678",
                "addr:street": "致远中路",
                "addr:housenumber": "28号",
                "addr:city": "深圳市",
                "manufacturer": "Mindray",
                "model": "BeneHeart C2",
            },
            {"type": "Point", "coordinates": [114.0290, 22.6094]},
        ),
        _feature(
            "node/222",
            {"emergency": "defibrillator", "defibrillator:location": "前台", "access": "customers"},
            {"type": "Point", "coordinates": [114.1, 22.55]},
        ),
        _feature(
            "node/333",
            {"amenity": "pharmacy", "name": "大药房"},
            {"type": "Point", "coordinates": [114.2, 22.56]},
        ),
        _feature(
            "way/444",
            {"emergency": "defibrillator", "addr:full": "香港九龙尖沙咀", "access": "private"},
            {
                "type": "Polygon",
                "coordinates": [
                    [[114.0, 22.0], [114.2, 22.0], [114.2, 22.2], [114.0, 22.2], [114.0, 22.0]]
                ],
            },
        ),
        _feature(
            "node/555",
            {"emergency": "defibrillator", "name": "Lost at sea"},
            {"type": "Point", "coordinates": [114.1, 122.5]},
        ),
    ],
}


def test_osm_geojson_maps_defibrillators(tmp_path: Path) -> None:
    document = dict(OVERPASS_EXPORT)
    document["features"] = OVERPASS_EXPORT["features"][:4]
    path = tmp_path / "export.geojson"
    path.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")

    parsed = read_registry_source(path)

    assert parsed.skipped == 1
    assert parsed.registry.people == ()
    assert parsed.registry.assignments == ()
    station, front_desk, kowloon = parsed.registry.cabinets
    assert station == Cabinet(
        cabinet_id="osm-node-1234567890",
        name="深圳北站 AED",
        aed_model="Mindray BeneHeart C2",
        latitude=22.6094,
        longitude=114.0290,
        address="致远中路 28号, 深圳市",
        floor="-1",
        indoor_description="B1层 东出口 客服中心旁 / B1, east exit, next to the service desk",
        owner_unit="深圳地铁 (+86 755 12345678)",
        access_mode=AccessMode.OPEN,
        availability_hours="Mo-Su 06:00-24:00",
    )
    assert front_desk.name == "前台"
    assert front_desk.access_mode is AccessMode.PIN
    assert kowloon.cabinet_id == "osm-way-444"
    assert kowloon.name == "AED way/444"
    assert kowloon.address == "香港九龙尖沙咀"
    assert kowloon.access_mode is AccessMode.PIN
    assert kowloon.latitude == pytest.approx(22.1)
    assert kowloon.longitude == pytest.approx(114.1)
    assert parsed.origin.cabinets["osm-way-444"].line == 3


def test_osm_invalid_feature_is_reported_by_index(tmp_path: Path) -> None:
    path = tmp_path / "export.json"
    path.write_text(json.dumps(OVERPASS_EXPORT), encoding="utf-8")

    (problem,) = problems_of(path)

    assert (problem.line, problem.unit) == (4, "feature")
    assert str(problem).startswith("export.json feature 4: latitude: Input should be")


def test_csv_round_trip_with_people_file(tmp_path: Path) -> None:
    original = read_registry_files(
        [write(tmp_path / "p.csv", PEOPLE_CSV), write(tmp_path / "c.csv", CABINETS_CSV)]
    ).registry

    written = write_registry_file(original, tmp_path / "out.csv")

    assert written == (tmp_path / "out.csv", tmp_path / "out.people.csv")
    assert read_registry_files(list(written)).registry == original


# Printable text without control, surrogate or line/paragraph separator characters.
_text_chars = st.characters(codec="utf-8", categories=["L", "M", "N", "P", "S", "Zs"])


def _text(max_size: int, *, min_size: int = 0) -> st.SearchStrategy[str]:
    return (
        st.text(_text_chars, max_size=max_size)
        .map(str.strip)
        .filter(lambda value: len(value) >= min_size)
    )


_ids = st.text(
    st.characters(codec="utf-8", categories=["L", "N"], include_characters="-_."),
    min_size=1,
    max_size=20,
)
_dates = st.none() | st.dates(min_value=date(1990, 1, 1), max_value=date(2099, 12, 31))


@st.composite
def registries(draw: st.DrawFn) -> Registry:
    people = [
        Person(
            person_id=person_id,
            name=draw(_text(40, min_size=1)),
            phone=draw(_text(32)),
            email=draw(st.none() | st.sampled_from(["a@example.com", "zhang.wei@example.cn"])),
            chat_webhook=draw(st.none() | st.just("https://hooks.example.com/x?y=1")),
            language=draw(st.sampled_from(Language)),
        )
        for person_id in draw(st.lists(_ids, unique=True, max_size=4))
    ]
    person_ids = [person.person_id for person in people]
    cabinets = []
    assignments: list[Assignment] = []
    for cabinet_id in draw(st.lists(_ids, unique=True, max_size=4)):
        cabinets.append(
            Cabinet(
                cabinet_id=cabinet_id,
                name=draw(_text(60, min_size=1)),
                aed_model=draw(_text(20)),
                latitude=draw(st.floats(-90, 90)),
                longitude=draw(st.floats(-180, 180)),
                address=draw(_text(80)),
                floor=draw(_text(32)),
                indoor_description=draw(_text(80) | st.just('第一行\n第二行, "引号"')),
                site_type=draw(st.sampled_from(SiteType)),
                region_code=draw(st.sampled_from(["", "0755", "440305"])),
                owner_unit=draw(_text(40)),
                access_mode=draw(st.sampled_from(AccessMode)),
                availability_hours=draw(_text(40, min_size=1)),
                install_date=draw(_dates),
                pads_expiry=draw(_dates),
                battery_expiry=draw(_dates),
            )
        )
        if person_ids:
            chosen = draw(st.permutations(person_ids))
            looking_after = chosen[: draw(st.integers(0, len(chosen)))]
            if looking_after:
                captain, *backups = looking_after
                assignments.append(
                    Assignment(cabinet_id=cabinet_id, person_id=captain, role=Role.CAPTAIN)
                )
            else:
                backups = []
            assignments.extend(
                Assignment(cabinet_id=cabinet_id, person_id=backup, role=Role.BACKUP, rank=rank)
                for rank, backup in enumerate(backups)
            )
            if draw(st.booleans()):
                assignments.append(
                    Assignment(cabinet_id=cabinet_id, person_id=chosen[-1], role=Role.COORDINATOR)
                )
    districts = tuple(
        District(
            region_code=region_code,
            name=draw(_text(40, min_size=1)),
            population=draw(st.integers(1, 30_000_000)),
            target_per_100k=draw(
                st.none() | st.floats(0.01, 1000, allow_nan=False, allow_infinity=False)
            ),
        )
        for region_code in draw(st.lists(_ids, unique=True, max_size=3))
    )
    return Registry(
        cabinets=tuple(cabinets),
        people=tuple(people),
        assignments=tuple(assignments),
        districts=districts,
    )


_round_trip = settings(
    max_examples=60,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@_round_trip
@given(registry=registries())
def test_yaml_round_trip(tmp_path: Path, registry: Registry) -> None:
    (path,) = write_registry_file(registry, tmp_path / "fleet.yaml")
    assert read_registry_file(path) == registry


@_round_trip
@given(registry=registries())
def test_csv_round_trip(tmp_path: Path, registry: Registry) -> None:
    paths = write_registry_file(registry, tmp_path / "fleet.csv")
    assert read_registry_files(list(paths)).registry == registry
