"""Real Mosquitto brokers for tests, each on a free loopback port with its own config."""

from __future__ import annotations

import getpass
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from aedfleet.mqtt import MqttSettings
from aedfleet_testing.tiers import BROKER, require_tier

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


@dataclass(frozen=True)
class TlsFiles:
    ca_cert: Path
    server_cert: Path
    server_key: Path


def make_test_pki(folder: Path) -> TlsFiles:
    """A throw-away CA and a server certificate for 127.0.0.1 and localhost."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = folder / "ca.key", folder / "ca.crt"
    key, request, cert = folder / "server.key", folder / "server.csr", folder / "server.crt"
    extensions = folder / "san.cnf"
    extensions.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=aedfleet test CA",
        "-keyout",
        str(ca_key),
        "-out",
        str(ca_cert),
    )
    openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        str(key),
        "-out",
        str(request),
    )
    openssl(
        "x509",
        "-req",
        "-in",
        str(request),
        "-CA",
        str(ca_cert),
        "-CAkey",
        str(ca_key),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        str(extensions),
        "-out",
        str(cert),
    )
    return TlsFiles(ca_cert, cert, key)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class MosquittoBroker:
    """A Mosquitto process that can be stopped and started again on the same port."""

    def __init__(
        self,
        workdir: Path,
        persistence: bool = False,
        tls: TlsFiles | None = None,
        users: dict[str, str] | None = None,
        listeners: str | None = None,
        port: int | None = None,
    ) -> None:
        """``listeners`` replaces the listener and security lines (with ``port`` the one
        the tests connect to): a generated configuration, as ``aedfleet broker`` writes."""
        self.port = port or free_port()
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.config = workdir / "mosquitto.conf"
        self.log = workdir / "mosquitto.log"
        # Stay the user who runs the tests: the files live in that user's private tmp dir.
        lines = [f"user {getpass.getuser()}"]
        if listeners is not None:
            lines.append(listeners)
        else:
            lines.append(f"listener {self.port} 127.0.0.1")
        if tls is not None:
            lines += [
                f"cafile {tls.ca_cert}",
                f"certfile {tls.server_cert}",
                f"keyfile {tls.server_key}",
            ]
        if users:
            password_file = workdir / "passwords"
            password_file.write_text("")
            for user, password in users.items():
                subprocess.run(
                    ["mosquitto_passwd", "-b", str(password_file), user, password], check=True
                )
            password_file.chmod(0o600)
            lines += [f"password_file {password_file}", "allow_anonymous false"]
        elif listeners is None:
            lines.append("allow_anonymous true")
        lines += [
            f"persistence {'true' if persistence else 'false'}",
            f"persistence_location {workdir}/",
            "max_queued_messages 100000",
            "set_tcp_nodelay true",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
        ]
        self.config.write_text("\n".join(lines) + "\n")
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout_s: float = 10.0) -> None:
        require_tier(BROKER)
        with self.log.open("ab") as log:
            self._process = subprocess.Popen(
                [MOSQUITTO, "-c", str(self.config)], stdout=log, stderr=log
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.log.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        raise TimeoutError(f"mosquitto did not listen on {self.port} within {timeout_s} s")

    def reload(self) -> None:
        """SIGHUP: Mosquitto reads its password and ACL files again."""
        if self._process is not None:
            self._process.send_signal(signal.SIGHUP)

    def pause(self) -> None:
        """SIGSTOP: connections stay open but nothing is ever answered."""
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self._process is not None
        self._process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        """SIGTERM, as an operator restart would (a persistent broker saves its sessions)."""
        if self._process is not None:
            self._process.send_signal(signal.SIGCONT)  # in case a test paused it
            # Mosquitto 2.0 listens before it sets its run flag, so a SIGTERM
            # that lands just after start() is forgotten: repeat it until it exits.
            deadline = time.monotonic() + 10
            while True:
                self._process.terminate()
                try:
                    self._process.wait(timeout=0.5)
                    break
                except subprocess.TimeoutExpired:
                    if time.monotonic() > deadline:
                        raise
            self._process = None


def broker_settings(broker: MosquittoBroker) -> MqttSettings:
    return MqttSettings(host="127.0.0.1", port=broker.port, keepalive_s=5, connect_timeout_s=5)
