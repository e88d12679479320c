"""Rule configuration: the issue's defaults, AED model specs, overrides and bad files."""

from __future__ import annotations

from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from aedfleet.registry import Cabinet, SiteType
from aedfleet.settings import ConfigError
from alerting.model import Severity
from alerting.rule_config import (
    BUILT_IN_AED_MODELS,
    AedModelSpec,
    ExpiryNotice,
    RuleConfig,
    RuleSet,
    TemperatureRange,
    Thresholds,
    load_rule_config,
    parse_rule_config,
    rules_for,
)
from firmware_sim.fleet import AED_MODELS


def cabinet(**changes: Any) -> Cabinet:
    values: dict[str, Any] = {
        "cabinet_id": "cab-1",
        "name": "Library",
        "aed_model": "ZOLL AED Plus",
        "latitude": 22.5,
        "longitude": 114.0,
        "site_type": SiteType.SCHOOL,
        "region_code": "440305",
    }
    return Cabinet(**(values | changes))


def test_the_defaults_are_the_issues() -> None:
    limits = Thresholds()
    assert limits.aed_not_returned_after == timedelta(minutes=30)
    assert limits.door_open_allowance == timedelta(minutes=10)
    assert limits.selftest_grace_daily == timedelta(hours=26)
    assert limits.selftest_grace_weekly == timedelta(days=8)
    assert limits.selftest_grace_monthly == timedelta(days=32)
    assert [(n.within_days, n.severity) for n in limits.expiry_notices] == [
        (90, Severity.INFO),
        (30, Severity.WARNING),
        (7, Severity.HIGH),
    ]
    assert limits.heartbeat_misses == 3
    assert limits.offline_critical_after == timedelta(hours=24)
    assert limits.temperature_excursion_after == timedelta(minutes=30)
    assert limits.tamper_window == timedelta(hours=1)
    assert limits.inspection_interval == timedelta(days=30)
    severities = RuleSet().severities
    assert severities.door_opened is Severity.CRITICAL
    assert severities.battery_low is Severity.HIGH
    assert severities.offline is Severity.WARNING
    assert severities.offline_long is Severity.CRITICAL
    assert severities.selftest_missing is Severity.HIGH
    assert severities.inspection_overdue is Severity.WARNING
    assert RuleSet().default_time_zone == "Asia/Shanghai"


def test_every_simulated_aed_model_has_a_spec() -> None:
    config = RuleConfig()
    assert set(AED_MODELS) == set(BUILT_IN_AED_MODELS)
    assert [named.name for named in config.aed_models] == sorted(AED_MODELS)
    hs1 = config.spec_for("Philips HeartStart HS1")
    assert (hs1.storage_c.min_c, hs1.storage_c.max_c) == (10.0, 43.0)
    # Names match ignoring case and spacing; an unknown model gets the default spec.
    assert config.spec_for("  philips   heartstart HS1 ") == hs1
    assert config.spec_for("Unknown 3000") == config.default_aed_model
    assert config.spec_for("") == AedModelSpec()


def test_models_in_the_file_add_to_and_replace_the_built_in_ones() -> None:
    config = RuleConfig.model_validate(
        {
            "default_aed_model": {"min_battery_pct": 25},
            "aed_models": {
                "zoll aed plus": {"min_battery_pct": 30, "storage_c": {"min_c": 0, "max_c": 45}},
                "HeartSine samaritan PAD 350P": {"storage_c": {"min_c": 0, "max_c": 50}},
            },
        }
    )
    assert len(config.aed_models) == len(BUILT_IN_AED_MODELS) + 1
    assert config.spec_for("ZOLL AED Plus").min_battery_pct == 30
    assert config.spec_for("HeartSine samaritan PAD 350P").min_battery_pct == 20
    assert (
        config.spec_for("Philips HeartStart HS1") == BUILT_IN_AED_MODELS["Philips HeartStart HS1"]
    )
    assert config.spec_for("other").min_battery_pct == 25


