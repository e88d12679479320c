"""``aedfleet demo`` with the AED captain system.

Pure parts first: the terminal line of a delivered notice, the terminal pager behind
the real deliverer and renderer, the simulated captains' choices and the demo's start.
Then the demo's alerting pass by pass on a clock the test moves (real SQLite stores,
engine, deliverer and link endpoint on loopback): a page, an acknowledgement by POSTing
its link, an escalation, resolutions and the summary. Last, a short run of the whole
demo as its own process (embedded broker, simulated fleet, scaled clock) with faults
early enough to see all of that within 25 seconds.
"""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aedfleet.contract import (
    Birth,
    CabinetMessage,
    ConnectionState,
    Consumables,
    Heartbeat,
    Status,
    encode,
    topic,
)
from aedfleet.contract import Channel as Channel_
from aedfleet.mqtt import InboundMessage
from aedfleet.registry import Language, Role
from aedfleet_app.demo import demo_start
from aedfleet_app.demo_alerting import (
    ACK_DELAY,
    DemoAlerting,
    SimulatedCaptains,
    TerminalPager,
    demo_settings,
    notice_line,
)
from aedfleet_testing.brokers import free_port
from alerting.model import AlarmType, NoticeKind, Severity
from alerting.notifiers.base import Channel, PriorPage
from alerting.notifiers.delivery import Deliverer
from alerting.render import Renderer
from firmware_sim.faults import Fault
from firmware_sim.registry import simulated_registry
from firmware_sim.scenario import ExplicitFault, FleetDefaults, Scenario
from tests import alerting_rules_support as build
from tests.notify_support import NOW, FakeClock, alarm, brief, notice, person

# -- the line of a delivered notice ------------------------------------------------------------


def test_a_first_page_names_the_person_their_role_and_language_and_ends_with_its_link() -> None:
    rendered = Renderer().render(notice(NoticeKind.PAGE))

    line = notice_line(rendered, NOW)

    assert line == f"06:03:00 📟 PAGE → 张伟 (captain, zh): {rendered.short_text}"
    assert line.endswith("https://aed.example.cn/a/42-ack")


def test_an_escalated_page_says_who_was_paged_before_and_how_long_ago() -> None:
    backup = person(Language.EN, person_id="p-lee", name="Sam Lee")
    earlier = (
        PriorPage(name="张伟", role=Role.CAPTAIN, paged_at=NOW - timedelta(minutes=30)),
        PriorPage(name="王芳", role=Role.BACKUP, paged_at=NOW - timedelta(minutes=20)),
    )
    rendered = Renderer().render(
        notice(NoticeKind.PAGE, recipient=backup, role=Role.COORDINATOR, escalated_after=earlier)
    )

    line = notice_line(rendered, NOW)

    assert line.startswith(
        "06:03:00 📟 PAGE → Sam Lee (coordinator, en) "
        "[paged before: 张伟 (captain) 30 min ago, 王芳 (backup) 20 min ago]: [CRITICAL]"
    )


def test_a_resolution_notice_is_marked_as_such() -> None:
    rendered = Renderer().render(notice(NoticeKind.RESOLVED))

    assert notice_line(rendered, NOW).startswith("06:03:00 🟢 RESOLVED → 张伟 (captain, zh): ")


async def test_the_terminal_pager_delivers_through_the_real_deliverer_as_the_email_channel() -> (
    None
):
    lines: list[str] = []
    clock = FakeClock()
    deliverer = Deliverer([TerminalPager(lines.append, clock)], Renderer(), clock=clock)
    page = notice(NoticeKind.PAGE)

    report = await deliverer.deliver(page)

    assert report.delivered
    assert report.channel is Channel.EMAIL
    assert lines == [notice_line(Renderer().render(page), NOW)]


async def test_the_terminal_pager_does_not_reach_a_person_without_an_email_address() -> None:
    lines: list[str] = []
    clock = FakeClock()
    deliverer = Deliverer([TerminalPager(lines.append, clock)], Renderer(), clock=clock)

    report = await deliverer.deliver(notice(recipient=person(email=None)))

    assert not report.delivered
    assert lines == []


# -- the simulated captains --------------------------------------------------------------------


