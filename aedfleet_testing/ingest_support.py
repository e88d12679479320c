"""Shared set-up for ingest tests: a registry of simulated cabinets and what reached
the broker, compared with what reached InfluxDB."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from aedfleet.contract import Status, decode_cabinet_message
from aedfleet.db.state import StateStore
from aedfleet.mqtt import InboundMessage
from aedfleet.registry import Cabinet, Registry, SiteType
from aedfleet_testing.influx import InfluxServer

MEASUREMENTS = ("heartbeat", "event", "selftest", "consumables", "birth", "cmd_result")

Key = tuple[str, str, str, int]
"""(cabinet id, measurement, boot id, seq) of one sequenced message."""


def seed_registry(store_url: str, cabinet_ids: Iterable[str]) -> None:
    store = StateStore.open(store_url)
    try:
        store.apply_registry(
            Registry(
                cabinets=tuple(
                    Cabinet(
                        cabinet_id=cabinet_id,
                        name=f"测试柜 {cabinet_id}",
                        latitude=22.5 + index / 1000,
                        longitude=114.0,
                        site_type=SiteType.TRANSPORT_HUB,
                        region_code="440305",
                        aed_model="Mindray BeneHeart C1A",
                    )
                    for index, cabinet_id in enumerate(cabinet_ids)
                )
            )
        )
    finally:
        store.close()


def published(messages: Iterable[InboundMessage]) -> set[Key]:
    """Sequenced messages seen on the broker, without duplicates."""
    keys: set[Key] = set()
    for message in messages:
        decoded = decode_cabinet_message(message.topic, message.payload)
        if not isinstance(decoded, Status):
            channel = message.topic.rsplit("/", 1)[-1]
            keys.add((decoded.cabinet_id, channel, decoded.boot_id, decoded.seq))
    return keys


def stored_points(influx: InfluxServer, database: str) -> list[Key]:
    """Every sequenced point in InfluxDB, duplicates included (there must be none)."""
    rows = influx.query_all(
        f'SELECT "boot_id", "seq" FROM {", ".join(MEASUREMENTS)} GROUP BY "cabinet_id"',  # noqa: S608 - constant names
        database,
    )
    return [(row["cabinet_id"], row["measurement"], row["boot_id"], row["seq"]) for row in rows]


def duplicates(points: list[Key]) -> list[Key]:
    return [key for key, count in Counter(points).items() if count > 1]


def write_ingest_config(path: Path, **values: object) -> Path:
    lines = []
    sections: dict[str, dict[str, object]] = {}
    for key, value in values.items():
        section, _, name = key.rpartition(".")
        sections.setdefault(section, {})[name] = value
    for section, entries in sorted(sections.items()):
        if section:
            lines.append(f"[{section}]")
        lines.extend(f"{name} = {_toml(value)}" for name, value in entries.items())
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