def test_rules_follow_the_aed_model_and_the_overrides_in_order() -> None:
    config = RuleConfig.model_validate(
        {
            "overrides": [
                {"match": {"region_code": "4403"}, "thresholds": {"inspection_interval": "P7D"}},
                {
                    "match": {"site_type": "school", "region_code": "440305"},
                    "thresholds": {"inspection_interval": "P14D", "door_open_allowance": 60},
                    "severities": {"door_opened": "high"},
                },
                {"match": {"aed_model": "zoll aed plus"}, "aed": {"min_battery_pct": 40}},
                {"match": {"region_code": "11"}, "thresholds": {"inspection_interval": "P1D"}},
            ]
        }
    )
    school = rules_for(cabinet(), config)
    assert school.thresholds.inspection_interval == timedelta(days=14)
    assert school.thresholds.door_open_allowance == timedelta(seconds=60)
    assert school.severities.door_opened is Severity.HIGH
    assert school.aed.min_battery_pct == 40
    assert school.aed.storage_c == TemperatureRange(min_c=0, max_c=50)
    # What no override touches keeps its value.
    assert school.thresholds.tamper_window == timedelta(hours=1)
    assert school.severities.aed_removed is Severity.CRITICAL

    hospital = rules_for(cabinet(site_type=SiteType.HOSPITAL), config)
    assert hospital.thresholds.inspection_interval == timedelta(days=7)
    assert hospital.severities.door_opened is Severity.CRITICAL

    beijing_hs1 = rules_for(
        cabinet(region_code="110101", aed_model="Philips HeartStart HS1"), config
    )
    assert beijing_hs1.thresholds.inspection_interval == timedelta(days=1)
    assert beijing_hs1.aed == BUILT_IN_AED_MODELS["Philips HeartStart HS1"]
    # "44" is not a prefix of a cabinet without a region code.
    assert rules_for(cabinet(region_code=""), config).thresholds.inspection_interval == timedelta(
        days=30
    )


def test_equal_inputs_give_equal_rules_and_can_be_cached() -> None:
    document = {
        "overrides": [
            {"match": {"region_code": "44"}, "aed": {"storage_c": {"min_c": 5, "max_c": 40}}}
        ]
    }
    first, second = RuleConfig.model_validate(document), RuleConfig.model_validate(document)
    assert first == second
    assert hash(first) == hash(second)
    assert rules_for(cabinet(), first) == rules_for(cabinet(), second)
    assert hash(rules_for(cabinet(), first)) == hash(rules_for(cabinet(), second))

    calls: list[str] = []

    @cache
    def cached(cab: Cabinet, config: RuleConfig) -> RuleSet:
        calls.append(cab.cabinet_id)
        return rules_for(cab, config)

    assert cached(cabinet(), first) is cached(cabinet(), second)
    assert calls == ["cab-1"]
    assert cached(cabinet(), first).aed.storage_c == TemperatureRange(min_c=5, max_c=40)


def test_expiry_notices_are_sorted_farthest_first() -> None:
    limits = Thresholds(
        expiry_notices=(
            ExpiryNotice(within_days=3, severity=Severity.HIGH),
            ExpiryNotice(within_days=60, severity=Severity.INFO),
        )
    )
    assert [notice.within_days for notice in limits.expiry_notices] == [60, 3]
    assert Thresholds(expiry_notices=()).expiry_notices == ()


def problems(document: object) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_rule_config(document, "rules.yaml")
    return str(caught.value)


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({"thresholds": {"door_open_alowance": "PT5M"}}, "thresholds.door_open_alowance"),
        ({"thresholds": {"door_open_allowance": "-PT5M"}}, "thresholds.door_open_allowance"),
        ({"thresholds": {"inspection_interval": "PT12H"}}, "thresholds.inspection_interval"),
        ({"thresholds": {"heartbeat_misses": 0}}, "thresholds.heartbeat_misses"),
        ({"thresholds": {"aed_not_returned_after": "soon"}}, "thresholds.aed_not_returned_after"),
        (
            {"thresholds": {"expiry_notices": [{"within_days": 30, "severity": "info"}] * 2}},
            "two notices for 30 days",
        ),
        (
            {
                "thresholds": {
                    "expiry_notices": [
                        {"within_days": 90, "severity": "high"},
                        {"within_days": 7, "severity": "info"},
                    ]
                }
            },
            "less severe",
        ),
        ({"severities": {"door_opened": "catastrophic"}}, "severities.door_opened"),
        ({"severities": {"no_such_alarm": "high"}}, "severities.no_such_alarm"),
        ({"default_aed_model": {"min_battery_pct": 120}}, "default_aed_model.min_battery_pct"),
        (
            {"aed_models": {"X": {"storage_c": {"min_c": 50, "max_c": 0}}}},
            "aed_models.0.spec.storage_c",
        ),
        ({"aed_models": [{"name": "A", "spec": {}}, {"name": " a", "spec": {}}]}, "named twice"),
        ({"default_time_zone": "Mars/Olympus"}, "default_time_zone"),
        ({"overrides": [{"match": {}}]}, "overrides.0.match"),
        ({"overrides": [{"match": {"site_type": "castle"}}]}, "overrides.0.match.site_type"),
        (
            {"overrides": [{"match": {"region_code": "44"}, "thresholds": {"tamper": "PT1H"}}]},
            "overrides.0.thresholds",
        ),
        (
            {
                "overrides": [
                    {"match": {"region_code": "44"}},
                    {"match": {"region_code": "44"}, "thresholds": {"tamper_window": "-PT1H"}},
                ]
            },
            "tamper_window",
        ),
        (
            {"overrides": [{"match": {"region_code": "44"}, "aed": {"storage_c": {"min_c": 9}}}]},
            "storage_c.max_c",
        ),
        ({"overrides": [{"match": {"region_code": "44"}, "severities": "loud"}]}, "mapping"),
        ({"overides": []}, "overides"),
    ],
)
def test_bad_configuration_fails_at_load_naming_the_key(document: object, expected: str) -> None:
    message = problems(document)
    assert "rules.yaml" in message
    assert expected in message


