"""A token bucket per key, so that a flood of bad input cannot flood the log (pure)."""

from __future__ import annotations


class RateLimiter:
    """Allows ``burst`` events per key at once, refilled at ``per_second``."""

    def __init__(self, per_second: float, burst: int) -> None:
        if per_second <= 0 or burst < 1:
            raise ValueError("rate and burst must be positive")
        self._rate = per_second
        self._burst = float(burst)
        self._buckets: dict[str, tuple[float, float]] = {}
        self.suppressed: dict[str, int] = {}

    def allow(self, key: str, now: float) -> bool:
        tokens, last = self._buckets.get(key, (self._burst, now))
        tokens = min(self._burst, tokens + (now - last) * self._rate)
        if tokens >= 1:
            self._buckets[key] = (tokens - 1, now)
            return True
        self._buckets[key] = (tokens, now)
        self.suppressed[key] = self.suppressed.get(key, 0) + 1
        return False

    def take_suppressed(self, key: str) -> int:
        """How many events of ``key`` were refused since the last call."""
        return self.suppressed.pop(key, 0)
