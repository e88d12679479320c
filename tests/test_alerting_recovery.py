"""kill -9 of the alerting service mid-escalation loses no alarm and pages nobody twice.

The service runs as an operator runs it (``aedfleet alerting --config``), on real time
with an escalation measured in seconds: captain at once, backup after 6 s, coordinator
after 12 s. A failed self-test pages the captain; the service is killed with SIGKILL
before the backup's step and started again; the backup and then the coordinator are
paged on time, each exactly once, and the captain is not paged again.
"""

from __future__ import annotations

import signal
import subprocess
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from aedfleet.contract import CabinetMessage, Channel, encode, topic
from aedfleet.db.state import StateStore
from aedfleet.mqtt import KeepAliveTicker, MqttConnection
from aedfleet.registry import Assignment, Cabinet, Language, Person, Registry, Role
from aedfleet_testing.alerting_e2e_support import LINK_SECRET, email_of
from aedfleet_testing.brokers import MosquittoBroker, broker_settings, free_port
from aedfleet_testing.commands import AEDFLEET, REPO, command_env
from aedfleet_testing.influx import InfluxServer
from aedfleet_testing.mailbox import Mailbox
from alerting.model import AlarmState, AlarmType, NotificationState
from alerting.store import AlarmStore
from tests.alerting_rules_support import birth, heartbeat, selftest
from tests.recorder import eventually
from tests.test_twin import CABINET

PEOPLE = {Role.CAPTAIN: "captain-k9", Role.BACKUP: "backup-k9", Role.COORDINATOR: "coord-k9"}


def seed(store_url: str) -> None:
    registry = Registry(
        cabinets=(
            Cabinet(
                cabinet_id=CABINET,
                name="福田站 AED",
                latitude=22.54,
                longitude=114.05,
                address="深圳市福田区福华路1号",
                aed_model="Mindray BeneHeart C1A",
            ),
        ),
        people=tuple(
            Person(
                person_id=person_id,
                name=person_id,
                email=email_of(person_id),
                language=Language.EN,
            )
            for person_id in PEOPLE.values()
        ),
        assignments=tuple(
            Assignment(cabinet_id=CABINET, person_id=person_id, role=role)
            for role, person_id in PEOPLE.items()
        ),
    )
    with StateStore.open(store_url) as store:
        store.apply_registry(registry)


def write_config(
    path: Path,
    broker: MosquittoBroker,
    influx: InfluxServer,
    database: str,
    store_url: str,
    mailbox: Mailbox,
) -> Path:
    http_port = free_port()
    path.write_text(
        f"""
[ingest]
client_id = "alerting-k9-{uuid.uuid4().hex[:8]}"
share_group = "k9-{uuid.uuid4().hex[:8]}"
store_url = "{store_url}"
batch_max_delay_s = 0.05

[ingest.mqtt]
host = "127.0.0.1"
port = {broker.port}

[ingest.influx]
url = "{influx.url}"
bucket = "{database}"

[notify.smtp]
host = "127.0.0.1"
port = {mailbox.port}
security = "none"
from_address = "alerts@aed-fleet.example.cn"

[quiet]
default = "off"

[links]
secrets = ["{LINK_SECRET}"]
base_url = "http://127.0.0.1:{http_port}/l/"

[http]
port = {http_port}

[scheduler]
tick_s = 0.2

[escalation.critical]
steps = [
  {{ after = 0, roles = ["captain"] }},
  {{ after = 6, roles = ["backup"] }},
  {{ after = 12, roles = ["coordinator"] }},
]
""",
        encoding="utf-8",
    )
    return path


