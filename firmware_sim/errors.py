"""The simulator's exception tree.

::

    SimulatorError
    ├── ScenarioError      a scenario file that cannot be used (names the file and key)
    ├── OptionsError       bad simulated-hardware options (names the option)
    └── GroundTruthError   a ground-truth file that cannot be read (names the line)
"""

from __future__ import annotations

from pathlib import Path


class SimulatorError(Exception):
    """Root of every error the simulator raises."""


class ScenarioError(SimulatorError):
    def __init__(self, path: Path, key: str | None, problem: str) -> None:
        where = f"{path}: {key}" if key else str(path)
        super().__init__(f"scenario {where}: {problem}")
        self.path = path
        self.key = key
        self.problem = problem


class OptionsError(SimulatorError, ValueError):
    def __init__(self, option: str, problem: str) -> None:
        super().__init__(f"simulated hardware option {option!r}: {problem}")
        self.option = option
        self.problem = problem


class GroundTruthError(SimulatorError):
    def __init__(self, path: Path, line: int, problem: str) -> None:
        super().__init__(f"ground truth {path}, line {line}: {problem}")
        self.path = path
        self.line = line
        self.problem = problem
