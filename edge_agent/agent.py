"""The cabinet's agent: hardware in, contract messages out, nothing lost on the way.

Every message goes through the on-disk outbox first; a sender hands stored messages to
MQTT in order, a bounded number in flight, and removes them on PUBACK. After any
disconnection the sender starts again from the oldest stored message, so a broker
outage, a network drop or a killed process only delays messages (receivers drop the
rare duplicate by cabinet, boot id and sequence number).

Connection state is not sequenced or stored: ``online`` is published on each connect and
``offline`` is the last will, both retained and both carrying the boot id and the
connection number, so that a stale will cannot mark a live cabinet offline. If a stale
``offline`` does overwrite the retained status, the agent sees it on its own status
topic and publishes ``online`` again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol, TypedDict

from aedfleet.backoff import reconnect_delay
from aedfleet.clock import Clock, SystemClock
from aedfleet.contract import (
    IDENTITY_PROPERTY,
    SCHEMA_VERSION,
    Birth,
    CabinetMessage,
    Channel,
    Cmd,
    CmdResult,
    ConnectionState,
    Consumables,
    ConsumablesSource,
    ContractError,
    Event,
    Heartbeat,
    ReportNow,
    RunSelftest,
    Selftest,
    SelftestKind,
    SetHeartbeatInterval,
    Status,
    command_id_of,
    decode_payload,
    encode,
    topic,
)
from aedfleet.mqtt import (
    InboundMessage,
    KeepAliveTicker,
    MqttConnectError,
    MqttConnection,
    MqttError,
    MqttNotConnectedError,
    MqttSettings,
    Will,
)
from edge_agent.config import CabinetProfile, LinkSettings
from edge_agent.hardware import (
    CabinetEvent,
    CabinetHardware,
    ConsumablesReport,
    HardwareError,
    HardwareNotice,
    SelftestReport,
)
from edge_agent.outbox import Outbox

log = logging.getLogger(__name__)

HEARTBEAT_INTERVAL_SETTING = "heartbeat_interval_s"
COMMAND_QUEUE_SIZE = 32
REMEMBERED_COMMANDS = 256


class _Header(TypedDict):
    v: Literal[1]
    cabinet_id: str
    boot_id: str
    seq: int
    ts: datetime


class NetworkGate(Protocol):
    async def wait_up(self) -> None:
        """Return when the cabinet's network can reach the broker."""
        ...


class AlwaysUp:
    async def wait_up(self) -> None:
        return None


@dataclass(slots=True)
class AgentStats:
    stored: int = 0
    acknowledged: int = 0
    connections: int = 0
    acknowledged_by_channel: dict[str, int] = field(default_factory=dict)


