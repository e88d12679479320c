"""Wire contract v1: the single source of truth for topics and payloads.

Every component that builds a topic or parses a payload goes through this module;
edge and server import the same models. The contract is documented in
``docs/contract.md`` and its JSON Schemas are exported to ``docs/schemas/``.

Topic layout: ``aed/v1/{cabinet_id}/{channel}``; servers publish dead letters under
``aedfleet/deadletter/v1/{reason}`` and dispatch events under
``aedfleet/dispatch/v1/{cabinet_id}``.

Errors: everything that goes wrong while decoding raises :class:`ContractError`,
whose ``reason`` is one of :class:`Reason` so that a consumer can count and park
bad input by reason.
"""

from __future__ import annotations

import base64
import json
import unicodedata
from collections.abc import Sequence
from datetime import UTC, date, datetime, time
from enum import StrEnum
from typing import Annotated, Any, Final, Literal, TypeAlias
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    TypeAdapter,
    ValidationError,
)

SCHEMA_VERSION: Final = 1
TOPIC_ROOT: Final = "aed"
TOPIC_PREFIX: Final = f"{TOPIC_ROOT}/v{SCHEMA_VERSION}"
MAX_PAYLOAD_BYTES: Final = 16 * 1024
MAX_CABINET_ID_LENGTH: Final = 64
DEAD_LETTER_PREFIX: Final = "aedfleet/deadletter/v1"
DISPATCH_PREFIX: Final = "aedfleet/dispatch/v1"
IDENTITY_PROPERTY: Final = "aedfleet-identity"
"""MQTT 5 user property with the broker login a cabinet's message was published under.

The edge agent sets it to its username. It is an authenticated identity only where the
broker checks or stamps it (docs/security.md); servers refuse a message whose property
names another login than its topic's cabinet (``identity_mismatch``). Mosquitto passes
it on unchecked, so there the broker's ACL, which ties ``aed/v1/{login}/…`` to the
login, is what keeps one cabinet from speaking for another."""


class Channel(StrEnum):
    BIRTH = "birth"
    STATUS = "status"
    HEARTBEAT = "heartbeat"
    EVENT = "event"
    SELFTEST = "selftest"
    CONSUMABLES = "consumables"
    CMD = "cmd"
    CMD_RESULT = "cmd_result"


RETAINED_CHANNELS: Final = frozenset({Channel.BIRTH, Channel.STATUS})


class Reason(StrEnum):
    """Why a topic or payload was rejected; stable strings for metrics and dead letters."""

    BAD_TOPIC = "bad_topic"
    UNKNOWN_CHANNEL = "unknown_channel"
    OVERSIZED = "oversized"
    INVALID_JSON = "invalid_json"
    UNKNOWN_VERSION = "unknown_version"
    SCHEMA_VIOLATION = "schema_violation"
    CABINET_MISMATCH = "cabinet_mismatch"
    UNKNOWN_CABINET = "unknown_cabinet"
    """Valid, but from a cabinet the fleet registry does not know (raised by servers)."""
    IDENTITY_MISMATCH = "identity_mismatch"
    """Published under another login than the cabinet of its topic (raised by servers)."""


