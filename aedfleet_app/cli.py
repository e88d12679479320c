"""The ``aedfleet`` command line: one entry point for every component."""

from __future__ import annotations

import json
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any

import typer

from aedfleet import contract
from aedfleet.logs import LOG_LEVELS, configure_logging
from aedfleet.service import StartupError, first_error, run_until_signalled
from aedfleet.settings import ConfigError
from aedfleet_app.broker_cli import broker_app
from aedfleet_app.report_cli import report_command
from alerting.cli import alarms_app, inspections_app, silences_app
from firmware_sim import MAX_CABINETS

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
contract_app = typer.Typer(no_args_is_help=True, help="The wire contract and its JSON Schemas.")
app.add_typer(contract_app, name="contract")
registry_app = typer.Typer(
    no_args_is_help=True, help="The fleet registry: cabinets, people and districts."
)
app.add_typer(registry_app, name="registry")
app.add_typer(alarms_app, name="alarms")
app.add_typer(silences_app, name="silences")
app.add_typer(inspections_app, name="inspections")
app.add_typer(broker_app, name="broker")
app.command("report")(report_command)
DEFAULT_STORE_URL = "sqlite:///var/aedfleet.sqlite3"
StoreOption = Annotated[
    str,
    typer.Option("--store", help="State store URL (sqlite:///path or postgresql+psycopg://…)"),
]
MAX_PROBLEMS_SHOWN = 50

SCHEMA_DIR = Path("docs/schemas")


def _log_level(value: str) -> str:
    if value.upper() not in LOG_LEVELS:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(LOG_LEVELS)}")
    return value.upper()


def _positive(value: float) -> float:
    if not value > 0:
        raise typer.BadParameter(f"{value} is not more than 0")
    return value


LogLevel = Annotated[
    str,
    typer.Option("--log-level", callback=_log_level, help="DEBUG, INFO, WARNING or ERROR"),
]
Cabinets = Annotated[
    int, typer.Option(min=1, max=MAX_CABINETS, help="How many cabinets to simulate")
]
Duration = Annotated[float, typer.Option(min=0, help="Wall seconds to run; 0 runs until Ctrl-C")]


def _fail(message: str) -> typer.Exit:
    typer.secho(message, err=True, fg=typer.colors.RED)
    return typer.Exit(code=2)


def _serve(main: Coroutine[Any, Any, object], *refusals: type[Exception]) -> None:
    """Run a service until signalled; a start-up failure the operator must fix
    (:class:`StartupError`, or one of ``refusals``, such as a store that cannot open) is
    one line and exit status 2, not a traceback."""
    try:
        run_until_signalled(main)
    except Exception as exc:
        cause = first_error(exc, (StartupError, *refusals))
        if cause is None:
            raise
        raise _fail(str(cause)) from None


