"""Pure tests of the rule facts: folding in any order, duplicates, oracles and JSON."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aedfleet.contract import (
    CabinetMessage,
    Consumables,
    DoorState,
    Event,
    EventType,
    Heartbeat,
    PowerSource,
    Selftest,
    SelftestResult,
)
from alerting.facts import (
    PADS_EXPIRIES_KEPT,
    CabinetFacts,
    Stamp,
    Track,
    observe,
    with_inspection,
)
from alerting.rule_config import AedModelSpec, TemperatureRange
from tests.alerting_rules_support import (
    BOOTS,
    CABINET,
    RULES,
    at,
    consumables,
    event,
    fold_facts,
    heartbeat,
    histories,
    selftest,
)
from tests.test_twin import envelope

FAST = settings(max_examples=100, deadline=None)


# -- order and duplicates --------------------------------------------------------------------------


@FAST
@given(history=histories(), data=st.data())
def test_any_order_and_any_copies_give_the_same_facts(
    history: list[CabinetMessage], data: st.DataObject
) -> None:
    copies = data.draw(st.lists(st.sampled_from(history), max_size=12))
    delivered = data.draw(st.permutations(history + copies))
    assert fold_facts(delivered) == fold_facts(history)


@FAST
@given(history=histories(), data=st.data())
def test_observing_twice_is_observing_once(
    history: list[CabinetMessage], data: st.DataObject
) -> None:
    facts = fold_facts(history)
    assert fold_facts(history + history) == facts
    message = data.draw(st.sampled_from(history))
    assert observe(facts, message, RULES.aed) == facts


@FAST
@given(history=histories())
def test_facts_survive_json(history: list[CabinetMessage]) -> None:
    facts = with_inspection(fold_facts(history), at(5))
    assert CabinetFacts.model_validate_json(facts.model_dump_json()) == facts
    assert CabinetFacts.from_json(facts.to_json()) == facts


# -- oracles on in-order delivery -----------------------------------------------------------------


def door_oracle(history: Sequence[CabinetMessage]) -> datetime | None:
    """Since when the door is open, written from the module docstring's definition."""
    observations: list[tuple[datetime, bool, bool]] = []  # (ts, open, is the opening event)
    for message in history:
        if isinstance(message, Heartbeat):
            observations.append((message.ts, message.door is DoorState.OPEN, False))
        elif isinstance(message, Event) and message.event is EventType.DOOR_OPENED:
            observations.append((message.ts, True, True))
        elif isinstance(message, Event) and message.event is EventType.DOOR_CLOSED:
            observations.append((message.ts, False, False))
    if not observations or not observations[-1][1]:
        return None
    closed = [ts for ts, is_open, _ in observations if not is_open]
    last_closed = closed[-1] if closed else None
    openings = [
        ts
        for ts, _, opening in observations
        if opening and (last_closed is None or ts > last_closed)
    ]
    if openings:
        return openings[-1]
    return last_closed if last_closed is not None else observations[0][0]


def post_use_oracle(history: Sequence[CabinetMessage]) -> datetime | None:
    """The brief's words: a return after a removal, cleared by a passing self-test after
    the return and a report after it of pads whose expiry differs from the one at use."""
    removals = [m.ts for m in history if isinstance(m, Event) and m.event is EventType.AED_REMOVED]
    returns = [m.ts for m in history if isinstance(m, Event) and m.event is EventType.AED_RETURNED]
    if not removals or not returns or returns[-1] < removals[-1]:
        return None
    removed, returned = removals[-1], returns[-1]
    pads_reports = [
        m for m in history if isinstance(m, Consumables) and m.pads_present and m.pads_expiry
    ]
    before = [m.pads_expiry for m in pads_reports if m.ts < removed]
    at_use = before[-1] if before else None
    new_pads = any(m.ts > returned and m.pads_expiry != at_use for m in pads_reports)
    tested = any(
        isinstance(m, Selftest) and m.result is SelftestResult.PASS and m.ts > returned
        for m in history
    )
    return None if new_pads and tested else returned


@FAST
@given(history=histories())
def test_door_open_since_follows_its_definition(history: list[CabinetMessage]) -> None:
    assert fold_facts(history).door_open.since == door_oracle(history)


USE_STEPS = ("removed", "returned", "passed", "failed", "same pads", "new pads", "no pads")


AFTER_USE = ("passed", "failed", "same pads", "new pads", "no pads")


