"""Pure tests of the wire contract: topics, round trips, and every way decoding fails."""

from __future__ import annotations

import contextlib
import json
import unicodedata
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aedfleet.contract import (
    CHANNEL_BY_MODEL,
    MAX_CABINET_ID_LENGTH,
    MAX_PAYLOAD_BYTES,
    MODEL_BY_CHANNEL,
    Birth,
    Channel,
    Cmd,
    CmdResult,
    ConnectionState,
    Consumables,
    ConsumablesSource,
    ContractError,
    DoorState,
    Event,
    EventType,
    Heartbeat,
    Message,
    PowerSource,
    Reason,
    ReportNow,
    RunSelftest,
    Selftest,
    SelftestKind,
    SelftestPeriod,
    SelftestResult,
    SelftestSchedule,
    SetHeartbeatInterval,
    Status,
    cabinet_id_problem,
    command_id_of,
    decode,
    decode_payload,
    encode,
    parse_topic,
    subscription,
    topic,
)

FAST = settings(max_examples=100, deadline=None)
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

BOOT_ID = "0123456789abcdef0123456789abcdef"
TS = "2024-05-01T12:00:00Z"

# -- strategies ----------------------------------------------------------------------------

_id_char = st.characters(exclude_categories=["C"], exclude_characters="+#/")
_chinese_char = st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF)
cabinet_ids = st.text(
    alphabet=st.one_of(_id_char, _chinese_char), min_size=1, max_size=MAX_CABINET_ID_LENGTH
).filter(lambda s: s == s.strip() and not s.startswith("$"))
boot_ids = st.uuids(version=4).map(lambda u: u.hex)
seqs = st.integers(min_value=1, max_value=2**53)
_offsets = st.builds(
    timezone,
    st.timedeltas(min_value=timedelta(hours=-23, minutes=-59), max_value=timedelta(hours=23)),
)
# Kept well inside datetime's range: an offset near year 1 or 9999 overflows on conversion
# (see test_extreme_timestamp_is_a_contract_error).
timestamps = st.datetimes(
    min_value=datetime(1990, 1, 1),
    max_value=datetime(2200, 1, 1),
    timezones=st.one_of(st.just(UTC), _offsets, st.timezones()),
)
percents = st.floats(min_value=0, max_value=100, allow_nan=False, allow_infinity=False)
short_texts = st.text(max_size=200)
dates = st.dates()
fault_codes = st.from_regex(r"[A-Za-z0-9_.:-]{1,32}", fullmatch=True)


def _envelope() -> dict[str, st.SearchStrategy[Any]]:
    return {
        "v": st.just(1),
        "cabinet_id": cabinet_ids,
        "boot_id": boot_ids,
        "seq": seqs,
        "ts": timestamps,
    }


schedules = st.builds(
    SelftestSchedule,
    period=st.sampled_from(SelftestPeriod),
    at_local=st.times(),
    weekday=st.none() | st.integers(0, 6),
    day_of_month=st.none() | st.integers(1, 28),
)

STRATEGIES: dict[str, st.SearchStrategy[Message]] = {
    "birth": st.builds(
        Birth,
        **_envelope(),
        hardware_version=short_texts,
        firmware_version=short_texts,
        aed_model=short_texts,
        aed_serial=short_texts,
        heartbeat_interval_s=st.integers(1, 86_400),
        selftest_schedule=schedules,
        time_zone=st.timezone_keys(),
    ),
    "status": st.builds(Status, **_envelope(), state=st.sampled_from(ConnectionState)),
    "heartbeat": st.builds(
        Heartbeat,
        **_envelope(),
        aed_ready=st.booleans(),
        battery_pct=percents,
        temperature_c=st.floats(min_value=-80, max_value=100, allow_nan=False),
        humidity_pct=percents,
        door=st.sampled_from(DoorState),
        aed_present=st.booleans(),
        power=st.sampled_from(PowerSource),
        heater_on=st.booleans(),
        rssi_dbm=st.integers(-150, 0),
        outbox_pending=st.integers(min_value=0, max_value=2**40),
        outbox_shed=st.integers(min_value=0, max_value=2**40),
    ),
    "event": st.builds(
        Event, **_envelope(), event=st.sampled_from(EventType), detail=st.none() | short_texts
    ),
    "selftest": st.builds(
        Selftest,
        **_envelope(),
        kind=st.sampled_from(SelftestKind),
        result=st.sampled_from(SelftestResult),
        fault_codes=st.lists(fault_codes, max_size=32).map(tuple),
        battery_pct=percents,
    ),
    "consumables": st.builds(
        Consumables,
        **_envelope(),
        pads_present=st.booleans(),
        pads_expiry=st.none() | dates,
        battery_expiry=st.none() | dates,
        source=st.sampled_from(ConsumablesSource),
    ),
    "cmd_result": st.builds(
        CmdResult,
        **_envelope(),
        command_id=st.none() | short_texts,
        ok=st.booleans(),
        error=st.none() | st.text(max_size=500),
    ),
}