class ContractError(ValueError):
    """A topic or payload that does not follow the wire contract."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


def cabinet_id_problem(cabinet_id: str) -> str | None:
    """Why ``cabinet_id`` cannot be a topic level, or None when it can."""
    if not cabinet_id:
        return "cabinet id is empty"
    if len(cabinet_id) > MAX_CABINET_ID_LENGTH:
        return f"cabinet id is longer than {MAX_CABINET_ID_LENGTH} characters"
    if cabinet_id != cabinet_id.strip():
        return "cabinet id has leading or trailing white space"
    for reserved in "+#/":
        if reserved in cabinet_id:
            return f"cabinet id contains {reserved!r}, which is reserved in MQTT topics"
    # isprintable() is False for every control or format character (category C*), and for
    # some separators that are allowed; only then is the slower per-character check run.
    if not cabinet_id.isprintable():
        for char in cabinet_id:
            if unicodedata.category(char).startswith("C"):
                return f"cabinet id contains the control character U+{ord(char):04X}"
    if cabinet_id.startswith("$"):
        return "cabinet id starts with '$', which MQTT reserves for broker topics"
    return None


def _check_cabinet_id(value: str) -> str:
    problem = cabinet_id_problem(value)
    if problem:
        raise ValueError(problem)
    return value


def _require_text_timestamp(value: object) -> object:
    if not isinstance(value, str | datetime):
        raise ValueError("timestamp must be an ISO 8601 string")  # noqa: TRY004 - pydantic wants ValueError
    return value


def _to_utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("timestamp must carry an explicit UTC offset")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("timestamp is out of range once converted to UTC") from None


def _format_utc(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _check_time_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise ValueError(f"unknown IANA time zone {value!r}") from exc
    return value


CabinetId = Annotated[str, AfterValidator(_check_cabinet_id)]
UtcTimestamp = Annotated[
    datetime,
    BeforeValidator(_require_text_timestamp),
    AfterValidator(_to_utc),
    PlainSerializer(_format_utc, return_type=str),
]
BootId = Annotated[str, Field(pattern=r"^[0-9a-f]{32}$", description="uuid4 hex, new every boot")]
TimeZoneName = Annotated[str, AfterValidator(_check_time_zone)]
Percent = Annotated[float, Field(ge=0, le=100)]
ShortText = Annotated[str, Field(max_length=200)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class Envelope(_Frozen):
    """Fields every cabinet message carries."""

    v: Literal[1] = Field(description="Schema version of the wire contract")
    cabinet_id: CabinetId
    boot_id: BootId
    seq: int = Field(
        strict=True,
        ge=1,
        le=2**53,
        description=(
            "Per-boot sequence number of the sequenced stream (every channel but status), "
            "starting at 1; for status it numbers the connections of this boot"
        ),
    )
    ts: UtcTimestamp = Field(description="Device time, UTC, ISO 8601 with 'Z'")


class SelftestPeriod(StrEnum):
    DAILY = "daily"
    WEEKLY = "weekly"
    MONTHLY = "monthly"


class SelftestSchedule(_Frozen):
    period: SelftestPeriod = Field(
        description="How often the AED tests itself: daily, weekly (on weekday) or monthly (on "
        "day_of_month)"
    )
    at_local: time = Field(description="Local wall-clock time the AED runs its self-test")
    weekday: int | None = Field(
        default=None, ge=0, le=6, description="Weekly tests: 0 = Monday … 6 = Sunday"
    )
    day_of_month: int | None = Field(default=None, ge=1, le=28, description="Monthly tests")


class Birth(Envelope):
    """Retained description of the cabinet, published once per boot."""

    hardware_version: ShortText
    firmware_version: ShortText
    aed_model: ShortText
    aed_serial: ShortText
    heartbeat_interval_s: int = Field(ge=1, le=86_400)
    selftest_schedule: SelftestSchedule
    time_zone: TimeZoneName


class ConnectionState(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"


class Status(Envelope):
    """Retained connection state; ``offline`` is the MQTT last will.

    A consumer applies ``offline`` only when its (boot_id, seq) equals the one of the
    ``online`` it holds, so a late last will of an old connection cannot mark a live
    cabinet offline (the Sparkplug bdSeq rule).
    """

    state: ConnectionState


class DoorState(StrEnum):
    OPEN = "open"
    CLOSED = "closed"


class PowerSource(StrEnum):
    MAINS = "mains"
    BACKUP = "backup"


class Heartbeat(Envelope):
    aed_ready: bool = Field(description="The AED's own ready indicator")
    battery_pct: Percent
    temperature_c: float = Field(ge=-80, le=100)
    humidity_pct: Percent
    door: DoorState
    aed_present: bool
    power: PowerSource
    heater_on: bool
    rssi_dbm: int = Field(ge=-150, le=0)
    outbox_pending: int = Field(ge=0, description="Messages waiting in the on-disk queue")
    outbox_shed: int = Field(
        ge=0, description="Messages this cabinet has shed from a full queue since install"
    )


class EventType(StrEnum):
    DOOR_OPENED = "door_opened"
    DOOR_CLOSED = "door_closed"
    AED_REMOVED = "aed_removed"
    AED_RETURNED = "aed_returned"
    TAMPER = "tamper"
    POWER_LOST = "power_lost"
    POWER_RESTORED = "power_restored"


class Event(Envelope):
    event: EventType
    detail: ShortText | None = None


class SelftestKind(StrEnum):
    DAILY = "daily"
    WEEKLY = "weekly"
    MONTHLY = "monthly"
    MANUAL = "manual"


class SelftestResult(StrEnum):
    PASS = "pass"  # noqa: S105 - a test verdict, not a password
    FAIL = "fail"


FaultCode = Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_.:-]+$")]


class Selftest(Envelope):
    kind: SelftestKind
    result: SelftestResult
    fault_codes: tuple[FaultCode, ...] = Field(default=(), max_length=32)
    battery_pct: Percent


class ConsumablesSource(StrEnum):
    AED = "aed"
    CAPTAIN = "captain"


class Consumables(Envelope):
    pads_present: bool
    pads_expiry: date | None
    battery_expiry: date | None
    source: ConsumablesSource


class CmdResult(Envelope):
    command_id: ShortText | None = Field(
        description="The command answered; null when the command was too malformed to name"
    )
    ok: bool
    error: Annotated[str, Field(max_length=500)] | None = None


class ReportNow(_Frozen):
    action: Literal["report_now"] = "report_now"


class SetHeartbeatInterval(_Frozen):
    action: Literal["set_heartbeat_interval"] = "set_heartbeat_interval"
    interval_s: int = Field(ge=10, le=86_400)


class RunSelftest(_Frozen):
    action: Literal["run_selftest"] = "run_selftest"


CommandAction: TypeAlias = Annotated[
    ReportNow | SetHeartbeatInterval | RunSelftest, Field(discriminator="action")
]


class Cmd(_Frozen):
    """Server-to-cabinet command. The server has no boot, so no boot id or sequence."""

    v: Literal[1]
    cabinet_id: CabinetId
    command_id: Annotated[str, Field(min_length=1, max_length=64)]
    ts: UtcTimestamp
    command: CommandAction


CabinetMessage: TypeAlias = Birth | Status | Heartbeat | Event | Selftest | Consumables | CmdResult
Message: TypeAlias = CabinetMessage | Cmd

MODEL_BY_CHANNEL: Final[dict[Channel, type[Message]]] = {
    Channel.BIRTH: Birth,
    Channel.STATUS: Status,
    Channel.HEARTBEAT: Heartbeat,
    Channel.EVENT: Event,
    Channel.SELFTEST: Selftest,
    Channel.CONSUMABLES: Consumables,
    Channel.CMD: Cmd,
    Channel.CMD_RESULT: CmdResult,
}
CHANNEL_BY_MODEL: Final[dict[type[Message], Channel]] = {
    model: channel for channel, model in MODEL_BY_CHANNEL.items()
}


class DeadLetter(_Frozen):
    """A message a server refused, parked with the reason and the original bytes."""

    v: Literal[1] = 1
    reason: Reason
    detail: Annotated[str, Field(max_length=2_000)]
    topic: Annotated[str, Field(max_length=65_535)]
    payload_b64: str = Field(description="The original payload, base64")
    payload_bytes: int = Field(ge=0)
    received_at: UtcTimestamp
    service: ShortText = Field(description="Which service refused it, e.g. ingest")


def dead_letter_topic(reason: Reason) -> str:
    return f"{DEAD_LETTER_PREFIX}/{reason.value}"


def dead_letter(
    reason: Reason, detail: str, topic: str, payload: bytes, *, service: str, received_at: datetime
) -> DeadLetter:
    """What ``service`` parks for a message it refused: the reason and the original bytes."""
    return DeadLetter(
        reason=reason,
        detail=detail[:2_000],
        topic=topic,
        payload_b64=base64.b64encode(payload).decode(),
        payload_bytes=len(payload),
        received_at=received_at,
        service=service,
    )


# -- dispatch: what the command centre is sent when a cabinet is opened --------------------


class DispatchKind(StrEnum):
    ALERT = "alert"
    """The first message of an incident: a door opened or an AED was taken."""
    UPDATE = "update"
    """A later message of the same incident (more openings, door closed, AED back)."""


class DispatchedEvent(_Frozen):
    """One cabinet event that a dispatch message reports."""

    event_id: Annotated[str, Field(max_length=200)] = Field(
        description="cabinet_id/boot_id/seq: unique per cabinet event"
    )
    type: EventType
    device_ts: UtcTimestamp = Field(description="When the cabinet saw it (device time, UTC)")
    boot_id: BootId
    seq: int = Field(ge=1, le=2**53)
    detail: ShortText | None = None


class IdempotencyKey(_Frozen):
    """The cabinet event a message is keyed by: a receiver drops a key it has seen."""

    cabinet_id: CabinetId
    boot_id: BootId
    seq: int = Field(ge=1, le=2**53)


class DispatchLocation(_Frozen):
    """Where the cabinet is, from the fleet registry (all null for an unregistered one)."""

    site_name: str | None = None
    latitude: float | None = Field(default=None, ge=-90, le=90)
    longitude: float | None = Field(default=None, ge=-180, le=180)
    address: str | None = None
    floor: str | None = Field(default=None, description="Floor or level, e.g. B1, 2F")
    indoor_description: str | None = Field(
        default=None, description="How to find the cabinet once inside"
    )
    region_code: str | None = None


class DispatchAccess(_Frozen):
    mode: Literal["open", "pin", "qr"] | None = Field(
        default=None, description="How the cabinet opens: freely, with a PIN, or a QR scan"
    )
    availability_hours: str | None = Field(
        default=None, description="When the cabinet is reachable (OpenStreetMap opening_hours)"
    )


class DispatchReadiness(_Frozen):
    """Whether the AED is usable, as last reported by the cabinet (null: not known)."""

    as_of: UtcTimestamp | None = Field(
        default=None, description="Device time of the newest message the state is from"
    )
    online: bool | None = None
    aed_ready: bool | None = Field(default=None, description="The AED's own ready indicator")
    battery_pct: float | None = None
    last_selftest_result: SelftestResult | None = None
    last_selftest_at: UtcTimestamp | None = None
    last_selftest_fault_codes: tuple[FaultCode, ...] = ()
    pads_present: bool | None = None
    pads_expiry: date | None = None
    pads_expired: bool | None = Field(default=None, description="On the day of the event")
    battery_expiry: date | None = None
    battery_expired: bool | None = Field(default=None, description="On the day of the event")


class DispatchContact(_Frozen):
    """Who looks after the cabinet: its captain, or a backup when it has no captain."""

    name: str
    phone: str
    role: Literal["captain", "backup", "coordinator"]


class DispatchReference(_Frozen):
    """An earlier message of the same incident."""

    event_id: Annotated[str, Field(max_length=200)]
    sent_at: UtcTimestamp


class DispatchEvent(_Frozen):
    """What a dispatch endpoint receives (JSON), and ``aedfleet/dispatch/v1/{cabinet_id}``
    carries: the incident, the cabinet events it reports, and the cabinet's particulars."""

    v: Literal[1] = 1
    event_id: Annotated[str, Field(max_length=200)] = Field(
        description="Unique per message: the event id of the newest event it reports"
    )
    idempotency_key: IdempotencyKey
    kind: DispatchKind
    incident_id: Annotated[str, Field(max_length=200)] = Field(
        description="The event id of the event that opened the incident"
    )
    update_number: int = Field(ge=0, description="0 for the alert, then 1, 2, …")
    references: tuple[DispatchReference, ...] = Field(
        default=(), description="Earlier messages of the incident: the alert and the previous one"
    )
    incident_opened_at: UtcTimestamp
    incident_active: bool = Field(description="Door open or AED out after these events")
    door_open: bool | None = Field(description="null when only the AED removal is known")
    aed_removed: bool
    cabinet_id: CabinetId
    registered: bool = Field(description="false: the registry does not know this cabinet")
    event_type: EventType = Field(description="Type of the newest event reported")
    device_ts: UtcTimestamp = Field(description="Device time of the newest event reported")
    events: tuple[DispatchedEvent, ...] = Field(
        min_length=1, description="The events this message reports, oldest first"
    )
    omitted_events: int = Field(
        default=0, ge=0, description="Events folded into this update but not listed (a flood)"
    )
    sent_at: UtcTimestamp = Field(description="When dispatch created the message")
    aed_model: str | None = None
    location: DispatchLocation = DispatchLocation()
    access: DispatchAccess = DispatchAccess()
    readiness: DispatchReadiness = DispatchReadiness()
    captain: DispatchContact | None = None


