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

    cabinet_id: CabinetId = Field(
        description="The cabinet's id in the registry and its MQTT topic level: at most 64 "
        "characters, no +, # or /, no surrounding spaces or control characters"
    )
    aed_model: str = Field(
        max_length=200,
        description="The AED's model, reported in the birth message (the alerting rules go by "
        "the registry's model)",
    )
    aed_serial: str = Field(
        max_length=200, description="The AED's serial number, reported in the birth message"
    )
    hardware_version: str = Field(
        default="cabinet-1",
        max_length=200,
        description="The cabinet's hardware version, reported in the birth message",
    )
    firmware_version: str = Field(
        default="aedfleet-edge-0.1",
        max_length=200,
        description="The cabinet's firmware version, reported in the birth message",
    )
    time_zone: TimeZoneName = Field(
        default="Asia/Shanghai",
        description="IANA zone of the cabinet's wall clock: the self-test schedule is read in "
        "it, and alerting shows the cabinet's times and judges its expiry dates in it",
    )
    heartbeat_interval_s: int = Field(
        default=60,
        ge=10,
        le=86_400,
        description="Seconds between heartbeats; a set_heartbeat_interval command replaces it, "
        "and the replacement outlives restarts",
    )
    selftest_schedule: SelftestSchedule = Field(
        default=SelftestSchedule(period=SelftestPeriod.DAILY, at_local=time(3, 0)),
        description="When the AED tests itself, reported in the birth message; alerting "
        "expects a self-test within each period plus its grace",
    )


class LinkSettings(BaseModel):
    """How the agent holds its broker connection."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    reconnect: BackoffSettings = Field(
        default=BackoffSettings(),
        description="Wait before reconnecting after the broker connection is lost or refused",
    )
    session_expiry_s: int = Field(
        default=7 * 86_400,
        ge=0,
        description="How long the broker keeps commands for an offline cabinet",
    )
    max_inflight: int = Field(
        default=20,
        ge=1,
        le=1_000,
        description="Messages published and not yet acknowledged by the broker at most; the "
        "rest wait in the outbox",
    )


class HardwareSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    driver: str = Field(
        default=DEFAULT_HARDWARE_DRIVER,
        pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$",
        description="'package.module:factory' returning a CabinetHardware",
    )
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="Passed to the driver's factory as a dict; each driver checks its own, and "
        "a bad option stops the start naming it",
    )


class AgentSettings(FileThenEnvSettings):
    cabinet: CabinetProfile = Field(
        description="Who the cabinet is and how it reports; announced in the birth message"
    )
    mqtt: MqttSettings = Field(
        default=MqttSettings(),
        description="The broker the agent publishes to and takes commands from; it logs in "
        "with the cabinet's own credentials (docs/security.md)",
    )
    link: LinkSettings = Field(
        default=LinkSettings(), description="How the agent holds its broker connection"
    )
    outbox: OutboxSettings = Field(
        default=OutboxSettings(),
        description="The on-disk queue every message waits in until the broker acknowledges it",
    )
    hardware: HardwareSettings = Field(
        default=HardwareSettings(),
        description="The driver that reads the cabinet's sensors and acts on it",
    )


def load_hardware_factory(driver: str) -> HardwareFactory:
    module_name, _, attribute = driver.partition(":")
    try:
        module = importlib.import_module(module_name)
        factory: HardwareFactory = getattr(module, attribute)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"hardware.driver {driver!r} cannot be loaded: {exc}") from None
    return factory