def _cmds(action: st.SearchStrategy[Any]) -> st.SearchStrategy[Message]:
    return st.builds(
        Cmd,
        v=st.just(1),
        cabinet_id=cabinet_ids,
        command_id=st.text(min_size=1, max_size=64),
        ts=timestamps,
        command=action,
    )


STRATEGIES["cmd report_now"] = _cmds(st.just(ReportNow()))
STRATEGIES["cmd set_heartbeat_interval"] = _cmds(
    st.builds(SetHeartbeatInterval, interval_s=st.integers(10, 86_400))
)
STRATEGIES["cmd run_selftest"] = _cmds(st.just(RunSelftest()))


# -- round trips ---------------------------------------------------------------------------


def test_every_channel_has_a_round_trip_strategy() -> None:
    covered = {name.split()[0] for name in STRATEGIES}
    assert covered == {channel.value for channel in Channel}


@pytest.mark.parametrize("name", sorted(STRATEGIES))
@FAST
@given(data=st.data())
def test_every_message_round_trips(name: str, data: st.DataObject) -> None:
    message = data.draw(STRATEGIES[name])
    payload = encode(message)
    assert len(payload) <= MAX_PAYLOAD_BYTES
    decoded = decode(topic(message.cabinet_id, CHANNEL_BY_MODEL[type(message)]), payload)
    assert decoded == message
    assert type(decoded) is type(message)


# Python's json.loads given bytes guesses UTF-16 and UTF-32 and skips a byte order mark;
# the contract is UTF-8 without one.
OTHER_ENCODINGS = ("utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be")
BYTE_ORDER_MARKS = tuple("\ufeff".encode(codec) for codec in ("utf-8", "utf-16", "utf-32"))


@pytest.mark.parametrize("name", sorted(STRATEGIES))
@FAST
@given(data=st.data())
def test_every_message_in_another_encoding_is_invalid_json(name: str, data: st.DataObject) -> None:
    message = data.draw(STRATEGIES[name])
    text = encode(message).decode()
    channel = CHANNEL_BY_MODEL[type(message)]
    codec = data.draw(st.sampled_from(OTHER_ENCODINGS))
    _rejects_from(message.cabinet_id, channel, text.encode(codec), Reason.INVALID_JSON)


@pytest.mark.parametrize("name", sorted(STRATEGIES))
@pytest.mark.parametrize("mark", BYTE_ORDER_MARKS, ids=("utf-8", "utf-16", "utf-32"))
@FAST
@given(data=st.data())
def test_every_message_after_a_byte_order_mark_is_invalid_json(
    name: str, mark: bytes, data: st.DataObject
) -> None:
    message = data.draw(STRATEGIES[name])
    channel = CHANNEL_BY_MODEL[type(message)]
    _rejects_from(message.cabinet_id, channel, mark + encode(message), Reason.INVALID_JSON)


def test_a_utf8_byte_order_mark_is_named() -> None:
    _rejects(
        Channel.EVENT, b"\xef\xbb\xbf" + _dumps(_event()), Reason.INVALID_JSON, "byte order mark"
    )