@contract_app.command("export-schemas")
def export_schemas(
    out: Annotated[Path, typer.Option(help="Folder for one JSON Schema per channel")] = SCHEMA_DIR,
) -> None:
    """Write the JSON Schema of every channel's payload (the docs' copy of the contract)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        for channel, schema in contract.json_schemas().items():
            path = out / f"{channel}.schema.json"
            text = json.dumps(schema, indent=2, ensure_ascii=False) + "\n"
            path.write_text(text, encoding="utf-8")
            typer.echo(f"wrote {path}")
    except OSError as exc:
        raise _fail(f"cannot write the schemas to {out}: {exc.strerror or exc}") from None


@app.command()
def demo(
    cabinets: Cabinets = 40,
    duration: Duration = 90,
    clock_scale: Annotated[
        float,
        typer.Option(callback=_positive, help="How much faster than wall time the cabinets live"),
    ] = 60,
    log_level: LogLevel = "WARNING",
) -> None:
    """Simulated fleet + embedded MQTT broker + live traffic view; nothing to install."""
    from aedfleet_app.demo import run_demo

    configure_logging(log_level)
    run_until_signalled(run_demo(cabinets, duration or None, clock_scale, typer.echo))


@app.command()
def sim(
    cabinets: Cabinets,
    broker: Annotated[str, typer.Option(help="mqtt://host:port or mqtts://user:pass@host:port")],
    scenario: Annotated[Path | None, typer.Option(help="Scenario YAML")] = None,
    duration: Duration = 0,
    clock_scale: Annotated[
        float, typer.Option(callback=_positive, help="Simulated seconds per wall second")
    ] = 1,
    heartbeat: Annotated[int, typer.Option(help="Heartbeat interval, seconds")] = 60,
    protocol: Annotated[str, typer.Option(help="MQTT protocol: 5 or 3.1.1")] = "5",
    work_dir: Annotated[Path, typer.Option(help="Outbox and ground truth")] = Path("var/sim"),
    ramp: Annotated[float, typer.Option(help="Seconds over which cabinets connect")] = 10,
    secret_file: Annotated[
        Path | None,
        typer.Option(help="Provisioning secret: each cabinet logs in as itself (docs/security.md)"),
    ] = None,
    ca_file: Annotated[
        Path | None,
        typer.Option(
            help="CA certificate that signed the broker's (mqtts://); system CAs if unset"
        ),
    ] = None,
    log_level: LogLevel = "WARNING",
) -> None:
    """Run N simulated cabinets, each with the real edge agent, against a broker."""
    from datetime import UTC, datetime

    from pydantic import SecretBytes, ValidationError

    from aedfleet.clock import ScaledClock
    from aedfleet.mqtt import MqttSettings, TlsSettings
    from aedfleet.settings import describe_problems
    from aedfleet_app.broker_cli import ProvisioningFileError, read_secret
    from firmware_sim.errors import ScenarioError
    from firmware_sim.fleet import FleetSettings, FleetStats, SimulatedFleet
    from firmware_sim.scenario import Scenario, load_scenario

    configure_logging(log_level)
    try:
        loaded = load_scenario(scenario) if scenario else Scenario()
        mqtt = MqttSettings.from_url(broker, protocol=protocol)
    except ValidationError as exc:
        raise _fail(f"--broker or --protocol: {describe_problems(exc, MqttSettings)}") from None
    except (ScenarioError, ValueError) as exc:
        raise _fail(str(exc)) from None
    if ca_file is not None:
        if mqtt.tls is None:
            raise _fail("--ca-file is for a TLS broker: give an mqtts:// URL")
        mqtt = mqtt.model_copy(update={"tls": TlsSettings(ca_file=str(ca_file))})
    try:
        settings = FleetSettings(
            cabinets=cabinets,
            broker=mqtt,
            work_dir=work_dir,
            heartbeat_interval_s=heartbeat,
            ramp_s=ramp,
            tick_s=max(1.0, clock_scale),
            broker_secret=SecretBytes(read_secret(secret_file)) if secret_file else None,
        )
    except ValidationError as exc:
        raise _fail(describe_problems(exc, FleetSettings)) from None
    except ProvisioningFileError as exc:
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
    _serve(run_fleet())


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


@app.command()
def ingest(
    config: Annotated[Path, typer.Option("--config", help="The service's TOML file")],
    log_level: LogLevel = "INFO",
) -> None:
    """Subscribe to the fleet and write every valid message to InfluxDB and the state store."""
    from aedfleet.db.errors import StoreError
    from aedfleet.settings import load_settings
    from ingest.config import IngestSettings
    from ingest.service import IngestService

    configure_logging(log_level)
    try:
        settings = load_settings(IngestSettings, config)
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    _serve(IngestService(settings).run(), StoreError)


@app.command()
def alerting(
    config: Annotated[Path, typer.Option("--config", help="The service's TOML file")],
    log_level: LogLevel = "INFO",
) -> None:
    """Ingest plus alerting: rules, alarms, paging of captains, ack links and the API."""
    from aedfleet.db.errors import StoreError
    from aedfleet.settings import load_settings
    from aedfleet_app.alerting_process import AlertingProcess, AlertingProcessSettings
    from alerting.store import AlarmStoreError

    configure_logging(log_level)
    try:
        settings = load_settings(AlertingProcessSettings, config)
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    _serve(AlertingProcess(settings).run(), StoreError, AlarmStoreError)


@registry_app.command("import")
def registry_import(
    files: Annotated[list[Path], typer.Argument(help="CSV, YAML or OSM GeoJSON files")],
    store: StoreOption = DEFAULT_STORE_URL,
    dry_run: Annotated[bool, typer.Option(help="Report what would change, change nothing")] = False,
) -> None:
    """Import cabinets, people and districts: all of a file or none of it, never deleting."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from aedfleet.db.state import StateStore, StoreError
    from ingest.registry.errors import RegistryError
    from ingest.registry.importer import plan_import, read_registry_files

    try:
        with Progress(
            SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), transient=True
        ) as progress:
            reading = progress.add_task("reading", total=None)
            parsed = read_registry_files(
                files,
                on_progress=lambda rows: progress.update(
                    reading, description=f"read {rows:,} rows"
                ),
            )
            progress.update(reading, description="comparing with the registry")
            with StateStore.open(store) as state:
                plan = plan_import(state.load_registry(), parsed)
                if not dry_run and not plan.is_empty:
                    progress.update(reading, description="writing")
                    state.apply_registry(plan.upserts)
    except RegistryError as exc:
        problems = exc.problems
        shown = "\n".join(f"  {problem}" for problem in problems[:MAX_PROBLEMS_SHOWN])
        more = len(problems) - MAX_PROBLEMS_SHOWN
        tail = f"\n  … and {more} more" if more > 0 else ""
        raise _fail(f"nothing imported: {len(problems)} problem(s)\n{shown}{tail}") from None
    except StoreError as exc:
        raise _fail(f"nothing imported: {exc}") from None
    verb = "would be" if dry_run else "were"
    for kind, counts in (
        ("cabinets", plan.cabinets),
        ("people", plan.people),
        ("assignments", plan.assignments),
        ("districts", plan.districts),
    ):
        typer.echo(
            f"{kind}: {counts.added} {verb} added, {counts.changed} {verb} changed, "
            f"{counts.unchanged} left alone"
        )
    if parsed.skipped:
        typer.echo(f"skipped {parsed.skipped} features that are not defibrillators")


