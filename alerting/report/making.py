"""Making the fleet report: its settings (where its sources are) and the HTML.

``aedfleet report`` (:mod:`aedfleet_app.report_cli`) takes the sources from the alerting
process's file (its InfluxDB, state store, coverage target and time zone) or from flags.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field

from aedfleet.contract import TimeZoneName
from aedfleet.influx.writer import InfluxSettings
from aedfleet.registry import Language
from alerting.districts import CoverageSettings

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