def test_an_encoded_surrogate_is_not_utf8() -> None:
    payload = _dumps({**_event(), "detail": "x"}).replace(b'"x"', b'"\xed\xa0\x80"')
    _rejects(Channel.EVENT, payload, Reason.INVALID_JSON, "not UTF-8", "byte")


def _rejects_from(cabinet_id: str, channel: Channel, payload: bytes, reason: Reason) -> None:
    with pytest.raises(ContractError) as caught:
        decode(topic(cabinet_id, channel), payload)
    assert caught.value.reason is reason, str(caught.value)


@FAST
@given(ts=timestamps, boot_id=boot_ids)
def test_timestamps_come_back_as_the_same_instant_in_utc(ts: datetime, boot_id: str) -> None:
    status = Status(v=1, cabinet_id="c", boot_id=boot_id, seq=1, ts=ts, state="online")
    payload = encode(status)
    assert json.loads(payload)["ts"].endswith("Z")
    decoded = decode(topic("c", Channel.STATUS), payload)
    # Not ``decoded.ts == ts``: Python never equates an ambiguous (DST fold) local time with
    # a time in another zone, so compare instants in UTC.
    assert decoded.ts == ts.astimezone(UTC)
    assert decoded.ts.tzinfo is UTC


def test_round_trip_of_a_non_ascii_cabinet() -> None:
    event = Event(v=1, cabinet_id="北京站-東口 1", boot_id=BOOT_ID, seq=7, ts=TS, event="tamper")
    assert decode("aed/v1/北京站-東口 1/event", encode(event)) == event


# -- cabinet ids ---------------------------------------------------------------------------


def _topic_refusal(cabinet_id: str) -> Reason | None:
    try:
        topic(cabinet_id, Channel.EVENT)
    except ContractError as exc:
        return exc.reason
    return None


@FUZZ
@given(cabinet_id=st.text(max_size=MAX_CABINET_ID_LENGTH + 4))
def test_cabinet_id_problem_agrees_with_topic(cabinet_id: str) -> None:
    refusal = _topic_refusal(cabinet_id)
    assert refusal in {None, Reason.BAD_TOPIC}
    assert (cabinet_id_problem(cabinet_id) is None) == (refusal is None)


@FAST
@given(
    before=st.text(max_size=20),
    bad=st.sampled_from("+#/") | st.characters(categories=["Cc", "Cf"]),
    after=st.text(max_size=20),
)
def test_reserved_or_control_characters_are_rejected(before: str, bad: str, after: str) -> None:
    cabinet_id = f"x{before}{bad}{after}x"
    assert cabinet_id_problem(cabinet_id) is not None
    assert _topic_refusal(cabinet_id) is Reason.BAD_TOPIC


@FAST
@given(cabinet_id=cabinet_ids)
def test_generated_cabinet_ids_are_valid(cabinet_id: str) -> None:
    assert cabinet_id_problem(cabinet_id) is None
    assert not any(unicodedata.category(char).startswith("C") for char in cabinet_id)


@pytest.mark.parametrize(
    ("cabinet_id", "words"),
    [
        ("", "empty"),
        ("x" * (MAX_CABINET_ID_LENGTH + 1), "longer than 64"),
        (" cab", "white space"),
        ("cab\t", "white space"),
        ("a+b", "'+'"),
        ("a#b", "'#'"),
        ("a/b", "'/'"),
        ("a\x00b", "U+0000"),
        ("a\u200bb", "U+200B"),
        ("$SYS", "'$'"),
    ],
)
def test_cabinet_id_problems_are_explained(cabinet_id: str, words: str) -> None:
    problem = cabinet_id_problem(cabinet_id)
    assert problem is not None
    assert words in problem


def test_longest_cabinet_id_is_accepted() -> None:
    assert cabinet_id_problem("柜" * MAX_CABINET_ID_LENGTH) is None


# -- topics --------------------------------------------------------------------------------


@pytest.mark.parametrize("channel", list(Channel))
def test_topic_layout(channel: Channel) -> None:
    assert topic("CAB-001", channel) == f"aed/v1/CAB-001/{channel.value}"
    assert parse_topic(f"aed/v1/CAB-001/{channel.value}") == ("CAB-001", channel)


