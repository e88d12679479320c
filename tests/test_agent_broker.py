"""The edge agent against a real Mosquitto: last will, status healing, store-and-forward."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aedfleet.backoff import BackoffSettings
from aedfleet.contract import (
    Birth,
    Channel,
    CmdResult,
    ConnectionState,
    Event,
    EventType,
    Selftest,
    Status,
    decode,
    decode_cabinet_message,
    encode,
    topic,
)
from aedfleet.mqtt import KeepAliveTicker, MqttConnection, MqttSettings
from aedfleet.presence import apply_status
from aedfleet_testing.brokers import MosquittoBroker, broker_settings
from edge_agent.agent import EdgeAgent
from edge_agent.config import CabinetProfile, LinkSettings
from edge_agent.hardware import CabinetEvent
from edge_agent.outbox import OutboxDatabase
from tests.recorder import Recorder, eventually
from tests.scripted_hardware import ScriptedHardware

FAST_RECONNECT = LinkSettings(reconnect=BackoffSettings(initial_s=0.05, max_s=0.3))


def profile(cabinet_id: str) -> CabinetProfile:
    return CabinetProfile(cabinet_id=cabinet_id, aed_model="Mindray BeneHeart C2", aed_serial="S1")


class HeldNetwork:
    """A network the test can hold down, to order reconnections deterministically."""

    def __init__(self) -> None:
        self.up = asyncio.Event()
        self.up.set()
        self.agent_waiting = False

    async def wait_up(self) -> None:
        self.agent_waiting = True
        await self.up.wait()
        self.agent_waiting = False


@contextlib.asynccontextmanager
async def running_agent(
    cabinet_id: str,
    settings: MqttSettings,
    ticker: KeepAliveTicker,
    outbox_path: Path,
    hardware: ScriptedHardware,
    network: HeldNetwork | None = None,
) -> AsyncIterator[EdgeAgent]:
    async with OutboxDatabase(outbox_path, "NORMAL") as database:
        agent = EdgeAgent(
            profile(cabinet_id),
            settings,
            FAST_RECONNECT,
            hardware,
            database.outbox(cabinet_id, 10_000),
            ticker,
            network=network,
        )
        task = asyncio.create_task(agent.run())
        try:
            yield agent
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def statuses(recorder: Recorder) -> list[Status]:
    found = []
    for message in recorder.on("/status"):
        decoded = decode(message.topic, message.payload)
        assert isinstance(decoded, Status)
        found.append(decoded)
    return found


async def test_killed_agent_is_marked_offline_by_its_last_will(
    broker: MosquittoBroker, ticker: KeepAliveTicker, tmp_path: Path
) -> None:
    settings = broker_settings(broker)
    async with (
        Recorder(settings, ticker, topic("CAB-W1", Channel.STATUS), "watch-w1") as watcher,
        running_agent("CAB-W1", settings, ticker, tmp_path / "o.db", ScriptedHardware()) as agent,
    ):
        await eventually(lambda: bool(statuses(watcher)), 10, "no online status")
        online = statuses(watcher)[-1]
        assert online.state is ConnectionState.ONLINE
        assert online.boot_id == agent.boot_id
        agent.kill()
        await eventually(lambda: len(statuses(watcher)) >= 2, 10, "no last will")
        will = statuses(watcher)[-1]
        assert will.state is ConnectionState.OFFLINE
        assert (will.boot_id, will.seq) == (online.boot_id, online.seq)
        assert apply_status(online, will).state is ConnectionState.OFFLINE


async def test_clean_shutdown_publishes_offline(
    broker: MosquittoBroker, ticker: KeepAliveTicker, tmp_path: Path
) -> None:
    settings = broker_settings(broker)
    async with Recorder(settings, ticker, topic("CAB-S1", Channel.STATUS), "watch-s1") as watcher:
        async with running_agent(
            "CAB-S1", settings, ticker, tmp_path / "o.db", ScriptedHardware()
        ) as agent:
            await asyncio.wait_for(agent.connected.wait(), 10)
        await eventually(
            lambda: any(s.state is ConnectionState.OFFLINE for s in statuses(watcher)),
            10,
            "no offline on clean shutdown",
        )


async def test_stale_will_does_not_override_newer_online(
    broker: MosquittoBroker, ticker: KeepAliveTicker, tmp_path: Path
) -> None:
    settings = broker_settings(broker)
    status_topic = topic("CAB-W2", Channel.STATUS)
    async with (
        Recorder(settings, ticker, status_topic, "watch-w2") as watcher,
        running_agent("CAB-W2", settings, ticker, tmp_path / "o.db", ScriptedHardware()) as agent,
    ):
        await eventually(lambda: bool(statuses(watcher)), 10, "no online status")
        online = statuses(watcher)[-1]
        # The will of a connection from an earlier boot, arriving late.
        stale = Status(
            v=1,
            cabinet_id="CAB-W2",
            boot_id="0" * 32,
            seq=7,
            ts=online.ts,
            state=ConnectionState.OFFLINE,
        )
        async with MqttConnection(settings, "old-connection", ticker) as injector:
            injector.publish(status_topic, encode(stale), retain=True)
        assert apply_status(online, stale) == online

        # The agent notices the stale retained status and asserts itself again.
        def reasserted() -> bool:
            seen = statuses(watcher)
            return seen[-1].state is ConnectionState.ONLINE and len(seen) >= 3

        await eventually(reasserted, 10, "agent did not re-publish online")
        assert statuses(watcher)[-1].boot_id == agent.boot_id

    retained: list[Status] = []
    async with Recorder(settings, ticker, status_topic, "late-reader") as late:
        await eventually(lambda: bool(late.messages), 10, "no retained status")
        retained = statuses(late)
    assert retained[0].boot_id != stale.boot_id


async def test_events_survive_a_broker_restart_exactly_once_in_order(
    persistent_broker: MosquittoBroker, ticker: KeepAliveTicker, tmp_path: Path
) -> None:
    settings = broker_settings(persistent_broker)
    hardware = ScriptedHardware()
    network = HeldNetwork()
    total = 120
    async with (
        Recorder(settings, ticker, topic("CAB-SF", Channel.EVENT), "watch-sf") as watcher,
        running_agent("CAB-SF", settings, ticker, tmp_path / "o.db", hardware, network) as agent,
    ):
        await asyncio.wait_for(agent.connected.wait(), 10)
        for number in range(total):
            if number == 40:
                await eventually(lambda: len(watcher.messages) >= 20, 10, "no traffic")
                persistent_broker.stop()
                await eventually(lambda: not agent.connected.is_set(), 10, "agent saw no outage")
            if number == 80:
                await eventually(lambda: agent.stats.stored >= 83, 10, "events not stored")
                # The agent has been failing to reconnect; let the watcher back in first so
                # that what it receives depends on the agent alone, not on who wins a race.
                network.up.clear()
                await eventually(lambda: network.agent_waiting, 10, "agent not retrying")
                persistent_broker.start()
                await eventually(lambda: watcher.subscriptions >= 2, 10, "watcher not back")
                network.up.set()
            hardware.push(CabinetEvent(EventType.DOOR_OPENED, detail=f"n={number}"))
            await asyncio.sleep(0)
        try:
            await eventually(lambda: len({m.payload for m in watcher.messages}) >= total, 30, "")
        except TimeoutError:
            got = {json.loads(m.payload)["detail"] for m in watcher.messages}
            missing = [n for n in range(total) if f"n={n}" not in got]
            pytest.fail(
                f"events missing: {missing}; agent {agent.stats}, outbox depth "
                f"{agent._outbox.depth}, connected {agent.connected.is_set()}"
            )

    events = [decode_cabinet_message(m.topic, m.payload) for m in watcher.messages]
    assert all(isinstance(e, Event) for e in events)
    first_arrivals: list[int] = []
    seen: set[tuple[str, int]] = set()
    for event in events:
        if (event.boot_id, event.seq) not in seen:
            seen.add((event.boot_id, event.seq))
            first_arrivals.append(event.seq)
    assert first_arrivals == sorted(first_arrivals)
    details = [json.loads(m.payload)["detail"] for m in watcher.messages]
    assert sorted(set(details), key=lambda d: int(d[2:])) == [f"n={n}" for n in range(total)]


async def test_commands_are_answered_and_bad_ones_do_not_stop_the_agent(
    broker: MosquittoBroker, ticker: KeepAliveTicker, tmp_path: Path
) -> None:
    settings = broker_settings(broker)
    hardware = ScriptedHardware(selftest_fails=True)
    cmd_topic = topic("CAB-C1", Channel.CMD)
    async with (
        Recorder(settings, ticker, "aed/v1/CAB-C1/#", "watch-c1") as watcher,
        running_agent("CAB-C1", settings, ticker, tmp_path / "o.db", hardware) as agent,
        MqttConnection(settings, "operator", ticker) as operator,
    ):
        await asyncio.wait_for(agent.connected.wait(), 10)

        def results() -> list[CmdResult]:
            found = []
            for message in watcher.on("/cmd_result"):
                decoded = decode(message.topic, message.payload)
                assert isinstance(decoded, CmdResult)
                found.append(decoded)
            return found

        def command(command_id: str, action: dict[str, object]) -> bytes:
            return json.dumps(
                {
                    "v": 1,
                    "cabinet_id": "CAB-C1",
                    "command_id": command_id,
                    "ts": "2026-11-25T08:00:00Z",
                    "command": action,
                }
            ).encode()

        operator.publish(cmd_topic, b"{not json")
        operator.publish(cmd_topic, command("c-unknown", {"action": "self_destruct"}))
        operator.publish(
            cmd_topic, command("c-v2", {"action": "report_now"}).replace(b'"v": 1', b'"v": 2')
        )
        operator.publish(
            cmd_topic, command("c-range", {"action": "set_heartbeat_interval", "interval_s": 1})
        )
        operator.publish(cmd_topic, command("c-test", {"action": "run_selftest"}))
        operator.publish(cmd_topic, command("c-test", {"action": "run_selftest"}))
        operator.publish(
            cmd_topic, command("c-rate", {"action": "set_heartbeat_interval", "interval_s": 600})
        )
        await eventually(lambda: len(results()) >= 6, 10, "commands not all answered")

        by_id = {result.command_id: result for result in results()}
        assert by_id[None].ok is False
        assert "invalid_json" in (by_id[None].error or "")
        assert by_id["c-unknown"].ok is False
        assert "self_destruct" in (by_id["c-unknown"].error or "") or "action" in (
            by_id["c-unknown"].error or ""
        )
        assert "unknown_version" in (by_id["c-v2"].error or "")
        assert "interval_s" in (by_id["c-range"].error or "")
        assert by_id["c-test"].ok is True
        assert by_id["c-rate"].ok is True
        assert [r.command_id for r in results()].count("c-test") == 1, "duplicate command ran twice"

        selftests = [decode(m.topic, m.payload) for m in watcher.on("/selftest")]
        assert len(selftests) == 1
        assert isinstance(selftests[0], Selftest)
        assert selftests[0].fault_codes == ("E-PADS",)
        births = [decode(m.topic, m.payload) for m in watcher.on("/birth")]
        assert isinstance(births[-1], Birth)
        assert births[-1].heartbeat_interval_s == 600
        assert agent.heartbeat_interval_s == 600

        hardware.broken = True
        operator.publish(cmd_topic, command("c-broken", {"action": "run_selftest"}))
        await eventually(
            lambda: any(r.command_id == "c-broken" for r in results()), 10, "no answer"
        )
        broken = next(r for r in results() if r.command_id == "c-broken")
        assert broken.ok is False
        assert "hardware error" in (broken.error or "")


@pytest.mark.parametrize("interval", [600])
async def test_changed_heartbeat_interval_survives_a_restart(
    broker: MosquittoBroker, ticker: KeepAliveTicker, tmp_path: Path, interval: int
) -> None:
    settings = broker_settings(broker)
    outbox = tmp_path / "o.db"
    async with (
        running_agent("CAB-R1", settings, ticker, outbox, ScriptedHardware()) as agent,
        MqttConnection(settings, "operator", ticker) as operator,
    ):
        await asyncio.wait_for(agent.connected.wait(), 10)
        payload = {
            "v": 1,
            "cabinet_id": "CAB-R1",
            "command_id": "c1",
            "ts": "2026-11-25T08:00:00Z",
            "command": {"action": "set_heartbeat_interval", "interval_s": interval},
        }
        operator.publish(topic("CAB-R1", Channel.CMD), json.dumps(payload).encode())
        await eventually(lambda: agent.heartbeat_interval_s == interval, 10, "not applied")
    async with running_agent("CAB-R1", settings, ticker, outbox, ScriptedHardware()) as agent:
        await asyncio.wait_for(agent.connected.wait(), 10)
        assert agent.heartbeat_interval_s == interval
