"""Reconnect delays: exponential backoff with full jitter, randomness injected."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from aedfleet.backoff import BackoffSettings, reconnect_delay


class _TopOfWindow(random.Random):
    """Always picks the upper end of the window, exposing the ceiling."""

    def uniform(self, a: float, b: float) -> float:
        return max(a, b)


@st.composite
def backoff_settings(draw: st.DrawFn) -> BackoffSettings:
    initial_s = draw(st.floats(min_value=0.001, max_value=100))
    return BackoffSettings(
        initial_s=initial_s,
        max_s=initial_s * draw(st.floats(min_value=1, max_value=1_000)),
        multiplier=draw(st.floats(min_value=1, max_value=10)),
    )


@given(
    settings=backoff_settings(),
    failures=st.integers(min_value=0, max_value=100),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_delay_stays_within_the_jitter_window(
    settings: BackoffSettings, failures: int, seed: int
) -> None:
    delay = reconnect_delay(settings, failures, random.Random(seed))

    upper = min(settings.max_s, settings.initial_s * settings.multiplier**failures)
    # uniform(a, b) is a + (b - a) * random(), which may round a hair past b.
    assert settings.initial_s / 2 <= delay <= upper * (1 + 1e-12)


@given(settings=backoff_settings(), failures=st.integers(min_value=0, max_value=100))
def test_the_window_never_shrinks_and_stays_capped(
    settings: BackoffSettings, failures: int
) -> None:
    top = _TopOfWindow()
    now = reconnect_delay(settings, failures, top)
    later = reconnect_delay(settings, failures + 1, top)

    assert now <= later <= settings.max_s


def test_window_doubles_until_capped_at_max() -> None:
    settings = BackoffSettings(initial_s=1, max_s=120, multiplier=2)
    top = _TopOfWindow()

    ceilings = [reconnect_delay(settings, failures, top) for failures in range(10)]

    assert ceilings == [1, 2, 4, 8, 16, 32, 64, 120, 120, 120]


def test_many_failures_stay_at_the_cap() -> None:
    settings = BackoffSettings()
    top = _TopOfWindow()

    assert reconnect_delay(settings, 10_000, top) == settings.max_s


def test_first_retry_waits_between_half_and_one_initial_delay() -> None:
    settings = BackoffSettings(initial_s=4, max_s=60)
    delays = [reconnect_delay(settings, 0, random.Random(seed)) for seed in range(200)]

    assert all(2 <= delay <= 4 for delay in delays)
    assert len(set(delays)) > 100  # jittered, not one fixed value


@given(seed=st.integers(min_value=0, max_value=2**64), failures=st.lists(st.integers(0, 30)))
def test_a_seeded_random_gives_the_same_delays(seed: int, failures: list[int]) -> None:
    settings = BackoffSettings()
    first, second = random.Random(seed), random.Random(seed)

    assert [reconnect_delay(settings, n, first) for n in failures] == [
        reconnect_delay(settings, n, second) for n in failures
    ]


def test_max_below_initial_is_rejected_with_a_clear_error() -> None:
    with pytest.raises(ValidationError, match="max_s must not be smaller than initial_s"):
        BackoffSettings(initial_s=10, max_s=5)


def test_max_equal_to_initial_is_a_constant_window() -> None:
    settings = BackoffSettings(initial_s=3, max_s=3)

    assert reconnect_delay(settings, 50, _TopOfWindow()) == 3


@pytest.mark.parametrize(
    ("field", "value"),
    [("initial_s", 0), ("max_s", -1), ("multiplier", 0.5), ("unknown", 1)],
)
def test_out_of_range_or_unknown_fields_are_rejected(field: str, value: float) -> None:
    with pytest.raises(ValidationError, match=field):
        BackoffSettings.model_validate({field: value})
