"""Whether a cabinet's AED is ready for a rescue, and how many of the fleet's are (pure).

The one definition of *ready*: no condition that blocks readiness holds. The rules
(:mod:`alerting.rules`) decide which conditions block, so that readiness and the alarms
can never disagree: a cabinet is ready when it is online, its AED is in it with the ready
indicator on, the last self-test passed and is recent, pads and battery are present and
within date, the battery is above the model's minimum, the temperature is within the
storage range, the door is closed (or has been open less than the inspection allowance)
and a used AED has had its post-use check. Advance notices (expiring consumables, an
inspection due, a tamper, power on backup) are alarms but leave the AED usable.

A cabinet's *state* (:func:`cabinet_state`) says in one word what dashboards and the fleet
report colour it by: ``ready``, ``in_use`` (its AED is out: a rescue, or a theft),
``offline`` (nothing known of it now), else ``not_ready``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Final, Self

from pydantic import BaseModel, ConfigDict, Field, computed_field, model_validator

from aedfleet.contract import CabinetId, UtcTimestamp
from aedfleet.registry import Cabinet, SiteType
from aedfleet.twin import Twin
from alerting.facts import CabinetFacts
from alerting.model import AlarmType, Condition
from alerting.rule_config import RuleSet
from alerting.rules import evaluate


class _Value(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Readiness(_Value):
    """``reasons``: the blocking alarm types, most severe first. ``since``: when the
    cabinet stopped being ready as far as its conditions tell (the earliest ``since`` of
    the blocking ones); None when it is ready."""

    cabinet_id: CabinetId
    ready: bool
    reasons: tuple[AlarmType, ...] = ()
    since: UtcTimestamp | None = None

    @property
    def state(self) -> CabinetState:
        return cabinet_state(self.ready, self.reasons)


class CabinetState(StrEnum):
    READY = "ready"
    NOT_READY = "not_ready"
    OFFLINE = "offline"
    IN_USE = "in_use"


# The AED is away from its cabinet; this wins over offline, because the last thing known
# (the AED was taken) is what a coordinator must act on, and a cabinet whose AED is out
# may well lose its connection meanwhile (a door left open in the rain, a rescue crowd).
_IN_USE: Final = frozenset({AlarmType.AED_REMOVED, AlarmType.AED_NOT_RETURNED})


def cabinet_state(ready: bool, reasons: Iterable[AlarmType]) -> CabinetState:
    """The one-word state of a cabinet whose readiness is ``ready`` for ``reasons``."""
    if ready:
        return CabinetState.READY
    held = frozenset(reasons)
    if held & _IN_USE:
        return CabinetState.IN_USE
    if AlarmType.OFFLINE in held:
        return CabinetState.OFFLINE
    return CabinetState.NOT_READY


def readiness(cabinet_id: str, conditions: Sequence[Condition]) -> Readiness:
    """The readiness of one cabinet from the conditions that hold for it.

    Raises ValueError when a condition belongs to another cabinet.
    """
    for condition in conditions:
        if condition.cabinet_id != cabinet_id:
            raise ValueError(
                f"a condition of cabinet {condition.cabinet_id!r} given for {cabinet_id!r}"
            )
    blocking = sorted(
        (condition for condition in conditions if condition.blocks_readiness),
        key=lambda condition: (-condition.severity.rank, condition.since, condition.type),
    )
    if not blocking:
        return Readiness(cabinet_id=cabinet_id, ready=True)
    return Readiness(
        cabinet_id=cabinet_id,
        ready=False,
        reasons=tuple(dict.fromkeys(condition.type for condition in blocking)),
        since=min(condition.since for condition in blocking),
    )


def cabinet_readiness(
    cabinet: Cabinet, twin: Twin | None, facts: CabinetFacts, rules: RuleSet, now: datetime
) -> Readiness:
    """:func:`readiness` of the conditions :func:`alerting.rules.evaluate` finds at ``now``."""
    return readiness(cabinet.cabinet_id, evaluate(cabinet, twin, facts, rules, now))


class ReadinessCount(_Value):
    total: int = Field(default=0, ge=0)
    ready: int = Field(default=0, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _derived_not_ready(cls, data: object) -> object:
        # The JSON carries not_ready for its readers; it is derived, so it must agree.
        if isinstance(data, Mapping) and "not_ready" in data:
            data = dict(data)
            not_ready = data.pop("not_ready")
            if not_ready != data.get("total", 0) - data.get("ready", 0):
                raise ValueError("not_ready must be total - ready")
        return data

    @model_validator(mode="after")
    def _ready_within_total(self) -> Self:
        if self.ready > self.total:
            raise ValueError(f"{self.ready} ready out of {self.total}")
        return self

    @computed_field  # type: ignore[prop-decorator]
    @property
    def not_ready(self) -> int:
        return self.total - self.ready

    def counting(self, ready: bool) -> ReadinessCount:
        return ReadinessCount(total=self.total + 1, ready=self.ready + int(ready))


class FleetReadiness(ReadinessCount):
    """How many cabinets are ready, overall, per region code and per site type, and how
    many are held back by each reason (a cabinet counts once under each of its reasons)."""

    by_region_code: dict[str, ReadinessCount] = Field(default_factory=dict)
    by_site_type: dict[SiteType, ReadinessCount] = Field(default_factory=dict)
    not_ready_by_reason: dict[AlarmType, int] = Field(default_factory=dict)


def fleet_readiness(cabinets: Iterable[tuple[Cabinet, Readiness]]) -> FleetReadiness:
    """Summarise the readiness of many cabinets (each counted once: the last one given
    of a cabinet id wins). Keys are sorted, so equal fleets give equal summaries."""
    latest: dict[str, tuple[Cabinet, Readiness]] = {}
    for cabinet, state in cabinets:
        if state.cabinet_id != cabinet.cabinet_id:
            raise ValueError(
                f"the readiness of {state.cabinet_id!r} given for {cabinet.cabinet_id!r}"
            )
        latest[cabinet.cabinet_id] = (cabinet, state)
    overall = ReadinessCount()
    by_region: dict[str, ReadinessCount] = {}
    by_site: dict[SiteType, ReadinessCount] = {}
    by_reason: dict[AlarmType, int] = {}
    for cabinet, state in latest.values():
        overall = overall.counting(state.ready)
        region = by_region.get(cabinet.region_code, ReadinessCount())
        by_region[cabinet.region_code] = region.counting(state.ready)
        site = by_site.get(cabinet.site_type, ReadinessCount())
        by_site[cabinet.site_type] = site.counting(state.ready)
        for reason in state.reasons:
            by_reason[reason] = by_reason.get(reason, 0) + 1
    return FleetReadiness(
        total=overall.total,
        ready=overall.ready,
        by_region_code=dict(sorted(by_region.items())),
        by_site_type=dict(sorted(by_site.items())),
        not_ready_by_reason=dict(sorted(by_reason.items())),
    )