@st.composite
def uses(draw: st.DrawFn) -> list[CabinetMessage]:
    """Removals, returns, self-tests and consumables reports: what the post-use check
    reads. A few random steps, a use (removal then return), then checks and reports.
    Fresh pads always expire later than the ones they replace."""
    steps = [
        *draw(st.lists(st.sampled_from(USE_STEPS), max_size=5)),
        "removed",
        "returned",
        *draw(st.lists(st.sampled_from(AFTER_USE), max_size=5)),
        *draw(st.lists(st.sampled_from(USE_STEPS), max_size=2)),
    ]
    messages: list[CabinetMessage] = []
    pads = date(2025, 1, 1)
    for seq, step in enumerate(steps, start=2):
        ts = at(seq * 60)
        if step == "removed":
            messages.append(event(0, seq, ts, EventType.AED_REMOVED))
        elif step == "returned":
            messages.append(event(0, seq, ts, EventType.AED_RETURNED))
        elif step in ("passed", "failed"):
            messages.append(selftest(0, seq, ts, passed=step == "passed"))
        elif step == "no pads":
            messages.append(consumables(0, seq, ts, pads_present=False, pads_expiry=None))
        else:
            if step == "new pads":
                pads += timedelta(days=draw(st.integers(1, 700)))
            messages.append(consumables(0, seq, ts, pads_expiry=pads))
    return messages


@FAST
@given(history=uses() | histories(pads_recur=False))
def test_post_use_check_is_the_briefs_when_pads_never_come_back(
    history: list[CabinetMessage],
) -> None:
    assert fold_facts(history).post_use_check_since == post_use_oracle(history)


@FAST
@given(history=uses(), data=st.data())
def test_the_post_use_check_does_not_depend_on_the_order_of_delivery(
    history: list[CabinetMessage], data: st.DataObject
) -> None:
    delivered = data.draw(st.permutations(history))
    assert fold_facts(delivered).post_use_check_since == post_use_oracle(history)


# -- examples ------------------------------------------------------------------------------------


def test_the_door_opened_event_tells_when_the_door_opened() -> None:
    messages = [
        heartbeat(0, 2, at(0), door=DoorState.CLOSED),
        heartbeat(0, 4, at(120), door=DoorState.OPEN),
    ]
    # Seen open by a heartbeat only: since the last time it was seen closed.
    assert fold_facts(messages).door_open.since == at(0)
    # The opening arrives late: it tells the real moment.
    late = fold_facts([*messages, event(0, 3, at(70), EventType.DOOR_OPENED)])
    assert late.door_open.since == at(70)
    closed = observe(late, event(0, 5, at(130), EventType.DOOR_CLOSED), RULES.aed)
    assert closed.door_open.since is None
    assert not closed.door_open.holds


def test_a_property_never_seen_off_holds_since_it_was_first_seen() -> None:
    facts = fold_facts(
        [heartbeat(0, 3, at(60), door=DoorState.OPEN), heartbeat(0, 2, at(0), door=DoorState.OPEN)]
    )
    assert facts.door_open.since == at(0)
    assert not Track().known
    assert Track().since is None


def test_temperature_left_the_range_after_the_last_reading_inside_it() -> None:
    messages = [
        heartbeat(0, 2, at(0), temperature_c=49.0),
        heartbeat(0, 3, at(60), temperature_c=51.0),
        heartbeat(0, 4, at(120), temperature_c=55.0),
    ]
    assert fold_facts(messages).temperature_outside.since == at(0)
    back = fold_facts([*messages, heartbeat(0, 5, at(180), temperature_c=30.0)])
    assert back.temperature_outside.since is None


def test_temperature_and_battery_are_judged_against_the_spec_given() -> None:
    narrow = AedModelSpec(min_battery_pct=50, storage_c=TemperatureRange(min_c=10, max_c=43))
    beat = heartbeat(0, 2, at(0), temperature_c=45.0, battery_pct=40.0)
    assert fold_facts([beat], narrow).temperature_outside.holds
    assert fold_facts([beat], narrow).battery_low.holds
    assert not fold_facts([beat]).temperature_outside.holds
    assert not fold_facts([beat]).battery_low.holds


def test_power_and_aed_tracks_take_their_onset_events() -> None:
    facts = fold_facts(
        [
            heartbeat(0, 2, at(0)),
            event(0, 3, at(10), EventType.POWER_LOST),
            event(0, 4, at(20), EventType.AED_REMOVED),
            heartbeat(0, 5, at(60), aed_present=False, aed_ready=False, power=PowerSource.BACKUP),
        ]
    )
    assert facts.on_backup_power.since == at(10)
    assert facts.aed_out.since == at(20)
    assert facts.not_ready.since == at(0)
    restored = fold_facts([event(0, 6, at(70), EventType.POWER_RESTORED)])
    assert restored.on_backup_power.known
    assert not restored.on_backup_power.holds


