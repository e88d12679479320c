"""The alerting service's configuration: the example loads, a bad one fails naming the key."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from aedfleet.settings import ENV_PREFIX, ConfigError, load_settings
from alerting.config import AlertingSettings
from alerting.model import Severity
from ingest.registry.models import Role
from tests.commands import AEDFLEET, REPO

EXAMPLE = REPO / "config" / "alerting.example.toml"
SECRET = "0123456789abcdef" * 4


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(ENV_PREFIX):
            monkeypatch.delenv(name)


def _error(text: str, tmp_path: Path) -> str:
    path = tmp_path / "alerting.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as raised:
        load_settings(AlertingSettings, path)
    return str(raised.value)


def test_the_example_configuration_loads() -> None:
    settings = load_settings(AlertingSettings, EXAMPLE)
    policy = settings.escalation.for_severity(Severity.CRITICAL)
    assert [step.roles for step in policy.steps] == [
        (Role.CAPTAIN,),
        (Role.BACKUP,),
        (Role.COORDINATOR,),
    ]
    assert settings.quiet.quiet_hours_for("coordinator-001") is None
    assert settings.notify.smtp is not None


def test_the_link_secret_is_required(tmp_path: Path) -> None:
    assert "links" in _error("[http]\nport = 8470\n", tmp_path)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (f'[links]\nsecrets = ["{SECRET}"]\n[http]\nport = 70000\n', "http.port"),
        (
            f'[links]\nsecrets = ["{SECRET}"]\n[escalation.critical]\n'
            'steps = [{ after = 0, roles = ["janitor"] }]\n',
            "escalation.critical.steps.0.roles.0",
        ),
        (
            f'[links]\nsecrets = ["{SECRET}"]\n[rules.thresholds]\nheartbeat_misses = 0\n',
            "rules.thresholds.heartbeat_misses",
        ),
        (f'[links]\nsecrets = ["{SECRET}"]\n[notify]\nchannel_order = ["fax"]\n', "notify"),
        (f'[links]\nsecrets = ["{SECRET}"]\n[quiet]\ndefault = "sometimes"\n', "quiet.default"),
    ],
)
def test_a_bad_value_names_its_key(text: str, key: str, tmp_path: Path) -> None:
    assert key in _error(text, tmp_path)


def test_the_service_exits_2_naming_the_bad_key(tmp_path: Path) -> None:
    path = tmp_path / "alerting.toml"
    path.write_text(f'[links]\nsecrets = ["{SECRET}"]\n[scheduler]\ntick_s = -1\n')
    result = subprocess.run(
        [AEDFLEET, "alerting", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "scheduler.tick_s" in result.stderr
