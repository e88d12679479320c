"""The JSON Schemas in docs/schemas/ must be the ones the contract module produces."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from aedfleet.contract import Channel, json_schemas

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "docs" / "schemas"
REGENERATE = "run `aedfleet contract export-schemas` from the repository root and commit the result"


def _expected() -> dict[str, dict[str, Any]]:
    return {f"{channel}.schema.json": schema for channel, schema in json_schemas().items()}


def test_schema_files_are_the_channels() -> None:
    exported = {path.name for path in SCHEMA_DIR.glob("*.json")}
    expected = set(_expected())
    assert exported == expected, (
        f"docs/schemas/ is out of date: missing {sorted(expected - exported)}, "
        f"unexpected {sorted(exported - expected)} (delete those); {REGENERATE}"
    )


@pytest.mark.parametrize("channel", list(Channel))
def test_schema_file_matches_the_contract(channel: Channel) -> None:
    path = SCHEMA_DIR / f"{channel.value}.schema.json"
    assert path.is_file(), f"{path} is missing; {REGENERATE}"
    exported = json.loads(path.read_text(encoding="utf-8"))
    assert exported == json_schemas()[channel.value], (
        f"{path.name} differs from contract.json_schemas(); {REGENERATE}"
    )


@pytest.mark.parametrize("channel", list(Channel))
def test_schema_file_describes_an_object_with_a_title(channel: Channel) -> None:
    path = SCHEMA_DIR / f"{channel.value}.schema.json"
    assert path.is_file(), f"no schema file for channel {channel.value}; {REGENERATE}"
    schema = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(schema.get("title"), str)
    assert schema["title"]
    assert schema.get("type") == "object"
    assert {"v", "cabinet_id", "ts"} <= set(schema["properties"])
