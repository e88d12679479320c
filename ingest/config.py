"""The ingest service's configuration (``aedfleet ingest --config ingest.toml``)."""

from __future__ import annotations

from pydantic import Field

from aedfleet.mqtt import MqttSettings
from aedfleet.settings import FileThenEnvSettings
from edge_agent.backoff import BackoffSettings
from ingest.influx import InfluxSettings


class IngestSettings(FileThenEnvSettings):
    mqtt: MqttSettings = MqttSettings()
    client_id: str = Field(
        default="aedfleet-ingest-1",
        min_length=1,
        max_length=64,
        description="Fixed per worker, so that a restart resumes its broker session",
    )
    share_group: str | None = Field(
        default="ingest",
        pattern=r"^[^/+#]+$",
        description="Workers in one group split the fleet; unset for a plain subscription",
    )
    session_expiry_s: int = Field(default=86_400, ge=0)
    receive_maximum: int = Field(
        default=20_000,
        ge=1,
        le=65_535,
        description="Deliveries held unacknowledged at most: the bound on buffered messages",
    )
    # Measured (docs/benchmarks.md): bigger batches amortise the per-batch store and
    # InfluxDB round trips; 20,000 deliveries of ~300 bytes hold about 10 MB.
    batch_max_messages: int = Field(default=5_000, ge=1, le=50_000)
    batch_max_delay_s: float = Field(default=0.5, gt=0, le=60)
    influx: InfluxSettings = InfluxSettings()
    store_url: str = Field(
        default="sqlite:///var/aedfleet.sqlite3",
        description="SQLAlchemy URL: sqlite:///path or postgresql+psycopg://user@host/db",
    )
    metrics_port: int | None = Field(
        default=None, ge=0, le=65_535, description="Serve /metrics on 127.0.0.1; 0 = any port"
    )
    metrics_host: str = "127.0.0.1"
    registry_refresh_s: float = Field(default=60, gt=0)
    write_retry: BackoffSettings = BackoffSettings(initial_s=0.5, max_s=30)
    reconnect: BackoffSettings = BackoffSettings()
