"""The ingest service's configuration (``aedfleet ingest --config ingest.toml``)."""

from __future__ import annotations

from pydantic import Field

from aedfleet.backoff import BackoffSettings
from aedfleet.contract import MAX_PAYLOAD_BYTES
from aedfleet.influx.writer import InfluxSettings
from aedfleet.mqtt import MqttSettings
from aedfleet.mqtt.codec import DEFAULT_MAX_PACKET_SIZE
from aedfleet.settings import FileThenEnvSettings


class IngestSettings(FileThenEnvSettings):
    mqtt: MqttSettings = Field(
        default=MqttSettings(),
        description="The broker the fleet publishes to; the ingest speaks MQTT 5 only",
    )
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
    session_expiry_s: int = Field(
        default=86_400,
        ge=0,
        description="Seconds the broker keeps this worker's session and queues its messages "
        "while it is away; 0 = dropped at disconnect",
    )
    # Measured (docs/benchmarks.md): Mosquitto writes what a PUBACK
    # releases to this client in bursts that grow with the window, and a door event on the
    # same broker waits them out: 20,000 cost door events ~100 ms at p99 while draining a
    # backlog, 5,000 ~15 ms, and drains within ~5 % of 20,000's rate. Batches of half the
    # window keep two in flight.
    receive_maximum: int = Field(
        default=5_000,
        ge=1,
        le=65_535,
        description="Deliveries held unacknowledged at most: the bound on buffered messages",
    )
    max_packet_size: int = Field(
        default=DEFAULT_MAX_PACKET_SIZE,
        # A valid cabinet message must fit, with its topic and fixed header.
        ge=MAX_PAYLOAD_BYTES + 1_024,
        le=268_435_460,
        description="Bytes, announced to the broker: it drops larger messages for the ingest",
    )
    batch_max_messages: int = Field(
        default=2_500,
        ge=1,
        le=50_000,
        description="Messages written and acknowledged as one batch at most; half of "
        "receive_maximum keeps two batches in flight",
    )
    batch_max_delay_s: float = Field(
        default=0.5,
        gt=0,
        le=60,
        description="Seconds a batch waits for more messages after its first before it is written",
    )
    influx: InfluxSettings = Field(
        default=InfluxSettings(), description="The InfluxDB 2 bucket telemetry is written to"
    )
    store_url: str = Field(
        default="sqlite:///var/aedfleet.sqlite3",
        description="SQLAlchemy URL: sqlite:///path or postgresql+psycopg://user@host/db",
    )
    metrics_port: int | None = Field(
        default=None,
        ge=0,
        le=65_535,
        description="Serve Prometheus /metrics on metrics_host at this port; 0 = any free port; "
        "unset = no metrics endpoint",
    )
    metrics_host: str = Field(
        default="127.0.0.1",
        description="Address the metrics endpoint listens on; the endpoint has no "
        "authentication, so keep it on loopback or a private network",
    )
    registry_refresh_s: float = Field(
        default=60,
        gt=0,
        description="How often to check the registry's revision; it is reloaded when it moved",
    )
    write_retry: BackoffSettings = Field(
        default=BackoffSettings(initial_s=0.5, max_s=30),
        description="Wait between retries of a state-store write or a retryable InfluxDB "
        "failure; a batch is acknowledged only once written",
    )
    reconnect: BackoffSettings = Field(
        default=BackoffSettings(),
        description="Wait before reconnecting after the broker connection is lost or refused",
    )
