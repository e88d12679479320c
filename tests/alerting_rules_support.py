"""Message builders and histories for the pure tests of the alerting rules and facts.

The builders are those of the twin's tests (births here of the model the rules are
configured for), with selftests and consumables besides.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, timedelta
from functools import partial

from hypothesis import strategies as st

from aedfleet.contract import (
    CabinetMessage,
    ConnectionState,
    Consumables,
    ConsumablesSource,
    DoorState,
    EventType,
    PowerSource,
    Selftest,
    SelftestKind,
    SelftestResult,
)
from aedfleet.registry import Cabinet
from aedfleet.twin import Twin
from alerting.facts import CabinetFacts, observe
from alerting.rule_config import AedModelSpec, RuleConfig, RuleSet, rules_for
from tests.test_twin import BOOTS, CABINET, T0, at, envelope, event, heartbeat, status
from tests.test_twin import birth as twin_birth
from tests.test_twin import fold as fold_twin

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

# Births of the twin's tests, of the model that CAB, and so RULES, are configured for.
birth = partial(twin_birth, aed_model=MODEL)


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


__all__ = ["BOOTS", "CABINET", "T0", "at", "event", "fold_twin", "heartbeat", "status"]
