"""The agent as an operator runs it: a separate process, killed with SIGKILL."""

from __future__ import annotations

import contextlib
import json
import signal
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from aedfleet.contract import (
    Channel,
    ConnectionState,
    Status,
    decode,
    decode_cabinet_message,
    topic,
)
from aedfleet.mqtt import KeepAliveTicker
from aedfleet_testing.brokers import MosquittoBroker, broker_settings
from aedfleet_testing.commands import AEDFLEET, REPO, command_env
from tests.recorder import Recorder, eventually


def write_config(path: Path, cabinet_id: str, port: int, outbox: Path) -> Path:
    path.write_text(
        f"""
[cabinet]
cabinet_id = "{cabinet_id}"
aed_model = "Philips HeartStart HS1"
aed_serial = "A23K-0042"

[mqtt]
port = {port}
keepalive_s = 5

[link.reconnect]
initial_s = 0.05
max_s = 0.5

[outbox]
path = "{outbox}"

[hardware]
driver = "tests.scripted_hardware:counting_hardware"
options = {{ event_interval_s = 0.02 }}
""",
        encoding="utf-8",
    )
    return path


class AgentProcess:
    def __init__(self, config: Path, log: Path) -> None:
        self._log = log.open("ab")
        self.process = subprocess.Popen(
            [AEDFLEET, "agent", "--config", str(config)],
            cwd=REPO,
            env=command_env(),
            stdout=self._log,
            stderr=self._log,
        )

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        self._log.close()

    def terminate(self) -> int:
        self.process.terminate()
        code = self.process.wait(timeout=10)
        self._log.close()
        return code


@pytest.fixture
def processes() -> Iterator[list[AgentProcess]]:
    started: list[AgentProcess] = []
    yield started
    for agent in started:
        if agent.process.poll() is None:
            agent.kill()


def stored_messages(outbox: Path) -> list[tuple[str, int]]:
    """(boot id, seq) of what the agent's outbox holds; empty before it exists."""
    if not outbox.exists():
        return []
    with contextlib.closing(sqlite3.connect(f"file:{outbox}?mode=ro", uri=True)) as db:
        try:
            rows = db.execute("SELECT payload FROM outbox ORDER BY id").fetchall()
        except sqlite3.OperationalError:
            return []
    return [(json.loads(row[0])["boot_id"], json.loads(row[0])["seq"]) for row in rows]


async def test_sigkilled_agent_sends_its_stored_messages_after_restart(
    broker: MosquittoBroker,
    ticker: KeepAliveTicker,
    tmp_path: Path,
    processes: list[AgentProcess],
) -> None:
    broker.stop()
    outbox = tmp_path / "outbox.sqlite3"
    config = write_config(tmp_path / "cabinet.toml", "CAB-K1", broker.port, outbox)
    first = AgentProcess(config, tmp_path / "agent.log")
    processes.append(first)

    def enough_stored() -> bool:
        return len(stored_messages(outbox)) >= 40

    await eventually(enough_stored, 20, "the offline agent stored nothing")
    first.kill()
    unsent = stored_messages(outbox)
    assert len({boot for boot, _ in unsent}) == 1

    broker.start()
    settings = broker_settings(broker)
    async with Recorder(settings, ticker, "aed/v1/CAB-K1/#", "watch-k1") as watcher:
        second = AgentProcess(config, tmp_path / "agent.log")
        processes.append(second)

        def arrived() -> set[tuple[str, int]]:
            keys = set()
            for message in watcher.messages:
                if not message.topic.endswith("/status"):
                    decoded = decode_cabinet_message(message.topic, message.payload)
                    keys.add((decoded.boot_id, decoded.seq))
            return keys

        await eventually(lambda: set(unsent) <= arrived(), 30, "stored messages lost")
        assert second.terminate() == 0

    by_boot = [key for key in unsent if key in arrived()]
    assert by_boot == unsent


async def test_sigkilled_agent_is_marked_offline(
    broker: MosquittoBroker,
    ticker: KeepAliveTicker,
    tmp_path: Path,
    processes: list[AgentProcess],
) -> None:
    settings = broker_settings(broker)
    config = write_config(tmp_path / "c.toml", "CAB-K2", broker.port, tmp_path / "o.sqlite3")
    async with Recorder(settings, ticker, topic("CAB-K2", Channel.STATUS), "w-k2") as watcher:

        def states() -> list[Status]:
            found = []
            for message in watcher.messages:
                status = decode(message.topic, message.payload)
                assert isinstance(status, Status)
                found.append(status)
            return found

        agent = AgentProcess(config, tmp_path / "agent.log")
        processes.append(agent)
        await eventually(lambda: bool(states()), 20, "agent never came online")
        agent.kill()
        await eventually(lambda: states()[-1].state is ConnectionState.OFFLINE, 20, "no last will")
        assert states()[-1].boot_id == states()[0].boot_id