def test_a_bad_override_names_the_setting_inside_it() -> None:
    message = problems(
        {"overrides": [{"match": {"region_code": "44"}, "thresholds": {"tamper": "PT1H"}}]}
    )
    assert "overrides.0.thresholds" in message
    assert "tamper: Extra inputs are not permitted" in message


def test_a_document_that_is_not_a_mapping_is_refused() -> None:
    assert "must be a mapping" in problems(["thresholds"])
    assert parse_rule_config(None, "empty.yaml") == RuleConfig()


def test_loads_yaml_and_toml_files(tmp_path: Path) -> None:
    yaml_file = tmp_path / "rules.yaml"
    yaml_file.write_text(
        """
thresholds:
  door_open_allowance: PT5M
  inspection_interval: P14D
aed_models:
  Philips HeartStart HS1:
    min_battery_pct: 25
    storage_c: {min_c: 10, max_c: 43}
overrides:
  - match: {region_code: "65"}
    thresholds: {offline_critical_after: PT12H}
    severities: {offline: high}
""",
        encoding="utf-8",
    )
    toml_file = tmp_path / "rules.toml"
    toml_file.write_text(
        """
[thresholds]
door_open_allowance = "PT5M"
inspection_interval = "P14D"

[aed_models."Philips HeartStart HS1"]
min_battery_pct = 25
storage_c = { min_c = 10, max_c = 43 }

[[overrides]]
match = { region_code = "65" }
thresholds = { offline_critical_after = "PT12H" }
severities = { offline = "high" }
""",
        encoding="utf-8",
    )
    from_yaml, from_toml = load_rule_config(yaml_file), load_rule_config(toml_file)
    assert from_yaml == from_toml
    assert from_yaml.thresholds.door_open_allowance == timedelta(minutes=5)
    assert from_yaml.spec_for("Philips HeartStart HS1").min_battery_pct == 25
    urumqi = rules_for(cabinet(region_code="650102"), from_yaml)
    assert urumqi.thresholds.offline_critical_after == timedelta(hours=12)
    assert urumqi.thresholds.inspection_interval == timedelta(days=14)
    assert urumqi.severities.offline is Severity.HIGH


def test_unreadable_files_fail_with_the_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_rule_config(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("thresholds: [unclosed", encoding="utf-8")
    with pytest.raises(ConfigError, match="cannot be parsed"):
        load_rule_config(broken)
    broken_toml = tmp_path / "broken.toml"
    broken_toml.write_text("thresholds = ", encoding="utf-8")
    with pytest.raises(ConfigError, match="cannot be parsed"):
        load_rule_config(broken_toml)
    bad_value = tmp_path / "bad.yaml"
    bad_value.write_text("thresholds: {heartbeat_misses: -1}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad\.yaml[\s\S]*thresholds\.heartbeat_misses"):
        load_rule_config(bad_value)


def test_the_values_are_frozen() -> None:
    config = RuleConfig()
    with pytest.raises(ValidationError):
        config.thresholds.heartbeat_misses = 5  # type: ignore[misc]
