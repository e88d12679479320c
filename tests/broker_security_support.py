"""A real Mosquitto running the configuration ``aedfleet broker`` generates, and a plain
paho client that shows the broker's reason codes (CONNACK, PUBACK, SUBACK) as they are."""

from __future__ import annotations

import queue
import secrets
import ssl
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import SecretStr

from aedfleet.broker_auth import (
    SALT_BYTES,
    BrokerLayout,
    acl_text,
    login_password,
    mosquitto_conf_text,
    password_file_text,
)
from aedfleet.mqtt import MqttSettings, TlsSettings
from aedfleet_testing.brokers import MosquittoBroker, TlsFiles, free_port, make_test_pki

WAIT_S = 10.0
SECRET = b"a provisioning secret for the tests, 48 bytes.."


@dataclass(frozen=True)
class SecuredBroker:
    broker: MosquittoBroker
    tls: TlsFiles
    tls_port: int
    secret: bytes

    def login(self, name: str, *, tls: bool = False) -> MqttSettings:
        """Settings of the service account or cabinet ``name``, with its own password."""
        return MqttSettings(
            host="127.0.0.1",
            port=self.tls_port if tls else self.broker.port,
            username=name,
            password=SecretStr(login_password(self.secret, name)),
            tls=TlsSettings(ca_file=str(self.tls.ca_cert)) if tls else None,
            keepalive_s=5,
            connect_timeout_s=5,
        )


def write_broker_files(folder: Path, secret: bytes, cabinet_ids: Iterable[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "passwd").write_text(
        password_file_text(secret, cabinet_ids, lambda: secrets.token_bytes(SALT_BYTES))
    )
    (folder / "acl").write_text(acl_text())


@contextmanager
def secured_broker(folder: Path, cabinet_ids: Iterable[str]) -> Iterator[SecuredBroker]:
    """Mosquitto with the generated passwd, acl and listeners (TLS and loopback)."""
    tls = make_test_pki(folder / "pki")
    write_broker_files(folder, SECRET, cabinet_ids)
    tls_port, local_port = free_port(), free_port()
    layout = BrokerLayout(
        config_dir=PurePosixPath(folder),
        ca_file=PurePosixPath(tls.ca_cert),
        cert_file=PurePosixPath(tls.server_cert),
        key_file=PurePosixPath(tls.server_key),
        tls_port=tls_port,
        tls_bind="127.0.0.1",
        local_port=local_port,
    )
    broker = MosquittoBroker(
        folder / "broker", listeners=mosquitto_conf_text(layout), port=local_port
    )
    broker.start()
    try:
        yield SecuredBroker(broker, tls, tls_port, SECRET)
    finally:
        broker.stop()


class Probe:
    """A paho MQTT 5 client run on its own thread, reporting reason codes as they come."""

    def __init__(self, settings: MqttSettings, client_id: str) -> None:
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5
        )
        if settings.username is not None:
            password = settings.password.get_secret_value() if settings.password else None
            self.client.username_pw_set(settings.username, password)
        if settings.tls is not None:
            self.client.tls_set(ca_certs=settings.tls.ca_file, cert_reqs=ssl.CERT_REQUIRED)
        self.settings = settings
        self.messages: queue.Queue[paho.MQTTMessage] = queue.Queue()
        self._connack: queue.Queue[ReasonCode] = queue.Queue()
        self._lock = threading.Lock()
        self._results: dict[int, queue.Queue[list[ReasonCode]]] = {}
        self.client.on_connect = self._on_connect
        self.client.on_publish = self._on_publish
        self.client.on_subscribe = self._on_subscribe
        self.disconnects: list[ReasonCode] = []
        self.disconnected = threading.Event()
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = lambda _client, _data, message: self.messages.put(message)

    def will(self, topic: str, payload: bytes) -> None:
        self.client.will_set(topic, payload, qos=1, retain=True)

    def connect(self) -> ReasonCode:
        """The CONNACK's reason code (a refusal closes the connection)."""
        self.client.connect(self.settings.host, self.settings.port, keepalive=30)
        self.client.loop_start()
        return self._connack.get(timeout=WAIT_S)

    def close(self, *, abruptly: bool = False) -> None:
        if abruptly:
            # Close the socket without DISCONNECT, as a power cut would: the will fires.
            sock = self.client.socket()
            self.client.loop_stop()
            if sock is not None:
                sock.close()
            return
        self.client.disconnect()
        self.client.loop_stop()

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> ReasonCode:
        """Publish at QoS 1 and return the PUBACK's reason code."""
        with self._lock:
            info = self.client.publish(topic, payload, qos=1, retain=retain)
            waiter = self._results.setdefault(info.mid, queue.Queue())
        return waiter.get(timeout=WAIT_S)[0]

    def subscribe(self, topic_filter: str) -> ReasonCode:
        """The SUBACK's reason code for one filter."""
        with self._lock:
            _, mid = self.client.subscribe(topic_filter, qos=1)
            assert mid is not None
            waiter = self._results.setdefault(mid, queue.Queue())
        return waiter.get(timeout=WAIT_S)[0]

    def next_message(self) -> paho.MQTTMessage:
        return self.messages.get(timeout=WAIT_S)

    def _result(self, mid: int, codes: list[ReasonCode]) -> None:
        with self._lock:
            self._results.setdefault(mid, queue.Queue()).put(codes)

    def _on_connect(self, *args: Any) -> None:
        self._connack.put(args[3])

    def _on_disconnect(self, _c: Any, _d: Any, _f: Any, reason: ReasonCode, _p: Any) -> None:
        self.disconnects.append(reason)
        self.disconnected.set()

    def _on_publish(self, _client: Any, _data: Any, mid: int, code: ReasonCode, _p: Any) -> None:
        self._result(mid, [code])

    def _on_subscribe(
        self, _client: Any, _data: Any, mid: int, codes: list[ReasonCode], _p: Any
    ) -> None:
        self._result(mid, codes)


@contextmanager
def probe(settings: MqttSettings, client_id: str) -> Iterator[Probe]:
    client = Probe(settings, client_id)
    code = client.connect()
    assert not code.is_failure, f"{client_id} refused: {code}"
    try:
        yield client
    finally:
        client.close()
