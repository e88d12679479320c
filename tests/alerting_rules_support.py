"""Message builders and histories for the pure tests of the alerting rules and facts.

The envelope and status builders are those of the twin's tests; heartbeats here take
every reading the rules look at.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta

from hypothesis import strategies as st

from aedfleet.contract import (
    Birth,
    CabinetMessage,
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
)
from alerting.facts import CabinetFacts, observe
from alerting.rule_config import AedModelSpec, RuleConfig, RuleSet, rules_for
from ingest.registry.models import Cabinet
from ingest.twin import Twin, apply_message
from tests.test_twin import BOOTS, CABINET, envelope, status

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
US = timedelta(microseconds=1)
MODEL = "ZOLL AED Plus"  # stored 0 to 50 °C
CAB = Cabinet(
    cabinet_id=CABINET,
    name="Station hall",
    aed_model=MODEL,
    latitude=22.5,
    longitude=114.0,
    region_code="440305",
    install_date=date(2024, 4, 20),
)
RULES = rules_for(CAB, RuleConfig())


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def birth(
    boot: int,
    seq: int,
    ts: datetime,
    *,
    interval_s: int = 60,
    period: SelftestPeriod = SelftestPeriod.DAILY,
    time_zone: str = "Asia/Shanghai",
) -> Birth:
    return Birth(
        **envelope(boot, seq, ts),
        hardware_version="hw-2",
        firmware_version="1.0.0",
        aed_model=MODEL,
        aed_serial="SN-1",
        heartbeat_interval_s=interval_s,
        selftest_schedule=SelftestSchedule(period=period, at_local=time(3, 0)),
        time_zone=time_zone,
    )


def heartbeat(
    boot: int,
    seq: int,
    ts: datetime,
    *,
    aed_ready: bool = True,
    battery_pct: float = 90.0,
    temperature_c: float = 21.5,
    door: DoorState = DoorState.CLOSED,
    aed_present: bool = True,
    power: PowerSource = PowerSource.MAINS,
    heater_on: bool = False,
) -> Heartbeat:
    return Heartbeat(
        **envelope(boot, seq, ts),
        aed_ready=aed_ready,
        battery_pct=battery_pct,
        temperature_c=temperature_c,
        humidity_pct=40.0,
        door=door,
        aed_present=aed_present,
        power=power,
        heater_on=heater_on,
        rssi_dbm=-70,
        outbox_pending=0,
        outbox_shed=0,
    )


def event(boot: int, seq: int, ts: datetime, kind: EventType) -> Event:
    return Event(**envelope(boot, seq, ts), event=kind)


def selftest(
    boot: int,
    seq: int,
    ts: datetime,
    *,
    passed: bool = True,
    codes: tuple[str, ...] = (),
    kind: SelftestKind = SelftestKind.DAILY,
) -> Selftest:
    return Selftest(
        **envelope(boot, seq, ts),
        kind=kind,
        result=SelftestResult.PASS if passed else SelftestResult.FAIL,
        fault_codes=codes,
        battery_pct=90.0,
    )


def consumables(
    boot: int,
    seq: int,
    ts: datetime,
    *,
    pads_expiry: date | None = date(2026, 1, 1),
    battery_expiry: date | None = date(2027, 1, 1),
    pads_present: bool = True,
) -> Consumables:
    return Consumables(
        **envelope(boot, seq, ts),
        pads_present=pads_present,
        pads_expiry=pads_expiry,
        battery_expiry=battery_expiry,
        source=ConsumablesSource.AED,
    )


def fold_twin(messages: Iterable[CabinetMessage]) -> Twin | None:
    twin: Twin | None = None
    for message in messages:
        twin = apply_message(twin, message)
    return twin


def fold_facts(messages: Iterable[CabinetMessage], spec: AedModelSpec = RULES.aed) -> CabinetFacts:
    facts = CabinetFacts(cabinet_id=CABINET)
    for message in messages:
        facts = observe(facts, message, spec)
    return facts


def state(
    messages: Iterable[CabinetMessage], rules: RuleSet = RULES
) -> tuple[Twin | None, CabinetFacts]:
    delivered = list(messages)
    return fold_twin(delivered), fold_facts(delivered, rules.aed)


# -- histories -----------------------------------------------------------------------------------

# Events come often so that door, AED and power changes interleave with heartbeats.
KINDS = (
    *("heartbeat", "heartbeat", "event", "event", "event"),
    *("selftest", "consumables", "consumables", "online", "offline"),
)
TEMPERATURES = (-5.0, 0.0, 21.5, 50.0, 50.5)
BATTERY_LEVELS = (5.0, 19.9, 20.0, 90.0)
PADS_DATES = (date(2024, 6, 1), date(2024, 8, 15), date(2025, 1, 1))


@st.composite
def sequenced(
    draw: st.DrawFn, kind: str, boot: int, seq: int, ts: datetime, pads: date
) -> CabinetMessage:
    match kind:
        case "heartbeat":
            return heartbeat(
                boot,
                seq,
                ts,
                aed_ready=draw(st.booleans()),
                battery_pct=draw(st.sampled_from(BATTERY_LEVELS)),
                temperature_c=draw(st.sampled_from(TEMPERATURES)),
                door=draw(st.sampled_from(DoorState)),
                aed_present=draw(st.booleans()),
                power=draw(st.sampled_from(PowerSource)),
                heater_on=draw(st.booleans()),
            )
        case "event":
            return event(boot, seq, ts, draw(st.sampled_from(EventType)))
        case "selftest":
            passed = draw(st.booleans())
            return selftest(boot, seq, ts, passed=passed, codes=() if passed else ("E12",))
        case _:
            return consumables(
                boot,
                seq,
                ts,
                pads_present=draw(st.booleans()),
                pads_expiry=pads,
                battery_expiry=draw(st.sampled_from((None, *PADS_DATES))),
            )


@st.composite
def histories(draw: st.DrawFn, *, pads_recur: bool = True) -> list[CabinetMessage]:
    """What one cabinet sends over one or two boots, in the order it sends it.

    Device time runs forward across the reboot. Pads expiries are drawn from a few dates
    close to T0 (so that notices and expiry fall within the tests' horizon); with
    ``pads_recur`` False each change of pads moves the expiry later, as fresh pads do.
    """
    messages: list[CabinetMessage] = []
    ts = T0
    pads = PADS_DATES[0]
    for boot in range(draw(st.integers(1, 2))):
        seq = 1
        connection = 1
        ts += timedelta(seconds=draw(st.integers(1, 600)))
        messages.append(birth(boot, seq, ts))
        messages.append(status(boot, connection, ts, ConnectionState.ONLINE))
        for kind in draw(st.lists(st.sampled_from(KINDS), max_size=24)):
            ts += timedelta(seconds=draw(st.integers(1, 900)))
            if kind == "online":
                connection += 1
                messages.append(status(boot, connection, ts, ConnectionState.ONLINE))
            elif kind == "offline":
                messages.append(status(boot, connection, ts, ConnectionState.OFFLINE))
            else:
                if kind == "consumables" and draw(st.booleans()):
                    pads = (
                        draw(st.sampled_from(PADS_DATES))
                        if pads_recur
                        else pads + timedelta(days=draw(st.integers(1, 400)))
                    )
                seq += 1
                messages.append(draw(sequenced(kind, boot, seq, ts, pads)))
    return messages


__all__ = ["BOOTS", "CABINET", "status"]
