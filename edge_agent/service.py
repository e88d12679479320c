"""Wiring of one real cabinet: settings, hardware driver, outbox and agent."""

from __future__ import annotations

from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from aedfleet.mqtt import KeepAliveTicker
from aedfleet.settings import ConfigError, load_settings
from edge_agent.agent import EdgeAgent
from edge_agent.config import AgentSettings, load_hardware_factory
from edge_agent.outbox import OutboxDatabase


def prepare_agent(config: Path) -> Coroutine[Any, Any, None]:
    """Validate everything that can be validated before start-up; return the service."""
    settings = load_settings(AgentSettings, config)
    factory = load_hardware_factory(settings.hardware.driver)
    try:
        hardware = factory(settings.cabinet.cabinet_id, settings.hardware.options)
    except ValueError as exc:
        raise ConfigError(f"hardware.options: {exc}") from None
    return _serve(settings, hardware)


async def _serve(settings: AgentSettings, hardware: Any) -> None:
    async with (
        KeepAliveTicker() as ticker,
        OutboxDatabase(settings.outbox.path, settings.outbox.synchronous) as database,
    ):
        outbox = database.outbox(settings.cabinet.cabinet_id, settings.outbox.capacity)
        agent = EdgeAgent(settings.cabinet, settings.mqtt, settings.link, hardware, outbox, ticker)
        await agent.run()
