"""The edge agent of one networked cabinet, and what other components may use of it.

The simulator (:mod:`firmware_sim`) runs fleets of cabinets through this very code; it
imports only the names below, never the modules behind them (``make lint`` checks it):
the agent, its settings, its outbox, and the hardware port a cabinet model implements.
"""

from edge_agent.agent import EdgeAgent
from edge_agent.config import CabinetProfile, LinkSettings
from edge_agent.hardware import (
    CabinetEvent,
    ConsumablesReport,
    HardwareError,
    HardwareNotice,
    SelftestReport,
    SensorSnapshot,
)
from edge_agent.outbox import Outbox, OutboxDatabase

__all__ = [
    "CabinetEvent",
    "CabinetProfile",
    "ConsumablesReport",
    "EdgeAgent",
    "HardwareError",
    "HardwareNotice",
    "LinkSettings",
    "Outbox",
    "OutboxDatabase",
    "SelftestReport",
    "SensorSnapshot",
]