@FAST
@given(cabinet_id=cabinet_ids, channel=st.sampled_from(Channel))
def test_parse_topic_inverts_topic(cabinet_id: str, channel: Channel) -> None:
    assert parse_topic(topic(cabinet_id, channel)) == (cabinet_id, channel)


def test_subscription_filters() -> None:
    assert subscription() == "aed/v1/+/+"
    assert subscription(Channel.HEARTBEAT) == "aed/v1/+/heartbeat"
    assert subscription(cabinet_id="CAB-001") == "aed/v1/CAB-001/+"
    assert subscription(Channel.CMD, "CAB-001") == "aed/v1/CAB-001/cmd"


@pytest.mark.parametrize(
    ("topic_name", "reason", "words"),
    [
        ("aed/v1/CAB-001", Reason.BAD_TOPIC, "not aed/v1/"),
        ("aed/v1/CAB-001/event/extra", Reason.BAD_TOPIC, "not aed/v1/"),
        ("aed/v1/a/b/event", Reason.BAD_TOPIC, "not aed/v1/"),
        ("xyz/v1/CAB-001/event", Reason.BAD_TOPIC, "not aed/v1/"),
        ("/aed/v1/CAB-001/event", Reason.BAD_TOPIC, "not aed/v1/"),
        ("aed/v2/CAB-001/event", Reason.UNKNOWN_VERSION, "v2"),
        ("aed/V1/CAB-001/event", Reason.UNKNOWN_VERSION, "V1"),
        ("aed/v1/CAB-001/telemetry", Reason.UNKNOWN_CHANNEL, "no channel"),
        ("aed/v1/CAB-001/Event", Reason.UNKNOWN_CHANNEL, "no channel"),
        ("aed/v1/CAB-001/", Reason.UNKNOWN_CHANNEL, "no channel"),
        ("aed/v1//event", Reason.BAD_TOPIC, "empty"),
        ("aed/v1/+/event", Reason.BAD_TOPIC, "'+'"),
        ("aed/v1/$SYS/event", Reason.BAD_TOPIC, "'$'"),
        ("aed/v1/ CAB/event", Reason.BAD_TOPIC, "white space"),
    ],
)
def test_bad_topics(topic_name: str, reason: Reason, words: str) -> None:
    with pytest.raises(ContractError) as caught:
        parse_topic(topic_name)
    assert caught.value.reason is reason
    assert words in str(caught.value)
    with pytest.raises(ContractError) as caught_by_decode:
        decode(topic_name, b"{}")
    assert caught_by_decode.value.reason is reason


def test_topic_refuses_a_bad_cabinet_id() -> None:
    with pytest.raises(ContractError) as caught:
        topic("a/b", Channel.EVENT)
    assert caught.value.reason is Reason.BAD_TOPIC


# -- decode errors -------------------------------------------------------------------------


def _event(**changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "v": 1,
        "cabinet_id": "CAB-001",
        "boot_id": BOOT_ID,
        "seq": 1,
        "ts": TS,
        "event": "door_opened",
        "detail": None,
    }
    document.update(changes)
    return document


def _heartbeat(**changes: Any) -> dict[str, Any]:
    heartbeat = Heartbeat(
        v=1,
        cabinet_id="CAB-001",
        boot_id=BOOT_ID,
        seq=3,
        ts=TS,
        aed_ready=True,
        battery_pct=87.5,
        temperature_c=21.0,
        humidity_pct=40.0,
        door="closed",
        aed_present=True,
        power="mains",
        heater_on=False,
        rssi_dbm=-70,
        outbox_pending=0,
        outbox_shed=0,
    )
    document: dict[str, Any] = json.loads(encode(heartbeat))
    document.update(changes)
    return document


def _rejects(channel: Channel, payload: bytes, reason: Reason, *words: str) -> ContractError:
    with pytest.raises(ContractError) as caught:
        decode(topic("CAB-001", channel), payload)
    error = caught.value
    assert error.reason is reason, str(error)
    message = str(error)
    assert message.startswith(f"{reason.value}: ")
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    return error


def _dumps(document: object) -> bytes:
    return json.dumps(document, ensure_ascii=False).encode()


