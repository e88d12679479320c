"""What the readiness rules consider wrong, and when: the thresholds, read from a file.

A :class:`RuleConfig` is the whole configuration: a spec per AED model (its minimum
battery level and the temperature range it may be kept in), the thresholds and the
severities every cabinet starts from, and an ordered list of overrides. Each override
matches cabinets by AED model, site type and region code and patches any of those
settings; :func:`rules_for` applies the matching ones in order and hands back the
cabinet's effective :class:`RuleSet`.

Every value is a frozen, hashable pydantic model, so equal inputs give equal outputs and
``functools.cache`` can memoise :func:`rules_for` on (cabinet, config).

Why the settings have the shape they have:

- an override patches single settings, so every setting must be valid on its own
  whatever the other overrides set: no setting may constrain another. That is why the
  storage range is one value (``storage_c: {min_c, max_c}``) rather than two bounds an
  override could set in contradiction with another;
- a patch is checked when the file is loaded, against the model it patches, so that a
  bad override fails at start-up naming its key rather than when a cabinet matches it.

Durations are ISO 8601 (``PT30M``, ``P30D``) or seconds. The file may be YAML or TOML
(:func:`load_rule_config`); the defaults are those of the alerting issue.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping
from datetime import timedelta
from itertools import pairwise
from pathlib import Path
from typing import Annotated, Any, Final, Self, TypeVar

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from aedfleet.contract import TimeZoneName
from aedfleet.registry import Cabinet, SiteType
from aedfleet.settings import ConfigError, describe_problems
from alerting.model import Severity

DEFAULT_TIME_ZONE: Final = "Asia/Shanghai"


class _Config(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


def _problems(error: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in problem['loc']) or '(root)'}: {problem['msg']}"
        for problem in error.errors()
    )


# -- AED models ----------------------------------------------------------------------------------


class TemperatureRange(_Config):
    """Inclusive bounds, in °C."""

    min_c: float = Field(ge=-80, le=100, description="Lowest allowed, in °C; below max_c")
    max_c: float = Field(ge=-80, le=100, description="Highest allowed, in °C")

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.min_c >= self.max_c:
            raise ValueError(f"min_c ({self.min_c}) must be below max_c ({self.max_c})")
        return self

    def contains(self, celsius: float) -> bool:
        return self.min_c <= celsius <= self.max_c


class AedModelSpec(_Config):
    """What an AED model needs to stay ready in its cabinet.

    ``storage_c`` is the range the AED may be kept in with its battery and pads fitted:
    the data sheet's standby range, or its operating range where it publishes none (an
    AED in a public cabinet must be usable on the spot). ``min_battery_pct`` is this
    project's policy, not a data-sheet value: an alarm before the AED's own low-battery
    warning (about 10 %) leaves the captain time to get a battery.
    """

    min_battery_pct: float = Field(
        default=20.0,
        ge=0,
        le=100,
        description="battery_low below this battery level, in %; above the AED's own warning "
        "(about 10 %) so that the captain has time to get a battery",
    )
    storage_c: TemperatureRange = Field(
        default=TemperatureRange(min_c=0.0, max_c=50.0),
        description="Temperatures the AED may be kept in with battery and pads fitted, in °C "
        "(inclusive); outside it, the temperature alarm",
    )


# The models the simulator fits (firmware_sim.fleet.AED_MODELS), from the manufacturers'
# published specifications.
BUILT_IN_AED_MODELS: Final[Mapping[str, AedModelSpec]] = {
    # Mindray BeneHeart C1A: operating 0 to 50 °C.
    "Mindray BeneHeart C1A": AedModelSpec(storage_c=TemperatureRange(min_c=0.0, max_c=50.0)),
    # Philips HeartStart HS1 (OnSite, M5066A): standby 10 to 43 °C with battery and
    # pads cartridge installed, the narrowest range of the fleet.
    "Philips HeartStart HS1": AedModelSpec(storage_c=TemperatureRange(min_c=10.0, max_c=43.0)),
    # ZOLL AED Plus: operating 0 to 50 °C.
    "ZOLL AED Plus": AedModelSpec(storage_c=TemperatureRange(min_c=0.0, max_c=50.0)),
    # Yuwell iAED-S1: operating 0 to 50 °C.
    "Yuwell iAED-S1": AedModelSpec(storage_c=TemperatureRange(min_c=0.0, max_c=50.0)),
    # Cardiac Science Powerheart G5: operating and standby 0 to 50 °C.
    "Cardiac Science Powerheart G5": AedModelSpec(
        storage_c=TemperatureRange(min_c=0.0, max_c=50.0)
    ),
}


def _model_key(name: str) -> str:
    """AED model names are matched ignoring case and runs of white space."""
    return " ".join(name.split()).casefold()


class NamedAedModel(_Config):
    name: Annotated[str, Field(min_length=1, max_length=500)] = Field(
        description="The model as the registry's aed_model names it, compared ignoring case "
        "and spacing; replaces a built-in model of that name"
    )
    spec: AedModelSpec = Field(description="What this model needs to stay ready")


def _named_models(value: object) -> object:
    """Accept ``{name: spec}`` (how a file says it) as well as a list of named specs."""
    if isinstance(value, Mapping):
        return tuple({"name": name, "spec": spec} for name, spec in value.items())
    return value


# -- thresholds and severities -------------------------------------------------------------------


class ExpiryNotice(_Config):
    """Notice of a consumable that expires within ``within_days`` days, at ``severity``."""

    within_days: int = Field(
        ge=0,
        le=3_650,
        description="Days before the expiry date; the notice starts at local midnight",
    )
    severity: Severity = Field(
        description="Of pads_expiring / battery_expiring from then on; a nearer notice may not be "
        "less severe"
    )


DEFAULT_EXPIRY_NOTICES: Final = (
    ExpiryNotice(within_days=90, severity=Severity.INFO),
    ExpiryNotice(within_days=30, severity=Severity.WARNING),
    ExpiryNotice(within_days=7, severity=Severity.HIGH),
)

PositiveDuration = Annotated[timedelta, Field(gt=timedelta(0))]
Duration = Annotated[timedelta, Field(ge=timedelta(0))]


class Thresholds(_Config):
    """When a finding becomes a condition. A deadline counts as passed at its instant."""

    aed_not_returned_after: PositiveDuration = Field(
        default=timedelta(minutes=30),
        description="An AED out of its cabinet this long raises aed_not_returned",
    )
    event_hold: PositiveDuration = Field(
        default=timedelta(minutes=2),
        description="A door opened and closed, or an AED taken and put back, before the "
        "rules saw it open keeps its alarm this long after the event, so it pages",
    )
    door_open_allowance: Duration = Field(
        default=timedelta(minutes=10),
        description="An inspection may hold the door open this long before the cabinet "
        "counts as not ready (the door alarm itself is immediate)",
    )
    selftest_grace_daily: PositiveDuration = Field(
        default=timedelta(hours=26),
        description="Daily schedule (also an unknown one): selftest_missing once the last "
        "self-test, else the first contact, is this old",
    )
    selftest_grace_weekly: PositiveDuration = Field(
        default=timedelta(days=8),
        description="Weekly schedule: selftest_missing once the last self-test, else the first "
        "contact, is this old",
    )
    selftest_grace_monthly: PositiveDuration = Field(
        default=timedelta(days=32),
        description="Monthly schedule: selftest_missing once the last self-test, else the first "
        "contact, is this old",
    )
    expiry_notices: tuple[ExpiryNotice, ...] = Field(
        default=DEFAULT_EXPIRY_NOTICES,
        max_length=10,
        description="Advance notices of pads and battery expiry, the nearest the most severe",
    )
    heartbeat_misses: int = Field(
        default=3,
        ge=1,
        le=1_000,
        description="offline once this many heartbeat intervals pass without a heartbeat",
    )
    heartbeat_interval: PositiveDuration = Field(
        default=timedelta(seconds=60),
        description="Assumed until the cabinet's birth tells its own interval",
    )
    offline_critical_after: PositiveDuration = Field(
        default=timedelta(hours=24),
        description="An offline alarm takes the offline_long severity once it has lasted this long",
    )
    temperature_excursion_after: Duration = Field(
        default=timedelta(minutes=30),
        description="The temperature alarm once outside the storage range this long; 0 = at once",
    )
    tamper_window: PositiveDuration = Field(
        default=timedelta(hours=1), description="A tamper event keeps its tamper alarm this long"
    )
    inspection_interval: Annotated[timedelta, Field(ge=timedelta(days=1))] = Field(
        default=timedelta(days=30),
        description="inspection_overdue this long after the last inspection, else the install "
        "date, else the first contact",
    )
    inspection_reminder_lead: Duration = Field(
        default=timedelta(days=3), description="How long before an inspection is due to remind"
    )

    @field_validator("expiry_notices")
    @classmethod
    def _nearer_is_more_severe(cls, notices: tuple[ExpiryNotice, ...]) -> tuple[ExpiryNotice, ...]:
        ordered = tuple(sorted(notices, key=lambda notice: -notice.within_days))
        for farther, nearer in pairwise(ordered):
            if farther.within_days == nearer.within_days:
                raise ValueError(f"two notices for {nearer.within_days} days")
            if nearer.severity.rank < farther.severity.rank:
                raise ValueError(
                    f"the notice {nearer.within_days} days ahead ({nearer.severity}) is less "
                    f"severe than the one {farther.within_days} days ahead ({farther.severity})"
                )
        return ordered


class Severities(_Config):
    """The severity of each alarm type (expiry notices take theirs from the thresholds).

    ``offline_long`` is the severity of a cabinet offline longer than
    ``offline_critical_after``; ``power_lost_unheated`` that of a power loss while the
    cabinet needs heating.
    """

    door_opened: Severity = Field(
        default=Severity.CRITICAL,
        description="door_opened: the cabinet's door is open",
    )
    aed_removed: Severity = Field(
        default=Severity.CRITICAL,
        description="aed_removed: the AED is out of its cabinet",
    )
    aed_not_returned: Severity = Field(
        default=Severity.CRITICAL,
        description="aed_not_returned: the AED has been out longer than "
        "thresholds.aed_not_returned_after",
    )
    post_use_check: Severity = Field(
        default=Severity.HIGH,
        description="post_use_check: the AED is back, without a passing self-test and new "
        "pads since",
    )
    selftest_failed: Severity = Field(
        default=Severity.CRITICAL,
        description="selftest_failed: the last self-test failed",
    )
    aed_not_ready: Severity = Field(
        default=Severity.CRITICAL,
        description="aed_not_ready: the heartbeat's ready indicator is off",
    )
    fault_codes: Severity = Field(
        default=Severity.CRITICAL,
        description="fault_codes: the last self-test passed yet reported fault codes",
    )
    pads_missing: Severity = Field(
        default=Severity.CRITICAL,
        description="pads_missing: the AED has no pads",
    )
    pads_expired: Severity = Field(
        default=Severity.CRITICAL,
        description="pads_expired: the pads are past their expiry date",
    )
    battery_expired: Severity = Field(
        default=Severity.CRITICAL,
        description="battery_expired: the battery is past its expiry date",
    )
    battery_low: Severity = Field(
        default=Severity.HIGH,
        description="battery_low: the battery is below the AED model's min_battery_pct",
    )
    offline: Severity = Field(
        default=Severity.WARNING,
        description="offline: a last will, or thresholds.heartbeat_misses heartbeats missed",
    )
    offline_long: Severity = Field(
        default=Severity.CRITICAL,
        description="offline_long: offline for thresholds.offline_critical_after",
    )
    selftest_missing: Severity = Field(
        default=Severity.HIGH,
        description="selftest_missing: no self-test within the schedule plus its grace",
    )
    temperature: Severity = Field(
        default=Severity.HIGH,
        description="temperature: outside the AED model's storage range for "
        "thresholds.temperature_excursion_after",
    )
    power_lost: Severity = Field(
        default=Severity.WARNING,
        description="power_lost: the cabinet runs on backup power",
    )
    power_lost_unheated: Severity = Field(
        default=Severity.CRITICAL,
        description="power_lost_unheated: on backup power while the cabinet needs heating "
        "(heater on, or colder than the AED model's minimum)",
    )
    tamper: Severity = Field(
        default=Severity.HIGH,
        description="tamper: a tamper event, for thresholds.tamper_window",
    )
    inspection_overdue: Severity = Field(
        default=Severity.WARNING,
        description="inspection_overdue: no inspection for thresholds.inspection_interval",
    )


# -- overrides -----------------------------------------------------------------------------------

Patch = tuple[tuple[str, Any], ...]
"""Validated settings of one model, as sorted (name, value) pairs: hashable, and only what
the override sets."""


def _patch_of(model: type[_Config]) -> Callable[[object], Patch]:
    def validate(value: object) -> Patch:
        if isinstance(value, tuple):
            return value  # already a validated patch (a model copied or re-validated)
        if not isinstance(value, Mapping):
            raise ValueError(f"must be a mapping of {model.__name__} settings")  # noqa: TRY004 - pydantic wants ValueError
        try:
            # Every setting is valid on its own (see the module docstring), so checking
            # the patch over the defaults checks it over whatever it will be applied to.
            patched = model.model_validate(value)
        except ValidationError as exc:
            raise ValueError(_problems(exc)) from None
        return tuple((str(name), getattr(patched, str(name))) for name in sorted(value))

    return validate


class OverrideMatch(_Config):
    """Which cabinets an override applies to: all of the matchers given must match.

    ``aed_model`` is compared ignoring case and spacing; ``region_code`` is a prefix, as
    region codes are hierarchical (``4403`` matches every district of Shenzhen, 440305
    among them).
    """

    aed_model: Annotated[str, Field(min_length=1, max_length=500)] | None = Field(
        default=None, description="The registry's aed_model, compared ignoring case and spacing"
    )
    site_type: SiteType | None = Field(default=None, description="The registry's site_type")
    region_code: Annotated[str, Field(min_length=1, max_length=32)] | None = Field(
        default=None,
        description="A prefix of the registry's region_code: 4403 matches every district of "
        "Shenzhen",
    )

    @model_validator(mode="after")
    def _names_something(self) -> Self:
        if self.aed_model is None and self.site_type is None and self.region_code is None:
            raise ValueError("an override must match on aed_model, site_type or region_code")
        return self

    def matches(self, cabinet: Cabinet) -> bool:
        if self.aed_model is not None and _model_key(self.aed_model) != _model_key(
            cabinet.aed_model
        ):
            return False
        if self.site_type is not None and self.site_type is not cabinet.site_type:
            return False
        return self.region_code is None or cabinet.region_code.startswith(self.region_code)


class RuleOverride(_Config):
    match: OverrideMatch = Field(description="The cabinets it applies to")
    aed: Annotated[Patch, BeforeValidator(_patch_of(AedModelSpec))] = Field(
        default=(), description="AED spec keys to replace, e.g. {min_battery_pct = 30}"
    )
    thresholds: Annotated[Patch, BeforeValidator(_patch_of(Thresholds))] = Field(
        default=(), description='Threshold keys to replace, e.g. {tamper_window = "PT2H"}'
    )
    severities: Annotated[Patch, BeforeValidator(_patch_of(Severities))] = Field(
        default=(), description='Severity keys to replace, e.g. {offline = "high"}'
    )


# -- the whole configuration and a cabinet's rules ------------------------------------------------


class RuleSet(_Config):
    """The effective rules of one cabinet."""

    aed: AedModelSpec = AedModelSpec()
    thresholds: Thresholds = Thresholds()
    severities: Severities = Severities()
    default_time_zone: TimeZoneName = Field(
        default=DEFAULT_TIME_ZONE, description="For dates until the cabinet's birth tells its own"
    )


class RuleConfig(_Config):
    """The rule configuration of the whole fleet.

    Named AED models given in a file are added to the built-in ones (and replace a
    built-in one of the same name); cabinets of a model not named get ``default_aed_model``.
    """

    default_aed_model: AedModelSpec = Field(
        default=AedModelSpec(), description="The spec of an AED model not in aed_models"
    )
    # Validated even when absent: the validator adds the built-in models.
    aed_models: Annotated[tuple[NamedAedModel, ...], BeforeValidator(_named_models)] = Field(
        default=(),
        validate_default=True,
        description="Specs by AED model, added to the built-in ones; also as a table of "
        "name = spec",
    )
    thresholds: Thresholds = Field(
        default=Thresholds(),
        description="When a finding becomes a condition; a deadline counts as passed at its "
        "instant",
    )
    severities: Severities = Field(
        default=Severities(),
        description="The severity of each alarm type: it picks the escalation policy, and "
        "critical and high are never held by quiet hours",
    )
    default_time_zone: TimeZoneName = Field(
        default=DEFAULT_TIME_ZONE,
        description="The zone of a cabinet whose birth has not told its own, for its dates "
        "and the times in its notices",
    )
    overrides: tuple[RuleOverride, ...] = Field(
        default=(),
        max_length=1_000,
        description="Patches for matching cabinets, applied in order: a later one wins",
    )

    @field_validator("aed_models")
    @classmethod
    def _with_built_in_models(cls, models: tuple[NamedAedModel, ...]) -> tuple[NamedAedModel, ...]:
        by_key = {
            _model_key(name): NamedAedModel(name=name, spec=spec)
            for name, spec in BUILT_IN_AED_MODELS.items()
        }
        given: set[str] = set()
        for model in models:
            key = _model_key(model.name)
            if key in given:
                raise ValueError(f"AED model {model.name!r} is named twice")
            given.add(key)
            by_key[key] = model
        return tuple(by_key[key] for key in sorted(by_key))

    def spec_for(self, aed_model: str) -> AedModelSpec:
        key = _model_key(aed_model)
        for named in self.aed_models:
            if _model_key(named.name) == key:
                return named.spec
        return self.default_aed_model


ModelT = TypeVar("ModelT", bound=_Config)


def _patched(model: ModelT, patch: Patch) -> ModelT:
    # The values were validated when the configuration was loaded.
    return model.model_copy(update=dict(patch)) if patch else model


def rules_for(cabinet: Cabinet, config: RuleConfig) -> RuleSet:
    """The rules of ``cabinet``: its AED model's spec and the defaults, then every
    override that matches it, in the order of the configuration."""
    aed = config.spec_for(cabinet.aed_model)
    thresholds = config.thresholds
    severities = config.severities
    for override in config.overrides:
        if override.match.matches(cabinet):
            aed = _patched(aed, override.aed)
            thresholds = _patched(thresholds, override.thresholds)
            severities = _patched(severities, override.severities)
    return RuleSet(
        aed=aed,
        thresholds=thresholds,
        severities=severities,
        default_time_zone=config.default_time_zone,
    )


def parse_rule_config(document: object, source: str) -> RuleConfig:
    """Validate a parsed file; :class:`ConfigError` names ``source`` and each bad key."""
    if document is None:
        document = {}
    if not isinstance(document, Mapping):
        raise ConfigError(f"rule configuration in {source} must be a mapping at the top")
    try:
        return RuleConfig.model_validate(document)
    except ValidationError as exc:
        problems = describe_problems(exc, RuleConfig)
        raise ConfigError(f"invalid rule configuration in {source}: {problems}") from None


def load_rule_config(path: Path) -> RuleConfig:
    """Read the rule configuration from a YAML (``.yaml``, ``.yml``) or TOML file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"rule configuration {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"rule configuration {path} cannot be read: {exc}") from None
    try:
        if path.suffix.lower() == ".toml":
            document: object = tomllib.loads(text)
        else:
            document = yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"rule configuration {path} cannot be parsed: {exc}") from None
    return parse_rule_config(document, str(path))
