from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import firmware_sim
from aedfleet.contract import PowerSource, SelftestKind
from firmware_sim.cabinet import LOW_BATTERY_PCT, CabinetModel
from firmware_sim.climate import ClimateProfile
from firmware_sim.errors import ScenarioError
from firmware_sim.faults import DEFAULT_DURATION_S, Fault, Phase, PlannedFault
from firmware_sim.scenario import Scenario, fault_plan, fleet_specs, load_scenario

SCENARIOS = Path(firmware_sim.__file__).parent / "scenarios"
START = datetime(2025, 1, 6, 12, tzinfo=UTC)


@pytest.mark.parametrize("name", ["demo.yaml", "every_fault.yaml"])
def test_shipped_scenarios_load(name: str) -> None:
    scenario = load_scenario(SCENARIOS / name)
    assert scenario.faults
    assert len(fleet_specs(scenario)) == scenario.fleet.size


def test_every_fault_scenario_covers_every_fault() -> None:
    scenario = load_scenario(SCENARIOS / "every_fault.yaml")
    assert {fault.fault for fault in scenario.faults} == set(Fault)


EVERY_FAULT = load_scenario(SCENARIOS / "every_fault.yaml")


def shows(model: CabinetModel, fault: Fault) -> bool:
    """Whether the cabinet shows ``fault`` the way its hardware or the runner would see it."""
    snapshot = model.sensors(model.time)
    if fault is Fault.SELFTEST_FAILURE:
        return "E-CIRCUIT" in model.run_selftest(SelftestKind.MANUAL).fault_codes
    if fault is Fault.BATTERY_FAILURE:
        return snapshot.battery_pct < LOW_BATTERY_PCT and not snapshot.aed_ready
    if fault is Fault.PADS_REMOVED:
        return not model.consumables().pads_present and not snapshot.aed_ready
    if fault is Fault.POWER_LOSS:
        return snapshot.power is PowerSource.BACKUP
    if fault is Fault.TEMPERATURE_EXCURSION:
        return not 0 <= snapshot.temperature_c <= 50
    if fault is Fault.AED_NOT_RETURNED:
        return not snapshot.aed_present and not snapshot.aed_ready
    return [window.fault for window in model.take_runner_faults()] == [fault]


@pytest.mark.parametrize("planned", fault_plan(EVERY_FAULT).due(float("inf")), ids=str)
def test_every_fault_in_the_scenario_applies(planned: PlannedFault) -> None:
    spec = fleet_specs(EVERY_FAULT)[planned.cabinet]
    model = CabinetModel(spec, START)
    start = START + timedelta(seconds=planned.at_s)
    assert planned.duration_s is not None
    model.apply_fault(planned.fault, start, planned.duration_s)
    model.advance(start + timedelta(seconds=60))
    assert shows(model, planned.fault)
    model.advance(start + timedelta(seconds=planned.duration_s + 1))
    phases = model.take_fault_phases()
    assert [(p.fault, p.phase) for p in phases] == [
        (planned.fault, Phase.START),
        (planned.fault, Phase.END),
    ]
    assert all(p.cabinet_id == spec.cabinet_id for p in phases)


def test_fleet_specs_follow_the_climate_mix_and_are_deterministic() -> None:
    scenario = Scenario.model_validate(
        {
            "seed": 1,
            "fleet": {
                "size": 10,
                "id_prefix": "x-",
                "climate_mix": {"indoor": 0.5, "cold_region": 0.3, "sun_exposed": 0.2},
                "time_zones": ["Europe/Oslo", "Europe/Rome"],
            },
        }
    )
    specs = fleet_specs(scenario)
    assert specs == fleet_specs(scenario)
    assert Counter(s.climate for s in specs) == {
        ClimateProfile.INDOOR: 5,
        ClimateProfile.COLD_REGION: 3,
        ClimateProfile.SUN_EXPOSED: 2,
    }
    assert [s.cabinet_id for s in specs[:2]] == ["x-0000", "x-0001"]
    assert {s.time_zone for s in specs} <= {"Europe/Oslo", "Europe/Rome"}
    assert len({s.seed for s in specs}) == 10
    assert all(1 <= s.selftest.at_local.hour <= 5 for s in specs)
    assert len(fleet_specs(scenario, size=1000)) == 1000


def test_explicit_faults_name_cabinets_by_index_or_id() -> None:
    scenario = Scenario.model_validate(
        {
            "fleet": {"size": 5},
            "fault_durations_s": {"power_loss": 60},
            "faults": [
                {"at": 10, "cabinet": "sim-0004", "fault": "power_loss"},
                {"at": 20, "cabinet": 2, "fault": "pads_removed"},
            ],
        }
    )
    first, second = fault_plan(scenario).due(100)
    assert (first.cabinet, first.duration_s) == (4, 60)
    assert (second.cabinet, second.duration_s) == (2, DEFAULT_DURATION_S[Fault.PADS_REMOVED])


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "scenario.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("fleet:\n  size: 5\n  doors_per_day: 3\n", "fleet.doors_per_day"),
        ("fleet:\n  door_openings_per_day: lots\n", "fleet.door_openings_per_day"),
        ("fleet:\n  aed_taken_fraction: 1.5\n", "fleet.aed_taken_fraction"),
        ("fleet:\n  climate_mix: {tropical: 1}\n", "fleet.climate_mix.tropical"),
        ("fleet:\n  time_zones: [Mars/Olympus]\n", "fleet.time_zones.0"),
        ("fault_rates:\n  gremlins: 0.1\n", "fault_rates.gremlins"),
        ("faults:\n  - {at: 1, cabinet: 0, fault: power_loss, length: 5}\n", "faults.0.length"),
        ("faults:\n  - {at: -1, cabinet: 0, fault: power_loss}\n", "faults.0.at"),
        ("seeed: 3\n", "seeed"),
    ],
)
def test_a_bad_key_is_named_with_the_file(tmp_path: Path, text: str, key: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    assert caught.value.key == key
    assert str(path) in str(caught.value)
    assert key in str(caught.value)


def test_an_unknown_cabinet_is_named(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "fleet: {size: 3}\nfaults:\n  - {at: 1, cabinet: sim-0009, fault: power_loss}\n",
    )
    with pytest.raises(ScenarioError, match=r"faults\.0\.cabinet.*outside a fleet of 3"):
        load_scenario(path)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("fleet: [1, 2\n", "not valid YAML"),
        ("- just\n- a list\n", "YAML mapping"),
        ("", "YAML mapping"),
    ],
)
def test_a_bad_file_is_named(tmp_path: Path, text: str, problem: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ScenarioError, match=problem) as caught:
        load_scenario(path)
    assert caught.value.path == path


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="cannot be read"):
        load_scenario(tmp_path / "absent.yaml")
