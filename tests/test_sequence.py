from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.sequence import SequenceTracker


def test_first_delivery_is_new_and_redelivery_is_duplicate() -> None:
    tracker = SequenceTracker()
    assert not tracker.record("c", "b", 1).duplicate
    assert tracker.record("c", "b", 1).duplicate
    assert not tracker.record("c", "other-boot", 1).duplicate
    assert not tracker.record("other-cabinet", "b", 1).duplicate


def test_gaps_are_reported_and_late_fills_recognised() -> None:
    tracker = SequenceTracker()
    tracker.record("c", "b", 1)
    assert tracker.record("c", "b", 5).gap == 3
    late = tracker.record("c", "b", 3)
    assert late.late
    assert not late.duplicate
    assert tracker.record("c", "b", 3).duplicate


def test_check_does_not_record() -> None:
    tracker = SequenceTracker()
    tracker.record("c", "b", 1)
    assert not tracker.check("c", "b", 2).duplicate
    assert not tracker.check("c", "b", 2).duplicate
    assert not tracker.record("c", "b", 2).duplicate


def test_memory_is_bounded_by_boots() -> None:
    tracker = SequenceTracker(max_boots=3)
    for boot in "abcd":
        tracker.record("c", boot, 1)
    assert len(tracker) == 3
    assert not tracker.record("c", "a", 1).duplicate  # forgotten, least recently seen


@settings(max_examples=200, deadline=None)
@given(
    window=st.integers(min_value=1, max_value=64),
    deliveries=st.lists(st.integers(min_value=1, max_value=200), max_size=300),
)
def test_each_number_is_new_exactly_once_within_the_window(
    window: int, deliveries: list[int]
) -> None:
    tracker = SequenceTracker(window=window)
    accepted: list[int] = []
    highest = 0
    for seq in deliveries:
        observation = tracker.record("c", "b", seq)
        if not observation.duplicate:
            accepted.append(seq)
        elif seq not in accepted:
            # Only numbers older than the window may be refused unseen.
            assert highest - seq >= window
        highest = max(highest, seq)
    assert len(accepted) == len(set(accepted))


def test_a_jump_to_the_largest_sequence_number_is_a_gap_not_a_crash() -> None:
    tracker = SequenceTracker()
    tracker.record("c", "b", 1)
    assert tracker.record("c", "b", 2**53).gap == 2**53 - 2
    assert tracker.record("c", "b", 2**53).duplicate
    assert tracker.record("c", "b", 2).duplicate  # far below the window now
