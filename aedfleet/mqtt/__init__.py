"""MQTT for every component: settings, errors, and two adapters over one interface.

- :mod:`aedfleet.mqtt.paho` (:class:`MqttConnection`): the general adapter, paho-mqtt
  driven by the event loop; the edge agent, the simulator and dispatch use it.
- :mod:`aedfleet.mqtt.consumer` (:class:`ConsumerConnection`): MQTT 5 spoken directly on
  an asyncio transport, built for the ingest's drain of QoS 1 deliveries acknowledged in
  bulk, around the sans-IO :mod:`aedfleet.mqtt.codec`.
- :mod:`aedfleet.mqtt.subscription` (:func:`keep_subscribed`): the reconnecting
  subscription loop both adapters are used through.

Both adapters take the same :class:`MqttSettings`, hand out the same
:class:`InboundMessage` and raise the same error type for the same failure::

    MqttError                   what the broker's limits do not allow (checked before sending)
    ├── MqttConnectError        the broker could not be reached or refused the connection
    ├── MqttNotConnectedError   an operation needs a connection that is gone
    ├── MqttRefusedError        the broker refused a publish (PUBACK) or a subscription
    │                           (SUBACK); ``reason_code`` is the broker's MQTT 5 reason code
    ├── MqttTimeoutError        a broker still connected sent no PUBACK or SUBACK in time
    ├── MqttQueueFullError      the outgoing queue is at its bound; the message was not queued
    └── MqttProtocolError       the broker sent a packet that cannot be read (consumer
                                connection); the connection ends
"""

from aedfleet.mqtt.errors import (
    MqttConnectError,
    MqttError,
    MqttNotConnectedError,
    MqttProtocolError,
    MqttQueueFullError,
    MqttRefusedError,
    MqttTimeoutError,
)
from aedfleet.mqtt.message import InboundMessage, Will, await_answer
from aedfleet.mqtt.paho import KeepAliveTicker, MqttConnection
from aedfleet.mqtt.settings import MqttSettings, TlsSettings

__all__ = [
    "InboundMessage",
    "KeepAliveTicker",
    "MqttConnectError",
    "MqttConnection",
    "MqttError",
    "MqttNotConnectedError",
    "MqttProtocolError",
    "MqttQueueFullError",
    "MqttRefusedError",
    "MqttSettings",
    "MqttTimeoutError",
    "TlsSettings",
    "Will",
    "await_answer",
]