def dispatch_event_id(cabinet_id: str, boot_id: str, seq: int) -> str:
    """The id of one cabinet event; a cabinet id has no ``/`` (a topic level), so it parses."""
    return f"{cabinet_id}/{boot_id}/{seq}"


def dispatch_topic(cabinet_id: str) -> str:
    """Where dispatch republishes a cabinet's :class:`DispatchEvent` messages."""
    problem = cabinet_id_problem(cabinet_id)
    if problem:
        raise ContractError(Reason.BAD_TOPIC, problem)
    return f"{DISPATCH_PREFIX}/{cabinet_id}"


def dispatch_subscription(cabinet_id: str | None = None) -> str:
    return f"{DISPATCH_PREFIX}/{cabinet_id or '+'}"


def topic(cabinet_id: str, channel: Channel) -> str:
    problem = cabinet_id_problem(cabinet_id)
    if problem:
        raise ContractError(Reason.BAD_TOPIC, problem)
    return f"{TOPIC_PREFIX}/{cabinet_id}/{channel.value}"


def subscription(channel: Channel | None = None, cabinet_id: str | None = None) -> str:
    """A topic filter for one channel and/or one cabinet (``+`` for what is left open)."""
    return f"{TOPIC_PREFIX}/{cabinet_id or '+'}/{channel.value if channel else '+'}"


