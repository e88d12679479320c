"""Logging set-up shared by every aedfleet process."""

from __future__ import annotations

import logging
import sys
from typing import Final

LOG_LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR")
# Libraries that log routine work at INFO: APScheduler says "Running job ..." and
# "Job ... executed successfully" for every run of every job, several lines a second in
# the alerting service. They speak at INFO only when the process logs at DEBUG.
CHATTY_LIBRARIES: Final = ("apscheduler",)


def configure_logging(level: str = "INFO") -> None:
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    library_level = logging.DEBUG if level.upper() == "DEBUG" else logging.WARNING
    for name in CHATTY_LIBRARIES:
        logging.getLogger(name).setLevel(library_level)
