from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from firmware_sim.errors import GroundTruthError
from firmware_sim.faults import Fault, FaultPhase, Phase
from firmware_sim.ground_truth import GroundTruthWriter, read_ground_truth

PHASES = [
    FaultPhase(
        ts=datetime(2025, 1, 6, 12, tzinfo=UTC),
        cabinet_id="cab-1",
        fault=Fault.POWER_LOSS,
        phase=Phase.START,
        detail="mains lost",
    ),
    FaultPhase(
        ts=datetime(2025, 1, 6, 13, tzinfo=UTC),
        cabinet_id="cab-1",
        fault=Fault.POWER_LOSS,
        phase=Phase.END,
    ),
]


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "truth.jsonl"
    with GroundTruthWriter(path) as writer:
        for phase in PHASES:
            writer.write(phase)
    assert read_ground_truth(path) == PHASES
    first = json.loads(path.read_text().splitlines()[0])
    assert first == {
        "ts": "2025-01-06T12:00:00Z",
        "cabinet_id": "cab-1",
        "fault": "power_loss",
        "phase": "start",
        "detail": "mains lost",
    }


def test_each_line_is_on_disk_before_close(tmp_path: Path) -> None:
    path = tmp_path / "truth.jsonl"
    with GroundTruthWriter(path) as writer:
        writer.write(PHASES[0])
        assert read_ground_truth(path) == PHASES[:1]


def test_a_cut_off_last_line_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "truth.jsonl"
    path.write_text(PHASES[0].model_dump_json() + "\n" + PHASES[1].model_dump_json()[:20])
    assert read_ground_truth(path) == PHASES[:1]


def test_a_damaged_line_in_the_middle_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "truth.jsonl"
    path.write_text("{not json\n" + PHASES[0].model_dump_json() + "\n")
    with pytest.raises(GroundTruthError, match="line 1"):
        read_ground_truth(path)


def test_a_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(GroundTruthError, match="cannot be read"):
        read_ground_truth(tmp_path / "absent.jsonl")