def test_valid_fixtures_decode() -> None:
    assert isinstance(decode(topic("CAB-001", Channel.EVENT), _dumps(_event())), Event)
    assert isinstance(decode(topic("CAB-001", Channel.HEARTBEAT), _dumps(_heartbeat())), Heartbeat)


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        (b"not json", ("event payload", "Expecting value")),
        (b"", ("event payload", "Expecting value")),
        (b'{"v": 1, "cabinet_id": "CAB-001"', ("event payload", "Expecting")),
        (b"{'v': 1}", ("event payload", "double quotes")),
        (b"\xff\xfe\x00garbage", ("event payload",)),
        (b'{"v": NaN}', ("NaN is not a JSON number",)),
        (b'{"v": 1, "seq": Infinity}', ("Infinity is not a JSON number",)),
        (b'{"v": 1, "seq": -Infinity}', ("-Infinity is not a JSON number",)),
        (b"[" * 5000 + b"]" * 5000, ("event payload",)),
    ],
)
def test_invalid_json(payload: bytes, words: tuple[str, ...]) -> None:
    _rejects(Channel.EVENT, payload, Reason.INVALID_JSON, *words)


def test_truncated_message_is_invalid_json() -> None:
    payload = _dumps(_event())
    for cut in (1, len(payload) // 2, len(payload) - 1):
        _rejects(Channel.EVENT, payload[:cut], Reason.INVALID_JSON, "event payload")


@pytest.mark.parametrize(
    ("document", "kind"),
    [([_event()], "list"), ("event", "str"), (1, "int"), (None, "NoneType")],
)
def test_payload_that_is_not_an_object(document: object, kind: str) -> None:
    _rejects(
        Channel.EVENT, _dumps(document), Reason.SCHEMA_VIOLATION, f"JSON {kind}", "not an object"
    )


def test_missing_version() -> None:
    document = _event()
    del document["v"]
    _rejects(Channel.EVENT, _dumps(document), Reason.SCHEMA_VIOLATION, "schema version 'v'")


@pytest.mark.parametrize("version", [0, 2, 99, -1])
def test_other_integer_version_is_unknown(version: int) -> None:
    _rejects(
        Channel.EVENT,
        _dumps(_event(v=version)),
        Reason.UNKNOWN_VERSION,
        f"schema version {version}",
        "v1",
    )


@pytest.mark.parametrize("version", ["1", None, [1], 2.5])
def test_non_integer_version_is_a_schema_violation(version: object) -> None:
    _rejects(Channel.EVENT, _dumps(_event(v=version)), Reason.SCHEMA_VIOLATION, "'v'")


@pytest.mark.parametrize("version", [True, 1.0])
def test_boolean_or_float_version_is_a_schema_violation(version: object) -> None:
    _rejects(Channel.EVENT, _dumps(_event(v=version)), Reason.SCHEMA_VIOLATION, "'v'")


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"seq": "five"}, ("seq", "integer")),
        ({"seq": [1]}, ("seq",)),
        ({"seq": 1.5}, ("seq", "integer")),
        ({"cabinet_id": 42}, ("cabinet_id", "string")),
        ({"boot_id": "ABCDEF0123456789ABCDEF0123456789"}, ("boot_id", "pattern")),
        ({"boot_id": BOOT_ID[:-1]}, ("boot_id", "pattern")),
        ({"boot_id": BOOT_ID + "\n"}, ("boot_id", "pattern")),
        ({"ts": "yesterday"}, ("ts",)),
        ({"ts": None}, ("ts",)),
        ({"event": "exploded"}, ("event", "door_opened")),
        ({"detail": 5}, ("detail", "string")),
    ],
)
def test_wrong_types_in_the_envelope_and_body(
    changes: dict[str, Any], words: tuple[str, ...]
) -> None:
    _rejects(
        Channel.EVENT, _dumps(_event(**changes)), Reason.SCHEMA_VIOLATION, "event payload", *words
    )


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"battery_pct": 101}, ("battery_pct", "less than or equal to 100")),
        ({"battery_pct": -0.1}, ("battery_pct", "greater than or equal to 0")),
        ({"battery_pct": "full"}, ("battery_pct", "number")),
        ({"temperature_c": 150}, ("temperature_c",)),
        ({"rssi_dbm": 3}, ("rssi_dbm",)),
        ({"door": "ajar"}, ("door", "'open' or 'closed'")),
        ({"aed_ready": "maybe"}, ("aed_ready", "boolean")),
        ({"outbox_pending": -1}, ("outbox_pending",)),
        ({"seq": -1}, ("seq", "greater than or equal to 1")),
        ({"seq": 0}, ("seq", "greater than or equal to 1")),
        ({"seq": 2**53 + 1}, ("seq", "less than or equal to")),
    ],
)
def test_heartbeat_out_of_range(changes: dict[str, Any], words: tuple[str, ...]) -> None:
    _rejects(
        Channel.HEARTBEAT,
        _dumps(_heartbeat(**changes)),
        Reason.SCHEMA_VIOLATION,
        "heartbeat payload",
        *words,
    )


