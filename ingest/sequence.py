"""Duplicate and gap detection by (cabinet, boot id, sequence number), in bounded memory.

Each boot keeps its highest sequence number and a window of the most recent numbers
seen below it; a number older than the window is treated as a duplicate, which is
right for redelivery (the normal cause) and only wrong for a message delayed by more
than the window. The number of boots tracked is bounded too, least recently seen first
out. Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True, slots=True)
class Observation:
    duplicate: bool
    gap: int = 0
    """How many sequence numbers were skipped just before this one (0 when none)."""
    late: bool = False
    """It filled an earlier gap."""


class _Boot:
    __slots__ = ("highest", "seen")

    def __init__(self, seq: int) -> None:
        self.highest = seq
        # Bit i set: sequence number highest - i was seen.
        self.seen = 1


class SequenceTracker:
    def __init__(self, window: int = 4096, max_boots: int = 200_000) -> None:
        if window < 1 or max_boots < 1:
            raise ValueError("window and max_boots must be positive")
        self.window = window
        self.max_boots = max_boots
        self._mask = (1 << window) - 1
        self._boots: OrderedDict[tuple[str, str], _Boot] = OrderedDict()

    def __len__(self) -> int:
        return len(self._boots)

    def check(self, cabinet_id: str, boot_id: str, seq: int) -> Observation:
        """Classify without recording: what :meth:`record` would say."""
        boot = self._boots.get((cabinet_id, boot_id))
        if boot is None:
            return _NEW
        return self._classify(boot, seq)

    def _classify(self, boot: _Boot, seq: int) -> Observation:
        if seq > boot.highest:
            gap = seq - boot.highest - 1
            return Observation(duplicate=False, gap=gap) if gap else _NEW
        offset = boot.highest - seq
        if offset >= self.window or boot.seen >> offset & 1:
            return _DUPLICATE
        return _LATE

    def record(self, cabinet_id: str, boot_id: str, seq: int) -> Observation:
        """Classify and remember (the ingest's hot path: one lookup, shared results)."""
        key = (cabinet_id, boot_id)
        boot = self._boots.get(key)
        if boot is None:
            self._boots[key] = _Boot(seq)
            if len(self._boots) > self.max_boots:
                self._boots.popitem(last=False)
            return _NEW
        self._boots.move_to_end(key)
        observation = self._classify(boot, seq)
        if observation.duplicate:
            return observation
        if seq > boot.highest:
            shift = seq - boot.highest
            # A jump past the window forgets every number below it; shifting by the jump
            # itself could ask for a number of 2**53 bits.
            boot.seen = ((boot.seen << shift) | 1) & self._mask if shift < self.window else 1
            boot.highest = seq
        else:
            boot.seen |= 1 << (boot.highest - seq)
        return observation


_NEW: Final = Observation(duplicate=False)
_DUPLICATE: Final = Observation(duplicate=True)
_LATE: Final = Observation(duplicate=False, late=True)