def start(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as output:
        return subprocess.Popen(
            [AEDFLEET, "alerting", "--config", str(config)],
            cwd=REPO,
            env=command_env(),
            stdout=output,
            stderr=output,
        )


@pytest.mark.timeout(180)
async def test_sigkill_mid_escalation_loses_nothing_and_pages_nobody_twice(
    broker: MosquittoBroker,
    influx_server: InfluxServer,
    influx_database: str,
    tmp_path: Path,
) -> None:
    store_url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    seed(store_url)
    log = tmp_path / "alerting.log"
    now = datetime.now(UTC).replace(microsecond=0)
    messages: list[tuple[Channel, CabinetMessage]] = [
        (Channel.BIRTH, birth(0, 1, now)),
        (Channel.HEARTBEAT, heartbeat(0, 2, now)),
        (Channel.SELFTEST, selftest(0, 3, now, passed=False, codes=("E-CIRCUIT",))),
    ]

    with Mailbox() as mailbox:
        config = write_config(
            tmp_path / "alerting.toml", broker, influx_server, influx_database, store_url, mailbox
        )
        service = start(config, log)
        restarted: subprocess.Popen[bytes] | None = None
        try:
            await eventually(
                lambda: "subscribed to" in log.read_text(), 30, "never subscribed", every_s=0.1
            )
            async with KeepAliveTicker() as ticker:
                publisher = MqttConnection(broker_settings(broker), "k9-publisher", ticker)
                await publisher.connect()
                for channel, message in messages:
                    await publisher.publish_confirmed(
                        topic(CABINET, channel), encode(message), qos=1
                    )
                publisher.abort()

            def told(role: Role) -> int:
                return len(mailbox.to(email_of(PEOPLE[role])))

            def captain_paged_for_each_alarm() -> bool:
                # Killed between two escalation steps, not inside an SMTP transaction: a
                # message the server accepted but whose outcome was not yet stored would be
                # sent again (with the same Message-ID), see docs/alerting.md.
                with AlarmStore.open(store_url) as store:
                    raised = store.alarms(state=AlarmState.RAISED, cabinet_id=CABINET)
                    sent = [n for a in raised for n in store.notifications(a.alarm_id)]
                return (
                    bool(raised)
                    and len(sent) == len(raised)
                    and all(n.state is NotificationState.DELIVERED for n in sent)
                    and told(Role.CAPTAIN) == len(raised)
                )

            await eventually(
                captain_paged_for_each_alarm, 30, "the captain was paged", every_s=0.05
            )
            service.send_signal(signal.SIGKILL)
            service.wait(timeout=10)
            assert told(Role.BACKUP) == 0, "killed before the backup's step"

            restarted = start(config, log)

            def escalated_to_the_end() -> bool:
                with AlarmStore.open(store_url) as store:
                    raised = store.alarms(state=AlarmState.RAISED, cabinet_id=CABINET)
                    sent = [n for a in raised for n in store.notifications(a.alarm_id)]
                coordinator = [n for n in sent if n.person_id == PEOPLE[Role.COORDINATOR]]
                return (
                    bool(raised)
                    and len(coordinator) == len(raised)
                    and all(n.state is NotificationState.DELIVERED for n in sent)
                )

            await eventually(
                escalated_to_the_end, 60, "every alarm escalated to the coordinator", every_s=0.2
            )
            with AlarmStore.open(store_url) as store:
                raised = store.alarms(state=AlarmState.RAISED, cabinet_id=CABINET)
                types = Counter(alarm.type for alarm in raised)
                pages = Counter(
                    (notification.person_id, alarm.type)
                    for alarm in raised
                    for notification in store.notifications(alarm.alarm_id)
                )
            # Nothing lost: the alarms raised before the kill are the ones escalating now.
            assert types[AlarmType.SELFTEST_FAILED] == 1
            for alarm_type in types:
                for person_id in PEOPLE.values():
                    assert pages[(person_id, alarm_type)] == 1, (person_id, alarm_type, pages)
            # Each person received each alarm's page exactly once.
            for role, person_id in PEOPLE.items():
                assert told(role) == sum(
                    1 for (person, _), count in pages.items() if person == person_id
                ), (role, [m["Subject"] for m in mailbox.to(email_of(person_id))])
        finally:
            for process in (service, restarted):
                if process is not None and process.poll() is None:
                    process.send_signal(signal.SIGTERM)
                    try:
                        process.wait(timeout=15)
                    except subprocess.TimeoutExpired:
                        process.kill()
