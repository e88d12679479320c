"""Outside climate and the cabinet's thermal response: pure functions of time and seed.

Times passed in are read in their own time zone, so callers pass the cabinet's local
time: the daily cycle follows the sun, not UTC. Seasons are those of the northern
hemisphere.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Final

from firmware_sim.noise import smooth_noise

HEATER_SETPOINT_C: Final = 5.0
HEATER_RATE_C_PER_S: Final = 15.0 / 3600
# Shifted so that the weather noise does not move in step with the temperature noise.
_HUMIDITY_SEED_SHIFT: Final = 0x5EED


class ClimateProfile(StrEnum):
    INDOOR = "indoor"
    TEMPERATE = "temperate"
    COLD_REGION = "cold_region"
    SUN_EXPOSED = "sun_exposed"


@dataclass(frozen=True, slots=True)
class ClimateParams:
    mean_c: float
    seasonal_c: float
    daily_c: float
    weather_c: float
    solar_gain_c: float
    min_c: float
    max_c: float
    humidity_mean_pct: float
    humidity_daily_pct: float
    heated: bool
    thermal_lag_s: float
    excursion_hot: bool | None
    """Direction of a temperature excursion; None: cold in cold weather, hot otherwise."""


PARAMS: Final[Mapping[ClimateProfile, ClimateParams]] = MappingProxyType(
    {
        ClimateProfile.INDOOR: ClimateParams(
            mean_c=22.0, seasonal_c=1.0, daily_c=1.5, weather_c=0.5, solar_gain_c=0.0,
            min_c=18.0, max_c=26.0, humidity_mean_pct=45.0, humidity_daily_pct=5.0,
            heated=False, thermal_lag_s=3600.0, excursion_hot=True,
        ),
        ClimateProfile.TEMPERATE: ClimateParams(
            mean_c=13.0, seasonal_c=11.0, daily_c=5.0, weather_c=4.0, solar_gain_c=0.0,
            min_c=-5.0, max_c=35.0, humidity_mean_pct=72.0, humidity_daily_pct=15.0,
            heated=True, thermal_lag_s=5400.0, excursion_hot=None,
        ),
        ClimateProfile.COLD_REGION: ClimateParams(
            mean_c=-1.0, seasonal_c=16.0, daily_c=6.0, weather_c=7.0, solar_gain_c=0.0,
            min_c=-30.0, max_c=30.0, humidity_mean_pct=75.0, humidity_daily_pct=12.0,
            heated=True, thermal_lag_s=5400.0, excursion_hot=False,
        ),
        # The solar term is the cabinet's own heating in direct sun, which is what
        # pushes a dark enclosure past 50 °C on summer afternoons.
        ClimateProfile.SUN_EXPOSED: ClimateParams(
            mean_c=15.0, seasonal_c=10.0, daily_c=7.0, weather_c=3.0, solar_gain_c=24.0,
            min_c=-10.0, max_c=65.0, humidity_mean_pct=50.0, humidity_daily_pct=20.0,
            heated=False, thermal_lag_s=3600.0, excursion_hot=True,
        ),
    }
)  # fmt: skip


def _hour(at: datetime) -> float:
    return at.hour + at.minute / 60 + at.second / 3600


def _season(at: datetime) -> float:
    """+1 at midsummer, -1 at midwinter; the coldest day falls around 20 January."""
    return -math.cos(2 * math.pi * (at.timetuple().tm_yday - 20) / 365.25)


def _daily(hour: float) -> float:
    """-1 at 04:00, the coldest hour, +1 at 16:00."""
    return -math.cos(2 * math.pi * (hour - 4) / 24)


def _weather_position(at: datetime, hour: float) -> float:
    # A new weather value every three days: fronts, not hourly flicker.
    return (at.toordinal() + hour / 24) / 3


def ambient_temperature(
    profile: ClimateProfile, at: datetime, *, seed: int = 0, offset_c: float = 0.0
) -> float:
    """Air temperature around the cabinet at local time ``at``.

    ``offset_c`` shifts one site against others of the same profile (altitude, latitude).
    """
    params = PARAMS[profile]
    hour = _hour(at)
    season = _season(at)
    sun = max(0.0, math.sin(math.pi * (hour - 9) / 12)) * (0.3 + 0.35 * (season + 1))
    value = (
        params.mean_c
        + params.seasonal_c * season
        + params.daily_c * _daily(hour)
        + params.weather_c * smooth_noise(seed, _weather_position(at, hour))
        + params.solar_gain_c * sun
        + offset_c
    )
    return min(params.max_c, max(params.min_c, value))


def ambient_humidity(profile: ClimateProfile, at: datetime, *, seed: int = 0) -> float:
    """Relative humidity at local time ``at``; highest in the cool of the night."""
    params = PARAMS[profile]
    hour = _hour(at)
    noise = smooth_noise(seed + _HUMIDITY_SEED_SHIFT, _weather_position(at, hour))
    value = params.humidity_mean_pct - params.humidity_daily_pct * _daily(hour) + 10 * noise
    return min(100.0, max(5.0, value))


def cabinet_temperature(
    profile: ClimateProfile, inside_c: float, ambient_c: float, dt_s: float, *, powered: bool
) -> tuple[float, bool]:
    """The inside temperature ``dt_s`` seconds on, and whether the heater is running.

    The enclosure follows the ambient with a first-order lag; a heated cabinet on mains
    holds at least the set point, warming at a finite rate when power comes back.
    """
    params = PARAMS[profile]
    lagged = ambient_c + (inside_c - ambient_c) * math.exp(-dt_s / params.thermal_lag_s)
    if not (params.heated and powered) or lagged >= HEATER_SETPOINT_C:
        return lagged, False
    warmed = max(lagged, inside_c + HEATER_RATE_C_PER_S * dt_s)
    return min(HEATER_SETPOINT_C, warmed), True


def excursion_temperature(profile: ClimateProfile, ambient_c: float) -> float:
    """Where a failed heater or a cabinet in full sun drives the inside, outside 0 to 50 °C."""
    hot = PARAMS[profile].excursion_hot
    if hot is None:
        hot = ambient_c >= 15.0
    return max(ambient_c, 50.0) + 6.0 if hot else min(ambient_c, 0.0) - 8.0
