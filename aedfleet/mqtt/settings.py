"""Where and how to reach the broker: the settings both MQTT adapters take."""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from aedfleet.redact import redact_url


class TlsSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    ca_file: str | None = Field(default=None, description="CA bundle; system CAs when unset")
    cert_file: str | None = None
    key_file: str | None = None
    verify_hostname: bool = True


class MqttSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65_535)
    protocol: Literal["5", "3.1.1"] = "5"
    username: str | None = None
    password: SecretStr | None = None
    tls: TlsSettings | None = None
    keepalive_s: int = Field(default=30, ge=5, le=3_600)
    connect_timeout_s: float = Field(default=10, gt=0, le=120)

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
