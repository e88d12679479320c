"""The alerting service's configuration: the example loads, a bad one fails naming the key."""

from __future__ import annotations

import os
import re
import secrets
import sqlite3
import subprocess
from pathlib import Path

import pytest

from aedfleet.registry import Role
from aedfleet.settings import ENV_PREFIX, ConfigError, load_settings
from aedfleet_app.alerting_process import AlertingProcessSettings
from aedfleet_testing.commands import AEDFLEET, REPO, command_env
from alerting.model import Severity

EXAMPLE = REPO / "config" / "alerting.example.toml"
SECRET = "0123456789abcdef" * 4
PLACEHOLDER_VALUE = re.compile(r'"[^"\n]*change-me[^"\n]*"')
WRONGLY_TYPED = "LINKSECRET-0123456789abcdef0123456789abcdef"


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(ENV_PREFIX):
            monkeypatch.delenv(name)


def _error(text: str, tmp_path: Path) -> str:
    path = tmp_path / "alerting.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as raised:
        load_settings(AlertingProcessSettings, path)
    return str(raised.value)


def _example_with_real_secrets(tmp_path: Path) -> Path:
    text = PLACEHOLDER_VALUE.sub(lambda _: f'"{secrets.token_hex(32)}"', EXAMPLE.read_text())
    path = tmp_path / "alerting.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_example_configuration_loads_once_its_secrets_are_set(tmp_path: Path) -> None:
    settings = load_settings(AlertingProcessSettings, _example_with_real_secrets(tmp_path))
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


# -- secrets -------------------------------------------------------------------------------


def _run(config: Path, **environment: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in command_env().items() if not k.startswith(ENV_PREFIX)}
    return subprocess.run(
        [AEDFLEET, "alerting", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean, **environment},
        check=False,
    )


def _tables(database: Path) -> list[str]:
    if not database.exists():
        return []
    with sqlite3.connect(database) as connection:
        return [row[0] for row in connection.execute("SELECT name FROM sqlite_master")]


def _refused_in_one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    return result.stderr


def _on_a_scratch_store(text: str, tmp_path: Path) -> tuple[Path, Path]:
    """The configuration ``text`` with its store in ``tmp_path`` and nothing reachable."""
    database = tmp_path / "store.sqlite3"
    text = re.sub(r"(?m)^store_url = .*$", f'store_url = "sqlite:///{database}"', text)
    # Were it not refused, it must not reach the machine's broker or take a fixed port.
    text = text.replace("port = 1883", "port = 1").replace("port = 8470", "port = 0")
    path = tmp_path / "alerting.toml"
    path.write_text(text, encoding="utf-8")
    return path, database


def test_the_example_as_shipped_is_refused_before_the_store_is_touched(tmp_path: Path) -> None:
    config, database = _on_a_scratch_store(EXAMPLE.read_text(), tmp_path)

    stderr = _refused_in_one_line(_run(config))

    for key, env in [
        ("links.secrets.0", "AEDFLEET_LINKS__SECRETS"),
        ("http.api_tokens.0.token", "AEDFLEET_HTTP__API_TOKENS"),
        ("notify.smtp.password", "AEDFLEET_NOTIFY__SMTP__PASSWORD"),
        ("notify.chat_robots.0.secret", "AEDFLEET_NOTIFY__CHAT_ROBOTS"),
    ]:
        assert f"{key} [env {env}]" in stderr
    assert "placeholder" in stderr
    assert _tables(database) == []


def test_a_short_link_secret_is_refused_before_the_store_is_touched(tmp_path: Path) -> None:
    short = "s3cret-but-only-24-bytes"
    config, database = _on_a_scratch_store(
        f'[ingest]\nstore_url = ""\n[links]\nsecrets = ["{short}"]\n', tmp_path
    )

    stderr = _refused_in_one_line(_run(config))

    assert "links.secrets.0: a signing secret needs at least 32 bytes, this one has 24" in stderr
    assert "links.secrets:" not in stderr  # not also "too short" for the item that failed
    assert short not in stderr
    assert _tables(database) == []


@pytest.mark.parametrize("value", ["change-me", "Change-Me-please-0123456789abcdef0123"])
def test_a_placeholder_in_the_environment_is_refused_too(value: str, tmp_path: Path) -> None:
    config, database = _on_a_scratch_store(
        f'[ingest]\nstore_url = ""\n[links]\nsecrets = ["{SECRET}"]\n'
        '[notify.smtp]\nfrom_address = "alerts@example.cn"\nusername = "aed-alerts"\n',
        tmp_path,
    )

    stderr = _refused_in_one_line(_run(config, AEDFLEET_NOTIFY__SMTP__PASSWORD=value))

    assert "notify.smtp.password [env AEDFLEET_NOTIFY__SMTP__PASSWORD]" in stderr
    assert _tables(database) == []


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (f'[links]\nsecrets = "{WRONGLY_TYPED}"\n', "links.secrets"),
        (f'[links]\nsecrets = [["{WRONGLY_TYPED}"]]\n', "links.secrets.0"),
        (
            f'[links]\nsecrets = ["{SECRET}"]\n[http]\napi_tokens = "{WRONGLY_TYPED}"\n',
            "http.api_tokens",
        ),
        (
            f'[links]\nsecrets = ["{SECRET}"]\n[notify.smtp]\nfrom_address = "a@b.cn"\n'
            "password = 4242424242\n",
            "notify.smtp.password",
        ),
        (
            f'[links]\nsecrets = ["{SECRET}"]\n[notify.sms]\nurl = "https://sms.example.cn/"\n'
            "headers = { Authorization = 4242424242 }\n",
            "notify.sms.headers.Authorization",
        ),
    ],
)
def test_a_wrongly_typed_secret_is_named_but_not_shown(text: str, key: str, tmp_path: Path) -> None:
    message = _error(text, tmp_path)

    assert f"{key}: " in message
    assert "not shown" in message
    assert WRONGLY_TYPED not in message
    assert "4242424242" not in message
    assert "\n" not in message


def test_a_url_in_a_bad_value_is_shown_without_its_credentials(tmp_path: Path) -> None:
    message = _error(
        f'[links]\nsecrets = ["{SECRET}"]\n[[notify.chat_robots]]\nkind = "dingtalk"\n'
        'url_prefix = "ftp://robot:hunter2hunter2@oapi.example.cn/send?access_token=tok3n"\n',
        tmp_path,
    )

    assert "notify.chat_robots.0.url_prefix" in message
    assert "ftp://robot:***@oapi.example.cn/send" in message
    assert "hunter2" not in message
    assert "tok3n" not in message


def test_bad_json_in_the_environment_names_the_variable_not_its_value(tmp_path: Path) -> None:
    config = tmp_path / "alerting.toml"
    config.write_text(f'[links]\nsecrets = ["{SECRET}"]\n', encoding="utf-8")

    stderr = _refused_in_one_line(_run(config, AEDFLEET_LINKS__SECRETS="{not json " + SECRET))

    assert "AEDFLEET_LINKS__SECRETS is not valid JSON" in stderr
    assert SECRET not in stderr
