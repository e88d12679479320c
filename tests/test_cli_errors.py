"""Every error of the ``aedfleet`` command: exit status 2, no traceback, and either one
line of ours or Typer's usage block for a bad option; never a secret."""

from __future__ import annotations

import socket
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from aedfleet.settings import ENV_PREFIX
from aedfleet_testing.brokers import free_port
from aedfleet_testing.commands import AEDFLEET, command_env

PASSWORD = "hunter2-of-the-operator"  # noqa: S105 - must never be printed
LINK_SECRET = "0123456789abcdef" * 4


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in command_env().items() if not k.startswith(ENV_PREFIX)}
    return subprocess.run(
        [AEDFLEET, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=environment,
        cwd=cwd,
        check=False,
    )


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert PASSWORD not in result.stderr + result.stdout
    return result.stderr.strip()


def last_line(result: subprocess.CompletedProcess[str]) -> str:
    """A service's error: its logs may come first, the error is the one last line."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert PASSWORD not in result.stderr + result.stdout
    return result.stderr.strip().splitlines()[-1]


def usage(result: subprocess.CompletedProcess[str], option: str) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "Usage: aedfleet" in result.stderr
    assert option in result.stderr
    return result.stderr


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield int(listener.getsockname()[1])


# -- options Typer checks: its usage block, exit 2 ---------------------------------------


@pytest.mark.parametrize(
    ("args", "option", "why"),
    [
        (["agent", "--config", "x.toml", "--log-level", "LOUD"], "--log-level", "'LOUD' is not"),
        (["demo", "--cabinets", "0"], "--cabinets", "greater than or equal to 1"),
        (["demo", "--clock-scale", "0"], "--clock-scale", "0.0 is not more than 0"),
        (["sim", "--cabinets", "-1", "--broker", "mqtt://127.0.0.1:1"], "--cabinets", "1"),
        (["sim", "--cabinets", "20001", "--broker", "mqtt://127.0.0.1:1"], "--cabinets", "20000"),
        (
            ["sim", "--cabinets", "1", "--clock-scale", "-5", "--broker", "mqtt://127.0.0.1:1"],
            "--clock-scale",
            "-5.0 is not more than 0",
        ),
        (
            ["sim", "--cabinets", "1", "--duration", "-1", "--broker", "mqtt://127.0.0.1:1"],
            "--duration",
            "greater than or equal to 0",
        ),
        (["ingest"], "--config", "Missing option"),
        (["dispatch"], "--config", "the dispatch service needs its TOML file"),
        (["alerting", "--config", "x.toml", "--log-level", "loud"], "--log-level", "'loud'"),
    ],
)
def test_a_bad_option_gets_typers_usage_and_exit_2(
    args: list[str], option: str, why: str, tmp_path: Path
) -> None:
    stderr = usage(run(*args, cwd=tmp_path), option)

    assert why in " ".join(stderr.replace("│", " ").split())


# -- our own checks: one line, exit 2 --------------------------------------------------


def test_sim_values_its_settings_refuse_are_one_line(tmp_path: Path) -> None:
    broker = "mqtt://127.0.0.1:1"
    heartbeat = one_line(run("sim", "--cabinets", "1", "--heartbeat", "5", "--broker", broker))
    protocol = one_line(run("sim", "--cabinets", "1", "--protocol", "4", "--broker", broker))
    url = one_line(run("sim", "--cabinets", "1", "--broker", f"foo://op:{PASSWORD}@host"))

    assert heartbeat == "heartbeat_interval_s: Input should be greater than or equal to 10 (got 5)"
    assert protocol == "--broker or --protocol: protocol: Input should be '5' or '3.1.1' (got '4')"
    assert url == "broker URL 'foo://op:***@host' is not mqtt://host[:port] or mqtts://…"


@pytest.mark.parametrize(
    "args",
    [
        ["silences", "add", "--reason", "r", "--by", "me", "--type", "bogus"],
        ["silences", "add", "--reason", "", "--by", "me"],
        ["inspections", "record", "--cabinet", "", "--by", "me"],
        ["inspections", "record", "--cabinet", "C-1", "--by", "me", "--pads-expiry", "soon"],
        ["alarms", "list", "--state", "bogus"],
        ["dispatch", "list", "--status", "bogus"],
    ],
)
def test_operator_command_mistakes_are_one_line(args: list[str], tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'store.sqlite3'}"

    message = one_line(run(*args, "--store", store))

    assert "validation error" not in message
    assert "errors.pydantic.dev" not in message


def test_an_unwritable_schema_folder_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")

    message = one_line(run("contract", "export-schemas", "--out", str(blocker / "schemas")))

    assert message.startswith(f"cannot write the schemas to {blocker / 'schemas'}")


def test_an_unusable_sim_work_folder_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    args = ["--cabinets", "1", "--broker", "mqtt://127.0.0.1:1", "--duration", "1"]

    message = one_line(run("sim", *args, "--work-dir", str(blocker / "sim")))

    assert message == f"cannot use the work folder {blocker / 'sim'}: Not a directory"


def test_registry_export_to_a_missing_folder_is_one_line(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    out = tmp_path / "absent" / "fleet.csv"

    message = one_line(run("registry", "export", str(out), "--store", store))

    assert message.startswith("nothing exported: ")


@pytest.mark.parametrize(
    "command",
    [
        ["alarms", "list"],
        ["silences", "list"],
        ["registry", "export", "fleet.csv"],
        ["dispatch", "list"],
    ],
)
def test_a_store_in_a_folder_that_does_not_exist_is_refused_not_created(
    command: list[str], tmp_path: Path
) -> None:
    folder = tmp_path / "no" / "such" / "folder"
    message = one_line(run(*command, "--store", f"sqlite:///{folder / 'x.sqlite3'}", cwd=tmp_path))

    assert f"the state store's folder {folder} does not exist" in message
    assert not (tmp_path / "no").exists()


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql+psycopg://aedfleet:{PASSWORD}@127.0.0.1:notaport/aedfleet",
        f"mysql://aedfleet:{PASSWORD}@127.0.0.1/aedfleet",
        f"postgresql+psycopg://aedfleet:{PASSWORD}@127.0.0.1:{free_port()}/aedfleet",
    ],
)
def test_a_bad_store_url_is_one_line_without_its_password(url: str) -> None:
    message = one_line(run("alarms", "list", "--store", url))

    assert "aedfleet:***@127.0.0.1" in message


# -- services: start-up failures are one line --------------------------------------------


def _tables(database: Path) -> list[str]:
    with sqlite3.connect(database) as connection:
        return [row[0] for row in connection.execute("SELECT name FROM sqlite_master")]


def test_the_alerting_http_port_in_use_is_one_line(taken_port: int, tmp_path: Path) -> None:
    config = tmp_path / "alerting.toml"
    config.write_text(
        f'[ingest]\nstore_url = "sqlite:///{tmp_path / "store.sqlite3"}"\n'
        f'[ingest.mqtt]\nport = 1\n[links]\nsecrets = ["{LINK_SECRET}"]\n'
        f"[http]\nport = {taken_port}\n",
        encoding="utf-8",
    )

    message = last_line(run("alerting", "--config", str(config)))

    assert message.startswith(
        f"the alerting HTTP endpoint cannot listen on 127.0.0.1:{taken_port}: "
    )
    assert "in use" in message


def test_the_ingest_metrics_port_in_use_is_one_line(taken_port: int, tmp_path: Path) -> None:
    config = tmp_path / "ingest.toml"
    config.write_text(
        f'store_url = "sqlite:///{tmp_path / "store.sqlite3"}"\n'
        f"metrics_port = {taken_port}\n[mqtt]\nport = 1\n",
        encoding="utf-8",
    )

    message = last_line(run("ingest", "--config", str(config)))

    assert message.startswith(
        f"the ingest's metrics endpoint cannot listen on 127.0.0.1:{taken_port}: "
    )


def test_the_dispatch_api_port_in_use_is_one_line(taken_port: int, tmp_path: Path) -> None:
    config = tmp_path / "dispatch.toml"
    config.write_text(
        f'store_url = "sqlite:///{tmp_path / "store.sqlite3"}"\n'
        f"api_port = {taken_port}\n[mqtt]\nport = 1\n",
        encoding="utf-8",
    )

    message = last_line(run("dispatch", "--config", str(config)))

    assert message.startswith(f"the dispatch API cannot listen on 127.0.0.1:{taken_port}: ")


def test_a_service_store_in_a_missing_folder_is_one_line_and_creates_nothing(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "absent"
    config = tmp_path / "ingest.toml"
    config.write_text(
        f'store_url = "sqlite:///{folder / "store.sqlite3"}"\n[mqtt]\nport = 1\n',
        encoding="utf-8",
    )

    message = last_line(run("ingest", "--config", str(config)))

    assert f"the state store's folder {folder} does not exist" in message
    assert not folder.exists()


def test_bad_json_in_an_environment_variable_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "ingest.toml"
    config.write_text(f'store_url = "sqlite:///{tmp_path / "s.sqlite3"}"\n', encoding="utf-8")
    environment = {k: v for k, v in command_env().items() if not k.startswith(ENV_PREFIX)}

    result = subprocess.run(
        [AEDFLEET, "ingest", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**environment, "AEDFLEET_MQTT": "{not json"},
        check=False,
    )

    message = one_line(result)
    assert "AEDFLEET_MQTT is not valid JSON" in message
    assert not (tmp_path / "s.sqlite3").exists()
