"""Contract messages to line protocol: the exact lines, escaping, and what cannot occur."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

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
    SelftestKind,
    SelftestPeriod,
    SelftestResult,
    SelftestSchedule,
    Status,
    cabinet_id_problem,
)
from aedfleet.contract import (
    Selftest as SelftestMessage,
)
from aedfleet.influx.lines import CabinetTags, timestamp_ns
from aedfleet.registry import Cabinet, SiteType
from ingest.telemetry import to_line

BOOT = "3f2a9c1e8b7d4e6fa0c5d2b1e9f80a17"
TS = datetime(2025, 3, 14, 8, 0, 2, 123456, tzinfo=UTC)
TS_NS = 1741939202123456000
TAGS = CabinetTags(cabinet_id="CAB-0042", region_code="440305", site_type="school", aed_model="FRx")
TAG_SECTION = ",aed_model=FRx,cabinet_id=CAB-0042,region=440305,site_type=school"


def envelope(cabinet_id: str = "CAB-0042", seq: int = 7, ts: datetime = TS) -> dict[str, Any]:
    return {"v": SCHEMA_VERSION, "cabinet_id": cabinet_id, "boot_id": BOOT, "seq": seq, "ts": ts}


def heartbeat(**changes: Any) -> Heartbeat:
    values: dict[str, Any] = {
        **envelope(),
        "aed_ready": True,
        "battery_pct": 87,
        "temperature_c": 18.5,
        "humidity_pct": 52.25,
        "door": DoorState.CLOSED,
        "aed_present": True,
        "power": PowerSource.MAINS,
        "heater_on": False,
        "rssi_dbm": -71,
        "outbox_pending": 3,
        "outbox_shed": 0,
    }
    return Heartbeat(**(values | changes))


def birth(**changes: Any) -> Birth:
    values: dict[str, Any] = {
        **envelope(seq=1),
        "hardware_version": "cab-hw-2",
        "firmware_version": "1.4.0",
        "aed_model": "HeartStart FRx",
        "aed_serial": "B21K-004211",
        "heartbeat_interval_s": 300,
        "selftest_schedule": SelftestSchedule(period=SelftestPeriod.DAILY, at_local="03:00"),
        "time_zone": "Asia/Shanghai",
    }
    return Birth(**(values | changes))


def test_ts_in_nanoseconds_is_exact() -> None:
    assert timestamp_ns(TS) == TS_NS
    assert timestamp_ns(datetime(1970, 1, 1, tzinfo=UTC)) == 0
    assert timestamp_ns(datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)) == -1000


def test_heartbeat_line() -> None:
    assert to_line(heartbeat(), TAGS) == (
        f"heartbeat{TAG_SECTION} aed_ready=true,aed_present=true,battery_pct=87.0,"
        f'boot_id="{BOOT}",door="closed",heater_on=false,humidity_pct=52.25,'
        f'outbox_pending=3i,outbox_shed=0i,power="mains",rssi_dbm=-71i,seq=7i,'
        f"temperature_c=18.5 {TS_NS}"
    )


def test_event_line_with_and_without_detail() -> None:
    event = Event(**envelope(), event=EventType.DOOR_OPENED)
    assert to_line(event, TAGS) == (
        f'event{TAG_SECTION} boot_id="{BOOT}",event="door_opened",seq=7i {TS_NS}'
    )
    detailed = Event(**envelope(), event=EventType.TAMPER, detail='撬门 "back" C:\\door')
    assert to_line(detailed, TAGS) == (
        f'event{TAG_SECTION} boot_id="{BOOT}",detail="撬门 \\"back\\" C:\\\\door",'
        f'event="tamper",seq=7i {TS_NS}'
    )


def test_selftest_line() -> None:
    failed = SelftestMessage(
        **envelope(),
        kind=SelftestKind.DAILY,
        result=SelftestResult.FAIL,
        fault_codes=("PAD_EXPIRED", "BATT.LOW"),
        battery_pct=12.5,
    )
    assert to_line(failed, TAGS) == (
        f'selftest{TAG_SECTION} battery_pct=12.5,boot_id="{BOOT}",'
        f'fault_codes="PAD_EXPIRED,BATT.LOW",kind="daily",passed=false,result="fail",'
        f"seq=7i {TS_NS}"
    )
    passed = SelftestMessage(
        **envelope(), kind=SelftestKind.MANUAL, result=SelftestResult.PASS, battery_pct=100
    )
    assert to_line(passed, TAGS) == (
        f'selftest{TAG_SECTION} battery_pct=100.0,boot_id="{BOOT}",fault_codes="",'
        f'kind="manual",passed=true,result="pass",seq=7i {TS_NS}'
    )


def test_consumables_line_counts_days_from_the_utc_date_of_ts() -> None:
    consumables = Consumables(
        **envelope(),
        pads_present=True,
        pads_expiry=date(2025, 3, 24),
        battery_expiry=date(2025, 3, 1),
        source=ConsumablesSource.CAPTAIN,
    )
    assert to_line(consumables, TAGS) == (
        f'consumables{TAG_SECTION} boot_id="{BOOT}",battery_expiry="2025-03-01",'
        f'battery_expiry_days=-13i,pads_expiry="2025-03-24",pads_expiry_days=10i,'
        f'pads_present=true,seq=7i,source="captain" {TS_NS}'
    )


def test_consumables_line_leaves_unknown_expiry_out() -> None:
    consumables = Consumables(
        **envelope(),
        pads_present=False,
        pads_expiry=None,
        battery_expiry=None,
        source=ConsumablesSource.AED,
    )
    assert to_line(consumables, TAGS) == (
        f'consumables{TAG_SECTION} boot_id="{BOOT}",pads_present=false,seq=7i,source="aed" {TS_NS}'
    )


def test_status_lines() -> None:
    online = Status(**envelope(seq=2), state=ConnectionState.ONLINE)
    offline = Status(**envelope(seq=2), state=ConnectionState.OFFLINE)
    assert to_line(online, TAGS) == (
        f'status{TAG_SECTION} boot_id="{BOOT}",connection=2i,online=true {TS_NS}'
    )
    assert to_line(offline, TAGS) == (
        f'status{TAG_SECTION} boot_id="{BOOT}",connection=2i,online=false {TS_NS}'
    )


def test_birth_line() -> None:
    assert to_line(birth(), TAGS) == (
        f'birth{TAG_SECTION} aed_serial="B21K-004211",boot_id="{BOOT}",'
        f'firmware_version="1.4.0",hardware_version="cab-hw-2",heartbeat_interval_s=300i,'
        f'seq=1i,time_zone="Asia/Shanghai" {TS_NS}'
    )


def test_cmd_result_lines() -> None:
    ok = CmdResult(**envelope(), command_id="c-1", ok=True)
    assert to_line(ok, TAGS) == (
        f'cmd_result{TAG_SECTION} boot_id="{BOOT}",command_id="c-1",ok=true,seq=7i {TS_NS}'
    )
    failed = CmdResult(**envelope(), command_id=None, ok=False, error="bad\ncommand")
    assert to_line(failed, TAGS) == (
        f'cmd_result{TAG_SECTION} boot_id="{BOOT}",error="bad\ncommand",ok=false,seq=7i {TS_NS}'
    )


def test_tags_from_the_registry_with_chinese_values() -> None:
    cabinet = Cabinet(
        cabinet_id="深圳-南山-001",
        name="南山站",
        latitude=22.5,
        longitude=113.9,
        site_type=SiteType.TRANSPORT_HUB,
        region_code="440305",
        aed_model="迈瑞 BeneHeart C1A",
    )
    tags = CabinetTags.from_cabinet(cabinet)
    line = to_line(heartbeat(cabinet_id="深圳-南山-001"), tags)
    assert line is not None
    assert line.startswith(
        "heartbeat,aed_model=迈瑞\\ BeneHeart\\ C1A,cabinet_id=深圳-南山-001,"
        "region=440305,site_type=transport_hub aed_ready=true,"
    )


def test_empty_tags_are_left_out() -> None:
    line = to_line(heartbeat(), CabinetTags(cabinet_id="CAB-0042"))
    assert line is not None
    assert line.startswith("heartbeat,cabinet_id=CAB-0042 aed_ready=true,")


def test_tag_values_escape_and_map_what_line_protocol_cannot_carry() -> None:
    tags = CabinetTags(
        cabinet_id="A,B=C D\\E", region_code="x\ny", site_type="other", aed_model="m\\"
    )
    assert tags.section == (",aed_model=m/,cabinet_id=A\\,B\\=C\\ D/E,region=x\\ y,site_type=other")


def test_tags_of_another_cabinet_are_a_bug() -> None:
    with pytest.raises(ValueError, match="CAB-0042"):
        to_line(heartbeat(), CabinetTags(cabinet_id="CAB-9999"))


def test_timestamp_outside_influxdb_range_gives_no_line() -> None:
    ancient = datetime(1600, 1, 1, tzinfo=UTC)
    assert to_line(heartbeat(ts=ancient), TAGS) is None
    assert to_line(heartbeat(ts=datetime(2300, 1, 1, tzinfo=UTC)), TAGS) is None
    assert to_line(heartbeat(ts=datetime(1700, 1, 1, tzinfo=UTC)), TAGS) is not None


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nan_and_infinity_cannot_reach_the_writer(bad: float) -> None:
    """Line protocol has no NaN or infinity; the contract rejects them before us."""
    with pytest.raises(ValidationError):
        heartbeat(temperature_c=bad)
    with pytest.raises(ValidationError):
        heartbeat(battery_pct=bad)


# -- a small line-protocol parser with the semantics of InfluxDB's own (1.x/2.x) ----------


def _split_unescaped(text: str, separator: str, quotes: bool = False) -> list[str]:
    """Split on ``separator`` not escaped by a backslash (and, in fields, outside quotes)."""
    parts, current, quoted, i = [], [], False, 0
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            current.append(text[i : i + 2])
            i += 2
            continue
        if char == '"' and quotes:
            quoted = not quoted
        if char == separator and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
        i += 1
    parts.append("".join(current))
    return parts


def _unescape_key(text: str) -> str:
    # The Go parser unescapes only "\,", "\=" and "\ " in names and tags.
    return text.replace("\\,", ",").replace("\\=", "=").replace("\\ ", " ")


def _field_value(text: str) -> object:
    if text.startswith('"'):
        assert len(text) >= 2
        assert text.endswith('"')
        inner, out, i = text[1:-1], [], 0
        while i < len(inner):
            if inner[i] == "\\" and i + 1 < len(inner) and inner[i + 1] in '"\\':
                out.append(inner[i + 1])
                i += 2
            else:
                assert inner[i] != '"', "an unescaped quote inside a string"
                out.append(inner[i])
                i += 1
        return "".join(out)
    if text in ("true", "false"):
        return text == "true"
    if text.endswith("i"):
        return int(text[:-1])
    value = float(text)
    assert math.isfinite(value)
    return value


def parse_line(line: str) -> tuple[str, dict[str, str], dict[str, object], int]:
    key = _split_unescaped(line, " ")[0]
    rest = line[len(key) + 1 :]
    fields, timestamp = _split_unescaped(rest, " ", quotes=True)
    measurement, *tag_pairs = _split_unescaped(key, ",")
    tags = {}
    for pair in tag_pairs:
        tag_key, tag_value = _split_unescaped(pair, "=")
        assert tag_value, "empty tag value"
        tags[_unescape_key(tag_key)] = _unescape_key(tag_value)
    parsed_fields = {}
    for pair in _split_unescaped(fields, ",", quotes=True):
        field_key, value = pair.split("=", 1)
        parsed_fields[_unescape_key(field_key)] = _field_value(value)
    return _unescape_key(measurement), tags, parsed_fields, int(timestamp)


def expected_tag(value: str) -> str:
    return "".join(
        "/" if c == "\\" else " " if c < " " or "\x7f" <= c <= "\x9f" else c for c in value
    )


cabinet_ids = st.text(min_size=1, max_size=64).filter(lambda s: cabinet_id_problem(s) is None)


@given(
    cabinet_id=cabinet_ids,
    region=st.text(max_size=32),
    model=st.text(max_size=50),
    detail=st.text(max_size=200),
    error=st.text(max_size=500),
    firmware=st.text(max_size=200),
)
def test_arbitrary_unicode_survives_the_round_trip(
    cabinet_id: str, region: str, model: str, detail: str, error: str, firmware: str
) -> None:
    tags = CabinetTags(
        cabinet_id=cabinet_id, region_code=region, site_type="school", aed_model=model
    )
    messages: list[CabinetMessage] = [
        Event(**envelope(cabinet_id), event=EventType.TAMPER, detail=detail),
        CmdResult(**envelope(cabinet_id), command_id=detail or None, ok=False, error=error),
        birth(cabinet_id=cabinet_id, firmware_version=firmware),
    ]
    wanted_tags = {
        key: expected_tag(value)
        for key, value in {
            "aed_model": model,
            "cabinet_id": cabinet_id,
            "region": region,
            "site_type": "school",
        }.items()
        if value
    }
    for message in messages:
        line = to_line(message, tags)
        assert line is not None
        _, parsed_tags, _, timestamp = parse_line(line)
        assert parsed_tags == wanted_tags
        assert timestamp == TS_NS
        assert "\n" not in line.split('"', 1)[0], "a line break outside a string field"
    assert parse_line(to_line(messages[0], tags) or "")[2]["detail"] == detail
    assert parse_line(to_line(messages[1], tags) or "")[2]["error"] == error
    assert parse_line(to_line(messages[2], tags) or "")[2]["firmware_version"] == firmware
