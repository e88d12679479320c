"""The ingest service's Prometheus metrics, in a registry of its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class IngestMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.received = Counter(
            "aedfleet_ingest_received", "MQTT messages received", registry=self.registry
        )
        self.written = Counter(
            "aedfleet_ingest_written",
            "Accepted messages written to InfluxDB and the state store",
            registry=self.registry,
        )
        self.invalid = Counter(
            "aedfleet_ingest_invalid",
            "Messages refused and dead-lettered, by reason",
            ["reason"],
            registry=self.registry,
        )
        self.duplicates = Counter(
            "aedfleet_ingest_duplicates",
            "Redelivered messages dropped by (cabinet, boot, seq)",
            registry=self.registry,
        )
        self.gaps = Counter(
            "aedfleet_ingest_sequence_gaps",
            "Sequence numbers skipped when first seen (late arrivals are not subtracted)",
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "aedfleet_ingest_batch_size",
            "Messages per committed batch",
            buckets=(1, 10, 50, 100, 500, 1_000, 2_000, 5_000, 10_000),
            registry=self.registry,
        )
        self.write_seconds = Histogram(
            "aedfleet_ingest_write_seconds",
            "Time to write one batch to InfluxDB",
            registry=self.registry,
        )
        self.write_failures = Counter(
            "aedfleet_ingest_write_failures",
            "Failed InfluxDB batch writes (each is retried)",
            registry=self.registry,
        )
        self.buffer_depth = Gauge(
            "aedfleet_ingest_buffer_depth",
            "Messages received and not yet acknowledged",
            registry=self.registry,
        )