def test_number_that_overflows_to_infinity() -> None:
    payload = _dumps(_heartbeat()).replace(b'"battery_pct": 87.5', b'"battery_pct": 1e400')
    assert b"1e400" in payload
    _rejects(Channel.HEARTBEAT, payload, Reason.SCHEMA_VIOLATION, "battery_pct", "finite")


def test_missing_field_is_named() -> None:
    document = _heartbeat()
    del document["battery_pct"]
    _rejects(
        Channel.HEARTBEAT, _dumps(document), Reason.SCHEMA_VIOLATION, "battery_pct", "required"
    )


def test_several_problems_are_counted() -> None:
    document = _heartbeat(battery_pct=101, humidity_pct=-1, rssi_dbm=5)
    _rejects(Channel.HEARTBEAT, _dumps(document), Reason.SCHEMA_VIOLATION, "and 2 more problems")


def test_extra_field_is_forbidden() -> None:
    _rejects(
        Channel.EVENT,
        _dumps(_event(colour="red")),
        Reason.SCHEMA_VIOLATION,
        "colour",
        "Extra inputs are not permitted",
    )


def test_extra_field_in_a_nested_command_is_forbidden() -> None:
    document = {
        "v": 1,
        "cabinet_id": "CAB-001",
        "command_id": "c-1",
        "ts": TS,
        "command": {"action": "report_now", "urgent": True},
    }
    _rejects(
        Channel.CMD, _dumps(document), Reason.SCHEMA_VIOLATION, "command.report_now.urgent", "Extra"
    )


@pytest.mark.parametrize("ts", ["2024-05-01T12:00:00", "2024-05-01 12:00:00", "2024-05-01"])
def test_timestamp_without_offset_is_rejected(ts: str) -> None:
    _rejects(Channel.EVENT, _dumps(_event(ts=ts)), Reason.SCHEMA_VIOLATION, "ts")


def test_naive_timestamp_is_explained() -> None:
    _rejects(
        Channel.EVENT,
        _dumps(_event(ts="2024-05-01T12:00:00")),
        Reason.SCHEMA_VIOLATION,
        "ts",
        "explicit UTC offset",
    )


def test_offset_timestamp_is_normalised_to_utc() -> None:
    decoded = decode(
        topic("CAB-001", Channel.EVENT), _dumps(_event(ts="2024-05-01T20:00:00+08:00"))
    )
    assert decoded.ts == datetime(2024, 5, 1, 12, tzinfo=UTC)
    assert decoded.ts.tzinfo is UTC
    assert json.loads(encode(decoded))["ts"] == "2024-05-01T12:00:00Z"


