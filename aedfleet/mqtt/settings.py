"""Where and how to reach the broker: the settings both MQTT adapters take."""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from aedfleet.redact import redact_url


class TlsSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    ca_file: str | None = Field(default=None, description="CA bundle; system CAs when unset")
    cert_file: str | None = Field(
        default=None, description="Client certificate (PEM) for a broker that asks for one"
    )
    key_file: str | None = Field(
        default=None, description="Private key of cert_file; unset when cert_file holds it"
    )
    verify_hostname: bool = Field(
        default=True,
        description="Check that the broker's certificate names host; the certificate chain is "
        "verified either way",
    )


class MqttSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = Field(default="127.0.0.1", description="The broker's host name or IP address")
    port: int = Field(
        default=1883,
        ge=1,
        le=65_535,
        description="The broker's port; setting tls does not change it (TLS is usually 8883)",
    )
    protocol: Literal["5", "3.1.1"] = Field(
        default="5",
        description="MQTT version; the ingest (also inside the alerting) speaks 5 only",
    )
    username: str | None = Field(
        default=None, description="Login at the broker; unset: connect without one"
    )
    password: SecretStr | None = Field(default=None, description="The login's password")
    tls: TlsSettings | None = Field(default=None, description="TLS to the broker; unset: plain TCP")
    keepalive_s: int = Field(
        default=30,
        ge=5,
        le=3_600,
        description="Keep-alive, in seconds: a connection silent for 1.5 times this is taken "
        "as dead",
    )
    connect_timeout_s: float = Field(
        default=10,
        gt=0,
        le=120,
        description="Seconds to wait for the connection and CONNACK, and for a PUBACK or "
        "SUBACK on a live connection",
    )

    @property
    def endpoint(self) -> str:
        scheme = "mqtts" if self.tls else "mqtt"
        return f"{scheme}://{self.host}:{self.port}"

    @classmethod
    def from_url(cls, url: str, **overrides: Any) -> MqttSettings:
        """``mqtt://host:port`` or ``mqtts://user:pass@host:port`` (TLS with system CAs)."""
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError(
                f"broker URL {redact_url(url)!r} is not mqtt://host[:port] or mqtts://…"
            )
        values: dict[str, Any] = {
            "host": parts.hostname,
            "port": parts.port or (8883 if parts.scheme == "mqtts" else 1883),
            "username": parts.username,
            "password": parts.password,
            "tls": TlsSettings() if parts.scheme == "mqtts" else None,
        }
        values.update(overrides)
        return cls.model_validate(values)
