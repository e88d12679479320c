"""A live view of fleet traffic for people at a terminal (the demo, an operator's check).

It validates every message with the contract, so it also shows what a server would
reject and why.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from aedfleet.contract import (
    ConnectionState,
    ContractError,
    Event,
    Selftest,
    SelftestResult,
    Status,
    decode,
)
from aedfleet.mqtt import InboundMessage
from aedfleet.presence import apply_status


@dataclass
class TrafficView:
    """Counts and presence of the fleet; prints notable messages through ``emit``."""

    emit: Callable[[str], None]
    by_channel: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    presence: dict[str, Status] = field(default_factory=dict)
    _window_start: float = field(default_factory=time.monotonic)
    _window_count: int = 0

    def on_message(self, message: InboundMessage) -> None:
        try:
            decoded = decode(message.topic, message.payload)
        except ContractError as exc:
            self.rejected[exc.reason.value] += 1
            self.emit(f"REJECTED {message.topic}: {exc}")
            return
        channel = message.topic.rsplit("/", 1)[-1]
        self.by_channel[channel] += 1
        self._window_count += 1
        match decoded:
            case Status():
                self.presence[decoded.cabinet_id] = apply_status(
                    self.presence.get(decoded.cabinet_id), decoded
                )
            case Event():
                self.emit(f"{decoded.ts:%H:%M:%S} {decoded.cabinet_id:<12} {decoded.event.value}")
            case Selftest() if decoded.result is SelftestResult.FAIL:
                codes = ", ".join(decoded.fault_codes) or "no code"
                self.emit(
                    f"{decoded.ts:%H:%M:%S} {decoded.cabinet_id:<12} self-test FAILED ({codes})"
                )
            case _:
                pass

    def summary(self) -> str:
        now = time.monotonic()
        rate = self._window_count / max(now - self._window_start, 1e-6)
        self._window_start, self._window_count = now, 0
        online = sum(s.state is ConnectionState.ONLINE for s in self.presence.values())
        channels = " ".join(f"{name}={count}" for name, count in sorted(self.by_channel.items()))
        rejected = sum(self.rejected.values())
        return (
            f"-- {online}/{len(self.presence)} cabinets online, {rate:.0f} msg/s, "
            f"{channels}, rejected={rejected}"
        )
