"""Running the installed ``aedfleet`` command from tests, as an operator would."""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
AEDFLEET = str(Path(sys.executable).with_name("aedfleet"))


def command_env() -> dict[str, str]:
    """The environment for a subprocess that loads test drivers from ``tests``."""
    return {**os.environ, "PYTHONPATH": str(REPO)}