def test_a_captain_looks_at_a_critical_page_after_the_delay_and_once() -> None:
    captains = SimulatedCaptains(ACK_DELAY)
    captains.paged(notice(NoticeKind.PAGE, brief(alarm(alarm_id=7))), NOW)
    captains.paged(notice(NoticeKind.PAGE, brief(alarm(alarm_id=7))), NOW + timedelta(minutes=1))

    assert captains.due(NOW + ACK_DELAY - timedelta(seconds=1)) == []
    looks = captains.due(NOW + ACK_DELAY)
    assert [(look.alarm_id, look.person_id, look.link) for look in looks] == [
        (7, "p-zhang", "https://aed.example.cn/a/7-ack")
    ]
    assert captains.due(NOW + 2 * ACK_DELAY) == []


def test_captains_leave_alone_what_is_not_a_critical_page_to_a_captain() -> None:
    captains = SimulatedCaptains(ACK_DELAY)
    warning = alarm(AlarmType.POWER_LOST, Severity.WARNING, alarm_id=1)
    captains.paged(notice(NoticeKind.PAGE, brief(warning)), NOW)
    captains.paged(notice(NoticeKind.PAGE, brief(alarm(alarm_id=2)), role=Role.BACKUP), NOW)
    captains.paged(notice(NoticeKind.RESOLVED, brief(alarm(alarm_id=3))), NOW)
    captains.paged(notice(NoticeKind.PAGE, brief(alarm(alarm_id=4), ack_url=None)), NOW)

    assert captains.due(NOW + ACK_DELAY) == []


def test_several_alarms_in_one_page_are_each_looked_at() -> None:
    captains = SimulatedCaptains(ACK_DELAY)
    captains.paged(notice(NoticeKind.PAGE, brief(alarm(alarm_id=9)), brief(alarm(alarm_id=8))), NOW)

    assert [look.alarm_id for look in captains.due(NOW + ACK_DELAY)] == [8, 9]


@given(st.lists(st.booleans(), max_size=50))
def test_captains_acknowledge_every_other_alarm_still_raised_and_nothing_else(
    still_raised: list[bool],
) -> None:
    captains = SimulatedCaptains(ACK_DELAY)

    answered = [captains.answers(raised) for raised in still_raised]

    assert not any(
        answer and not raised for answer, raised in zip(answered, still_raised, strict=True)
    )
    raised_answers = [
        answer for answer, raised in zip(answered, still_raised, strict=True) if raised
    ]
    assert raised_answers == [index % 2 == 0 for index in range(len(raised_answers))]


# -- configuration -------------------------------------------------------------------------------


def test_the_demo_starts_ten_to_one_at_night_in_shenzhen_on_the_day_it_runs_there() -> None:
    # 17:00 UTC is already the next day in Shenzhen.
    assert demo_start(datetime(2025, 3, 9, 17, 0, tzinfo=UTC)) == datetime(
        2025, 3, 9, 16, 50, tzinfo=UTC
    )
    assert demo_start(datetime(2025, 3, 9, 15, 0, tzinfo=UTC)) == datetime(
        2025, 3, 8, 16, 50, tzinfo=UTC
    )


def test_the_demo_settings_page_at_night_and_sign_links_for_this_run_on_loopback() -> None:
    first, second = demo_settings(8123), demo_settings(8123)

    assert first.quiet.quiet_hours_for("captain-0000") is None
    assert first.links.base_url == "http://127.0.0.1:8123/l/"
    assert (first.http.host, first.http.port) == ("127.0.0.1", 8123)
    assert first.links.secrets[0].get_secret_value() != second.links.secrets[0].get_secret_value()


# -- the demo's alerting, pass by pass -----------------------------------------------------------

T_START = datetime(2025, 3, 9, 16, 50, tzinfo=UTC)
PAIR = Scenario(seed=3, fleet=FleetDefaults(size=2, id_prefix="demo-"))


class WatchedCabinet:
    """A simulated cabinet's messages as the watcher receives them."""

    def __init__(self, cabinet_id: str) -> None:
        self.cabinet_id = cabinet_id
        self._seq = itertools.count(1)

    def inbound(self, message: CabinetMessage) -> InboundMessage:
        own = message.model_copy(update={"cabinet_id": self.cabinet_id})
        return InboundMessage(
            topic=topic(self.cabinet_id, _CHANNELS[type(own)]),
            payload=encode(own),
            qos=1,
            retain=False,
        )

    def without_pads(self, ts: datetime) -> list[InboundMessage]:
        """Up with hourly heartbeats (no offline alarm while the test's hours pass), no pads."""
        return [
            self.inbound(build.birth(0, next(self._seq), ts, interval_s=3600)),
            self.inbound(build.status(0, 1, ts, ConnectionState.ONLINE)),
            self.inbound(build.heartbeat(0, next(self._seq), ts)),
            self.inbound(build.consumables(0, next(self._seq), ts, pads_present=False)),
        ]

    def pads_fitted(self, ts: datetime) -> InboundMessage:
        return self.inbound(build.consumables(0, next(self._seq), ts, pads_present=True))


