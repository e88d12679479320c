"""The alerting service's configuration (``aedfleet alerting --config alerting.toml``).

The alerting service runs the ingest pipeline with alerting plugged into its message
seam, so its file holds an ``[ingest]`` section (the same keys as the ingest's own file)
beside the rules, escalation, quiet hours, notifiers, links and the HTTP endpoint.
Every section has working defaults except the link secret, which must be set: a
default secret would let anyone forge acknowledgement links. Link secrets are
:data:`~aedfleet.settings.SigningKey` values (at least 32 bytes), and like every secret
they are refused while they hold the example's placeholder.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from aedfleet.settings import FileThenEnvSettings, SigningKey
from alerting.escalation import EscalationPolicies
from alerting.lifecycle import Hysteresis
from alerting.notifiers.delivery import NotifySettings
from alerting.quiet import QuietSettings
from alerting.rule_config import RuleConfig
from alerting.silences import SilenceLimits
from ingest.config import IngestSettings


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
    ttl: timedelta = Field(default=timedelta(days=3), gt=timedelta(0))


class HttpSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8470, ge=0, le=65_535, description="0 = any free port")
    api_tokens: tuple[SecretStr, ...] = Field(
        default=(), description="Bearer tokens of the JSON API; none configured = API off"
    )


class SchedulerSettings(_Section):
    tick_s: float = Field(
        default=1.0, gt=0, le=60, description="How often deadlines and escalations are checked"
    )
    readiness_snapshot_s: float = Field(default=300, gt=0)
    registry_refresh_s: float = Field(
        default=60,
        gt=0,
        description="How often to check the registry's revision; it is reloaded when it moved",
    )
    digest_check_s: float = Field(default=60, gt=0)
    max_parallel_deliveries: int = Field(default=16, ge=1, le=256)
    first_contact_grace_s: float = Field(
        default=600,
        ge=0,
        description="After start, how long (clock seconds) a cabinet with no state yet "
        "waits before it counts as never heard from",
    )


class AlertingSettings(FileThenEnvSettings):
    ingest: IngestSettings = IngestSettings()
    rules: RuleConfig = RuleConfig()
    escalation: EscalationPolicies = EscalationPolicies()
    hysteresis: Hysteresis = Hysteresis()
    quiet: QuietSettings = QuietSettings()
    notify: NotifySettings = NotifySettings()
    silences: SilenceLimits = SilenceLimits()
    links: LinkSettings
    http: HttpSettings = HttpSettings()
    scheduler: SchedulerSettings = SchedulerSettings()