@pytest.mark.parametrize("ts", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00"])
def test_extreme_timestamp_is_a_contract_error(ts: str) -> None:
    _rejects(Channel.EVENT, _dumps(_event(ts=ts)), Reason.SCHEMA_VIOLATION, "ts")


@pytest.mark.parametrize(("field", "value"), [("ts", 1_700_000_000), ("seq", "5"), ("seq", 5.0)])
def test_loosely_typed_header_fields_are_schema_violations(field: str, value: object) -> None:
    _rejects(Channel.EVENT, _dumps(_event(**{field: value})), Reason.SCHEMA_VIOLATION, field)


def test_oversized_payload_is_refused_before_parsing() -> None:
    payload = b"x" * (MAX_PAYLOAD_BYTES + 1)
    _rejects(Channel.EVENT, payload, Reason.OVERSIZED, f"{MAX_PAYLOAD_BYTES + 1} bytes", "limit")


def test_payload_at_the_limit_is_parsed() -> None:
    payload = _dumps(_event())
    padded = payload + b" " * (MAX_PAYLOAD_BYTES - len(payload))
    assert len(padded) == MAX_PAYLOAD_BYTES
    assert isinstance(decode(topic("CAB-001", Channel.EVENT), padded), Event)


def test_huge_string_within_the_size_limit() -> None:
    _rejects(
        Channel.EVENT,
        _dumps(_event(detail="x" * 15_000)),
        Reason.SCHEMA_VIOLATION,
        "detail",
        "at most 200 characters",
    )


def test_huge_string_over_the_size_limit() -> None:
    _rejects(Channel.EVENT, _dumps(_event(detail="柜" * 10_000)), Reason.OVERSIZED, "bytes")


def test_huge_number_is_invalid_json() -> None:
    payload = _dumps(_event()).replace(b'"seq": 1', b'"seq": ' + b"9" * 5000)
    assert len(payload) > 5000
    _rejects(Channel.EVENT, payload, Reason.INVALID_JSON, "digits")


def test_cabinet_in_payload_must_match_the_topic() -> None:
    _rejects(
        Channel.EVENT,
        _dumps(_event(cabinet_id="CAB-002")),
        Reason.CABINET_MISMATCH,
        "'CAB-002'",
        "'CAB-001'",
    )


def test_decode_payload_without_an_expected_cabinet() -> None:
    decoded = decode_payload(Channel.EVENT, _dumps(_event(cabinet_id="CAB-002")), None)
    assert decoded.cabinet_id == "CAB-002"


def test_payload_of_another_channel_is_a_schema_violation() -> None:
    _rejects(Channel.HEARTBEAT, _dumps(_event()), Reason.SCHEMA_VIOLATION, "heartbeat payload")


def test_bad_cabinet_id_in_payload() -> None:
    with pytest.raises(ContractError) as caught:
        decode_payload(Channel.EVENT, _dumps(_event(cabinet_id="a/b")), None)
    assert caught.value.reason is Reason.SCHEMA_VIOLATION
    assert "cabinet_id" in str(caught.value)
    assert "'/'" in str(caught.value)


def test_unknown_time_zone_in_birth() -> None:
    birth = {
        "v": 1,
        "cabinet_id": "CAB-001",
        "boot_id": BOOT_ID,
        "seq": 1,
        "ts": TS,
        "hardware_version": "hw1",
        "firmware_version": "1.0.0",
        "aed_model": "HeartStart FRx",
        "aed_serial": "B12345",
        "heartbeat_interval_s": 300,
        "selftest_schedule": {"period": "daily", "at_local": "03:00:00"},
        "time_zone": "Mars/Olympus_Mons",
    }
    assert isinstance(
        decode(topic("CAB-001", Channel.BIRTH), _dumps(dict(birth, time_zone="UTC"))), Birth
    )
    for zone in ("Mars/Olympus_Mons", "Europe", "../../etc/passwd", ""):
        _rejects(
            Channel.BIRTH,
            _dumps(dict(birth, time_zone=zone)),
            Reason.SCHEMA_VIOLATION,
            "time_zone",
            "unknown IANA time zone",
        )


def test_unknown_command_action() -> None:
    document = {
        "v": 1,
        "cabinet_id": "CAB-001",
        "command_id": "c-1",
        "ts": TS,
        "command": {"action": "self_destruct"},
    }
    _rejects(Channel.CMD, _dumps(document), Reason.SCHEMA_VIOLATION, "command", "self_destruct")


# -- fuzz ----------------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3)
    ),
    max_leaves=10,
)
# Real field names as well as noise, so that fuzzing reaches the field validators.
json_keys = st.sampled_from(
    sorted({name for model in MODEL_BY_CHANNEL.values() for name in model.model_fields})
) | st.text(max_size=10)


