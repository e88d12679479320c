from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware_sim.climate import (
    HEATER_SETPOINT_C,
    PARAMS,
    ClimateProfile,
    ambient_humidity,
    ambient_temperature,
    cabinet_temperature,
    excursion_temperature,
)

local_times = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2035, 12, 31), timezones=st.just(UTC)
)
seeds = st.integers(min_value=0, max_value=2**32)
profiles = st.sampled_from(ClimateProfile)


def hourly(start: datetime, days: int) -> list[datetime]:
    return [start + timedelta(hours=hour) for hour in range(days * 24)]


@given(profiles, local_times, seeds, st.floats(min_value=-3, max_value=3))
def test_ambient_stays_within_the_profile(
    profile: ClimateProfile, at: datetime, seed: int, offset_c: float
) -> None:
    params = PARAMS[profile]
    temperature = ambient_temperature(profile, at, seed=seed, offset_c=offset_c)
    assert params.min_c <= temperature <= params.max_c
    assert 5 <= ambient_humidity(profile, at, seed=seed) <= 100


@given(local_times, seeds)
def test_indoor_is_room_temperature(at: datetime, seed: int) -> None:
    assert 18 <= ambient_temperature(ClimateProfile.INDOOR, at, seed=seed) <= 26


def test_ambient_is_deterministic_and_varies_by_seed() -> None:
    at = datetime(2025, 3, 1, 12, tzinfo=UTC)
    profile = ClimateProfile.TEMPERATE
    assert ambient_temperature(profile, at, seed=1) == ambient_temperature(profile, at, seed=1)
    values = {round(ambient_temperature(profile, at, seed=seed), 3) for seed in range(20)}
    assert len(values) > 10


def test_temperate_has_frost_in_winter_and_heat_in_summer() -> None:
    winter = [
        ambient_temperature(ClimateProfile.TEMPERATE, at, seed=3)
        for at in hourly(datetime(2025, 1, 1, tzinfo=UTC), 40)
    ]
    summer = [
        ambient_temperature(ClimateProfile.TEMPERATE, at, seed=3)
        for at in hourly(datetime(2025, 7, 1, tzinfo=UTC), 40)
    ]
    assert min(winter) < 0
    assert max(summer) > 25
    assert min(winter) >= -5
    assert max(summer) <= 35


def test_cold_region_winter_nights_reach_minus_25() -> None:
    coldest = min(
        ambient_temperature(ClimateProfile.COLD_REGION, at, seed=seed)
        for seed in range(5)
        for at in hourly(datetime(2025, 1, 5, tzinfo=UTC), 30)
    )
    assert -30 <= coldest <= -25


@pytest.mark.parametrize("seed", range(10))
def test_sun_exposed_summer_afternoons_pass_50(seed: int) -> None:
    at = datetime(2025, 7, 15, 15, tzinfo=timezone(timedelta(hours=2)))
    assert ambient_temperature(ClimateProfile.SUN_EXPOSED, at, seed=seed) > 50


def test_daily_cycle_follows_local_time() -> None:
    # Same instant, different places: afternoon in one, night in the other.
    noon_utc = datetime(2025, 7, 15, 13, tzinfo=UTC)
    afternoon = noon_utc.astimezone(timezone(timedelta(hours=2)))
    night = noon_utc.astimezone(timezone(timedelta(hours=-10)))
    profile = ClimateProfile.SUN_EXPOSED
    assert ambient_temperature(profile, afternoon) > ambient_temperature(profile, night) + 10


@given(
    st.floats(min_value=HEATER_SETPOINT_C, max_value=40),
    st.floats(min_value=-40, max_value=40),
    st.floats(min_value=0, max_value=7 * 86_400),
)
def test_powered_heater_holds_the_set_point(inside: float, ambient: float, dt_s: float) -> None:
    for profile in (ClimateProfile.COLD_REGION, ClimateProfile.TEMPERATE):
        after, heater_on = cabinet_temperature(profile, inside, ambient, dt_s, powered=True)
        assert after >= HEATER_SETPOINT_C
        if heater_on:
            assert after == HEATER_SETPOINT_C


@given(
    profiles,
    st.floats(min_value=-40, max_value=70),
    st.floats(min_value=-40, max_value=70),
    st.floats(min_value=0, max_value=86_400),
)
def test_unpowered_cabinet_lags_towards_ambient(
    profile: ClimateProfile, inside: float, ambient: float, dt_s: float
) -> None:
    after, heater_on = cabinet_temperature(profile, inside, ambient, dt_s, powered=False)
    assert not heater_on
    assert min(inside, ambient) - 1e-9 <= after <= max(inside, ambient) + 1e-9


def test_lag_takes_hours_not_seconds() -> None:
    after_minute, _ = cabinet_temperature(ClimateProfile.TEMPERATE, 20, 0, 60, powered=False)
    after_day, _ = cabinet_temperature(ClimateProfile.TEMPERATE, 20, 0, 86_400, powered=False)
    assert after_minute > 19.5
    assert after_day < 0.1


def test_heater_warms_at_a_finite_rate_after_power_returns() -> None:
    after, heater_on = cabinet_temperature(ClimateProfile.COLD_REGION, -20, -20, 600, powered=True)
    assert heater_on
    assert -20 < after < HEATER_SETPOINT_C


def test_unheated_profiles_never_heat() -> None:
    for profile in (ClimateProfile.INDOOR, ClimateProfile.SUN_EXPOSED):
        assert not cabinet_temperature(profile, -10, -10, 600, powered=True)[1]


@given(profiles, st.floats(min_value=-30, max_value=65))
def test_excursions_leave_the_safe_range(profile: ClimateProfile, ambient: float) -> None:
    assert not 0 <= excursion_temperature(profile, ambient) <= 50


def test_excursion_direction_follows_the_profile() -> None:
    assert excursion_temperature(ClimateProfile.COLD_REGION, 20) < 0
    assert excursion_temperature(ClimateProfile.SUN_EXPOSED, -5) > 50
    assert excursion_temperature(ClimateProfile.TEMPERATE, 0) < 0
    assert excursion_temperature(ClimateProfile.TEMPERATE, 25) > 50
