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
