"""An in-process MQTT broker so that ``aedfleet demo`` needs no server installed.

amqtt speaks MQTT 3.1.1 only, so demo clients connect with protocol 3.1.1; the
features the fleet relies on (QoS 1, retained messages, last will, persistent sessions)
are all in 3.1.1. Deployments use Mosquitto (docs/design.md, "Why amqtt for the demo").
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from types import TracebackType
from typing import Any, Self

from amqtt.broker import Broker

from aedfleet.mqtt import MqttSettings


class _SnapshotIterationDict(dict[str, Any]):
    """A dict whose iteration walks a copy of its keys.

    amqtt 0.12 loops over its subscriptions while awaiting the retained messages it sends
    a connecting client; a client subscribing meanwhile changes the dict and that loop
    dies with "dictionary changed size during iteration" (the client reconnects, the demo
    prints a traceback). Iterating a snapshot is what the loop means to do.
    """

    def __iter__(self) -> Iterator[str]:
        return iter(list(super().keys()))

    def items(self) -> Any:
        return list(super().items())


class EmbeddedBroker:
    def __init__(self, port: int) -> None:
        self.port = port
        config: dict[str, Any] = {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
            },
        }
        self._broker = Broker(config)
        self._broker._subscriptions = _SnapshotIterationDict()  # see the class: an amqtt bug

    @property
    def client_settings(self) -> MqttSettings:
        return MqttSettings(host="127.0.0.1", port=self.port, protocol="3.1.1")

    async def __aenter__(self) -> Self:
        # amqtt logs every connection at INFO; the demo shows its own traffic view.
        for name in ("amqtt", "transitions"):
            logging.getLogger(name).setLevel(logging.ERROR)
        await self._broker.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._broker.shutdown()