@registry_app.command("export")
def registry_export(
    out: Annotated[Path, typer.Argument(help="fleet.csv (with fleet.people.csv) or fleet.yaml")],
    store: StoreOption = DEFAULT_STORE_URL,
) -> None:
    """Write the whole registry in an importable format."""
    from aedfleet.db.state import StateStore, StoreError
    from ingest.registry.errors import RegistryError
    from ingest.registry.importer import write_registry_file

    try:
        with StateStore.open(store) as state:
            registry = state.load_registry()
        written = write_registry_file(registry, out)
    except RegistryError as exc:
        raise _fail(f"nothing exported: {'; '.join(str(p) for p in exc.problems)}") from None
    except StoreError as exc:
        raise _fail(str(exc)) from None
    for path in written:
        typer.echo(f"wrote {path}")


dispatch_app = typer.Typer(
    help="Door events to command centres: run the dispatch service, or list its deliveries."
)
app.add_typer(dispatch_app, name="dispatch")
ConfigOption = Annotated[Path | None, typer.Option("--config", help="The service's TOML file")]


@dispatch_app.callback(invoke_without_command=True)
def dispatch(ctx: typer.Context, config: ConfigOption = None, log_level: LogLevel = "INFO") -> None:
    """Without a command: run the dispatch service (--config required) until SIGINT or
    SIGTERM."""
    if ctx.invoked_subcommand is not None:
        return
    if config is None:
        # Required like every service's, but optional for `dispatch list`, which shares
        # this callback; reported as Typer reports a bad option (usage, exit status 2).
        raise typer.BadParameter(
            "the dispatch service needs its TOML file", param_hint="'--config'"
        )
    from aedfleet.db.errors import StoreError
    from dispatch.cli import prepare_service
    from dispatch.errors import OutboxError

    configure_logging(log_level)
    try:
        service = prepare_service(config)
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    _serve(service.run(), StoreError, OutboxError)


@dispatch_app.command("list")
def dispatch_list(
    config: ConfigOption = None,
    store: Annotated[
        str | None, typer.Option("--store", help="Outbox URL, instead of the configuration's")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="How many deliveries")] = 20,
    cabinet: Annotated[str | None, typer.Option(help="Only this cabinet's")] = None,
    endpoint: Annotated[str | None, typer.Option(help="Only this endpoint's (mqtt too)")] = None,
    status: Annotated[str | None, typer.Option(help="pending, delivered or expired")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line")] = False,
) -> None:
    """Recent deliveries, newest first, with every attempt and its outcome."""
    from dispatch.cli import OutboxError, list_deliveries, outbox_url
    from dispatch.outbox import DeliveryStatus

    try:
        wanted = DeliveryStatus(status) if status else None
    except ValueError:
        raise _fail(f"unknown status {status!r}: use pending, delivered or expired") from None
    try:
        list_deliveries(
            outbox_url(config, store),
            typer.echo,
            limit=limit,
            cabinet_id=cabinet,
            endpoint=endpoint,
            status=wanted,
            as_json=as_json,
        )
    except (ConfigError, OutboxError) as exc:
        raise _fail(str(exc)) from None