def parse_topic(topic_name: str) -> tuple[str, Channel]:
    """Split a contract topic into (cabinet id, channel)."""
    parts = topic_name.split("/")
    if len(parts) != 4 or parts[0] != TOPIC_ROOT:
        raise ContractError(
            Reason.BAD_TOPIC, f"topic {topic_name!r} is not aed/v1/{{cabinet_id}}/{{channel}}"
        )
    if parts[1] != f"v{SCHEMA_VERSION}":
        raise ContractError(
            Reason.UNKNOWN_VERSION, f"topic {topic_name!r} is for contract {parts[1]}, not v1"
        )
    problem = cabinet_id_problem(parts[2])
    if problem:
        raise ContractError(Reason.BAD_TOPIC, f"topic {topic_name!r}: {problem}")
    try:
        channel = Channel(parts[3])
    except ValueError:
        raise ContractError(
            Reason.UNKNOWN_CHANNEL, f"topic {topic_name!r} names no channel of contract v1"
        ) from None
    return parts[2], channel


def encode(message: Message | DeadLetter) -> bytes:
    return message.model_dump_json(exclude_none=False).encode()


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    location = ".".join(str(part) for part in first["loc"]) or "payload"
    more = error.error_count() - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return f"{location}: {first['msg']}{suffix}"


