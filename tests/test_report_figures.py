"""The fleet report's figures, its page and its reading of InfluxDB's answer (pure)."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aedfleet.registry import Assignment, Cabinet, District, Language, Person, Registry, Role
from aedfleet.twin import Twin
from alerting.districts import CoverageSettings
from alerting.readiness import CabinetState
from alerting.report.figures import (
    MAP_MARGIN,
    MAP_MAX_HEIGHT,
    MAP_WIDTH,
    Consumable,
    FleetReport,
    Reading,
    build_report,
    project,
    within,
)
from alerting.report.page import render_page
from alerting.report.sources import ReportError, parse_readings

NOW = datetime(2026, 12, 4, 4, 0, tzinfo=UTC)
TODAY = date(2026, 12, 4)


def site(cabinet_id: str, region: str = "440309", **values: object) -> Cabinet:
    fields: dict[str, object] = {
        "cabinet_id": cabinet_id,
        "name": f"龙华站点 {cabinet_id}",
        "latitude": 22.6,
        "longitude": 114.0,
        "region_code": region,
        "owner_unit": "龙华区卫健局",
    }
    return Cabinet.model_validate(fields | values)


def reading(cabinet_id: str, state: CabinetState) -> Reading:
    return Reading(cabinet_id=cabinet_id, state=state, at=NOW)


FLEET = Registry(
    cabinets=(
        site("a", latitude=22.70, longitude=114.00, pads_expiry=TODAY - timedelta(days=1)),
        site("b", latitude=22.60, longitude=114.10, battery_expiry=TODAY + timedelta(days=7)),
        site("c", latitude=22.50, longitude=114.05, pads_expiry=TODAY + timedelta(days=8)),
        site("d", region="440304", pads_expiry=TODAY + timedelta(days=90)),
        site("e", region="", battery_expiry=TODAY + timedelta(days=91)),
    ),
    districts=(
        District(region_code="440309", name="龙华区", population=100_000),
        District(region_code="440304", name="福田区", population=50_000, target_per_100k=2),
    ),
)
READINGS = {
    "a": reading("a", CabinetState.READY),
    "b": reading("b", CabinetState.IN_USE),
    "c": reading("c", CabinetState.READY),
    "d": reading("d", CabinetState.OFFLINE),
    "zz": reading("zz", CabinetState.READY),  # not in the registry: left out
}


def report_of(
    registry: Registry = FLEET, twins: dict[str, Twin] | None = None
) -> tuple[str, FleetReport]:
    built = build_report(
        registry,
        twins or {},
        READINGS,
        {"b": 2, "d": 1, "zz": 5},
        CoverageSettings(),
        now=NOW,
        today=TODAY,
    )
    return render_page(built, Language.ZH, "Asia/Shanghai"), built


def test_fleet_counts_states_and_no_data() -> None:
    _, built = report_of()
    fleet = built.fleet
    assert fleet.total == 5
    assert fleet.by_state == {
        CabinetState.READY: 2,
        CabinetState.NOT_READY: 0,
        CabinetState.OFFLINE: 1,
        CabinetState.IN_USE: 1,
    }
    assert fleet.no_data == 1
    assert fleet.readiness_pct == 40.0
    assert built.open_alarms == 3


def test_districts_use_the_readings_as_readiness() -> None:
    _, built = report_of()
    futian, longhua = built.coverage.districts
    assert (longhua.cabinets, longhua.ready, longhua.open_alarms) == (3, 2, 2)
    assert (longhua.aeds_per_100k, longhua.target_per_100k, longhua.meets_target) == (
        3.0,
        30.0,
        False,
    )
    assert (futian.cabinets, futian.ready, futian.aeds_per_100k, futian.meets_target) == (
        1,
        0,
        2.0,
        True,
    )
    assert built.coverage.unplaced.cabinets == 1


def test_consumables_fall_in_the_first_horizon_that_holds_them() -> None:
    _, built = report_of()
    listed = [(e.cabinet_id, e.item, e.days_left, e.within_days) for e in built.expiring]
    assert listed == [
        ("a", Consumable.PADS, -1, None),
        ("b", Consumable.BATTERY, 7, 7),
        ("c", Consumable.PADS, 8, 30),
        ("d", Consumable.PADS, 90, 90),
    ]
    assert built.expiring_counts == {"expired": 1, "7": 1, "30": 1, "90": 1}
    assert built.expiring[0].district == "龙华区"


def test_the_cabinets_own_dates_come_before_the_registrys() -> None:
    twin = Twin(cabinet_id="a", pads_expiry=TODAY + timedelta(days=3))
    _, built = report_of(twins={"a": twin})
    pads_a = [e for e in built.expiring if e.cabinet_id == "a"]
    assert [(e.days_left, e.within_days) for e in pads_a] == [(3, 7)]


@given(st.integers(-1000, 1000))
def test_horizons_are_first_fit(days_left: int) -> None:
    horizon = within(abs(days_left))
    if abs(days_left) > 90:
        assert horizon is None
    else:
        assert horizon is not None
        assert abs(days_left) <= horizon
        assert all(abs(days_left) > smaller for smaller in (7, 30, 90) if smaller < horizon)


_places = st.tuples(st.floats(-60, 70), st.floats(-179, 179))


@given(st.lists(_places, min_size=1, max_size=30))
def test_pins_stay_on_the_map_north_up_east_right(places: list[tuple[float, float]]) -> None:
    cabinets = tuple(
        site(f"c{i}", latitude=lat, longitude=lon) for i, (lat, lon) in enumerate(places)
    )
    drawn = project(cabinets, {}, {})

    assert len(drawn.pins) == len(cabinets)
    assert drawn.width == MAP_WIDTH
    assert 2 * MAP_MARGIN <= drawn.height <= MAP_MAX_HEIGHT + 0.1
    for pin in drawn.pins:
        assert MAP_MARGIN - 0.1 <= pin.x <= MAP_WIDTH - MAP_MARGIN + 0.1
        assert MAP_MARGIN - 0.1 <= pin.y <= drawn.height - MAP_MARGIN + 0.1
    for one, other in zip(cabinets, drawn.pins, strict=True):
        for two, second in zip(cabinets, drawn.pins, strict=True):
            if one.latitude > two.latitude + 1e-6:
                assert other.y <= second.y
            if one.longitude > two.longitude + 1e-6:
                assert other.x >= second.x


def test_one_cabinet_is_drawn_in_the_middle() -> None:
    drawn = project((site("solo"),), {"solo": CabinetState.READY}, {"440309": "龙华区"})
    (pin,) = drawn.pins
    assert (pin.x, pin.state, pin.district) == (MAP_WIDTH / 2, CabinetState.READY, "龙华区")
    assert [(label.text, label.x, label.y) for label in drawn.labels] == [("龙华区", pin.x, pin.y)]


def test_districts_are_named_between_their_cabinets() -> None:
    cabinets = (
        site("a", latitude=22.0, longitude=114.0),
        site("b", latitude=22.2, longitude=114.2),
        site("c", region="", latitude=22.1, longitude=114.4),
    )
    drawn = project(cabinets, {}, {"440309": "龙华区"})
    a, b, _ = drawn.pins
    (label,) = drawn.labels
    assert (label.text, label.x, label.y) == ("龙华区", (a.x + b.x) / 2, (a.y + b.y) / 2)


# -- the page ------------------------------------------------------------------------------------


def test_the_page_is_self_contained_with_one_pin_per_cabinet() -> None:
    html, _ = report_of()

    assert len(re.findall(r'<circle class="pin"', html)) == 5
    assert re.findall(r'data-state="(\w+)"', html) == [
        "ready",
        "in_use",
        "ready",
        "offline",
        "none",
    ]
    assert "<script" not in html
    assert not re.search(r"""(src|href)=|url\(|@import""", html)
    assert 'lang="zh-CN"' in html
    for words in ("龙华区", "福田区", "人口未知", "已过期", "2026-12-04 12:00"):
        assert words in html


def test_registry_text_is_escaped() -> None:
    evil = Registry(
        cabinets=(site("a", name='<script>alert("x")</script>'),),
        districts=(District(region_code="440309", name="<b>区</b>", population=1),),
    )
    html, _ = report_of(evil)
    assert "<script>" not in html
    assert "<b>区</b>" not in html
    assert "&lt;script&gt;" in html
    assert "&lt;b&gt;区&lt;/b&gt;" in html


def test_the_page_in_english() -> None:
    _, built = report_of()
    html = render_page(built, Language.EN, "UTC")
    assert 'lang="en"' in html
    assert "AEDs per 100,000" in html
    assert "No population known" in html
    assert "2026-12-04 04:00 (UTC)" in html


# -- InfluxDB's answer ---------------------------------------------------------------------------


def answer(*series: dict[str, object]) -> str:
    return json.dumps({"results": [{"statement_id": 0, "series": list(series)}]})


def test_readings_from_points_with_and_without_a_state() -> None:
    ns = 1_764_820_800_000_000_000
    text = answer(
        {
            "name": "readiness",
            "tags": {"cabinet_id": "a"},
            "columns": ["time", "state", "ready", "reasons"],
            "values": [[ns, "in_use", 0, "aed_removed"]],
        },
        {
            "name": "readiness",
            "tags": {"cabinet_id": "old"},
            "columns": ["time", "state", "ready", "reasons"],
            "values": [[ns, None, 0, "offline,battery_low,no_such_type"]],
        },
    )
    readings = parse_readings(text, "InfluxDB", "db")
    assert readings["a"].state is CabinetState.IN_USE
    assert readings["old"].state is CabinetState.OFFLINE
    assert readings["a"].at == datetime(2025, 12, 4, 4, 0, tzinfo=UTC)
    assert parse_readings(json.dumps({"results": [{"statement_id": 0}]}), "I", "db") == {}


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (
            '{"results": [{"statement_id": 0, "error": "database not found: fleet"}]}',
            "database 'db': database not found: fleet",
        ),
        ("<html>proxy error</html>", "answered something other than readiness points"),
        ('{"results": [{"series": [{"tags": {}}]}]}', "other than readiness points"),
    ],
)
def test_a_bad_answer_is_a_report_error(text: str, words: str) -> None:
    with pytest.raises(ReportError, match=re.escape(words)):
        parse_readings(text, "InfluxDB at http://x", "db")


def test_the_page_names_no_one() -> None:
    """The report may be forwarded to anyone who looks after the fleet's coverage: it
    carries no captain's name, phone number or address."""
    captain = Person(
        person_id="p-zhang", name="张伟", phone="13800138000", email="zhang@example.cn"
    )
    registry = FLEET.model_copy(
        update={
            "people": (captain,),
            "assignments": (Assignment(cabinet_id="a", person_id="p-zhang", role=Role.CAPTAIN),),
        }
    )
    html, _ = report_of(registry)
    for secret in ("p-zhang", "张伟", "13800138000", "zhang@example.cn"):
        assert secret not in html
