"""The alerting service's configuration (``aedfleet alerting --config alerting.toml``).

These are the alerting sections: the rules, escalation, quiet hours, notifiers, links
and the HTTP endpoint. The ``aedfleet alerting`` process runs the ingest pipeline with
alerting on its seam, so its file also holds an ``[ingest]`` section (the same keys as the
ingest's own file; :mod:`aedfleet_app.alerting_process` adds it). Every section has
working defaults except the link secret, which must be set: a default secret would let
anyone forge acknowledgement links. Link secrets are
:data:`~aedfleet.settings.SigningKey` values (at least 32 bytes), and like every secret
they are refused while they hold the example's placeholder.
"""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from aedfleet.settings import FileThenEnvSettings, SigningKey
from alerting.districts import CoverageSettings
from alerting.escalation import EscalationPolicies
from alerting.lifecycle import Hysteresis
from alerting.notifiers.delivery import NotifySettings
from alerting.quiet import QuietSettings
from alerting.rule_config import RuleConfig
from alerting.silences import SilenceLimits


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class LinkSettings(_Section):
    secrets: Annotated[tuple[SigningKey, ...], Field(min_length=1)] = Field(
        description="HMAC keys, newest first; the first signs, all verify (key rotation)"
    )
    base_url: str = Field(
        default="http://127.0.0.1:8470/l/",
        description="Public URL of the link endpoint as captains' phones reach it",
    )
    ttl: timedelta = Field(
        default=timedelta(days=3),
        gt=timedelta(0),
        description="How long a link in a notice stays valid after it was made",
    )


class ApiScope(StrEnum):
    READ = "read"
    """GET: alarms, their history, readiness, silences (a dashboard, a report)."""
    WRITE = "write"
    """Everything READ may, and acknowledge, resolve, record inspections, manage silences."""


class ApiToken(_Section):
    """One system's key to the JSON API: what it may do, and the name it acts under."""

    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,31}$")] = Field(
        description="The system's name, recorded with what it does: lower case letters, digits, "
        "_ . -, at most 32"
    )
    token: SecretStr = Field(
        description="Sent as Authorization: Bearer TOKEN; each token belongs to one name"
    )
    scope: ApiScope = Field(
        default=ApiScope.READ, description="read (the default) or write; least rights first"
    )


class HttpSettings(_Section):
    host: str = Field(
        default="127.0.0.1",
        description="Address the link pages, the API and /healthz listen on",
    )
    port: int = Field(default=8470, ge=0, le=65_535, description="0 = any free port")
    api_tokens: tuple[ApiToken, ...] = Field(
        default=(),
        description="The JSON API's clients ([[http.api_tokens]] name, token, scope); "
        "none configured = API off",
    )

    @model_validator(mode="after")
    def _names_and_tokens_unique(self) -> HttpSettings:
        names = [client.name for client in self.api_tokens]
        if len(set(names)) != len(names):
            raise ValueError("api_tokens: two tokens have the same name")
        tokens = [client.token.get_secret_value() for client in self.api_tokens]
        if len(set(tokens)) != len(tokens):
            raise ValueError("api_tokens: two names share one token")
        return self


class SchedulerSettings(_Section):
    tick_s: float = Field(
        default=1.0, gt=0, le=60, description="How often deadlines and escalations are checked"
    )
    readiness_snapshot_s: float = Field(
        default=300,
        gt=0,
        description="Seconds between readiness points of every cabinet (beside one at each change)",
    )
    registry_refresh_s: float = Field(
        default=60,
        gt=0,
        description="How often to check the registry's revision; it is reloaded when it moved",
    )
    digest_check_s: float = Field(
        default=60,
        gt=0,
        description="Seconds between checks for due daily digests; a digest may go out this late",
    )
    max_parallel_deliveries: int = Field(
        default=16, ge=1, le=256, description="Notices being sent at once at most, all channels"
    )
    first_contact_grace_s: float = Field(
        default=600,
        ge=0,
        description="After start, how long (clock seconds) a cabinet with no state yet "
        "waits before it counts as never heard from",
    )


class AlertingSettings(FileThenEnvSettings):
    rules: RuleConfig = Field(
        default=RuleConfig(),
        description="What counts as wrong, and when: AED models, thresholds, severities, "
        "overrides (docs/alerting.md)",
    )
    escalation: EscalationPolicies = Field(
        default=EscalationPolicies(), description="Who is paged when, one policy per severity"
    )
    hysteresis: Hysteresis = Field(
        default=Hysteresis(),
        description="When an alarm whose condition went away resolves by itself",
    )
    quiet: QuietSettings = Field(
        default=QuietSettings(),
        description="Quiet hours, grouping and the daily digest of warning and info notices",
    )
    notify: NotifySettings = Field(
        default=NotifySettings(), description="The channels notices go out on, and their retries"
    )
    silences: SilenceLimits = Field(
        default=SilenceLimits(), description="What a silence may ask for"
    )
    links: LinkSettings = Field(
        description="The signed links in notices (acknowledge, resolve, record an inspection); "
        "required, as secrets has no default"
    )
    http: HttpSettings = Field(
        default=HttpSettings(),
        description="The HTTP endpoint: link pages, the JSON API and /healthz",
    )
    scheduler: SchedulerSettings = Field(
        default=SchedulerSettings(),
        description="Intervals of the time-driven work, and the bound on deliveries",
    )
    coverage: CoverageSettings = Field(
        default=CoverageSettings(),
        description="The fleet's coverage target: AEDs per 100,000 people per district",
    )
