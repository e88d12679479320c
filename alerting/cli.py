"""``aedfleet alarms``, ``aedfleet silences`` and ``aedfleet inspections``: the operator's
commands, working on the state store directly (the service sees their effect at once:
an acknowledgement withdraws every pending page in the same transaction).

Heavy imports happen inside the commands, so ``aedfleet --help`` stays fast and an edge
install needs none of the server dependencies.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from alerting.store import AlarmStore

DEFAULT_STORE_URL = "sqlite:///var/aedfleet.sqlite3"
StoreOption = Annotated[
    str,
    typer.Option("--store", help="State store URL (sqlite:///path or postgresql+psycopg://…)"),
]
ByOption = Annotated[str, typer.Option("--by", help="Who acts (a person id or your name)")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")]

alarms_app = typer.Typer(no_args_is_help=True, help="Alarms: list, show, acknowledge, resolve.")
silences_app = typer.Typer(no_args_is_help=True, help="Maintenance windows that hold pages back.")
inspections_app = typer.Typer(no_args_is_help=True, help="The captains' periodic inspections.")


def _fail(message: str) -> typer.Exit:
    typer.secho(message, err=True, fg=typer.colors.RED)
    return typer.Exit(code=2)


@contextmanager
def _store(url: str) -> Iterator[AlarmStore]:
    from alerting.store import AlarmStore, AlarmStoreError

    try:
        with AlarmStore.open(url) as store:
            yield store
    except AlarmStoreError as exc:
        raise _fail(str(exc)) from None


def _now() -> datetime:
    return datetime.now(UTC)


@alarms_app.command("list")
def list_alarms(
    store: StoreOption = DEFAULT_STORE_URL,
    state: Annotated[
        str | None, typer.Option(help="raised, acknowledged or resolved; default: active")
    ] = None,
    cabinet: Annotated[str | None, typer.Option(help="Only this cabinet")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100_000)] = 100,
    as_json: JsonOption = False,
) -> None:
    """Alarms, newest first (by default the active ones: raised or acknowledged)."""
    from aedfleet.registry import Language
    from alerting.model import AlarmState
    from alerting.phrasing import phrase_detail

    try:
        states = [AlarmState(state)] if state else [AlarmState.RAISED, AlarmState.ACKNOWLEDGED]
    except ValueError:
        raise _fail(f"unknown state {state!r}") from None
    with _store(store) as alarms:
        found = [a for s in states for a in alarms.alarms(state=s, cabinet_id=cabinet, limit=limit)]
    found.sort(key=lambda alarm: alarm.raised_at, reverse=True)
    if as_json:
        typer.echo(json.dumps([a.model_dump(mode="json") for a in found], ensure_ascii=False))
        return
    for alarm in found[:limit]:
        # The operator's list is in English and UTC, as its raised_at column.
        typer.echo(
            f"{alarm.alarm_id:>7}  {alarm.state.value:<12} {alarm.severity.value:<8} "
            f"{alarm.type.value:<18} {alarm.cabinet_id:<20} "
            f"{alarm.raised_at:%Y-%m-%d %H:%M}  {phrase_detail(alarm.detail, Language.EN, 'UTC')}"
        )


@alarms_app.command("show")
def show_alarm(alarm_id: int, store: StoreOption = DEFAULT_STORE_URL) -> None:
    """One alarm with its history and every notification with its attempts."""
    with _store(store) as alarms:
        alarm = alarms.alarm(alarm_id)
        if alarm is None:
            raise _fail(f"no alarm {alarm_id}")
        document = {
            **alarm.model_dump(mode="json"),
            "history": [e.model_dump(mode="json") for e in alarms.history(alarm_id)],
            "notifications": [n.model_dump(mode="json") for n in alarms.notifications(alarm_id)],
        }
    typer.echo(json.dumps(document, ensure_ascii=False, indent=2))


@alarms_app.command("ack")
def ack_alarm(alarm_id: int, by: ByOption, store: StoreOption = DEFAULT_STORE_URL) -> None:
    """Acknowledge: every further page of this alarm stops at once, on every channel."""
    from alerting.model import Via
    from alerting.store import AlarmStoreError

    with _store(store) as alarms:
        try:
            alarm = alarms.acknowledge(alarm_id, by, Via.CLI, _now())
        except AlarmStoreError as exc:
            raise _fail(str(exc)) from None
    typer.echo(f"alarm {alarm.alarm_id} acknowledged by {alarm.acknowledged_by}")


@alarms_app.command("resolve")
def resolve_alarm(alarm_id: int, by: ByOption, store: StoreOption = DEFAULT_STORE_URL) -> None:
    """Resolve by hand (if the condition still holds, the rules raise it again)."""
    from alerting.model import Via
    from alerting.store import AlarmStoreError

    with _store(store) as alarms:
        try:
            alarm = alarms.resolve(alarm_id, by, Via.CLI, _now())
        except AlarmStoreError as exc:
            raise _fail(str(exc)) from None
    typer.echo(f"alarm {alarm.alarm_id} resolved by {alarm.resolved_by}")


@silences_app.command("add")
def add_silence(
    reason: Annotated[str, typer.Option(help="Why nobody should be paged")],
    by: ByOption,
    hours: Annotated[float, typer.Option(help="How long, from now", min=0.01)] = 4,
    cabinet: Annotated[str | None, typer.Option(help="Only this cabinet")] = None,
    region: Annotated[str | None, typer.Option(help="Only this region code")] = None,
    alarm_type: Annotated[str | None, typer.Option("--type", help="Only this alarm type")] = None,
    store: StoreOption = DEFAULT_STORE_URL,
) -> None:
    """Hold pages back for a maintenance window (door-open alarms are never silenced)."""
    from pydantic import ValidationError

    from aedfleet.settings import describe_problems
    from alerting.silences import SilenceError, SilenceLimits, SilenceRequest, accept

    now = _now()
    try:
        request = SilenceRequest.model_validate(
            {
                "cabinet_id": cabinet,
                "region_code": region,
                "alarm_type": alarm_type,
                "ends_at": now + timedelta(hours=hours),
                "reason": reason,
            }
        )
        accepted = accept(request, limits=SilenceLimits(), now=now)
    except ValidationError as exc:
        raise _fail(describe_problems(exc, SilenceRequest)) from None
    except SilenceError as exc:
        raise _fail(str(exc)) from None
    with _store(store) as alarms:
        silence = alarms.silences.add(
            starts_at=accepted.starts_at,
            ends_at=accepted.ends_at,
            reason=accepted.reason,
            created_by=by,
            cabinet_id=accepted.cabinet_id,
            region_code=accepted.region_code,
            alarm_type=accepted.alarm_type,
        )
    typer.echo(f"silence {silence.silence_id} until {silence.ends_at:%Y-%m-%d %H:%M} UTC")


@silences_app.command("list")
def list_silences(store: StoreOption = DEFAULT_STORE_URL, as_json: JsonOption = False) -> None:
    """The silences in force now."""
    with _store(store) as alarms:
        found = alarms.silences.all(active_at=_now())
    if as_json:
        typer.echo(json.dumps([s.model_dump(mode="json") for s in found], ensure_ascii=False))
        return
    for silence in found:
        matchers = ", ".join(
            f"{name}={value}"
            for name, value in (
                ("cabinet", silence.cabinet_id),
                ("region", silence.region_code),
                ("type", silence.alarm_type),
            )
            if value
        )
        typer.echo(
            f"{silence.silence_id:>5}  until {silence.ends_at:%Y-%m-%d %H:%M}  {matchers}  "
            f"{silence.reason} ({silence.created_by})"
        )


@silences_app.command("end")
def end_silence(silence_id: int, store: StoreOption = DEFAULT_STORE_URL) -> None:
    """End a silence now."""
    from alerting.store import AlarmStoreError

    with _store(store) as alarms:
        try:
            alarms.silences.end(silence_id, _now())
        except AlarmStoreError as exc:
            raise _fail(str(exc)) from None
    typer.echo(f"silence {silence_id} ended")


@inspections_app.command("record")
def record_inspection(
    cabinet: Annotated[str, typer.Option(help="The cabinet inspected")],
    by: ByOption,
    ready_light_ok: Annotated[bool, typer.Option("--ready-light-ok/--ready-light-off")] = True,
    intact: Annotated[
        bool, typer.Option("--intact/--damaged", help="Cabinet intact, clean")
    ] = True,
    alarm_works: Annotated[bool, typer.Option("--alarm-works/--alarm-broken")] = True,
    pads_expiry: Annotated[str | None, typer.Option(help="YYYY-MM-DD on the pads")] = None,
    battery_expiry: Annotated[str | None, typer.Option(help="YYYY-MM-DD on the battery")] = None,
    note: Annotated[str, typer.Option()] = "",
    store: StoreOption = DEFAULT_STORE_URL,
) -> None:
    """Record an inspection; new pad or battery dates update the registry."""
    from pydantic import ValidationError

    from aedfleet.settings import describe_problems
    from alerting.model import Inspection
    from alerting.store import AlarmStoreError

    try:
        inspection = Inspection.model_validate(
            {
                "cabinet_id": cabinet,
                "person_id": by,
                "at": _now(),
                "ready_light_ok": ready_light_ok,
                "pads_expiry": pads_expiry,  # YYYY-MM-DD, parsed by the model
                "battery_expiry": battery_expiry,
                "cabinet_intact_and_clean": intact,
                "alarm_works": alarm_works,
                "note": note,
            }
        )
    except ValidationError as exc:
        raise _fail(describe_problems(exc, Inspection)) from None
    with _store(store) as alarms:
        try:
            result = alarms.inspections.record(inspection)
        except AlarmStoreError as exc:
            raise _fail(str(exc)) from None
    changed = [
        name
        for name, updated in (
            ("pads expiry", result.pads_expiry_updated),
            ("battery expiry", result.battery_expiry_updated),
        )
        if updated
    ]
    typer.echo(
        f"inspection {result.inspection_id} recorded"
        + (f"; updated {' and '.join(changed)}" if changed else "")
    )
