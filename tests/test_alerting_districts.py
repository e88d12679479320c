"""Readiness per district and each cabinet's one-word state (pure), their InfluxDB points,
and the engine's snapshot writing them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aedfleet.influx.lines import CabinetTags
from aedfleet.registry import Cabinet, District, Registry
from alerting.districts import Coverage, CoverageSettings, coverage
from alerting.model import AlarmType
from alerting.points import district_readiness_line, readiness_line
from alerting.readiness import CabinetState, Readiness, cabinet_state
from tests.test_alerting_engine import (  # noqa: F401 - fixtures
    T0,
    Device,
    OpenRig,
    cabinet,
    failed_selftest,
    healthy,
    open_rig,
    parse_line,
    registry,
    store_url,
)
from tests.test_twin import CABINET

AT = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
TARGET = CoverageSettings()


def district(code: str, population: int, target: float | None = None, name: str = "") -> District:
    return District(
        region_code=code, name=name or f"区{code}", population=population, target_per_100k=target
    )


def site(cabinet_id: str, region_code: str) -> Cabinet:
    return Cabinet(
        cabinet_id=cabinet_id,
        name=f"站点{cabinet_id}",
        latitude=22.5,
        longitude=114.0,
        region_code=region_code,
    )


# -- one cabinet's state -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ready", "reasons", "state"),
    [
        (True, (), CabinetState.READY),
        (False, (AlarmType.PADS_MISSING,), CabinetState.NOT_READY),
        (False, (AlarmType.OFFLINE,), CabinetState.OFFLINE),
        (False, (AlarmType.OFFLINE, AlarmType.BATTERY_EXPIRED), CabinetState.OFFLINE),
        (False, (AlarmType.AED_REMOVED, AlarmType.DOOR_OPENED), CabinetState.IN_USE),
        (False, (AlarmType.OFFLINE, AlarmType.AED_NOT_RETURNED), CabinetState.IN_USE),
        (False, (AlarmType.POST_USE_CHECK,), CabinetState.NOT_READY),
        (False, (), CabinetState.NOT_READY),
    ],
)
def test_cabinet_state(ready: bool, reasons: tuple[AlarmType, ...], state: CabinetState) -> None:
    assert cabinet_state(ready, reasons) is state
    assert cabinet_state(ready, reversed(reasons)) is state


@given(st.lists(st.sampled_from(AlarmType), unique=True))
def test_a_ready_cabinet_is_ready_whatever_it_is_told(reasons: list[AlarmType]) -> None:
    assert cabinet_state(True, reasons) is CabinetState.READY
    assert cabinet_state(False, reasons) is not CabinetState.READY


# -- per district --------------------------------------------------------------------------------


def test_coverage_counts_each_district_against_its_target() -> None:
    districts = [
        district("440309", 200_000, name="龙华区"),
        district("440304", 100_000, target=40),
        district("440308", 50_000),
    ]
    cabinets = [
        (site("a", "440309"), True),
        (site("b", "440309"), False),
        (site("c", "440309"), True),
        (site("d", "440304"), True),
        (site("e", "440399"), False),
        (site("f", ""), True),
    ]

    result = coverage(districts, cabinets, {"b": 2, "c": 1, "e": 4, "zz": 9}, TARGET)

    longhua, futian = result.districts[2], result.districts[0]
    assert [d.region_code for d in result.districts] == ["440304", "440308", "440309"]
    assert (longhua.name, longhua.cabinets, longhua.ready, longhua.open_alarms) == (
        "龙华区",
        3,
        2,
        3,
    )
    assert longhua.readiness_pct == pytest.approx(200 / 3)
    assert longhua.aeds_per_100k == 1.5
    assert (longhua.target_per_100k, longhua.meets_target) == (30.0, False)
    assert (futian.aeds_per_100k, futian.target_per_100k) == (1.0, 40.0)
    empty = result.districts[1]
    assert (empty.cabinets, empty.ready, empty.readiness_pct, empty.aeds_per_100k) == (
        0,
        0,
        None,
        0.0,
    )
    assert result.unplaced.model_dump() == {
        "cabinets": 2,
        "ready": 1,
        "open_alarms": 4,
        "region_codes": ("", "440399"),
    }


def test_a_district_meets_a_target_it_reaches() -> None:
    result = coverage([district("1", 10_000, target=10)], [(site("a", "1"), False)], {}, TARGET)
    assert result.districts[0].aeds_per_100k == 10.0
    assert result.districts[0].meets_target


def test_no_districts_and_no_cabinets() -> None:
    assert coverage([], [], {}, TARGET) == Coverage()


_codes = st.sampled_from(["", "440303", "440304", "440305", "999"])


@given(
    populations=st.dictionaries(
        st.sampled_from(["440303", "440304", "440305"]), st.integers(1, 20_000_000)
    ),
    cabinets=st.lists(
        st.tuples(st.integers(0, 30), _codes, st.booleans(), st.integers(0, 5)), max_size=40
    ),
)
def test_every_cabinet_counts_once_in_its_district_or_unplaced(
    populations: dict[str, int], cabinets: list[tuple[int, str, bool, int]]
) -> None:
    districts = [district(code, population) for code, population in populations.items()]
    given_cabinets = [(site(f"c{n}", code), ready) for n, code, ready, _ in cabinets]
    alarms = {f"c{n}": count for n, _, _, count in cabinets}
    latest = {f"c{n}": (code, ready) for n, code, ready, _ in cabinets}

    result = coverage(districts, given_cabinets, alarms, TARGET)

    figures = [(f.cabinets, f.ready, f.open_alarms) for f in result.districts]
    unplaced = result.unplaced
    figures.append((unplaced.cabinets, unplaced.ready, unplaced.open_alarms))
    assert sum(f[0] for f in figures) == len(latest)
    assert sum(f[1] for f in figures) == sum(ready for _, ready in latest.values())
    assert sum(f[2] for f in figures) == sum(alarms[c] for c in latest)
    assert [d.region_code for d in result.districts] == sorted(populations)
    for figure in result.districts:
        assert 0 <= figure.ready <= figure.cabinets
        assert figure.aeds_per_100k * figure.population == pytest.approx(100_000 * figure.cabinets)
        if figure.cabinets:
            assert figure.readiness_pct == pytest.approx(100 * figure.ready / figure.cabinets)
    assert set(result.unplaced.region_codes) == {
        code for code, _ in latest.values() if code not in populations
    }


# -- the points ----------------------------------------------------------------------------------


def test_readiness_point_carries_state_and_position() -> None:
    spot = site("SZ 1", "440305")
    state = Readiness(cabinet_id="SZ 1", ready=False, reasons=(AlarmType.AED_REMOVED,), since=AT)

    point = parse_line(readiness_line(CabinetTags.from_cabinet(spot), spot, state, AT))

    assert point.measurement == "readiness"
    assert point.tags == {"cabinet_id": "SZ 1", "region": "440305", "site_type": "other"}
    assert point.fields == {
        "ready": 0,
        "reasons": "aed_removed",
        "state": "in_use",
        "latitude": 22.5,
        "longitude": 114.0,
    }


def test_district_point_has_exactly_the_dashboard_fields() -> None:
    result = coverage(
        [district("44 03,09", 2_528_872, name='龙华区 "北"'), district("1", 10)],
        [(site("a", "44 03,09"), True)],
        {"a": 3},
        TARGET,
    )

    longhua = parse_line(district_readiness_line(result.districts[1], AT))
    empty = parse_line(district_readiness_line(result.districts[0], AT))

    assert longhua.measurement == "district_readiness"
    assert longhua.tags == {"region": "44 03,09"}
    assert longhua.fields == {
        "name": '龙华区 "北"',
        "cabinets": 1,
        "ready": 1,
        "readiness_pct": 100.0,
        "open_alarms": 3,
        "population": 2_528_872,
        "aeds_per_100k": 100_000 / 2_528_872,
        "target_per_100k": 30.0,
    }
    assert isinstance(longhua.fields["aeds_per_100k"], float)
    assert "readiness_pct" not in empty.fields
    assert empty.fields["aeds_per_100k"] == 0.0


# -- the engine's snapshot -----------------------------------------------------------------------


def test_snapshot_writes_a_point_per_cabinet_and_per_district(open_rig: OpenRig) -> None:  # noqa: F811
    fleet = registry(cabinet(), cabinet("cab-0002"), cabinet("cab-0003", region_code="440399"))
    with_districts = Registry(
        cabinets=fleet.cabinets,
        people=fleet.people,
        assignments=fleet.assignments,
        districts=(district("440305", 1_795_826, name="南山区"), district("440304", 1_553_225)),
    )
    rig = open_rig(with_districts)
    healthy(rig, Device("cab-0002"))
    healthy(rig, Device("cab-0003"))
    failed_selftest(rig, Device())
    rig.engine.take_lines()

    rig.engine.snapshot_lines(T0)

    points = [parse_line(line) for line in rig.engine.take_lines()]
    states = {
        p.tags["cabinet_id"]: p.fields["state"] for p in points if p.measurement == "readiness"
    }
    assert states == {CABINET: "not_ready", "cab-0002": "ready", "cab-0003": "ready"}
    districts = {
        p.tags["region"]: p.fields for p in points if p.measurement == "district_readiness"
    }
    assert set(districts) == {"440304", "440305"}
    nanshan = districts["440305"]
    assert (nanshan["name"], nanshan["cabinets"], nanshan["ready"]) == ("南山区", 2, 1)
    assert nanshan["open_alarms"] == len(rig.types(CABINET)) >= 1
    assert districts["440304"]["cabinets"] == 0