def _decode_or_contract_error(channel: Channel, payload: bytes) -> None:
    with contextlib.suppress(ContractError):
        decode(topic("CAB-001", channel), payload)


@FUZZ
@given(channel=st.sampled_from(Channel), payload=st.binary(max_size=512))
def test_arbitrary_bytes_raise_only_contract_errors(channel: Channel, payload: bytes) -> None:
    _decode_or_contract_error(channel, payload)


@FUZZ
@given(
    channel=st.sampled_from(Channel),
    document=st.dictionaries(json_keys, json_values, max_size=8),
)
def test_arbitrary_objects_raise_only_contract_errors(
    channel: Channel, document: dict[str, Any]
) -> None:
    _decode_or_contract_error(channel, _dumps(document))


@FUZZ
@given(data=st.data(), name=st.sampled_from(sorted(STRATEGIES)), value=json_values)
def test_mutated_messages_raise_only_contract_errors(
    data: st.DataObject, name: str, value: object
) -> None:
    """Start from a valid message and replace one field with an arbitrary JSON value."""
    message = data.draw(STRATEGIES[name])
    document: dict[str, Any] = json.loads(encode(message))
    field = data.draw(st.sampled_from(sorted(document)))
    document[field] = value
    channel = CHANNEL_BY_MODEL[type(message)]
    with contextlib.suppress(ContractError):
        decode(topic(message.cabinet_id, channel), _dumps(document))


# -- command_id_of -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b'{"command_id": "c-1", "command": {"action": "self_destruct"}}', "c-1"),
        (b'{"v": 9, "command_id": "c-2"}', "c-2"),
        (b'{"command_id": "c-3", "seq": NaN}', "c-3"),
        (b'{"command_id": "' + b"x" * 64 + b'"}', "x" * 64),
        (b'{"command_id": "' + b"x" * 65 + b'"}', None),
        (b'{"command_id": ""}', None),
        (b'{"command_id": 42}', None),
        (b'{"command_id": null}', None),
        (b'{"command_id": ["c-1"]}', None),
        (b'{"v": 1}', None),
        (b'["command_id", "c-1"]', None),
        (b'"c-1"', None),
        (b'{"command_id": "c-1"', None),
        (b"", None),
        (b"\xff\xfe\xfd", None),
        (b"[" * 100_000, None),
    ],
)
def test_command_id_of_malformed_commands(payload: bytes, expected: str | None) -> None:
    assert command_id_of(payload) == expected


@FUZZ
@given(payload=st.binary(max_size=256))
def test_command_id_of_never_raises(payload: bytes) -> None:
    result = command_id_of(payload)
    assert result is None or 0 < len(result) <= 64


def test_command_id_of_a_valid_command() -> None:
    command = Cmd(
        v=1,
        cabinet_id="CAB-001",
        command_id="c-9",
        ts=TS,
        command=SetHeartbeatInterval(interval_s=60),
    )
    assert command_id_of(encode(command)) == "c-9"


def test_every_channel_has_a_model() -> None:
    assert set(MODEL_BY_CHANNEL) == set(Channel)
    assert {model: channel for channel, model in MODEL_BY_CHANNEL.items()} == CHANNEL_BY_MODEL


def test_models_are_frozen() -> None:
    event = Event.model_validate(_event())
    with pytest.raises(ValueError, match="frozen"):
        event.seq = 2  # type: ignore[misc]


def test_dates_and_times_in_bodies() -> None:
    consumables = Consumables(
        v=1,
        cabinet_id="CAB-001",
        boot_id=BOOT_ID,
        seq=2,
        ts=TS,
        pads_present=True,
        pads_expiry=date(2026, 3, 31),
        battery_expiry=None,
        source="aed",
    )
    document = json.loads(encode(consumables))
    assert document["pads_expiry"] == "2026-03-31"
    assert document["battery_expiry"] is None
    schedule = SelftestSchedule(period="weekly", at_local=time(3, 30), weekday=6)
    assert json.loads(schedule.model_dump_json())["at_local"] == "03:30:00"
