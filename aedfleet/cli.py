"""The ``aedfleet`` command line: one entry point for every component."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from aedfleet import contract
from aedfleet.logs import configure_logging
from aedfleet.service import run_until_signalled
from aedfleet.settings import ConfigError

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
contract_app = typer.Typer(no_args_is_help=True, help="The wire contract and its JSON Schemas.")
app.add_typer(contract_app, name="contract")

SCHEMA_DIR = Path("docs/schemas")
LogLevel = Annotated[str, typer.Option("--log-level", help="DEBUG, INFO, WARNING or ERROR")]


def _fail(message: str) -> typer.Exit:
    typer.secho(message, err=True, fg=typer.colors.RED)
    return typer.Exit(code=2)


@contract_app.command("export-schemas")
def export_schemas(
    out: Annotated[Path, typer.Option(help="Folder for one JSON Schema per channel")] = SCHEMA_DIR,
) -> None:
    """Write the JSON Schema of every channel's payload (the docs' copy of the contract)."""
    out.mkdir(parents=True, exist_ok=True)
    for channel, schema in contract.json_schemas().items():
        path = out / f"{channel}.schema.json"
        path.write_text(json.dumps(schema, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        typer.echo(f"wrote {path}")


@app.command()
def demo(
    cabinets: Annotated[int, typer.Option(help="How many cabinets to simulate")] = 40,
    duration: Annotated[float, typer.Option(help="Wall seconds to run; 0 runs until Ctrl-C")] = 90,
    clock_scale: Annotated[
        float, typer.Option(help="How much faster than wall time the cabinets live")
    ] = 60,
    log_level: LogLevel = "WARNING",
) -> None:
    """Simulated fleet + embedded MQTT broker + live traffic view; nothing to install."""
    from aedfleet.demo import run_demo

    configure_logging(log_level)
    run_until_signalled(run_demo(cabinets, duration or None, clock_scale, typer.echo))


@app.command()
def sim(
    cabinets: Annotated[int, typer.Option(help="How many cabinets to simulate")],
    broker: Annotated[str, typer.Option(help="mqtt://host:port or mqtts://user:pass@host:port")],
    scenario: Annotated[Path | None, typer.Option(help="Scenario YAML")] = None,
    duration: Annotated[float, typer.Option(help="Wall seconds to run; 0 runs until Ctrl-C")] = 0,
    clock_scale: Annotated[float, typer.Option(help="Simulated seconds per wall second")] = 1,
    heartbeat: Annotated[int, typer.Option(help="Heartbeat interval, seconds")] = 60,
    protocol: Annotated[str, typer.Option(help="MQTT protocol: 5 or 3.1.1")] = "5",
    work_dir: Annotated[Path, typer.Option(help="Outbox and ground truth")] = Path("var/sim"),
    ramp: Annotated[float, typer.Option(help="Seconds over which cabinets connect")] = 10,
    log_level: LogLevel = "WARNING",
) -> None:
    """Run N simulated cabinets, each with the real edge agent, against a broker."""
    from datetime import UTC, datetime

    from aedfleet.clock import ScaledClock
    from aedfleet.mqtt import MqttSettings
    from firmware_sim.errors import ScenarioError
    from firmware_sim.fleet import FleetSettings, FleetStats, SimulatedFleet
    from firmware_sim.scenario import Scenario, load_scenario

    configure_logging(log_level)
    try:
        loaded = load_scenario(scenario) if scenario else Scenario()
        settings = FleetSettings(
            cabinets=cabinets,
            broker=MqttSettings.from_url(broker, protocol=protocol),
            work_dir=work_dir,
            heartbeat_interval_s=heartbeat,
            ramp_s=ramp,
            tick_s=max(1.0, clock_scale),
        )
    except (ScenarioError, ValueError) as exc:
        raise _fail(str(exc)) from None

    def report(stats: FleetStats) -> None:
        typer.echo(
            f"{stats.elapsed_s:6.0f} s  {stats.connected}/{stats.cabinets} connected  "
            f"{stats.acknowledged} acked  {stats.messages_per_s:.1f} msg/s  "
            f"RSS {stats.rss_bytes / 2**20:.0f} MiB ({stats.rss_per_cabinet_bytes / 1024:.1f} "
            f"KiB/cabinet)  faults {stats.faults_started}"
        )

    async def run_fleet() -> None:
        fleet = SimulatedFleet(settings, loaded, ScaledClock(datetime.now(UTC), clock_scale))
        report(await fleet.run(duration or None, on_stats=report))

    typer.echo(f"ground truth: {settings.ground_truth_path}")
    run_until_signalled(run_fleet())


@app.command()
def agent(
    config: Annotated[Path, typer.Option("--config", help="The cabinet's TOML file")],
    log_level: LogLevel = "INFO",
) -> None:
    """Run the edge agent of one cabinet until SIGINT or SIGTERM."""
    from edge_agent.service import prepare_agent

    configure_logging(log_level)
    try:
        service = prepare_agent(config)
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    run_until_signalled(service)
