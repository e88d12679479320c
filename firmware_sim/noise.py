"""Deterministic noise from a seed and a position, with no generator state to keep.

Thousands of cabinets sample weather and radio noise at arbitrary times; hashing
(seed, position) gives the same value however often and in whatever order it is asked,
which a stateful ``random.Random`` cannot.
"""

from __future__ import annotations

import math

_MASK = (1 << 64) - 1


def hash_unit(seed: int, n: int) -> float:
    """A value in [-1, 1) fixed by ``seed`` and ``n`` (the splitmix64 finaliser)."""
    z = (seed * 0x9E3779B97F4A7C15 + n * 0xBF58476D1CE4E5B9 + 0x94D049BB133111EB) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    z ^= z >> 31
    return z / 2**63 - 1.0


def smooth_noise(seed: int, x: float) -> float:
    """Noise in [-1, 1] that drifts smoothly with ``x``, one fresh value per unit step."""
    step = math.floor(x)
    weight = (1.0 - math.cos(math.pi * (x - step))) / 2.0
    return hash_unit(seed, step) * (1.0 - weight) + hash_unit(seed, step + 1) * weight
