"""InfluxWriter against a real InfluxDB (1.6 behind the nginx /api/v2/write shim)."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aedfleet.contract import (
    SCHEMA_VERSION,
    Birth,
    CabinetMessage,
    CmdResult,
    ConnectionState,
    Consumables,
    ConsumablesSource,
    DoorState,
    Event,
    EventType,
    Heartbeat,
    PowerSource,
    Selftest,
    SelftestKind,
    SelftestPeriod,
    SelftestResult,
    SelftestSchedule,
    Status,
)
from aedfleet.influx.lines import CabinetTags, timestamp_ns
from aedfleet.influx.writer import InfluxSettings, InfluxWriteError, InfluxWriter
from aedfleet_testing.influx import InfluxServer
from ingest.telemetry import to_line
from tests.test_influx_lines import expected_tag

BOOT = "0123456789abcdef0123456789abcdef"
T0 = datetime(2025, 3, 14, 8, 0, 0, 250000, tzinfo=UTC)
TAGS = CabinetTags(
    cabinet_id="深圳-南山-001",
    region_code="440305 南山区",
    site_type="transport_hub",
    aed_model='迈瑞 BeneHeart C1A, "v2"=新',
)
TAG_COLUMNS = {
    "cabinet_id": "深圳-南山-001",
    "region": "440305 南山区",
    "site_type": "transport_hub",
    "aed_model": '迈瑞 BeneHeart C1A, "v2"=新',
}


def settings_for(
    server: InfluxServer, bucket: str, timeout_s: float = 5.0, gzip: bool = True
) -> InfluxSettings:
    return InfluxSettings(url=server.url, bucket=bucket, timeout_s=timeout_s, gzip=gzip)


def envelope(seq: int, ts: datetime) -> dict[str, Any]:
    return {
        "v": SCHEMA_VERSION,
        "cabinet_id": TAGS.cabinet_id,
        "boot_id": BOOT,
        "seq": seq,
        "ts": ts,
    }


def every_measurement() -> list[CabinetMessage]:
    at = [T0 + timedelta(seconds=i) for i in range(8)]
    return [
        Birth(
            **envelope(1, at[0]),
            hardware_version="柜-hw-2",
            firmware_version="1.4.0",
            aed_model="BeneHeart C1A",
            aed_serial="B21K-004211",
            heartbeat_interval_s=300,
            selftest_schedule=SelftestSchedule(period=SelftestPeriod.DAILY, at_local="03:00"),
            time_zone="Asia/Shanghai",
        ),
        Status(**envelope(1, at[1]), state=ConnectionState.ONLINE),
        Heartbeat(
            **envelope(2, at[2]),
            aed_ready=True,
            battery_pct=87,
            temperature_c=-3.25,
            humidity_pct=52.5,
            door=DoorState.OPEN,
            aed_present=False,
            power=PowerSource.BACKUP,
            heater_on=True,
            rssi_dbm=-71,
            outbox_pending=12,
            outbox_shed=4,
        ),
        Event(**envelope(3, at[3]), event=EventType.TAMPER, detail='门被撬开 "前门"\\左,右=中'),
        Selftest(
            **envelope(4, at[4]),
            kind=SelftestKind.WEEKLY,
            result=SelftestResult.FAIL,
            fault_codes=("PAD_EXPIRED", "BATT_LOW"),
            battery_pct=9.5,
        ),
        Consumables(
            **envelope(5, at[5]),
            pads_present=True,
            pads_expiry=date(2025, 4, 1),
            battery_expiry=None,
            source=ConsumablesSource.CAPTAIN,
        ),
        CmdResult(**envelope(6, at[6]), command_id="cmd-1", ok=False, error="无效\n命令"),
        Status(**envelope(1, at[7]), state=ConnectionState.OFFLINE),
    ]


def lines_of(messages: list[CabinetMessage]) -> list[str]:
    lines = [to_line(message, TAGS) for message in messages]
    assert all(line is not None for line in lines)
    return [line for line in lines if line is not None]


def rows(server: InfluxServer, db: str, measurement: str) -> list[dict[str, Any]]:
    found = server.query(f'SELECT * FROM "{measurement}"', db)  # noqa: S608 - our constants
    # SELECT * lists every column of the measurement; drop the ones this point lacks.
    return [{k: v for k, v in row.items() if v is not None} for row in found]


@pytest.mark.parametrize("gzip", [True, False], ids=["gzip", "plain"])
async def test_every_measurement_reads_back(
    influx_server: InfluxServer, influx_database: str, gzip: bool
) -> None:
    async with InfluxWriter(settings_for(influx_server, influx_database, gzip=gzip)) as writer:
        await writer.write(lines_of(every_measurement()))

    ns = [timestamp_ns(T0 + timedelta(seconds=i)) for i in range(8)]
    common = {**TAG_COLUMNS, "boot_id": BOOT}
    assert rows(influx_server, influx_database, "birth") == [
        {
            **common,
            "time": ns[0],
            "aed_serial": "B21K-004211",
            "firmware_version": "1.4.0",
            "hardware_version": "柜-hw-2",
            "heartbeat_interval_s": 300,
            "seq": 1,
            "time_zone": "Asia/Shanghai",
        }
    ]
    assert rows(influx_server, influx_database, "status") == [
        {**common, "time": ns[1], "connection": 1, "online": True},
        {**common, "time": ns[7], "connection": 1, "online": False},
    ]
    heartbeat_rows = rows(influx_server, influx_database, "heartbeat")
    assert heartbeat_rows == [
        {
            **common,
            "time": ns[2],
            "aed_ready": True,
            "aed_present": False,
            "battery_pct": 87.0,
            "door": "open",
            "heater_on": True,
            "humidity_pct": 52.5,
            "outbox_pending": 12,
            "outbox_shed": 4,
            "power": "backup",
            "rssi_dbm": -71,
            "seq": 2,
            "temperature_c": -3.25,
        }
    ]
    field_types = {
        row["fieldKey"]: row["fieldType"]
        for row in influx_server.query("SHOW FIELD KEYS FROM heartbeat", influx_database)
    }
    assert field_types == {
        "aed_present": "boolean",
        "aed_ready": "boolean",
        "battery_pct": "float",
        "boot_id": "string",
        "door": "string",
        "heater_on": "boolean",
        "humidity_pct": "float",
        "outbox_pending": "integer",
        "outbox_shed": "integer",
        "power": "string",
        "rssi_dbm": "integer",
        "seq": "integer",
        "temperature_c": "float",
    }
    assert rows(influx_server, influx_database, "event") == [
        {
            **common,
            "time": ns[3],
            "event": "tamper",
            "detail": '门被撬开 "前门"\\左,右=中',
            "seq": 3,
        }
    ]
    assert rows(influx_server, influx_database, "selftest") == [
        {
            **common,
            "time": ns[4],
            "battery_pct": 9.5,
            "fault_codes": "PAD_EXPIRED,BATT_LOW",
            "kind": "weekly",
            "passed": False,
            "result": "fail",
            "seq": 4,
        }
    ]
    assert rows(influx_server, influx_database, "consumables") == [
        {
            **common,
            "time": ns[5],
            "pads_expiry": "2025-04-01",
            "pads_expiry_days": 18,
            "pads_present": True,
            "seq": 5,
            "source": "captain",
        }
    ]
    assert rows(influx_server, influx_database, "cmd_result") == [
        {
            **common,
            "time": ns[6],
            "command_id": "cmd-1",
            "error": "无效\n命令",
            "ok": False,
            "seq": 6,
        }
    ]


MEASUREMENTS = ("birth", "status", "heartbeat", "event", "selftest", "consumables", "cmd_result")


def count(server: InfluxServer, db: str) -> int:
    total = 0
    for measurement in MEASUREMENTS:
        found = server.query(f'SELECT count("boot_id") FROM "{measurement}"', db)  # noqa: S608
        total += found[0]["count"] if found else 0
    return total


async def test_writing_a_batch_twice_leaves_the_same_points(
    influx_server: InfluxServer, influx_database: str
) -> None:
    lines = lines_of(every_measurement())
    async with InfluxWriter(settings_for(influx_server, influx_database)) as writer:
        await writer.write(lines)
        first = rows(influx_server, influx_database, "heartbeat")
        points = count(influx_server, influx_database)
        await writer.write(lines)
        await writer.write(list(reversed(lines)))
    assert points == 8
    assert count(influx_server, influx_database) == points
    assert rows(influx_server, influx_database, "heartbeat") == first
    assert len(rows(influx_server, influx_database, "status")) == 2


async def test_a_large_batch_is_one_request(
    influx_server: InfluxServer, influx_database: str
) -> None:
    template = every_measurement()[2]
    lines = lines_of(
        [
            template.model_copy(update={"seq": seq, "ts": T0 + timedelta(seconds=seq)})
            for seq in range(1, 5001)
        ]
    )
    async with InfluxWriter(settings_for(influx_server, influx_database)) as writer:
        await writer.write(lines)
        await writer.write([])  # nothing to do, no request
    found = influx_server.query('SELECT count("seq") FROM heartbeat', influx_database)
    assert found[0]["count"] == 5000


async def test_a_malformed_line_is_not_retryable(
    influx_server: InfluxServer, influx_database: str
) -> None:
    async with InfluxWriter(settings_for(influx_server, influx_database)) as writer:
        with pytest.raises(InfluxWriteError) as caught:
            await writer.write(["heartbeat,cabinet_id=x this is not line protocol"])
    error = caught.value
    assert error.retryable is False
    assert error.status == 400
    assert error.endpoint == f"{influx_server.url}/api/v2/write"
    assert "unable to parse" in str(error)


async def test_a_field_type_conflict_is_not_retryable(
    influx_server: InfluxServer, influx_database: str
) -> None:
    async with InfluxWriter(settings_for(influx_server, influx_database)) as writer:
        await writer.write(["heartbeat,cabinet_id=x seq=1i 1"])
        with pytest.raises(InfluxWriteError) as caught:
            await writer.write(["heartbeat,cabinet_id=x seq=1.5 2"])
    assert caught.value.retryable is False
    assert caught.value.status == 400
    assert "conflict" in str(caught.value)


async def test_a_missing_bucket_is_not_retryable(influx_server: InfluxServer) -> None:
    async with InfluxWriter(settings_for(influx_server, "no_such_bucket")) as writer:
        with pytest.raises(InfluxWriteError) as caught:
            await writer.write(lines_of(every_measurement()))
    assert caught.value.retryable is False
    assert caught.value.status == 404


async def test_refused_connection_is_retryable_and_writes_resume_after_restart(
    fresh_influx_server: InfluxServer,
) -> None:
    server = fresh_influx_server
    server.create_database("fleet")
    lines = lines_of(every_measurement())
    async with InfluxWriter(settings_for(server, "fleet", timeout_s=5)) as writer:
        await writer.write(lines[:1])
        server.stop()
        started = time.monotonic()
        with pytest.raises(InfluxWriteError) as caught:
            await writer.write(lines)
        assert time.monotonic() - started < 5
        assert caught.value.retryable is True
        assert caught.value.status is None
        server.start()
        await writer.write(lines)
    assert count(server, "fleet") == 8


async def test_influxd_down_behind_a_proxy_is_retryable(
    fresh_influx_server: InfluxServer,
) -> None:
    server = fresh_influx_server
    server.create_database("fleet")
    lines = lines_of(every_measurement())
    async with InfluxWriter(settings_for(server, "fleet", timeout_s=5)) as writer:
        server.stop_influxd()
        started = time.monotonic()
        with pytest.raises(InfluxWriteError) as caught:
            await writer.write(lines)
        assert time.monotonic() - started < 5
        assert caught.value.retryable is True
        assert caught.value.status == 502
        server.start_influxd()
        await writer.write(lines)
    assert count(server, "fleet") == 8


async def test_no_answer_is_a_retryable_timeout(fresh_influx_server: InfluxServer) -> None:
    server = fresh_influx_server
    server.create_database("fleet")
    lines = lines_of(every_measurement())
    async with InfluxWriter(settings_for(server, "fleet", timeout_s=0.5)) as writer:
        server.pause_influxd()
        try:
            started = time.monotonic()
            with pytest.raises(InfluxWriteError) as caught:
                await writer.write(lines)
            elapsed = time.monotonic() - started
        finally:
            server.resume_influxd()
        assert 0.4 < elapsed < 2
        assert caught.value.retryable is True
        assert "0.5 s" in str(caught.value)
        await writer.write(lines)
    assert count(server, "fleet") == 8


async def test_writer_must_be_opened(influx_server: InfluxServer) -> None:
    writer = InfluxWriter(settings_for(influx_server, "x"))
    with pytest.raises(RuntimeError, match="async with"):
        await writer.write(["m f=1i 1"])


texts = st.text(max_size=60)


@settings(max_examples=30, deadline=None)
@given(region=texts, model=texts, detail=texts)
async def test_arbitrary_unicode_survives_real_influxdb(
    influx_server: InfluxServer, region: str, model: str, detail: str
) -> None:
    db = "unicode_round_trip"
    influx_server.create_database(db)  # idempotent in InfluxQL
    influx_server.query("DROP SERIES FROM event", db)
    tags = CabinetTags(cabinet_id="CAB-1", region_code=region, site_type="other", aed_model=model)
    message = Event(
        v=SCHEMA_VERSION,
        cabinet_id="CAB-1",
        boot_id=BOOT,
        seq=1,
        ts=T0,
        event=EventType.TAMPER,
        detail=detail,
    )
    line = to_line(message, tags)
    assert line is not None
    async with InfluxWriter(settings_for(influx_server, db)) as writer:
        await writer.write([line])
    found = influx_server.query("SELECT * FROM event", db)
    assert len(found) == 1
    assert found[0]["detail"] == detail
    assert found[0].get("region") == (expected_tag(region) or None)
    assert found[0].get("aed_model") == (expected_tag(model) or None)
