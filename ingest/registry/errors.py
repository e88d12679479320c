"""What goes wrong while reading, checking or writing a registry file.

Every problem the registry package finds is a :class:`RowProblem` that names where it is
(file and line, or file and GeoJSON feature) and why; they are collected, never stopped at
the first, and raised together as one :class:`RegistryError`::

    IngestError
    └── RegistryError
            .problems: tuple[RowProblem, ...]

No exception of a parsing library (csv, PyYAML, json, pydantic) leaves this package.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ingest.errors import IngestError


@dataclass(frozen=True, slots=True)
class Source:
    """Where a record was read: a file name and the 1-based line (or feature index) in it."""

    record: str
    line: int | None = None
    unit: str = "line"

    def problem(self, reason: str) -> RowProblem:
        return RowProblem(self.line, self.record, reason, self.unit)

    def __str__(self) -> str:
        return self.record if self.line is None else f"{self.record} {self.unit} {self.line}"


@dataclass(frozen=True, slots=True)
class RowProblem:
    """One bad row, item or feature.

    ``line`` is the 1-based line where the record starts (CSV, YAML) or, with
    ``unit="feature"``, the 0-based index in a GeoJSON ``features`` array; None when the
    problem concerns the whole file. ``record`` names the file the problem is in.
    """

    line: int | None
    record: str
    reason: str
    unit: str = "line"

    def __str__(self) -> str:
        return f"{Source(self.record, self.line, self.unit)}: {self.reason}"


class RegistryError(IngestError):
    """A registry file, or a registry about to be imported, has problems; ``problems`` lists all."""

    def __init__(self, problems: Iterable[RowProblem]) -> None:
        self.problems = tuple(problems)
        super().__init__(str(self))

    def __str__(self) -> str:
        count = len(self.problems)
        head = f"{count} problem{'s' if count != 1 else ''} in the registry"
        return "\n".join([head, *(f"  {problem}" for problem in self.problems)])
