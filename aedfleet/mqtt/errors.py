"""The errors of both MQTT adapters (the tree is drawn in :mod:`aedfleet.mqtt`)."""

from __future__ import annotations

from typing import Final

MALFORMED_PACKET: Final = 0x81
"""The MQTT 5 reason code for a packet that cannot be read."""


class MqttError(Exception):
    """Root of the adapter's errors."""


class MqttConnectError(MqttError):
    """The broker could not be reached, or it refused the connection."""


class MqttNotConnectedError(MqttError):
    """The operation needs a live connection."""


class MqttRefusedError(MqttError):
    """The broker answered a publish or a subscription with a failure.

    ``reason_code`` is the broker's MQTT 5 reason code (0x87 Not authorized, 0x8F Topic
    Filter invalid…), or, for a subscription granted a lower QoS than asked, the granted
    QoS (0x00 or 0x01, which MQTT 5 also calls reason codes).
    """

    def __init__(self, message: str, reason_code: int) -> None:
        super().__init__(message)
        self.reason_code = reason_code


class MqttTimeoutError(MqttError):
    """The broker, still connected, did not answer (PUBACK, SUBACK) within the timeout.

    The connection stays up; whether the message was delivered is unknown.
    """


class MqttQueueFullError(MqttError):
    """The connection already holds its bound of messages not yet acknowledged; the new
    one was not queued (the caller keeps it and retries after acknowledgements)."""


class MqttProtocolError(MqttError):
    """The broker sent something this connection cannot read; the connection ends.

    ``reason_code`` is the one sent to the broker in the closing DISCONNECT.
    """

    def __init__(self, message: str, reason_code: int = MALFORMED_PACKET) -> None:
        super().__init__(message)
        self.reason_code = reason_code


# -- the packets the decoder hands out besides deliveries ------------------------------------