_UTF8_BOM: Final = b"\xef\xbb\xbf"
_ADAPTERS: Final = {channel: TypeAdapter(model) for channel, model in MODEL_BY_CHANNEL.items()}


def decode(topic_name: str, payload: bytes) -> Message:
    """Validate a topic and its payload, returning the channel's model.

    Raises :class:`ContractError` naming the reason; never anything else.
    """
    cabinet_id, channel = parse_topic(topic_name)
    return decode_payload(channel, payload, expected_cabinet_id=cabinet_id)


def decode_cabinet_message(topic_name: str, payload: bytes) -> CabinetMessage:
    """:func:`decode` for what cabinets send; a command here is a contract violation."""
    message = decode(topic_name, payload)
    if isinstance(message, Cmd):
        raise ContractError(
            Reason.UNKNOWN_CHANNEL, f"{topic_name}: cmd flows to cabinets, never from them"
        )
    return message


def _utf8_text(channel: Channel, payload: bytes) -> str:
    """The payload as text. ``json.loads`` given bytes would guess UTF-16 or UTF-32 and
    skip a byte order mark; the contract takes UTF-8 without one and nothing else."""
    if payload.startswith(_UTF8_BOM):
        raise ContractError(
            Reason.INVALID_JSON, f"{channel.value} payload starts with a byte order mark"
        )
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ContractError(
            Reason.INVALID_JSON,
            f"{channel.value} payload is not UTF-8: {exc.reason} at byte {exc.start}",
        ) from None


