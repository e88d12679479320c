"""``aedfleet report``: the self-contained HTML fleet report, from the alerting process's
sources (``--config alerting.toml``: its InfluxDB, state store, coverage target and time
zone); flags override them, or stand in for a file. Heavy imports happen inside the
command so that ``aedfleet --help`` stays fast.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from pydantic import SecretStr, ValidationError

from aedfleet.influx.writer import InfluxSettings
from aedfleet.registry import Language
from alerting.report.making import ReportSettings, make_report


def _fail(message: str) -> typer.Exit:
    typer.secho(message, err=True, fg=typer.colors.RED)
    return typer.Exit(code=2)


def report_command(
    out: Annotated[Path, typer.Option("--out", help="The HTML file to write")],
    config: Annotated[
        Path | None,
        typer.Option("--config", help="The alerting service's TOML file (its sources)"),
    ] = None,
    store: Annotated[
        str | None, typer.Option("--store", help="State store URL, instead of the config's")
    ] = None,
    influx_url: Annotated[
        str | None, typer.Option("--influx-url", help="InfluxDB URL, instead of the config's")
    ] = None,
    influx_token: Annotated[
        str | None,
        typer.Option(
            "--influx-token",
            envvar="AEDFLEET_INFLUX_TOKEN",
            help="InfluxDB token",
            show_default=False,
        ),
    ] = None,
    bucket: Annotated[
        str | None, typer.Option("--bucket", help="InfluxDB bucket (1.x: database)")
    ] = None,
    language: Annotated[Language, typer.Option("--language", help="zh or en")] = Language.ZH,
) -> None:
    """Write a self-contained HTML fleet report: readiness, map, coverage per district,
    expiring consumables, open alarms."""
    from aedfleet.settings import ConfigError, describe_problems, load_settings
    from aedfleet_app.alerting_process import AlertingProcessSettings
    from alerting.report.sources import ReportError

    try:
        settings = ReportSettings()
        if config is not None:
            process = load_settings(AlertingProcessSettings, config)
            settings = ReportSettings(
                influx=process.ingest.influx,
                store_url=process.ingest.store_url,
                coverage=process.coverage,
                time_zone=process.notify.render.time_zone,
            )
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    influx: dict[str, object] = {}
    if influx_url is not None:
        influx["url"] = influx_url
    if influx_token is not None:
        influx["token"] = SecretStr(influx_token)
    if bucket is not None:
        influx["bucket"] = bucket
    try:
        checked = InfluxSettings.model_validate(settings.influx.model_dump() | influx)
    except ValidationError as exc:
        raise _fail(describe_problems(exc, InfluxSettings)) from None
    settings = settings.model_copy(
        update={"influx": checked} | ({"store_url": store} if store is not None else {})
    )
    try:
        html = asyncio.run(make_report(settings, language, datetime.now(UTC)))
    except ReportError as exc:
        raise _fail(f"no report: {' '.join(str(exc).split())}") from None  # one line
    try:
        out.write_text(html, encoding="utf-8")
    except OSError as exc:
        raise _fail(f"cannot write {out}: {exc.strerror or exc}") from None
    typer.echo(f"wrote {out}")