def test_post_use_check_needs_both_a_passing_test_and_new_pads_after_the_return() -> None:
    use: list[CabinetMessage] = [
        consumables(0, 2, at(0), pads_expiry=date(2026, 1, 1)),
        event(0, 3, at(10), EventType.AED_REMOVED),
        event(0, 4, at(600), EventType.AED_RETURNED),
    ]
    assert fold_facts(use).post_use_check_since == at(600)
    tested = selftest(0, 5, at(700))
    same_pads = consumables(0, 6, at(800), pads_expiry=date(2026, 1, 1))
    new_pads = consumables(0, 7, at(900), pads_expiry=date(2027, 3, 1))
    assert fold_facts([*use, tested, same_pads]).post_use_check_since == at(600)
    assert fold_facts([*use, new_pads]).post_use_check_since == at(600)
    assert fold_facts([*use, new_pads, tested]).post_use_check_since is None
    failed = selftest(0, 5, at(700), passed=False, codes=("E-PADS",))
    assert fold_facts([*use, failed, new_pads]).post_use_check_since == at(600)
    # A passing test from before the return does not count.
    early = selftest(0, 3, at(5))
    shifted: list[CabinetMessage] = [
        use[0],
        early,
        *(_reseq(m, m.seq + 1) for m in use[1:]),
        _reseq(new_pads, 8),
    ]
    assert fold_facts(shifted).post_use_check_since == at(600)


def _reseq(message: CabinetMessage, seq: int) -> CabinetMessage:
    return message.model_copy(update={"seq": seq})


def test_no_post_use_check_while_the_aed_is_out_or_without_a_removal() -> None:
    out_again = fold_facts(
        [
            event(0, 2, at(0), EventType.AED_REMOVED),
            event(0, 3, at(10), EventType.AED_RETURNED),
            event(0, 4, at(20), EventType.AED_REMOVED),
        ]
    )
    assert out_again.post_use_check_since is None
    assert fold_facts([event(0, 2, at(0), EventType.AED_RETURNED)]).post_use_check_since is None


def test_pads_missing_reports_do_not_count_as_new_pads() -> None:
    facts = fold_facts(
        [
            event(0, 2, at(0), EventType.AED_REMOVED),
            event(0, 3, at(10), EventType.AED_RETURNED),
            selftest(0, 4, at(20)),
            consumables(0, 5, at(30), pads_present=False, pads_expiry=None),
        ]
    )
    assert facts.post_use_check_since == at(10)
    assert facts.pads_missing.since == at(30)


def test_only_the_most_recently_reported_pads_expiries_are_kept() -> None:
    reports = [
        consumables(0, seq, at(seq), pads_expiry=date(2025, 1, 1) + timedelta(days=seq))
        for seq in range(2, PADS_EXPIRIES_KEPT + 6)
    ]
    kept = fold_facts(reports).pads_expiries
    assert len(kept) == PADS_EXPIRIES_KEPT
    assert [report.last.seq for report in kept] == list(range(6, PADS_EXPIRIES_KEPT + 6))


def test_two_boots_at_the_same_device_time_are_ordered_by_boot_id() -> None:
    first = heartbeat(0, 9, at(0), door=DoorState.OPEN)
    second = heartbeat(1, 1, at(0), door=DoorState.CLOSED)
    assert fold_facts([first, second]) == fold_facts([second, first])
    # BOOTS[1] sorts after BOOTS[0]: its closed door is the newest observation.
    assert BOOTS[1] > BOOTS[0]
    assert not fold_facts([first, second]).door_open.holds
    assert Stamp.of(second).is_newer_than(Stamp.of(first))
    assert not Stamp.of(first).is_newer_than(Stamp.of(second))
    assert not Stamp.of(first).is_newer_than(Stamp.of(first))


def test_tamper_keeps_the_newest_event() -> None:
    facts = fold_facts(
        [event(0, 5, at(50), EventType.TAMPER), event(0, 2, at(20), EventType.TAMPER)]
    )
    assert facts.last_tamper is not None
    assert facts.last_tamper.ts == at(50)


def test_the_latest_inspection_wins() -> None:
    facts = with_inspection(CabinetFacts(cabinet_id=CABINET), at(100))
    assert with_inspection(facts, at(50)) is facts
    assert with_inspection(facts, at(200)).last_inspection == at(200)


def test_messages_that_tell_nothing_new_leave_the_facts_as_they_are() -> None:
    facts = fold_facts([heartbeat(0, 2, at(0))])
    assert observe(facts, heartbeat(0, 2, at(0)), RULES.aed) is facts
    assert observe(facts, selftest(0, 3, at(5), passed=False), RULES.aed) is facts


def test_facts_start_from_nothing_and_refuse_another_cabinets_message() -> None:
    facts = observe(None, heartbeat(0, 2, at(0)), RULES.aed)
    assert facts.cabinet_id == CABINET
    stranger = Event(**{**envelope(0, 3, at(1)), "cabinet_id": "cab-other"}, event=EventType.TAMPER)
    with pytest.raises(ValueError, match="cab-other"):
        observe(facts, stranger, RULES.aed)


def test_compact_json_leaves_out_what_is_unknown() -> None:
    assert CabinetFacts(cabinet_id=CABINET).to_json() == f'{{"cabinet_id":"{CABINET}"}}'