class EdgeAgent:
    def __init__(
        self,
        profile: CabinetProfile,
        mqtt: MqttSettings,
        link: LinkSettings,
        hardware: CabinetHardware,
        outbox: Outbox,
        ticker: KeepAliveTicker,
        *,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        network: NetworkGate | None = None,
    ) -> None:
        self.profile = profile
        self.cabinet_id = profile.cabinet_id
        self.boot_id = uuid.uuid4().hex
        self.stats = AgentStats()
        self.connected = asyncio.Event()
        self._mqtt = mqtt
        self._link = link
        self._hardware = hardware
        self._outbox = outbox
        self._ticker = ticker
        self._clock = clock or SystemClock()
        self._rng = rng or random.Random()
        self._network = network or AlwaysUp()
        self._seq = 0
        self._connection_number = 0
        self._connection: MqttConnection | None = None
        self._heartbeat_interval_s = profile.heartbeat_interval_s
        self._interval_changed = asyncio.Event()
        self._outbox_changed = asyncio.Event()
        self._inflight: dict[int, tuple[int, Channel]] = {}
        self._acknowledged: list[int] = []
        self._commands: asyncio.Queue[bytes] = asyncio.Queue(COMMAND_QUEUE_SIZE)
        self._handled_commands: OrderedDict[str, None] = OrderedDict()
        self._killed = False
        self._topics = {channel: topic(self.cabinet_id, channel) for channel in Channel}

    @property
    def heartbeat_interval_s(self) -> int:
        return self._heartbeat_interval_s

    async def run(self) -> None:
        """Run until cancelled; on cancellation go offline cleanly unless killed."""
        try:
            await self._outbox.load()
            stored_interval = await self._outbox.get_setting(HEARTBEAT_INTERVAL_SETTING)
            if stored_interval is not None:
                self._heartbeat_interval_s = int(stored_interval)
            await self._store_birth()
            await self._store_consumables(await self._hardware.read_consumables())
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._link_loop(), name=f"{self.cabinet_id}-link")
                tasks.create_task(self._heartbeat_loop(), name=f"{self.cabinet_id}-heartbeat")
                tasks.create_task(self._notice_loop(), name=f"{self.cabinet_id}-notices")
                tasks.create_task(self._command_loop(), name=f"{self.cabinet_id}-commands")
        finally:
            await self._close_link()

    def kill(self) -> None:
        """Die like a power cut: drop the connection without a goodbye (the will fires).

        The caller cancels the task running :meth:`run` afterwards.
        """
        self._killed = True
        self.drop_connection()

    def drop_connection(self) -> None:
        """Lose the connection abruptly, as a network failure would."""
        if self._connection is not None:
            self._connection.abort()

    # -- storing messages --------------------------------------------------------------

    def _header(self) -> _Header:
        self._seq += 1
        return {
            "v": SCHEMA_VERSION,
            "cabinet_id": self.cabinet_id,
            "boot_id": self.boot_id,
            "seq": self._seq,
            "ts": self._clock.now(),
        }

    async def _store(self, channel: Channel, message: CabinetMessage) -> None:
        retain = channel is Channel.BIRTH
        await self._outbox.put(channel, self._topics[channel], encode(message), retain)
        self.stats.stored += 1
        self._outbox_changed.set()

    async def _store_birth(self) -> None:
        profile = self.profile
        birth = Birth(
            **self._header(),
            hardware_version=profile.hardware_version,
            firmware_version=profile.firmware_version,
            aed_model=profile.aed_model,
            aed_serial=profile.aed_serial,
            heartbeat_interval_s=self._heartbeat_interval_s,
            selftest_schedule=profile.selftest_schedule,
            time_zone=profile.time_zone,
        )
        await self._store(Channel.BIRTH, birth)

    async def _store_heartbeat(self) -> None:
        sensors = await self._hardware.read_sensors()
        heartbeat = Heartbeat(
            **self._header(),
            aed_ready=sensors.aed_ready,
            battery_pct=sensors.battery_pct,
            temperature_c=sensors.temperature_c,
            humidity_pct=sensors.humidity_pct,
            door=sensors.door,
            aed_present=sensors.aed_present,
            power=sensors.power,
            heater_on=sensors.heater_on,
            rssi_dbm=sensors.rssi_dbm,
            outbox_pending=self._outbox.depth,
            outbox_shed=self._outbox.shed_total,
        )
        await self._store(Channel.HEARTBEAT, heartbeat)

    async def _store_consumables(self, report: ConsumablesReport) -> None:
        consumables = Consumables(
            **self._header(),
            pads_present=report.pads_present,
            pads_expiry=report.pads_expiry,
            battery_expiry=report.battery_expiry,
            source=ConsumablesSource.AED,
        )
        await self._store(Channel.CONSUMABLES, consumables)

    async def _store_selftest(self, report: SelftestReport) -> None:
        selftest = Selftest(
            **self._header(),
            kind=report.kind,
            result=report.result,
            fault_codes=report.fault_codes,
            battery_pct=report.battery_pct,
        )
        await self._store(Channel.SELFTEST, selftest)

    async def _store_notice(self, notice: HardwareNotice) -> None:
        match notice:
            case CabinetEvent():
                event = Event(**self._header(), event=notice.event, detail=notice.detail)
                await self._store(Channel.EVENT, event)
            case SelftestReport():
                await self._store_selftest(notice)
            case ConsumablesReport():
                await self._store_consumables(notice)

    async def _store_result(self, command_id: str | None, error: str | None) -> None:
        result = CmdResult(**self._header(), command_id=command_id, ok=error is None, error=error)
        await self._store(Channel.CMD_RESULT, result)

    # -- loops -------------------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        while True:
            await self._store_heartbeat()
            self._interval_changed.clear()
            sleeper = asyncio.ensure_future(self._clock.sleep(self._heartbeat_interval_s))
            changed = asyncio.ensure_future(self._interval_changed.wait())
            try:
                await asyncio.wait({sleeper, changed}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                sleeper.cancel()
                changed.cancel()

    async def _notice_loop(self) -> None:
        async for notice in self._hardware.notices():
            await self._store_notice(notice)

    async def _link_loop(self) -> None:
        failures = 0
        while True:
            await self._network.wait_up()
            connection = self._new_connection()
            try:
                await connection.connect()
            except MqttConnectError as exc:
                delay = reconnect_delay(self._link.reconnect, failures, self._rng)
                failures += 1
                log.warning("%s; retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                continue
            failures = 0
            self.stats.connections += 1
            self._connection = connection
            try:
                await self._serve(connection)
            finally:
                self.connected.clear()
                self._inflight.clear()
            # Not reached on cancellation: _close_link still needs the connection then.
            self._connection = None
            if self._killed:
                return
            delay = reconnect_delay(self._link.reconnect, 0, self._rng)
            log.warning("%s: connection lost; reconnecting in %.1f s", self.cabinet_id, delay)
            await asyncio.sleep(delay)

    def _new_connection(self) -> MqttConnection:
        self._connection_number += 1
        will = Will(self._topics[Channel.STATUS], self._status_payload(ConnectionState.OFFLINE))
        return MqttConnection(
            self._mqtt,
            client_id=f"aed-{self.cabinet_id}",
            ticker=self._ticker,
            will=will,
            clean_start=False,
            session_expiry_s=self._link.session_expiry_s,
            max_inflight=self._link.max_inflight,
            on_message=self._on_message,
            on_published=self._on_published,
            user_properties=self._identity(),
        )

    def _identity(self) -> tuple[tuple[str, str], ...]:
        """The login every message claims, for servers to hold against its topic."""
        username = self._mqtt.username
        return () if username is None else ((IDENTITY_PROPERTY, username),)

    def _status_payload(self, state: ConnectionState) -> bytes:
        status = Status(
            v=SCHEMA_VERSION,
            cabinet_id=self.cabinet_id,
            boot_id=self.boot_id,
            seq=self._connection_number,
            ts=self._clock.now(),
            state=state,
        )
        return encode(status)

    async def _serve(self, connection: MqttConnection) -> None:
        try:
            connection.publish(
                self._topics[Channel.STATUS],
                self._status_payload(ConnectionState.ONLINE),
                retain=True,
            )
            await connection.subscribe(self._topics[Channel.CMD])
            await connection.subscribe(self._topics[Channel.STATUS])
        except MqttError as exc:  # gone, refused, or not answered: a new connection may do
            log.warning("%s", exc)
            return
        self.connected.set()
        async with asyncio.TaskGroup() as tasks:
            sender = tasks.create_task(self._send_stored(connection))
            await connection.wait_closed()
            sender.cancel()

    async def _send_stored(self, connection: MqttConnection) -> None:
        after_id = 0
        while True:
            self._outbox_changed.clear()
            if self._acknowledged:
                done, self._acknowledged = self._acknowledged, []
                await self._outbox.remove(done)
            room = self._link.max_inflight - len(self._inflight)
            if room > 0:
                batch = await self._outbox.pending(after_id, room)
                try:
                    for message in batch:
                        mid = connection.publish(
                            message.topic, message.payload, qos=1, retain=message.retain
                        )
                        self._inflight[mid] = (message.id, message.channel)
                        after_id = message.id
                except MqttNotConnectedError:
                    return
                if batch:
                    continue
            await self._outbox_changed.wait()

    async def _close_link(self) -> None:
        connection = self._connection
        if connection is None or self._killed:
            return
        with contextlib.suppress(MqttNotConnectedError, TimeoutError):
            async with asyncio.timeout(2):
                connection.publish(
                    self._topics[Channel.STATUS],
                    self._status_payload(ConnectionState.OFFLINE),
                    retain=True,
                )
                await connection.disconnect()

    # -- inbound -------------------------------------------------------------------------

    def _on_published(self, mid: int) -> None:
        entry = self._inflight.pop(mid, None)
        if entry is None:
            return
        row_id, channel = entry
        self._acknowledged.append(row_id)
        self.stats.acknowledged += 1
        by_channel = self.stats.acknowledged_by_channel
        by_channel[channel.value] = by_channel.get(channel.value, 0) + 1
        self._outbox_changed.set()

    def _on_message(self, message: InboundMessage) -> None:
        if message.topic == self._topics[Channel.STATUS]:
            self._heal_status(message.payload)
            return
        if message.topic != self._topics[Channel.CMD]:
            # A broker that matches filters loosely must not feed our own output back in.
            log.debug("%s: ignored a message on %s", self.cabinet_id, message.topic)
            return
        if self._commands.full():
            log.error("%s: command queue full, dropped a command", self.cabinet_id)
            return
        self._commands.put_nowait(message.payload)

    def _heal_status(self, payload: bytes) -> None:
        try:
            status = decode_payload(Channel.STATUS, payload, self.cabinet_id)
        except ContractError:
            status = None
        current = (self.boot_id, self._connection_number)
        if isinstance(status, Status) and (
            status.state is ConnectionState.ONLINE or (status.boot_id, status.seq) == current
        ):
            return
        connection = self._connection
        if connection is not None and connection.is_connected:
            log.info("%s: stale status on the broker; publishing online again", self.cabinet_id)
            with contextlib.suppress(MqttNotConnectedError):
                connection.publish(
                    self._topics[Channel.STATUS],
                    self._status_payload(ConnectionState.ONLINE),
                    retain=True,
                )

    async def _command_loop(self) -> None:
        while True:
            payload = await self._commands.get()
            await self._handle_command(payload)

    async def _handle_command(self, payload: bytes) -> None:
        try:
            command = decode_payload(Channel.CMD, payload, self.cabinet_id)
        except ContractError as exc:
            log.warning("%s: rejected a command: %s", self.cabinet_id, exc)
            await self._store_result(command_id_of(payload), f"rejected: {exc}")
            return
        if not isinstance(command, Cmd):
            raise TypeError("decode_payload returned a non-command for the cmd channel")
        if command.command_id in self._handled_commands:
            return
        self._handled_commands[command.command_id] = None
        if len(self._handled_commands) > REMEMBERED_COMMANDS:
            self._handled_commands.popitem(last=False)
        try:
            match command.command:
                case ReportNow():
                    await self._store_heartbeat()
                    await self._store_consumables(await self._hardware.read_consumables())
                case SetHeartbeatInterval(interval_s=interval_s):
                    self._heartbeat_interval_s = interval_s
                    await self._outbox.set_setting(HEARTBEAT_INTERVAL_SETTING, str(interval_s))
                    await self._store_birth()
                    self._interval_changed.set()
                case RunSelftest():
                    await self._store_selftest(
                        await self._hardware.run_selftest(SelftestKind.MANUAL)
                    )
        except HardwareError as exc:
            await self._store_result(command.command_id, f"hardware error: {exc}")
            return
        await self._store_result(command.command_id, None)
