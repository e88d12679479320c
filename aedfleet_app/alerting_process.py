"""The ``aedfleet alerting`` process: the ingest pipeline with alerting on its seam.

One process runs both components so that alerting sees every accepted message before it
is acknowledged to the broker: the ingest (:class:`ingest.service.IngestService`) hands
each batch to :meth:`alerting.service.AlertingService.accept` after the twins are
written. Alerting starts first (its engine must be ready to take messages), then the
ingest subscribes; :attr:`AlertingProcess.ready` is set once both are up.
"""

from __future__ import annotations

import asyncio

from pydantic import Field

from aedfleet.clock import Clock
from alerting.config import AlertingSettings
from alerting.notifiers.delivery import Deliverer
from alerting.service import AlertingService
from ingest.config import IngestSettings
from ingest.service import IngestService


class AlertingProcessSettings(AlertingSettings):
    """The alerting sections and the ``[ingest]`` section of the process's one file."""

    ingest: IngestSettings = Field(
        default=IngestSettings(),
        description="The ingest pipeline this service runs: the keys of the ingest service "
        "above, in this table",
    )


class AlertingProcess:
    def __init__(
        self,
        settings: AlertingProcessSettings,
        clock: Clock | None = None,
        deliverer: Deliverer | None = None,
    ) -> None:
        self.settings = settings
        self.alerting = AlertingService(
            settings,
            store_url=settings.ingest.store_url,
            influx=settings.ingest.influx,
            clock=clock,
            deliverer=deliverer,
        )
        self.ingest = IngestService(settings.ingest, sinks=[self.alerting])
        self.ready = asyncio.Event()

    @property
    def http_port(self) -> int | None:
        return self.alerting.http_port

    async def run(self) -> None:
        """Run until cancelled; a failure of either component ends both."""
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self.alerting.run(), name="alerting")
            await self.alerting.started.wait()
            tasks.create_task(self.ingest.run(), name="alerting-ingest")
            await self.ingest.subscribed.wait()
            self.ready.set()
