"""The configuration layer: a TOML file, overlaid by the environment, failing by key."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from pydantic import BaseModel

from aedfleet.backoff import BackoffSettings
from aedfleet.mqtt import MqttSettings, TlsSettings
from aedfleet.settings import ENV_PREFIX, ConfigError, load_settings
from aedfleet_app.alerting_process import AlertingProcessSettings
from aedfleet_testing.commands import AEDFLEET
from edge_agent.config import (
    AgentSettings,
    CabinetProfile,
    HardwareSettings,
    LinkSettings,
)
from edge_agent.outbox import OutboxSettings
from edge_agent.service import prepare_agent
from ingest.config import IngestSettings

CABINET = """
[cabinet]
cabinet_id = "SZ-0001"
aed_model = "HeartStart FRx"
aed_serial = "B12K-00042"
"""
COUNTING_DRIVER = "tests.scripted_hardware:counting_hardware"


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No AEDFLEET_* variable from the developer's shell leaks into a test."""
    for name in list(os.environ):
        if name.startswith(ENV_PREFIX):
            monkeypatch.delenv(name)


def _write(tmp_path: Path, text: str, name: str = "cabinet.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _config_error(path: Path | None) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(AgentSettings, path)
    return str(caught.value)


# -- file and defaults ---------------------------------------------------------------


def test_defaults_fill_in_what_the_file_leaves_out(tmp_path: Path) -> None:
    path = _write(tmp_path, CABINET + '\n[mqtt]\nhost = "broker.example"\n')

    settings = load_settings(AgentSettings, path)

    assert settings.cabinet.cabinet_id == "SZ-0001"
    assert settings.cabinet.heartbeat_interval_s == 60
    assert settings.cabinet.time_zone == "Asia/Shanghai"
    assert settings.mqtt == MqttSettings(host="broker.example")
    assert settings.link == LinkSettings()
    assert settings.outbox == OutboxSettings()
    assert settings.hardware == HardwareSettings()


def test_nested_sections_from_the_file_are_validated(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        CABINET
        + "heartbeat_interval_s = 300\n"
        + "[link.reconnect]\ninitial_s = 2\nmax_s = 30\n"
        + '[outbox]\npath = "/var/lib/aedfleet/q.sqlite3"\ncapacity = 500\n',
    )

    settings = load_settings(AgentSettings, path)

    assert settings.cabinet.heartbeat_interval_s == 300
    assert settings.link.reconnect == BackoffSettings(initial_s=2, max_s=30)
    assert settings.outbox.path == Path("/var/lib/aedfleet/q.sqlite3")
    assert settings.outbox.capacity == 500


# -- the environment on top ------------------------------------------------------------


def test_environment_overrides_the_file_key_by_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write(tmp_path, CABINET + '\n[mqtt]\nhost = "broker.example"\nport = 1883\n')
    monkeypatch.setenv("AEDFLEET_MQTT__PORT", "1999")

    settings = load_settings(AgentSettings, path)

    assert settings.mqtt.port == 1999
    assert settings.mqtt.host == "broker.example"  # the rest of the section stays


def test_a_table_keeps_the_documented_defaults_of_the_keys_it_leaves_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The ingest's write_retry defaults to initial 0.5 s, max 30 s; BackoffSettings' own
    # defaults differ, and a table that gives one key must not bring those back.
    path = _write(tmp_path, "[write_retry]\nmax_s = 60\n", "ingest.toml")
    from_file = load_settings(IngestSettings, path).write_retry
    assert (from_file.initial_s, from_file.max_s) == (0.5, 60)
    assert BackoffSettings().initial_s != 0.5  # the trap this guards against

    monkeypatch.setenv("AEDFLEET_WRITE_RETRY__MAX_S", "90")
    from_environment = load_settings(IngestSettings, None).write_retry
    assert (from_environment.initial_s, from_environment.max_s) == (0.5, 90)

    nested = _write(
        tmp_path,
        '[links]\nsecrets = ["' + "k" * 32 + '"]\n[ingest.write_retry]\nmax_s = 45\n',
        "alerting.toml",
    )
    monkeypatch.delenv("AEDFLEET_WRITE_RETRY__MAX_S")
    inside = load_settings(AlertingProcessSettings, nested).ingest.write_retry
    assert (inside.initial_s, inside.max_s) == (0.5, 45)


def test_an_escalation_policy_in_a_file_is_taken_as_written(tmp_path: Path) -> None:
    # Left out, repeat_every means "no repeats": TOML cannot write "unset" over a default.
    path = _write(
        tmp_path,
        '[links]\nsecrets = ["' + "k" * 32 + '"]\n'
        '[escalation.critical]\nsteps = [{ roles = ["captain"], after = "PT0S" }]\n',
        "alerting.toml",
    )
    policies = load_settings(AlertingProcessSettings, path).escalation
    assert policies.critical.repeat_every is None
    assert policies.high.repeat_every is not None  # untouched policies keep their defaults


def test_environment_alone_can_configure_a_cabinet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AEDFLEET_CABINET__CABINET_ID", "SZ-0002")
    monkeypatch.setenv("AEDFLEET_CABINET__AED_MODEL", "AED Plus")
    monkeypatch.setenv("AEDFLEET_CABINET__AED_SERIAL", "X1")
    monkeypatch.setenv("AEDFLEET_LINK__RECONNECT__MAX_S", "30")

    settings = load_settings(AgentSettings, None)

    assert settings.cabinet.cabinet_id == "SZ-0002"
    assert settings.link.reconnect.max_s == 30


def test_the_named_environment_variable_fixes_the_problem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write(tmp_path, CABINET + "\n[mqtt]\nport = 0\n")
    assert "[env AEDFLEET_MQTT__PORT]" in _config_error(path)

    monkeypatch.setenv("AEDFLEET_MQTT__PORT", "8883")

    assert load_settings(AgentSettings, path).mqtt.port == 8883


# -- errors name the key -------------------------------------------------------------------


def test_a_bad_value_in_the_file_names_key_env_var_and_source(tmp_path: Path) -> None:
    path = _write(tmp_path, CABINET + "\n[mqtt]\nport = 70000\n")

    message = _config_error(path)

    assert "mqtt.port" in message
    assert "AEDFLEET_MQTT__PORT" in message
    assert "70000" in message
    assert str(path) in message


def test_a_bad_value_from_the_environment_names_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write(tmp_path, CABINET)
    monkeypatch.setenv("AEDFLEET_MQTT__PORT", "not-a-port")

    message = _config_error(path)

    assert "mqtt.port" in message
    assert "AEDFLEET_MQTT__PORT" in message
    assert "'not-a-port'" in message


@pytest.mark.parametrize(
    ("section", "line", "key"),
    [
        ("[mqtt]", 'hots = "x"', "mqtt.hots"),
        ("[mqtt.tls]", "verify_hostnme = false", "mqtt.tls.verify_hostnme"),
        ("[outbox]", "capacty = 50", "outbox.capacty"),
        ("[link]", "max_inflite = 5", "link.max_inflite"),
        ("[link.reconnect]", "inital_s = 5", "link.reconnect.inital_s"),
        ("[hardware]", 'drvier = "x:y"', "hardware.drvier"),
        ("[mqqt]", 'host = "x"', "mqqt"),
    ],
)
def test_a_typo_key_is_rejected_by_name(tmp_path: Path, section: str, line: str, key: str) -> None:
    path = _write(tmp_path, f"{CABINET}\n{section}\n{line}\n")

    message = _config_error(path)

    assert f": {key}: Extra inputs are not permitted" in message


def test_a_typo_key_in_the_cabinet_section_is_rejected_by_name(tmp_path: Path) -> None:
    path = _write(tmp_path, CABINET + "heartbeat_intervall_s = 60\n")

    assert "cabinet.heartbeat_intervall_s: Extra inputs" in _config_error(path)


@pytest.mark.parametrize(
    "model",
    [
        AgentSettings,
        MqttSettings,
        TlsSettings,
        OutboxSettings,
        CabinetProfile,
        LinkSettings,
        HardwareSettings,
        BackoffSettings,
    ],
)
def test_every_settings_model_forbids_unknown_keys(model: type[BaseModel]) -> None:
    assert model.model_config.get("extra") == "forbid"


def test_a_missing_cabinet_section_is_named(tmp_path: Path) -> None:
    path = _write(tmp_path, '[mqtt]\nhost = "broker.example"\n')

    message = _config_error(path)

    assert "cabinet: Field required" in message
    assert "AEDFLEET_CABINET" in message


def test_max_below_initial_backoff_names_the_section(tmp_path: Path) -> None:
    path = _write(tmp_path, CABINET + "[link.reconnect]\ninitial_s = 10\nmax_s = 5\n")

    message = _config_error(path)

    assert "link.reconnect:" in message
    assert "max_s must not be smaller than initial_s" in message


def test_an_invalid_cabinet_id_is_named(tmp_path: Path) -> None:
    path = _write(tmp_path, CABINET.replace('"SZ-0001"', '"SZ/0001"'))

    message = _config_error(path)

    assert "cabinet.cabinet_id" in message
    assert "reserved in MQTT topics" in message


# -- the file itself -------------------------------------------------------------------------


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.toml"

    assert _config_error(path) == f"config file {path} does not exist"


def test_invalid_toml_is_named_with_the_path(tmp_path: Path) -> None:
    path = _write(tmp_path, CABINET + "\n[mqtt\nport = 1\n")

    message = _config_error(path)

    assert message.startswith(f"config file {path} is not valid TOML")


def test_a_file_that_is_not_utf8_is_invalid_toml(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(CABINET.replace("HeartStart", "Herzstart \xe4").encode("latin-1"))

    assert _config_error(path).startswith(f"config file {path} is not valid TOML")


def test_an_unreadable_path_is_a_config_error(tmp_path: Path) -> None:
    assert str(tmp_path) in _config_error(tmp_path)


# -- the hardware driver, checked before start-up ----------------------------------------------


def test_prepare_agent_accepts_a_loadable_driver(tmp_path: Path) -> None:
    path = _write(tmp_path, CABINET + f'[hardware]\ndriver = "{COUNTING_DRIVER}"\n')

    service = prepare_agent(path)

    service.close()  # never started: nothing was opened


@pytest.mark.parametrize(
    ("driver", "expected"),
    [
        ("no_such_package.hardware:factory", "hardware.driver 'no_such_package.hardware:factory'"),
        ("tests.scripted_hardware:no_such_factory", "no_such_factory"),
        ("not a driver", "hardware.driver: String should match pattern"),
        ("tests.scripted_hardware", "hardware.driver: String should match pattern"),
    ],
)
def test_a_bad_hardware_driver_is_named(tmp_path: Path, driver: str, expected: str) -> None:
    path = _write(tmp_path, CABINET + f'[hardware]\ndriver = "{driver}"\n')

    with pytest.raises(ConfigError) as caught:
        _ = prepare_agent(path)

    assert expected in str(caught.value)
    assert "hardware.driver" in str(caught.value)


def test_hardware_options_the_driver_rejects_are_named(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        CABINET
        + f'[hardware]\ndriver = "{COUNTING_DRIVER}"\n'
        + '[hardware.options]\nevent_interval_s = "soon"\n',
    )

    with pytest.raises(ConfigError, match=r"^hardware\.options: .*'soon'"):
        _ = prepare_agent(path)


# -- the command line -----------------------------------------------------------------------------


def _run_agent(config: Path) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    return subprocess.run(
        [AEDFLEET, "agent", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env=environment,
        check=False,
    )


def test_cli_exits_2_naming_the_bad_key(tmp_path: Path) -> None:
    path = _write(tmp_path, CABINET + "\n[mqtt]\nport = 0\n", name="BAD.toml")

    result = _run_agent(path)

    assert result.returncode == 2, result.stderr
    assert "mqtt.port" in result.stderr
    assert "AEDFLEET_MQTT__PORT" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_exits_2_naming_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"

    result = _run_agent(path)

    assert result.returncode == 2, result.stderr
    assert f"config file {path} does not exist" in result.stderr