_CHANNELS: dict[type, Channel_] = {
    Birth: Channel_.BIRTH,
    Status: Channel_.STATUS,
    Heartbeat: Channel_.HEARTBEAT,
    Consumables: Channel_.CONSUMABLES,
}


async def test_the_demo_s_alerting_pages_takes_an_acknowledgement_by_link_escalates_and_resolves(
    tmp_path: Path,
) -> None:
    lines: list[str] = []
    clock = FakeClock(T_START)
    first, second = WatchedCabinet("demo-0000"), WatchedCabinet("demo-0001")
    alerting = DemoAlerting(
        demo_settings(free_port()),
        simulated_registry(PAIR),
        f"sqlite:///{tmp_path / 'state.sqlite3'}",
        clock,
        lines.append,
    )
    async with alerting:
        for message in first.without_pads(T_START) + second.without_pads(T_START):
            alerting.offer(message)
        await alerting.run_pass()
        pages = [line for line in lines if "📟 PAGE →" in line]
        assert len(pages) == 2, lines
        assert all(
            ("(captain, " in line and "Pads missing" in line) or "电极片缺失" in line
            for line in pages
        )
        assert alerting.status() == "alerting: 2 open alarms, 2 pages, 0/2 ready"

        # The captains look four minutes later: the first acknowledges through the link.
        clock.current = T_START + ACK_DELAY
        await alerting.run_pass()
        answers = [line for line in lines if "✅" in line]
        assert len(answers) == 1, lines
        assert re.fullmatch(
            r"16:54:00 ✅ \S+ acknowledged alarm \d+ \(pads_missing at demo-000[01]\) via link",
            answers[0],
        ), answers

        # Ten minutes after its captain, the backup of the other alarm is paged; only it.
        clock.current = T_START + timedelta(minutes=10)
        await alerting.run_pass()
        escalations = [line for line in lines if "(backup, " in line]
        assert len(escalations) == 1, lines
        assert "[paged before: " in escalations[0]
        assert " (captain) 10 min ago]: " in escalations[0]

        # Pads fitted again at both cabinets: resolved after the hold, and everyone paged
        # about an alarm hears that it is over.
        fitted_at = T_START + timedelta(minutes=11)
        clock.current = fitted_at
        alerting.offer(first.pads_fitted(fitted_at))
        alerting.offer(second.pads_fitted(fitted_at))
        await alerting.run_pass()
        clock.current = fitted_at + timedelta(minutes=5)
        await alerting.run_pass()
        resolutions = [line for line in lines if "🟢 RESOLVED →" in line]
        assert sorted(line.split(" (")[1].split(",")[0] for line in resolutions) == [
            "backup",
            "captain",
            "captain",
        ], lines

        summary = await alerting.summary()
    assert summary == [
        "== AED captains ==",
        "alarms raised: 2 (pads_missing 2)",
        "pages sent: 3 (captain 2, backup 1)",
        "reminders 0, resolution notices 3 (captain 2, backup 1), digests 0",
        "acknowledged: 1 (1 by simulated captains via link); resolved: 2; still open: 0",
        "fleet readiness: 2/2 ready",
    ]


async def test_the_demo_s_alerting_takes_no_messages_once_its_time_is_up(tmp_path: Path) -> None:
    lines: list[str] = []
    alerting = DemoAlerting(
        demo_settings(free_port()),
        simulated_registry(PAIR),
        f"sqlite:///{tmp_path / 'state.sqlite3'}",
        FakeClock(T_START),
        lines.append,
    )
    async with alerting:
        await alerting.run(duration_s=0.05)
        for message in WatchedCabinet("demo-0000").without_pads(T_START):
            alerting.offer(message)
        await alerting.run_pass()

        assert lines == []
        # Never heard from, within the first-contact grace: not judged yet.
        assert alerting.status() == "alerting: 0 open alarms, 0 pages, 0/0 ready"


# -- a short demo --------------------------------------------------------------------------------