def decode_payload(channel: Channel, payload: bytes, expected_cabinet_id: str | None) -> Message:
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ContractError(
            Reason.OVERSIZED, f"payload is {len(payload)} bytes, the limit is {MAX_PAYLOAD_BYTES}"
        )
    text = _utf8_text(channel, payload)
    try:
        document: Any = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise ContractError(Reason.INVALID_JSON, f"{channel.value} payload: {exc}") from None
    if not isinstance(document, dict):
        raise ContractError(
            Reason.SCHEMA_VIOLATION,
            f"{channel.value} payload is a JSON {type(document).__name__}, not an object",
        )
    version = document.get("v")
    if type(version) is not int or version != SCHEMA_VERSION:
        if type(version) is int:
            raise ContractError(
                Reason.UNKNOWN_VERSION,
                f"{channel.value} payload has schema version {version}; this build speaks v1",
            )
        raise ContractError(
            Reason.SCHEMA_VIOLATION, f"{channel.value} payload has no integer schema version 'v'"
        )
    try:
        message: Message = _ADAPTERS[channel].validate_python(document)
    except ValidationError as exc:
        raise ContractError(
            Reason.SCHEMA_VIOLATION, f"{channel.value} payload: {_describe(exc)}"
        ) from None
    if expected_cabinet_id is not None and message.cabinet_id != expected_cabinet_id:
        raise ContractError(
            Reason.CABINET_MISMATCH,
            f"payload names cabinet {message.cabinet_id!r} but arrived on the topic of "
            f"{expected_cabinet_id!r}",
        )
    return message


def identity_problem(cabinet_id: str, user_properties: Sequence[tuple[str, str]]) -> str | None:
    """Why a message on ``cabinet_id``'s topic was not published by that cabinet's login,
    judged by its :data:`IDENTITY_PROPERTY`; None when nothing says otherwise.

    Every occurrence of the property counts: a second one cannot outvote the first.
    """
    for name, login in user_properties:
        if name == IDENTITY_PROPERTY and login != cabinet_id:
            return (
                f"published by login {login[:MAX_CABINET_ID_LENGTH]!r} on the topic of "
                f"cabinet {cabinet_id!r}"
            )
    return None


def command_id_of(payload: bytes) -> str | None:
    """Best-effort command id from a command that failed validation, to answer it by."""
    try:
        document = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    if isinstance(document, dict):
        command_id = document.get("command_id")
        if isinstance(command_id, str) and 0 < len(command_id) <= 64:
            return command_id
    return None


def json_schemas() -> dict[str, dict[str, Any]]:
    """The JSON Schema of every channel's payload, keyed by channel name, of the dead
    letters servers publish under ``aedfleet/deadletter/v1/{reason}``, and of the dispatch
    events sent to command centres (``dispatch``)."""
    schemas = {
        channel.value: _ADAPTERS[channel].json_schema(mode="serialization") for channel in Channel
    }
    schemas["deadletter"] = DeadLetter.model_json_schema(mode="serialization")
    schemas["dispatch"] = DispatchEvent.model_json_schema(mode="serialization")
    return schemas
