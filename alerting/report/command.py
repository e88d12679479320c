"""``aedfleet report``: its settings and the command.

The sources are the alerting service's (``--config alerting.toml``: its InfluxDB, state
store, coverage target and time zone); flags override them, or stand in for a file.
Heavy imports happen inside the command so that ``aedfleet --help`` stays fast.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated
from zoneinfo import ZoneInfo

import typer
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from aedfleet.contract import TimeZoneName
from alerting.districts import CoverageSettings
from ingest.influx import InfluxSettings
from ingest.registry.models import Language

if TYPE_CHECKING:
    from alerting.config import AlertingSettings

DEFAULT_STORE_URL = "sqlite:///var/aedfleet.sqlite3"


class ReportSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    influx: InfluxSettings = Field(
        default=InfluxSettings(), description="The InfluxDB alerting writes readiness points to"
    )
    store_url: str = Field(default=DEFAULT_STORE_URL, description="The state store's URL")
    coverage: CoverageSettings = Field(
        default=CoverageSettings(), description="The fleet's target of AEDs per 100,000 people"
    )
    time_zone: TimeZoneName = Field(
        default="Asia/Shanghai", description="The zone of the report's dates and times"
    )

    @classmethod
    def of(cls, alerting: AlertingSettings) -> ReportSettings:
        return cls(
            influx=alerting.ingest.influx,
            store_url=alerting.ingest.store_url,
            coverage=alerting.coverage,
            time_zone=alerting.notify.render.time_zone,
        )


async def make_report(settings: ReportSettings, language: Language, now: datetime) -> str:
    """The report's HTML as the sources stand at ``now``; raises
    :class:`~alerting.report.sources.ReportError`. The store is read in a worker thread."""
    from alerting.report.figures import build_report
    from alerting.report.page import render_page
    from alerting.report.sources import read_readings, read_store

    stored = await asyncio.to_thread(read_store, settings.store_url)
    readings = await read_readings(settings.influx)
    report = build_report(
        stored.registry,
        stored.twins,
        readings,
        stored.open_alarms,
        settings.coverage,
        now=now,
        today=now.astimezone(ZoneInfo(settings.time_zone)).date(),
    )
    return render_page(report, language, settings.time_zone)


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
    from alerting.config import AlertingSettings
    from alerting.report.sources import ReportError

    try:
        settings = (
            ReportSettings.of(load_settings(AlertingSettings, config))
            if config is not None
            else ReportSettings()
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
