"""The ground truth of a simulated run: every injected fault's start and end, as JSON lines.

Each line is flushed as it is written, so a run that is killed leaves a readable file
whose only possible damage is a cut-off last line, which the reader skips.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import Self

from pydantic import ValidationError

from firmware_sim.errors import GroundTruthError
from firmware_sim.faults import FaultPhase


class GroundTruthWriter:
    """Appends fault phases to a JSON-lines file; a context manager that closes it."""

    __slots__ = ("_file", "path")

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = path.open("a", encoding="utf-8")

    def write(self, phase: FaultPhase) -> None:
        self._file.write(phase.model_dump_json() + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def read_ground_truth(path: Path) -> list[FaultPhase]:
    """All phases in the file, in the order written."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise GroundTruthError(path, 0, f"cannot be read: {exc.strerror}") from None
    lines = text.split("\n")
    phases = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            phases.append(FaultPhase.model_validate_json(line))
        except ValidationError as exc:
            # Only the last line can be cut off by a kill; it has no newline after it.
            if number == len(lines):
                break
            raise GroundTruthError(path, number, str(exc.errors()[0]["msg"])) from None
    return phases
