"""The edge agent's configuration (``aedfleet agent --config cabinet.toml``)."""

from __future__ import annotations

import importlib
from datetime import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from aedfleet.backoff import BackoffSettings
from aedfleet.contract import CabinetId, SelftestPeriod, SelftestSchedule, TimeZoneName
from aedfleet.mqtt import MqttSettings
from aedfleet.settings import ConfigError, FileThenEnvSettings
from edge_agent.hardware import HardwareFactory
from edge_agent.outbox import OutboxSettings

DEFAULT_HARDWARE_DRIVER = "firmware_sim.hardware:simulated_hardware"


class CabinetProfile(BaseModel):
    """Who the cabinet is and how it reports; announced in the birth message."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cabinet_id: CabinetId
    aed_model: str = Field(max_length=200)
    aed_serial: str = Field(max_length=200)
    hardware_version: str = Field(default="cabinet-1", max_length=200)
    firmware_version: str = Field(default="aedfleet-edge-0.1", max_length=200)
    time_zone: TimeZoneName = "Asia/Shanghai"
    heartbeat_interval_s: int = Field(default=60, ge=10, le=86_400)
    selftest_schedule: SelftestSchedule = SelftestSchedule(
        period=SelftestPeriod.DAILY, at_local=time(3, 0)
    )


class LinkSettings(BaseModel):
    """How the agent holds its broker connection."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    reconnect: BackoffSettings = BackoffSettings()
    session_expiry_s: int = Field(
        default=7 * 86_400,
        ge=0,
        description="How long the broker keeps commands for an offline cabinet",
    )
    max_inflight: int = Field(default=20, ge=1, le=1_000)


class HardwareSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    driver: str = Field(
        default=DEFAULT_HARDWARE_DRIVER,
        pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$",
        description="'package.module:factory' returning a CabinetHardware",
    )
    options: dict[str, Any] = Field(default_factory=dict)


class AgentSettings(FileThenEnvSettings):
    cabinet: CabinetProfile
    mqtt: MqttSettings = MqttSettings()
    link: LinkSettings = LinkSettings()
    outbox: OutboxSettings = OutboxSettings()
    hardware: HardwareSettings = HardwareSettings()


def load_hardware_factory(driver: str) -> HardwareFactory:
    module_name, _, attribute = driver.partition(":")
    try:
        module = importlib.import_module(module_name)
        factory: HardwareFactory = getattr(module, attribute)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"hardware.driver {driver!r} cannot be loaded: {exc}") from None
    return factory
