"""Pure tests of the twin fold: ordering, redelivery, idempotence and the bdSeq rule."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aedfleet.contract import (
    Birth,
    CabinetMessage,
    CmdResult,
    ConnectionState,
    Consumables,
    ConsumablesSource,
    DoorState,
    Event,
    EventType,
    Heartbeat,
    PowerSource,
    Selftest,
    SelftestKind,
    SelftestPeriod,
    SelftestResult,
    SelftestSchedule,
    Status,
)
from aedfleet.twin import EMPTY_TWIN_VALUES, Twin, apply_message, is_newer
from aedfleet.twin import fold as fold_values
from tests import twin_reference

CABINET = "cab-0001"
BOOTS = ("0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210")
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
FAST = settings(max_examples=100, deadline=None)


def fold(messages: Iterable[CabinetMessage], twin: Twin | None = None) -> Twin | None:
    for message in messages:
        twin = apply_message(twin, message)
    return twin


# -- message builders ------------------------------------------------------------------------


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def envelope(boot: int, seq: int, ts: datetime) -> dict[str, Any]:
    return {"v": 1, "cabinet_id": CABINET, "boot_id": BOOTS[boot], "seq": seq, "ts": ts}


def birth(
    boot: int,
    seq: int,
    ts: datetime,
    *,
    firmware: str = "1.0.0",
    aed_model: str = "Mindray BeneHeart C1A",
    interval_s: int = 60,
    period: SelftestPeriod = SelftestPeriod.DAILY,
    time_zone: str = "Asia/Shanghai",
) -> Birth:
    return Birth(
        **envelope(boot, seq, ts),
        hardware_version="hw-2",
        firmware_version=firmware,
        aed_model=aed_model,
        aed_serial="SN-1",
        heartbeat_interval_s=interval_s,
        selftest_schedule=SelftestSchedule(period=period, at_local=time(3, 0)),
        time_zone=time_zone,
    )


def heartbeat(
    boot: int,
    seq: int,
    ts: datetime,
    *,
    aed_ready: bool = True,
    battery_pct: float = 90.0,
    temperature_c: float = 21.5,
    door: DoorState = DoorState.CLOSED,
    aed_present: bool = True,
    power: PowerSource = PowerSource.MAINS,
    heater_on: bool = False,
) -> Heartbeat:
    return Heartbeat(
        **envelope(boot, seq, ts),
        aed_ready=aed_ready,
        battery_pct=battery_pct,
        temperature_c=temperature_c,
        humidity_pct=40.0,
        door=door,
        aed_present=aed_present,
        power=power,
        heater_on=heater_on,
        rssi_dbm=-70,
        outbox_pending=0,
        outbox_shed=0,
    )


def event(boot: int, seq: int, ts: datetime, kind: EventType) -> Event:
    return Event(**envelope(boot, seq, ts), event=kind)


def status(boot: int, connection: int, ts: datetime, state: ConnectionState) -> Status:
    return Status(**envelope(boot, connection, ts), state=state)


# -- strategies --------------------------------------------------------------------------------

# Events come often so that door, AED and power changes interleave with heartbeats.
KINDS = (
    *("heartbeat", "event", "event", "event"),
    *("selftest", "consumables", "cmd_result", "online", "offline"),
)


@st.composite
def sequenced(draw: st.DrawFn, kind: str, boot: int, seq: int, ts: datetime) -> CabinetMessage:
    """One message of the sequenced stream with drawn values."""
    match kind:
        case "heartbeat":
            return heartbeat(
                boot,
                seq,
                ts,
                battery_pct=draw(st.floats(0, 100)),
                door=draw(st.sampled_from(DoorState)),
                aed_present=draw(st.booleans()),
                power=draw(st.sampled_from(PowerSource)),
            )
        case "event":
            return event(boot, seq, ts, draw(st.sampled_from(EventType)))
        case "selftest":
            result = draw(st.sampled_from(SelftestResult))
            return Selftest(
                **envelope(boot, seq, ts),
                kind=draw(st.sampled_from(SelftestKind)),
                result=result,
                fault_codes=("E12",) if result is SelftestResult.FAIL else (),
                battery_pct=draw(st.floats(0, 100)),
            )
        case "consumables":
            return Consumables(
                **envelope(boot, seq, ts),
                pads_present=draw(st.booleans()),
                pads_expiry=draw(st.none() | st.dates(date(2024, 1, 1), date(2030, 1, 1))),
                battery_expiry=draw(st.none() | st.dates(date(2024, 1, 1), date(2030, 1, 1))),
                source=draw(st.sampled_from(ConsumablesSource)),
            )
        case _:
            return CmdResult(**envelope(boot, seq, ts), command_id="c-1", ok=draw(st.booleans()))


@st.composite
def histories(draw: st.DrawFn) -> list[CabinetMessage]:
    """What one cabinet sends over 1-2 boots, in the order it sends it.

    Each boot starts with a birth (seq 1) and its first connection's ``online``; then a
    mix of sequenced messages (seq 2, 3, …) and connection changes (an ``offline`` last
    will of the current connection, the ``online`` of a reconnection). Device time moves
    forward with every message, across the reboot too, which is what lets "newest" be
    decided by seq within a boot and by ts across boots.
    """
    messages: list[CabinetMessage] = []
    ts = T0
    for boot in range(draw(st.integers(1, 2))):
        seq = 1
        connection = 1
        ts += timedelta(seconds=draw(st.integers(1, 600)))
        messages.append(birth(boot, seq, ts, firmware=f"1.0.{boot}"))
        messages.append(status(boot, connection, ts, ConnectionState.ONLINE))
        connected = True
        for kind in draw(st.lists(st.sampled_from(KINDS), max_size=20)):
            ts += timedelta(seconds=draw(st.integers(1, 600)))
            if kind == "online":
                connection += 1
                connected = True
                messages.append(status(boot, connection, ts, ConnectionState.ONLINE))
            elif kind == "offline":
                if connected:
                    connected = False
                    messages.append(status(boot, connection, ts, ConnectionState.OFFLINE))
            else:
                seq += 1
                messages.append(draw(sequenced(kind, boot, seq, ts)))
    return messages


def keep_status_order(
    reference: Sequence[CabinetMessage], shuffled: Sequence[CabinetMessage]
) -> list[CabinetMessage]:
    """``shuffled`` with its status messages put back in ``reference``'s relative order."""
    statuses = iter([m for m in reference if isinstance(m, Status)])
    return [next(statuses) if isinstance(m, Status) else m for m in shuffled]


