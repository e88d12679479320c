"""Reconnect delays: exponential backoff with full jitter (pure, injected randomness).

Full jitter spreads a region's cabinets that lost the broker at the same moment over
the whole window, so they do not all come back in the same second.
"""

from __future__ import annotations

import math
import random

from pydantic import BaseModel, ConfigDict, Field, model_validator


class BackoffSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    initial_s: float = Field(
        default=1.0, gt=0, description="Seconds; the first retry waits between half this and this"
    )
    max_s: float = Field(
        default=120.0,
        gt=0,
        description="Seconds no wait exceeds, however many failures; not below initial_s",
    )
    multiplier: float = Field(
        default=2.0,
        ge=1,
        le=10,
        description="The longest wait grows by this factor with each further failure; 1 = "
        "it stays at initial_s",
    )

    @model_validator(mode="after")
    def _max_not_below_initial(self) -> BackoffSettings:
        if self.max_s < self.initial_s:
            raise ValueError("max_s must not be smaller than initial_s")
        return self


def reconnect_delay(settings: BackoffSettings, failures: int, rng: random.Random) -> float:
    """Seconds to wait after ``failures`` consecutive failed attempts (0 = first retry)."""
    if failures < 0:
        raise ValueError(f"failures must not be negative, got {failures}")
    ceiling = settings.initial_s
    if settings.multiplier > 1:
        # Grow no further than the cap needs, so a huge count cannot overflow a float.
        steps_to_cap = math.ceil(math.log(settings.max_s / settings.initial_s, settings.multiplier))
        ceiling = settings.initial_s * settings.multiplier ** min(failures, steps_to_cap)
    return rng.uniform(settings.initial_s / 2, min(settings.max_s, ceiling))
