from __future__ import annotations

from datetime import UTC, datetime, timedelta

from aedfleet.contract import ConnectionState, Status
from aedfleet.presence import apply_status

T0 = datetime(2026, 11, 25, 8, tzinfo=UTC)


def status(boot: str, seq: int, state: ConnectionState, minutes: int) -> Status:
    return Status(
        v=1,
        cabinet_id="C",
        boot_id=boot * 32,
        seq=seq,
        ts=T0 + timedelta(minutes=minutes),
        state=state,
    )


ONLINE, OFFLINE = ConnectionState.ONLINE, ConnectionState.OFFLINE


def test_own_will_marks_offline() -> None:
    held = status("a", 1, ONLINE, 0)
    assert apply_status(held, status("a", 1, OFFLINE, 0)).state is OFFLINE


def test_will_of_another_connection_is_ignored() -> None:
    held = status("b", 1, ONLINE, 5)
    assert apply_status(held, status("a", 1, OFFLINE, 0)) == held
    assert apply_status(held, status("b", 2, OFFLINE, 6)) == held


def test_redelivered_online_of_an_ended_connection_is_ignored() -> None:
    ended = status("a", 1, OFFLINE, 0)
    assert apply_status(ended, status("a", 1, ONLINE, 0)) == ended


def test_newer_online_replaces_older_state_and_older_online_does_not() -> None:
    held = status("a", 2, ONLINE, 10)
    assert apply_status(held, status("a", 1, ONLINE, 5)) == held
    newer = status("b", 1, ONLINE, 20)
    assert apply_status(status("a", 1, OFFLINE, 0), newer) == newer
