"""MQTT 5 consumer connection: the protocol spoken directly on an asyncio transport.

Built for one job, draining a high rate of QoS 1 deliveries that are acknowledged only
after they are stored (the ingest). Measured here (``docs/benchmarks.md``), the general
adapter of :mod:`aedfleet.mqtt` (paho-mqtt) costs about 35 µs per delivery on this
machine: paho reads each PUBLISH with four ``recv`` calls, builds an MQTT 5
``Properties`` object for it and sends each PUBACK in a system call of its own. gmqtt
decodes faster but defers a PUBACK only by running ``on_message`` as an asyncio task per
delivery that returns the reason code later. This module instead:

- decodes every packet a read returned in one pass, a few slices per PUBLISH (its
  properties are parsed only when it has any, for its User Properties; no topic alias
  maximum is announced, so the broker never replaces a topic by an alias);
- hands the deliveries of one read to ``on_messages`` as one list;
- queues PUBACKs and writes all of those of one loop iteration in one ``send``.

The decoding and encoding are :mod:`aedfleet.mqtt.codec`, free of I/O (fed bytes, its
:class:`~aedfleet.mqtt.codec.PacketDecoder` returns deliveries and parsed control
packets); :class:`ConsumerConnection` is the asyncio adapter around it. The reference,
with the limits announced and honoured, is ``docs/mqtt-consumer.md``.

Scope, chosen for the ingest: MQTT 5 only (shared subscriptions, persistent sessions and
the receive maximum as back-pressure are MQTT 5 features), subscriptions at QoS 0 or 1,
publishing at QoS 0 or 1 (dead letters), TLS and username/password, keep-alive. No QoS 2,
no last will, no enhanced authentication: a packet that needs them ends the connection
as a protocol error. Like :class:`aedfleet.mqtt.paho.MqttConnection`, a connection does not
reconnect itself; the caller builds a new one.

Errors are those of :mod:`aedfleet.mqtt` (the tree is drawn there), raised for the same
failures as :class:`aedfleet.mqtt.paho.MqttConnection` raises them, plus one of this module's,
:class:`MqttProtocolError`: the broker sent a malformed packet or one over the announced
maximum packet size, and the connection ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections import deque
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any, Self

from aedfleet.mqtt.codec import (
    DEFAULT_MAX_PACKET_SIZE,
    DISCONNECT,
    NORMAL_DISCONNECT,
    PINGREQ,
    PROTOCOL_ERROR,
    PUBACK,
    PUBACK_HEADER,
    PUBLISH,
    SUBSCRIBE,
    Acknowledgement,
    BrokerLimits,
    Connack,
    ControlPacket,
    Disconnect,
    PacketDecoder,
    connect_packet,
    encode_packet,
    encode_text,
    encode_variable_integer,
    reason_name,
)
from aedfleet.mqtt.errors import (
    MqttConnectError,
    MqttError,
    MqttNotConnectedError,
    MqttProtocolError,
    MqttRefusedError,
    MqttTimeoutError,
)
from aedfleet.mqtt.message import InboundMessage, await_answer
from aedfleet.mqtt.settings import MqttSettings

__all__ = ["ConsumerConnection"]

log = logging.getLogger(__name__)


# Four times the largest valid cabinet payload (aedfleet.contract.MAX_PAYLOAD_BYTES,
# 16 KiB) plus room for the topic and properties: an oversized payload up to this size
# still reaches the ingest and is refused visibly, as a dead letter; a larger one the
# broker drops for this client (MQTT 5.0, 3.1.2.11.4) instead of making it buffer it.
def _ssl_context(settings: MqttSettings) -> ssl.SSLContext | None:
    tls = settings.tls
    if tls is None:
        return None
    context = ssl.create_default_context(cafile=tls.ca_file)
    if tls.cert_file is not None:
        context.load_cert_chain(tls.cert_file, tls.key_file)
    # The certificate chain is verified either way, as paho does with tls_insecure_set.
    context.check_hostname = tls.verify_hostname
    return context


class _Protocol(asyncio.Protocol):
    """Forwards transport events to its connection (which keeps its public API clean)."""

    def __init__(self, connection: ConsumerConnection) -> None:
        self._connection = connection

    def data_received(self, data: bytes) -> None:
        self._connection._data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._connection._connection_lost(exc)


class ConsumerConnection:
    """One MQTT 5 connection that subscribes and acknowledges in bulk.

    ``on_messages`` is called on the event loop with the deliveries of one socket read,
    in arrival order; it must not block. With ``manual_ack`` a QoS 1 delivery stays
    unacknowledged until :meth:`ack` or :meth:`ack_many`, and ``receive_maximum`` caps
    how many the broker sends ahead: that is the back-pressure on a slow consumer.
    ``max_packet_size`` is announced to the broker, which then sends nothing larger; a
    larger packet all the same ends the connection as a :class:`MqttProtocolError`.
    """

    def __init__(
        self,
        settings: MqttSettings,
        client_id: str,
        *,
        clean_start: bool = True,
        session_expiry_s: int = 0,
        manual_ack: bool = False,
        receive_maximum: int | None = None,
        max_packet_size: int = DEFAULT_MAX_PACKET_SIZE,
        on_messages: Callable[[list[InboundMessage]], None] | None = None,
    ) -> None:
        if settings.protocol != "5":
            raise ValueError(
                f"{client_id}: ConsumerConnection speaks MQTT 5 only, not {settings.protocol}"
            )
        if receive_maximum is not None and not 1 <= receive_maximum <= 65_535:
            raise ValueError(f"receive_maximum {receive_maximum} is not within 1 … 65535")
        self._decoder = PacketDecoder(max_packet_size)
        self.settings = settings
        self.client_id = client_id
        self._clean_start = clean_start
        self._session_expiry_s = session_expiry_s
        self._manual_ack = manual_ack
        self._receive_maximum = receive_maximum
        self._max_packet_size = max_packet_size
        self._on_messages = on_messages
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._connected: asyncio.Future[bool] = self._loop.create_future()
        self._disconnected: asyncio.Future[str] = self._loop.create_future()
        self._error: MqttError | None = None
        self._pending: dict[int, asyncio.Future[int]] = {}
        self._next_packet_id = 0
        self._acks = bytearray()
        self._ack_flush_scheduled = False
        self._keepalive_s = settings.keepalive_s
        self._keepalive_timer: asyncio.TimerHandle | None = None
        self._last_received = 0.0
        self._limits = BrokerLimits()
        # QoS 1 publishes sent and not yet acknowledged, by packet identifier: at most
        # the broker's receive maximum (MQTT 5.0, 4.9); a publish beyond it waits.
        self._unacknowledged_publishes: set[int] = set()
        self._publish_slots = self._limits.receive_maximum
        self._slot_waiters: deque[asyncio.Future[None]] = deque()

    @property
    def is_connected(self) -> bool:
        return self._connected.done() and not self._disconnected.done()

    @property
    def broker_limits(self) -> BrokerLimits:
        """The limits of the broker's CONNACK (the spec's defaults before it arrives)."""
        return self._limits

    @property
    def error(self) -> MqttError | None:
        """The protocol error that ended the connection, if one did."""
        return self._error

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.disconnect()

    # -- connecting --------------------------------------------------------------------

    async def connect(self) -> bool:
        """Open the connection and wait for CONNACK; returns whether a session was resumed."""
        settings = self.settings
        endpoint = settings.endpoint
        timeout_s = settings.connect_timeout_s
        try:
            context = _ssl_context(settings)
            self._transport, _ = await asyncio.wait_for(
                self._loop.create_connection(
                    lambda: _Protocol(self),
                    settings.host,
                    settings.port,
                    ssl=context,
                    server_hostname=settings.host if context is not None else None,
                ),
                timeout_s,
            )
        except TimeoutError:
            self.abort()
            raise MqttConnectError(
                f"{self.client_id}: no TCP connection to {endpoint} within {timeout_s:g} s"
            ) from None
        except OSError as exc:  # ssl.SSLError is an OSError
            self.abort()
            raise MqttConnectError(f"{self.client_id}: cannot reach {endpoint}: {exc}") from None
        self._last_received = self._loop.time()
        self._write(
            connect_packet(
                self.client_id,
                keepalive_s=settings.keepalive_s,
                clean_start=self._clean_start,
                username=settings.username,
                password=None
                if settings.password is None
                else settings.password.get_secret_value().encode(),
                session_expiry_s=self._session_expiry_s,
                receive_maximum=self._receive_maximum,
                max_packet_size=self._max_packet_size,
            )
        )
        try:
            return await asyncio.wait_for(asyncio.shield(self._connected), timeout_s)
        except TimeoutError:
            self.abort()
            raise MqttConnectError(
                f"{self.client_id}: {endpoint} sent no CONNACK within {timeout_s:g} s"
            ) from None
        except MqttError:
            self.abort()
            raise

    # -- subscribing, acknowledging, publishing ---------------------------------------

    async def subscribe(self, topic_filter: str, qos: int = 1) -> None:
        """Subscribe and wait for the broker's SUBACK, which must grant ``qos``."""
        if qos not in (0, 1):
            raise ValueError(f"{self.client_id}: subscriptions are QoS 0 or 1, not {qos}")
        self._require_connection()
        limits = self._limits
        if qos > limits.maximum_qos:
            raise MqttError(
                f"{self.client_id}: {self.settings.endpoint} allows QoS {limits.maximum_qos} "
                f"at most, so {topic_filter} cannot be subscribed at QoS {qos}"
            )
        if topic_filter.startswith("$share/") and not limits.shared_subscriptions:
            raise MqttError(
                f"{self.client_id}: {self.settings.endpoint} has no shared subscriptions "
                f"for {topic_filter}"
            )
        if ("+" in topic_filter or "#" in topic_filter) and not limits.wildcard_subscriptions:
            raise MqttError(
                f"{self.client_id}: {self.settings.endpoint} has no wildcard subscriptions "
                f"for {topic_filter}"
            )
        # No properties, then the one filter and its options.
        request = b"\x00" + encode_text(topic_filter) + bytes((qos,))
        self._check_size(2 + len(request), f"the subscription to {topic_filter}")
        packet_id = self._take_packet_id()
        try:
            granted = await self._request(
                packet_id,
                encode_packet(SUBSCRIBE, packet_id.to_bytes(2, "big") + request),
                f"SUBACK for {topic_filter}",
            )
        except MqttRefusedError as exc:
            raise MqttRefusedError(
                f"{self.client_id}: {self.settings.endpoint} refused the subscription to "
                f"{topic_filter}: {exc}",
                exc.reason_code,
            ) from None
        if granted < qos:
            raise MqttRefusedError(
                f"{self.client_id}: {self.settings.endpoint} granted {topic_filter} "
                f"QoS {granted} only, not {qos}",
                granted,
            )

    def ack(self, message: InboundMessage) -> None:
        """Acknowledge a delivery; the PUBACKs of one loop iteration go in one write.

        A lost connection drops it silently: the broker redelivers what is unacknowledged.
        """
        if message.qos == 1:
            self._acks += PUBACK_HEADER
            self._acks += message.mid.to_bytes(2, "big")
            if not self._ack_flush_scheduled:
                self._ack_flush_scheduled = True
                self._loop.call_soon(self._flush_acks)

    def ack_many(self, messages: Iterable[InboundMessage]) -> None:
        """Acknowledge deliveries now, in one write."""
        acks = self._acks
        for message in messages:
            if message.qos == 1:
                acks += PUBACK_HEADER
                acks += message.mid.to_bytes(2, "big")
        self._flush_acks()

    def _flush_acks(self) -> None:
        self._ack_flush_scheduled = False
        if self._acks:
            if self.is_connected:
                self._write(bytes(self._acks))
            self._acks.clear()

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        """Send a message at QoS 0, without waiting for anything."""
        if qos != 0:
            raise ValueError("publish() sends at QoS 0; use publish_confirmed() for QoS 1")
        self._require_connection()
        body = encode_text(topic) + b"\x00" + payload
        self._check_publish(topic, len(body), qos, retain)
        self._write(encode_packet(PUBLISH | (retain & 1), body))

    async def publish_confirmed(self, topic: str, payload: bytes, retain: bool = False) -> None:
        """Publish at QoS 1 and wait for the broker's acknowledgement.

        With as many publishes unacknowledged as the broker's receive maximum allows,
        this waits for one of them to be acknowledged (within the connect timeout).
        """
        self._require_connection()
        raw_topic = encode_text(topic)
        self._check_publish(topic, len(raw_topic) + 3 + len(payload), 1, retain)
        await self._take_publish_slot(topic)
        try:
            packet_id = self._take_packet_id()
        except MqttError:
            self._release_publish_slot()
            raise
        self._unacknowledged_publishes.add(packet_id)
        body = raw_topic + packet_id.to_bytes(2, "big") + b"\x00" + payload
        # The slot is given back when the PUBACK comes, even after this wait timed out.
        await self._request(
            packet_id, encode_packet(PUBLISH | 0x02 | (retain & 1), body), f"PUBACK for {topic}"
        )

    def _check_publish(self, topic: str, body_length: int, qos: int, retain: bool) -> None:
        limits = self._limits
        if qos > limits.maximum_qos:
            raise MqttError(
                f"{self.client_id}: {self.settings.endpoint} allows QoS "
                f"{limits.maximum_qos} at most; cannot publish to {topic} at QoS {qos}"
            )
        if retain and not limits.retain_available:
            raise MqttError(
                f"{self.client_id}: {self.settings.endpoint} keeps no retained messages; "
                f"cannot publish to {topic} retained"
            )
        self._check_size(body_length, f"the publish to {topic}")

    def _check_size(self, body_length: int, what: str) -> None:
        limit = self._limits.maximum_packet_size
        size = 1 + len(encode_variable_integer(body_length)) + body_length
        if limit is not None and size > limit:
            raise MqttError(
                f"{self.client_id}: {what} is a packet of {size} bytes, over the "
                f"{limit} bytes {self.settings.endpoint} accepts"
            )

    async def _take_publish_slot(self, topic: str) -> None:
        if self._publish_slots > 0 and not self._slot_waiters:
            self._publish_slots -= 1
            return
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._slot_waiters.append(waiter)
        timeout_s = self.settings.connect_timeout_s
        try:
            await await_answer(waiter, timeout_s)
        except (TimeoutError, asyncio.CancelledError) as exc:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._release_publish_slot()  # handed over as the wait ended: pass it on
            if isinstance(exc, asyncio.CancelledError):
                raise
            raise MqttTimeoutError(
                f"{self.client_id}: cannot publish to {topic}: the "
                f"{self._limits.receive_maximum} publishes {self.settings.endpoint} allows "
                f"unacknowledged were not acknowledged within {timeout_s:g} s"
            ) from None
        finally:
            with contextlib.suppress(ValueError):
                self._slot_waiters.remove(waiter)

    def _release_publish_slot(self) -> None:
        while self._slot_waiters:
            waiter = self._slot_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes to it directly
                return
        self._publish_slots += 1

    async def _request(self, packet_id: int, packet: bytes, answer: str) -> int:
        """Send ``packet`` and wait for its answer; returns the (first) reason code."""
        waiter: asyncio.Future[int] = self._loop.create_future()
        self._pending[packet_id] = waiter
        try:
            self._write(packet)
            return await await_answer(waiter, self.settings.connect_timeout_s)
        except TimeoutError:
            raise MqttTimeoutError(
                f"{self.client_id}: no {answer} from {self.settings.endpoint} within "
                f"{self.settings.connect_timeout_s:g} s"
            ) from None
        finally:
            self._pending.pop(packet_id, None)

    def _take_packet_id(self) -> int:
        self._require_connection()
        for _ in range(65_535):
            self._next_packet_id = self._next_packet_id % 65_535 + 1
            candidate = self._next_packet_id
            if candidate not in self._pending and candidate not in self._unacknowledged_publishes:
                return candidate
        raise MqttError(f"{self.client_id}: every packet identifier is in use")

    def _require_connection(self) -> None:
        if not self.is_connected:
            raise MqttNotConnectedError(
                f"{self.client_id}: not connected to {self.settings.endpoint}"
            )

    def _write(self, data: bytes) -> None:
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    # -- closing -----------------------------------------------------------------------

    async def wait_closed(self) -> str:
        """Wait until the connection is gone; returns why."""
        return await asyncio.shield(self._disconnected)

    async def disconnect(self) -> None:
        """Close cleanly: pending acknowledgements, then DISCONNECT."""
        if self.is_connected and self._transport is not None:
            self._flush_acks()
            self._write(NORMAL_DISCONNECT)
            self._transport.close()  # after the buffered bytes are sent
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._disconnected), 2)
        self.abort()

    def abort(self) -> None:
        """Drop the connection at once, without DISCONNECT."""
        if self._transport is not None:
            self._transport.abort()
        self._finish("connection aborted")

    def _finish(self, reason: str) -> None:
        if self._keepalive_timer is not None:
            self._keepalive_timer.cancel()
            self._keepalive_timer = None
        error = self._error
        if not self._connected.done():
            self._connected.set_exception(self._ended(reason, error, MqttConnectError))
            self._connected.exception()  # retrieved: the caller may never await it
        if not self._disconnected.done():
            self._disconnected.set_result(reason)
        waiters: list[asyncio.Future[Any]] = [*self._pending.values(), *self._slot_waiters]
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(self._ended(reason, error, MqttNotConnectedError))

    def _ended(self, reason: str, error: MqttError | None, otherwise: type[MqttError]) -> MqttError:
        if isinstance(error, MqttProtocolError):
            return MqttProtocolError(f"{self.client_id}: {reason}", error.reason_code)
        return otherwise(f"{self.client_id}: {reason}")

    def _fail(self, reason: str) -> None:
        log.warning("%s: %s; closing the connection", self.client_id, reason)
        self._finish(reason)
        if self._transport is not None:
            self._transport.abort()

    def _fail_protocol(self, error: MqttProtocolError) -> None:
        """Tell the broker why (MQTT 5.0, 4.13) and close once that is sent."""
        self._error = error
        reason = f"protocol error from {self.settings.endpoint}: {error}"
        log.warning("%s: %s; closing the connection", self.client_id, reason)
        self._finish(reason)
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.write(bytes((DISCONNECT, 1, error.reason_code)))
            transport.close()

    def _connection_lost(self, exc: Exception | None) -> None:
        cause = f": {exc}" if exc is not None else ""
        self._finish(f"connection to {self.settings.endpoint} lost{cause}")

    # -- keep-alive --------------------------------------------------------------------

    def _schedule_keepalive(self) -> None:
        if self._keepalive_s > 0:
            self._keepalive_timer = self._loop.call_later(self._keepalive_s / 2, self._keepalive)

    def _keepalive(self) -> None:
        silent_s = self._loop.time() - self._last_received
        if silent_s > 1.5 * self._keepalive_s:
            self._fail(f"{self.settings.endpoint} sent nothing for {silent_s:.0f} s")
            return
        # Every half keep-alive, whatever else was sent: the answer proves the broker alive.
        self._write(PINGREQ)
        self._schedule_keepalive()

    # -- reading -----------------------------------------------------------------------

    def _data_received(self, data: bytes) -> None:
        if self._disconnected.done():
            return  # bytes after a protocol error or DISCONNECT are not read
        self._last_received = self._loop.time()
        decoder = self._decoder
        try:
            decoder.feed(data)
            while True:
                delivered, control = decoder.read()
                if delivered:
                    self._deliver(delivered)
                if control is None:
                    return
                self._control(control)
                if self._disconnected.done():
                    return
        except MqttProtocolError as exc:
            self._fail_protocol(exc)

    def _deliver(self, delivered: list[InboundMessage]) -> None:
        if not self._connected.done():
            raise MqttProtocolError("a PUBLISH before CONNACK", PROTOCOL_ERROR)
        if not self._manual_ack:
            self.ack_many(delivered)
        if self._on_messages is not None:
            self._on_messages(delivered)

    def _control(self, packet: ControlPacket) -> None:
        if not self._connected.done():
            if not isinstance(packet, Connack):
                raise MqttProtocolError(f"{type(packet).__name__} before CONNACK", PROTOCOL_ERROR)
            self._connack(packet)
        elif isinstance(packet, Acknowledgement):
            self._answer(packet)
        elif isinstance(packet, Disconnect):
            reason = f" ({packet.reason_string[:200]})" if packet.reason_string else ""
            self._finish(
                f"disconnected by {self.settings.endpoint}: "
                f"{reason_name(packet.reason_code)}{reason}"
            )
            if self._transport is not None:
                self._transport.close()
        elif isinstance(packet, Connack):
            raise MqttProtocolError("a second CONNACK", PROTOCOL_ERROR)

    def _connack(self, connack: Connack) -> None:
        if connack.reason_code >= 0x80:
            detail = f" ({connack.reason_string[:200]})" if connack.reason_string else ""
            reason = (
                f"{self.settings.endpoint} refused the connection: "
                f"{reason_name(connack.reason_code)}{detail}"
            )
            self._connected.set_exception(MqttConnectError(f"{self.client_id}: {reason}"))
            self._finish(reason)  # nothing after the refusal is read
            if self._transport is not None:
                self._transport.close()
            return
        if connack.server_keep_alive_s is not None:
            # The server's value binds (MQTT 5.0, 3.2.2.3.14).
            self._keepalive_s = connack.server_keep_alive_s
        self._limits = connack.limits
        self._publish_slots = connack.limits.receive_maximum
        self._connected.set_result(connack.session_present)
        self._schedule_keepalive()

    def _answer(self, answer: Acknowledgement) -> None:
        packet_id = answer.packet_id
        if answer.kind == PUBACK and packet_id in self._unacknowledged_publishes:
            self._unacknowledged_publishes.discard(packet_id)
            self._release_publish_slot()
        waiter = self._pending.get(packet_id)
        if waiter is None or waiter.done():
            return  # answered after its wait timed out
        refused = [code for code in answer.reason_codes if code >= 0x80]
        if refused:
            detail = f" ({answer.reason_string[:200]})" if answer.reason_string else ""
            reason = f"{reason_name(refused[0])}{detail}"
            if answer.kind == PUBACK:
                reason = f"{self.client_id}: {self.settings.endpoint} refused the publish: {reason}"
            waiter.set_exception(MqttRefusedError(reason, refused[0]))
        else:
            waiter.set_result(answer.reason_codes[0])
