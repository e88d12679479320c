"""The dispatch service's configuration (``aedfleet dispatch --config dispatch.toml``).

Endpoints are listed as ``[[endpoints]]`` tables; secrets (a bearer token, an HMAC key)
are given inline or, better, in a file of their own (``token_file``, ``secret_file``)
that only the service's user can read. Secret files are read when the settings are
validated, so that a missing, empty, placeholder or (for HMAC) short secret stops the
service before it opens anything. An example is in ``docs/dispatch.md``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    model_validator,
)

from aedfleet.backoff import BackoffSettings
from aedfleet.mqtt import MqttSettings
from aedfleet.settings import FileThenEnvSettings, SigningKey, check_signing_key, is_placeholder
from dispatch.incident import CoalescingPolicy
from dispatch.outbox import Durability

MQTT_ENDPOINT = "mqtt"
"""The name under which the MQTT republication appears in the outbox."""

EndpointName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")]
CapText = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\s,<&]+$")]


class _Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _read_secret(path: Path, what: str) -> SecretStr:
    try:
        value = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ValueError(f"cannot read the {what} file {path}: {reason}") from None
    if not value:
        raise ValueError(f"the {what} file {path} is empty")
    if is_placeholder(value):
        raise ValueError(f"the {what} file {path} holds the example's placeholder")
    return SecretStr(value)


class BearerAuth(_Settings):
    """``Authorization: Bearer <token>`` on every request."""

    kind: Literal["bearer"] = Field(
        default="bearer", description="Authorization: Bearer <token> on every request"
    )
    token: SecretStr | None = Field(default=None, description="The token; give this or token_file")
    token_file: Path | None = Field(
        default=None,
        description="A file holding the token, read at start; give this or token",
    )

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if (self.token is None) == (self.token_file is None):
            raise ValueError("give exactly one of token and token_file")
        self.credential()  # a file that cannot be used fails here, at start-up
        return self

    def credential(self) -> SecretStr:
        if self.token is not None:
            return self.token
        assert self.token_file is not None  # noqa: S101 - ensured by the validator
        return _read_secret(self.token_file, "token")


class HmacAuth(_Settings):
    """HMAC-SHA256 over ``timestamp + "." + body`` in a signature header (see
    :mod:`dispatch.signing`), so that a receiver can check origin, integrity and age."""

    kind: Literal["hmac"] = Field(
        default="hmac",
        description="An HMAC-SHA256 signature of timestamp and body on every attempt "
        "(docs/dispatch.md)",
    )
    secret_value: SigningKey | None = Field(
        default=None,
        alias="secret",
        description="The key, at least 32 bytes; give this or secret_file",
    )
    secret_file: Path | None = Field(
        default=None,
        description="A file holding the key, read at start; give this or secret",
    )

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if (self.secret_value is None) == (self.secret_file is None):
            raise ValueError("give exactly one of secret and secret_file")
        if self.secret_file is not None:  # an inline secret is checked by its type
            check_signing_key(self.credential().get_secret_value())
        return self

    def credential(self) -> SecretStr:
        if self.secret_value is not None:
            return self.secret_value
        assert self.secret_file is not None  # noqa: S101 - ensured by the validator
        return _read_secret(self.secret_file, "HMAC secret")


EndpointAuth = Annotated[BearerAuth | HmacAuth, Field(discriminator="kind")]


class CapSettings(_Settings):
    """How CAP 1.2 messages to an endpoint are addressed."""

    sender: CapText = Field(
        default="aedfleet@aedfleet.invalid", description="Sender id: no spaces, commas, < or &"
    )
    sender_name: str = Field(
        default="aedfleet AED fleet monitor",
        max_length=200,
        description="CAP senderName, shown to the dispatcher",
    )
    status: Literal["Actual", "Exercise", "System", "Test", "Draft"] = Field(
        default="Actual",
        description="CAP status; anything but Actual tells the receiver not to act on it",
    )
    scope: Literal["Public", "Restricted", "Private"] = Field(
        default="Restricted",
        description="CAP scope; Restricted sends restriction, Private needs addresses",
    )
    restriction: str = Field(
        default="For emergency medical dispatch only",
        max_length=500,
        description="CAP restriction, sent when scope is Restricted",
    )
    addresses: str | None = Field(
        default=None, max_length=500, description="Required when scope is Private"
    )
    language: Literal["en-US", "zh-CN"] = Field(
        default="en-US", description="Language of the CAP text: event, headline, description"
    )
    radius_km: float = Field(
        default=0.1, gt=0, le=50, description="Radius of the area circle around the cabinet"
    )

    @model_validator(mode="after")
    def _addresses_for_private(self) -> Self:
        if self.scope == "Private" and not self.addresses:
            raise ValueError("scope Private needs addresses")
        return self


class EndpointSettings(_Settings):
    """One command system that receives dispatch events over HTTPS."""

    name: EndpointName = Field(
        description="Its name in the outbox, logs and metrics: lower case letters, digits, _ "
        "and -, at most 32; mqtt is reserved"
    )
    url: AnyHttpUrl = Field(description="Where dispatch events are POSTed")
    format: Literal["json", "cap"] = Field(
        default="json",
        description="json: the DispatchEvent document (docs/schemas); cap: OASIS CAP 1.2 XML",
    )
    auth: EndpointAuth | None = Field(
        default=None, description="How requests prove their origin; unset: they do not."
    )
    tls_verify: bool = Field(default=True, description="Verify the server's certificate")
    ca_file: Path | None = Field(default=None, description="CA bundle; system CAs when unset")
    timeout_s: float = Field(default=5, gt=0, le=120, description="Per attempt, all included")
    expire_after_s: float = Field(
        default=3_600, gt=0, description="Give up on a message this long after it was created"
    )
    retry: BackoffSettings = Field(
        default=BackoffSettings(initial_s=0.5, max_s=60),
        description="Wait between attempts of a message; the cabinet's later messages wait "
        "behind it",
    )
    max_concurrent: int = Field(default=16, ge=1, le=256, description="Requests in flight")
    cap: CapSettings = Field(
        default=CapSettings(), description='How CAP messages are addressed (format = "cap")'
    )

    @model_validator(mode="after")
    def _not_reserved(self) -> Self:
        if self.name == MQTT_ENDPOINT:
            raise ValueError(f"endpoint name {MQTT_ENDPOINT!r} is reserved for the republication")
        return self


class RepublishSettings(_Settings):
    """Dispatch events on ``aedfleet/dispatch/v1/{cabinet_id}`` (JSON), for sites that
    bridge MQTT to their command system; delivered through the outbox like an endpoint."""

    enabled: bool = Field(
        default=True,
        description="Publish on MQTT as well; with no endpoints it must stay on",
    )
    expire_after_s: float = Field(
        default=3_600,
        gt=0,
        description="Give up on a message this long after it was created",
    )
    retry: BackoffSettings = Field(
        default=BackoffSettings(initial_s=0.5, max_s=30),
        description="Wait between attempts to publish a message; the cabinet's later messages "
        "wait behind it",
    )


class DispatchSettings(FileThenEnvSettings):
    mqtt: MqttSettings = Field(
        default=MqttSettings(),
        description="The broker the cabinets' events come from, and republish publishes to",
    )
    client_id: str = Field(
        default="aedfleet-dispatch-1",
        min_length=1,
        max_length=64,
        description="Fixed, so that a restart resumes the broker session and its backlog",
    )
    session_expiry_s: int = Field(
        default=86_400,
        ge=0,
        description="Seconds the broker keeps the session, and queues events for dispatch, "
        "while it is away; 0 = dropped at disconnect",
    )
    receive_maximum: int = Field(
        default=1_000,
        ge=1,
        le=65_535,
        description="Events held unacknowledged at most: the bound on the inbound queue",
    )
    batch_max_events: int = Field(
        default=100, ge=1, le=10_000, description="Events folded into one outbox transaction"
    )
    store_url: str = Field(
        default="sqlite:///var/aedfleet.sqlite3",
        description="The state store with the registry and the twins (read only)",
    )
    outbox_url: str | None = Field(
        default=None,
        description="Where the outbox lives; the state store when unset. A separate SQLite "
        "file keeps door events from waiting for the ingest's write lock",
    )
    outbox_durability: Durability = Field(
        default=Durability.WRITTEN,
        description="synced: commits survive a power cut (fsync); written: they survive the "
        "service being killed, and a door event never waits for the disk",
    )
    endpoints: tuple[EndpointSettings, ...] = Field(
        default=(),
        description="Command systems that receive dispatch events over HTTP(S); none only "
        "with republish enabled",
    )
    republish: RepublishSettings = Field(
        default=RepublishSettings(),
        description="Dispatch events on aedfleet/dispatch/v1/{cabinet_id} (JSON), for sites "
        "that bridge MQTT to their command system",
    )
    unregistered_cabinets: Literal["refuse", "dispatch"] = Field(
        default="refuse",
        description="refuse: an event of a cabinet the registry does not know pages no "
        "command centre; it is dead-lettered (unknown_cabinet) and counted, since a spoofed "
        "or mistyped id must not send an ambulance. dispatch: send it, with registered false",
    )
    coalescing: CoalescingPolicy = Field(
        default=CoalescingPolicy(),
        description="How a cabinet's events make incidents, and how often updates go out",
    )
    registry_refresh_s: float = Field(
        default=60,
        gt=0,
        description="How often to check the registry's revision; it is reloaded when it moved",
    )
    api_port: int | None = Field(
        default=None, ge=0, le=65_535, description="Serve /metrics and /api; 0 = any port"
    )
    api_host: str = Field(
        default="127.0.0.1",
        description="Address /metrics and /api listen on; they ask for no credentials, so keep "
        "it on loopback or a private network",
    )
    reconnect: BackoffSettings = Field(
        default=BackoffSettings(initial_s=0.2, max_s=10),
        description="Wait before reconnecting after the broker connection is lost or refused",
    )
    store_retry: BackoffSettings = Field(
        default=BackoffSettings(initial_s=0.2, max_s=10),
        description="Wait between retries of a failed outbox write: new messages, attempts, "
        "expiries; events stay unacknowledged until theirs is written",
    )

    @property
    def outbox_store_url(self) -> str:
        return self.outbox_url or self.store_url

    @model_validator(mode="after")
    def _endpoints_are_distinct(self) -> Self:
        names = [endpoint.name for endpoint in self.endpoints]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"endpoint names repeat: {', '.join(repeated)}")
        if not self.endpoints and not self.republish.enabled:
            raise ValueError("nothing to dispatch to: no endpoints and republish disabled")
        return self