QUICK = Scenario(
    seed=3,
    fleet=FleetDefaults(
        size=10,
        id_prefix="demo-",
        time_zones=("Asia/Shanghai",),
        door_openings_per_day=0,
        aed_taken_fraction=0,
        fresh_consumables=True,
    ),
    faults=(
        # Two cabinets lose their pads for good: four critical alarms (pads missing, AED
        # not ready), so captains acknowledge some and the others escalate.
        ExplicitFault(at=60, cabinet=0, fault=Fault.PADS_REMOVED, duration_s=86_400),
        ExplicitFault(at=60, cabinet=1, fault=Fault.PADS_REMOVED, duration_s=86_400),
        # Mains lost for five clock minutes: a warning paged, then resolved.
        ExplicitFault(at=60, cabinet=2, fault=Fault.POWER_LOSS, duration_s=300),
        # Beyond the demo's four cabinets: left out rather than refused.
        ExplicitFault(at=60, cabinet=9, fault=Fault.POWER_LOSS),
    ),
)
# The demo runs as its own process, as `make demo` runs it: amqtt leaves the server side
# of connections that clients dropped unclosed when it shuts down, which pytest would
# report (filterwarnings = error) against whatever test ran last.
DEMO_PROCESS = """
import asyncio, sys
from datetime import datetime
from pathlib import Path
from aedfleet_app.demo import run_demo
from aedfleet.logs import configure_logging
from firmware_sim.scenario import load_scenario

configure_logging("WARNING")
scenario, work_dir, start = sys.argv[1:4]
asyncio.run(
    run_demo(
        4, 25, 60, lambda line: print(line, flush=True), Path(work_dir),
        scenario=load_scenario(Path(scenario)), start=datetime.fromisoformat(start),
    )
)
"""
_LINE = re.compile(r"^\d\d:\d\d:\d\d ")


def run_demo_process(tmp_path: Path) -> list[str]:
    scenario = tmp_path / "quick.yaml"
    scenario.write_text(QUICK.model_dump_json(), encoding="utf-8")  # JSON is YAML
    root = Path(__file__).resolve().parents[1]
    env = os.environ | {
        "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])),
        "PYTHONIOENCODING": "utf-8",
    }
    start = datetime(2025, 3, 9, 16, 50, tzinfo=UTC).isoformat()
    done = subprocess.run(
        [sys.executable, "-c", DEMO_PROCESS, str(scenario), str(tmp_path / "work"), start],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=env,
        timeout=100,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "alerting loop crashed" not in done.stderr
    return done.stdout.splitlines()


@pytest.mark.slow
def test_a_short_demo_pages_acknowledges_escalates_resolves_and_sums_up(tmp_path: Path) -> None:
    lines = run_demo_process(tmp_path)

    captain_pages = [line for line in lines if "📟 PAGE →" in line and "(captain, " in line]
    assert any("电极片缺失" in line or "Pads missing" in line for line in captain_pages), lines
    escalations = [
        line
        for line in lines
        if "📟 PAGE →" in line and "(backup, " in line and "[paged before: " in line
    ]
    assert escalations, lines
    acknowledgements = [line for line in lines if "✅" in line and line.endswith("via link")]
    assert acknowledgements, lines
    resolutions = [line for line in lines if "🟢 RESOLVED →" in line]
    assert any("市电断开" in line or "Mains power lost" in line for line in resolutions), lines
    for line in captain_pages + escalations + acknowledgements + resolutions:
        assert _LINE.match(line), line
    # Each page ends with a signed link on the demo's own loopback endpoint.
    assert all(re.search(r"http://127\.0\.0\.1:\d+/l/\S+$", line) for line in captain_pages)
    # The periodic line carries the alerting status beside the traffic.
    assert any(line.startswith("-- ") and "alerting: " in line for line in lines), lines

    summary = lines[lines.index("== AED captains ==") :]
    assert summary[1].startswith("alarms raised: "), summary
    assert "pads_missing 2" in summary[1], summary
    assert re.match(r"pages sent: \d+ \(captain \d+, backup \d+", summary[2]), summary
    assert re.match(
        r"acknowledged: [1-9]\d* \([1-9]\d* by simulated captains via link\)", summary[4]
    ), summary
    # The cabinets going offline as the demo shuts down are not alarms of the demo.
    assert re.match(r"fleet readiness: 2/4 ready \(not ready: ", summary[5]), summary
    assert "offline" not in summary[5], summary
