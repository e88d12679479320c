"""``aedfleet broker`` and ``aedfleet sim --secret-file`` as an operator runs them, against
a registry imported into SQLite and the real Mosquitto running the written files."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from aedfleet.broker_auth import ServiceAccount, cabinet_password
from aedfleet.contract import Channel, subscription, topic
from aedfleet.mqtt import MqttSettings
from aedfleet_testing.brokers import MosquittoBroker, free_port, make_test_pki
from aedfleet_testing.commands import AEDFLEET, command_env
from firmware_sim.scenario import Scenario
from tests.broker_security_support import SECRET, WAIT_S, Probe, probe, secured_broker

REGISTRY_CSV = """cabinet_id,name,latitude,longitude,site_type,region_code,aed_model
SZ-0001,深圳北站 A 口,22.609,114.029,transport_hub,440309,Mindray BeneHeart C1A
SZ-0002,深圳北站 B 口,22.610,114.030,transport_hub,440309,Mindray BeneHeart C1A
"""


def aedfleet(*args: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [AEDFLEET, *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env=command_env(),
        check=False,
    )


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "broker.secret"
    path.write_bytes(SECRET + b"\n")
    return path


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    csv = tmp_path / "fleet.csv"
    csv.write_text(REGISTRY_CSV, encoding="utf-8")
    url = f"sqlite:///{tmp_path / 'state.sqlite3'}"
    imported = aedfleet("registry", "import", str(csv), "--store", url)
    assert imported.returncode == 0, imported.stderr
    return url


@pytest.fixture
def generated(tmp_path: Path, store_url: str, secret_file: Path) -> Iterator[MosquittoBroker]:
    """Mosquitto running exactly the three files ``aedfleet broker config`` wrote."""
    tls = make_test_pki(tmp_path / "pki")
    out, local_port = tmp_path / "mosquitto", free_port()
    written = aedfleet(
        "broker", "config", "--store", store_url, "--secret-file", str(secret_file),
        "--out", str(out), "--ca-file", str(tls.ca_cert), "--cert-file", str(tls.server_cert),
        "--key-file", str(tls.server_key), "--tls-port", str(free_port()),
        "--tls-bind", "127.0.0.1", "--local-port", str(local_port),
    )  # fmt: skip
    assert written.returncode == 0, written.stderr
    assert "2 cabinet logins" in written.stdout
    assert (out / "passwd").stat().st_mode & 0o077 == 0
    broker = MosquittoBroker(
        tmp_path / "broker", listeners=(out / "mosquitto.conf").read_text(), port=local_port
    )
    broker.start()
    yield broker
    broker.stop()


def login(broker: MosquittoBroker, name: str, password: str) -> MqttSettings:
    return MqttSettings.model_validate(
        {"host": "127.0.0.1", "port": broker.port, "username": name, "password": password}
    )


@pytest.mark.broker
def test_written_files_let_a_registry_cabinet_in_with_the_printed_password(
    generated: MosquittoBroker, secret_file: Path
) -> None:
    printed = aedfleet("broker", "password", "SZ-0001", "--secret-file", str(secret_file))
    assert printed.returncode == 0, printed.stderr
    password = printed.stdout.strip()
    assert password == cabinet_password(SECRET, "SZ-0001")
    operator_password = aedfleet(
        "broker", "password", ServiceAccount.OPERATOR.value, "--secret-file", str(secret_file)
    ).stdout.strip()
    with (
        probe(login(generated, ServiceAccount.OPERATOR.value, operator_password), "op") as op,
        probe(login(generated, "SZ-0001", password), "aed-SZ-0001") as cabinet,
    ):
        op.subscribe(subscription(Channel.CMD_RESULT))
        assert int(cabinet.publish(topic("SZ-0002", Channel.CMD_RESULT), b"x").value) == 0x87
        assert not cabinet.publish(topic("SZ-0001", Channel.CMD_RESULT), b"ok").is_failure
        assert op.next_message().topic == topic("SZ-0001", Channel.CMD_RESULT)
    stranger = Probe(login(generated, "SZ-0003", cabinet_password(SECRET, "SZ-0003")), "x")
    try:
        assert stranger.connect().is_failure
    finally:
        stranger.close()


@pytest.mark.parametrize(
    ("content", "complaint"),
    [(None, "No such file"), (b"", "has 0 bytes"), (b"x" * 31 + b"\n", "has 31 bytes")],
)
@pytest.mark.parametrize("command", ["config", "password"])
def test_an_unusable_secret_file_is_refused_in_one_line(
    tmp_path: Path, command: str, content: bytes | None, complaint: str
) -> None:
    path = tmp_path / "broker.secret"
    if content is not None:
        path.write_bytes(content)
    args = ["--out", str(tmp_path / "out")] if command == "config" else ["SZ-0001"]
    result = aedfleet("broker", command, *args, "--secret-file", str(path))
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1
    assert f"secret file {path}" in result.stderr
    assert complaint in result.stderr
    assert not (tmp_path / "out").exists()


def test_a_registry_cabinet_that_cannot_be_a_login_stops_the_generation(
    tmp_path: Path, secret_file: Path
) -> None:
    csv = tmp_path / "fleet.csv"
    csv.write_text(REGISTRY_CSV.replace("SZ-0002", "SZ:0002"), encoding="utf-8")
    url = f"sqlite:///{tmp_path / 'state.sqlite3'}"
    assert aedfleet("registry", "import", str(csv), "--store", url).returncode == 0
    out = tmp_path / "out"
    result = aedfleet(
        "broker", "config", "--store", url, "--secret-file", str(secret_file), "--out", str(out)
    )
    assert result.returncode == 2
    assert "'SZ:0002'" in result.stderr
    assert not out.exists()


@pytest.mark.broker
@pytest.mark.parametrize("tls", [False, True], ids=["loopback", "tls"])
def test_the_simulator_logs_each_cabinet_in_as_itself(
    tmp_path: Path, secret_file: Path, tls: bool
) -> None:
    scenario = Scenario()
    ids = [scenario.cabinet_id(index) for index in range(3)]
    with (
        secured_broker(tmp_path / "secured", ids) as secured,
        probe(secured.login(ServiceAccount.INGEST.value), "ingest") as ingest,
    ):
        ingest.subscribe(subscription(Channel.BIRTH))
        where = (
            [
                "--broker",
                f"mqtts://127.0.0.1:{secured.tls_port}",
                "--ca-file",
                str(secured.tls.ca_cert),
            ]
            if tls
            else ["--broker", f"mqtt://127.0.0.1:{secured.broker.port}"]
        )
        run = aedfleet(
            "sim", "--cabinets", "3", *where,
            "--secret-file", str(secret_file), "--duration", "3", "--ramp", "0",
            "--work-dir", str(tmp_path / "sim"),
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
        births = {ingest.next_message().topic for _ in ids}
    assert births == {topic(cabinet_id, Channel.BIRTH) for cabinet_id in ids}
    assert "3/3 connected" in run.stdout


def test_a_ca_file_without_tls_is_one_line(tmp_path: Path) -> None:
    run = aedfleet(
        "sim", "--cabinets", "1", "--broker", "mqtt://127.0.0.1:1", "--ca-file", "ca.pem",
        "--work-dir", str(tmp_path / "sim"),
    )  # fmt: skip
    assert run.returncode == 2
    assert run.stderr.strip() == "--ca-file is for a TLS broker: give an mqtts:// URL"


@pytest.mark.broker
def test_the_simulator_without_the_secret_is_refused(tmp_path: Path) -> None:
    with secured_broker(tmp_path / "secured", [Scenario().cabinet_id(0)]) as secured:
        run = aedfleet(
            "sim", "--cabinets", "1", "--broker", f"mqtt://127.0.0.1:{secured.broker.port}",
            "--duration", "2", "--ramp", "0", "--work-dir", str(tmp_path / "sim"),
        )  # fmt: skip
    assert "0/1 connected" in run.stdout
    assert "refused the connection: Not authorized" in run.stderr


@pytest.mark.broker
def test_provisioning_rekeying_and_revoking_take_effect_on_a_reload(
    tmp_path: Path, generated: MosquittoBroker, store_url: str, secret_file: Path
) -> None:
    out = tmp_path / "mosquitto"
    added = tmp_path / "added.csv"
    added.write_text(REGISTRY_CSV.replace("SZ-0001", "SZ-0003").replace("SZ-0002", "SZ-0004"))
    assert aedfleet("registry", "import", str(added), "--store", store_url).returncode == 0
    generations = tmp_path / "generations"
    generations.write_text("# stolen on 2026-12-01\nSZ-0001 2\nSZ-0002   0\n")
    with probe(login(generated, "SZ-0002", cabinet_password(SECRET, "SZ-0002")), "b") as revoked:
        written = aedfleet(
            "broker", "config", "--store", store_url, "--secret-file", str(secret_file),
            "--out", str(out), "--generations-file", str(generations),
            "--local-port", str(generated.port),
        )  # fmt: skip
        assert written.returncode == 0, written.stderr
        assert "3 cabinet logins (1 revoked)" in written.stdout
        generated.reload()
        assert revoked.disconnected.wait(WAIT_S), "a revoked cabinet stayed connected"
    printed = aedfleet(
        "broker", "password", "SZ-0001", "--secret-file", str(secret_file),
        "--generations-file", str(generations),
    )  # fmt: skip
    new_password = printed.stdout.strip()
    assert new_password == cabinet_password(SECRET, "SZ-0001", generation=2)
    for name, password, admitted in (
        ("SZ-0003", cabinet_password(SECRET, "SZ-0003"), True),
        ("SZ-0001", new_password, True),
        ("SZ-0001", cabinet_password(SECRET, "SZ-0001"), False),
        ("SZ-0002", cabinet_password(SECRET, "SZ-0002"), False),
    ):
        client = Probe(login(generated, name, password), f"after-{name}")
        try:
            assert client.connect().is_failure is not admitted, (name, admitted)
        finally:
            client.close()