# -- the ordering rule -------------------------------------------------------------------------


def test_is_newer_rule() -> None:
    a, b = BOOTS
    later = T0 + timedelta(seconds=1)
    assert is_newer(None, None, None, a, 1, T0)
    assert is_newer(a, 5, T0, a, 6, T0)
    assert not is_newer(a, 5, T0, a, 5, T0)
    assert not is_newer(a, 5, later, a, 4, later)
    assert is_newer(a, 5, T0, b, 1, later)
    assert not is_newer(a, 5, later, b, 99, T0)
    assert not is_newer(a, 5, T0, b, 1, T0)


# -- properties --------------------------------------------------------------------------------


@FAST
@given(history=histories(), data=st.data())
def test_any_delivery_order_gives_the_send_order_twin(
    history: list[CabinetMessage], data: st.DataObject
) -> None:
    """Reordered delivery ends in the twin of in-order delivery.

    Every section keeps its newest message (same boot: higher seq; across boots: later ts,
    which the history guarantees by running its clock forward), so only status, whose
    bdSeq rule depends on what is held, must keep its relative order.
    """
    delivered = keep_status_order(history, data.draw(st.permutations(history)))
    assert fold(delivered) == fold(history)


@FAST
@given(history=histories())
def test_the_fold_keeps_each_sections_newest_message(history: list[CabinetMessage]) -> None:
    """An oracle for in-order delivery, written independently of the fold."""
    twin = fold(history)
    assert twin is not None
    sequenced_ = [m for m in history if not isinstance(m, Status)]
    beats = [m for m in history if isinstance(m, Heartbeat)]
    door_events = {EventType.DOOR_OPENED: DoorState.OPEN, EventType.DOOR_CLOSED: DoorState.CLOSED}
    doors = [
        m.door if isinstance(m, Heartbeat) else door_events[m.event]
        for m in history
        if isinstance(m, Heartbeat) or (isinstance(m, Event) and m.event in door_events)
    ]
    births = [m for m in history if isinstance(m, Birth)]
    last_status = [m for m in history if isinstance(m, Status)][-1]

    assert twin.boot_id == births[-1].boot_id
    assert twin.firmware_version == births[-1].firmware_version
    assert twin.battery_pct == (beats[-1].battery_pct if beats else None)
    assert twin.heartbeat_seq == (beats[-1].seq if beats else None)
    assert twin.door == (doors[-1] if doors else None)
    assert twin.online is (last_status.state is ConnectionState.ONLINE)
    assert (twin.last_boot_id, twin.last_seq) == (sequenced_[-1].boot_id, sequenced_[-1].seq)
    assert twin.first_seen == history[0].ts
    assert twin.last_seen == history[-1].ts


@FAST
@given(history=histories(), data=st.data())
def test_applying_twice_is_applying_once(
    history: list[CabinetMessage], data: st.DataObject
) -> None:
    once = fold(history)
    assert fold(history, once) == once
    for message in data.draw(st.lists(st.sampled_from(history), max_size=10)):
        twin = fold(history)
        assert apply_message(apply_message(twin, message), message) == apply_message(twin, message)


@FAST
@given(history=histories(), data=st.data())
def test_redelivered_messages_change_nothing(
    history: list[CabinetMessage], data: st.DataObject
) -> None:
    """Sequenced messages redelivered anywhere, status redelivered right after itself."""
    redelivered: list[CabinetMessage] = []
    for message in history:
        redelivered.append(message)
        if isinstance(message, Status) and data.draw(st.booleans()):
            redelivered.append(message)
    sequenced_ = [m for m in history if not isinstance(m, Status)]
    redelivered += data.draw(st.lists(st.sampled_from(sequenced_), max_size=10))
    delivered = keep_status_order(redelivered, data.draw(st.permutations(redelivered)))
    assert fold(delivered) == fold(history)


# -- examples ----------------------------------------------------------------------------------


def test_a_late_heartbeat_updates_readings_but_not_the_newer_door() -> None:
    opened = event(0, 11, at(11), EventType.DOOR_OPENED)
    late_beat = heartbeat(0, 10, at(10), battery_pct=55.0, door=DoorState.CLOSED)
    twin = fold([opened, late_beat])
    assert twin is not None
    assert twin.door is DoorState.OPEN
    assert twin.door_seq == 11
    assert twin.battery_pct == 55.0
    assert twin.heartbeat_seq == 10
    assert (twin.last_seq, twin.first_seen, twin.last_seen) == (11, at(10), at(11))


def test_events_for_door_and_aed_do_not_hide_each_other() -> None:
    opened = event(0, 11, at(11), EventType.DOOR_OPENED)
    removed = event(0, 12, at(12), EventType.AED_REMOVED)
    twin = fold([removed, opened])
    assert twin is not None
    assert (twin.door, twin.aed_present) == (DoorState.OPEN, False)


def test_power_events_and_heartbeats_share_the_power_stamp() -> None:
    lost = event(0, 5, at(5), EventType.POWER_LOST)
    beat = heartbeat(0, 4, at(4), power=PowerSource.MAINS)
    restored = event(0, 7, at(7), EventType.POWER_RESTORED)
    twin = fold([lost, beat])
    assert twin is not None
    assert twin.power is PowerSource.BACKUP
    twin = apply_message(twin, restored)
    assert twin.power is PowerSource.MAINS


def test_a_new_boot_wins_by_device_time_and_restarts_gap_tracking() -> None:
    old = heartbeat(0, 900, at(100), battery_pct=80.0)
    new = heartbeat(1, 2, at(200), battery_pct=70.0)
    twin = fold([new, old])
    assert twin is not None
    assert (twin.battery_pct, twin.heartbeat_boot_id) == (70.0, BOOTS[1])
    assert (twin.last_boot_id, twin.last_seq) == (BOOTS[1], 2)


def test_a_stale_last_will_does_not_mark_a_live_cabinet_offline() -> None:
    first_online = status(0, 1, at(0), ConnectionState.ONLINE)
    reconnected = status(0, 2, at(50), ConnectionState.ONLINE)
    stale_will = status(0, 1, at(0), ConnectionState.OFFLINE)
    other_boot_will = status(1, 1, at(60), ConnectionState.OFFLINE)
    twin = fold([first_online, reconnected, stale_will, other_boot_will])
    assert twin is not None
    assert twin.online is True
    assert (twin.status_boot_id, twin.status_seq) == (BOOTS[0], 2)


def test_the_last_will_of_the_held_connection_marks_it_offline() -> None:
    twin = fold(
        [status(0, 1, at(0), ConnectionState.ONLINE), status(0, 1, at(0), ConnectionState.OFFLINE)]
    )
    assert twin is not None
    assert twin.online is False


def test_status_does_not_move_gap_tracking() -> None:
    twin = fold([heartbeat(0, 8, at(8)), status(0, 3, at(9), ConnectionState.ONLINE)])
    assert twin is not None
    assert (twin.last_seq, twin.last_seq_ts, twin.last_seen) == (8, at(8), at(9))


def test_a_message_of_another_cabinet_is_refused() -> None:
    twin = Twin(cabinet_id="cab-other")
    with pytest.raises(ValueError, match="cab-other"):
        apply_message(twin, heartbeat(0, 1, at(1)))


def test_an_unchanged_twin_is_returned_as_is() -> None:
    beat = heartbeat(0, 3, at(3))
    twin = apply_message(None, beat)
    assert apply_message(twin, beat) is twin


# -- the fast fold against the implementation it replaced --------------------------------------


@FAST
@given(history=histories(), data=st.data())
def test_the_values_fold_matches_the_previous_model_fold_in_any_order(
    history: list[CabinetMessage], data: st.DataObject
) -> None:
    """Any order (status too), folded from any stored starting point, in one batch."""
    shuffled = data.draw(st.permutations(history))
    stored = data.draw(st.integers(0, len(shuffled)))
    expected: Twin | None = None
    for message in shuffled:
        expected = twin_reference.apply_message(expected, message)
        assert apply_message(fold(shuffled[: shuffled.index(message)]), message) == expected
    start = fold(shuffled[:stored])
    values = dict(start.__dict__) if start else {**EMPTY_TWIN_VALUES, "cabinet_id": CABINET}
    fold_values(values, shuffled[stored:])
    assert expected is not None
    assert values == expected.__dict__
