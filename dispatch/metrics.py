"""The dispatch service's Prometheus metrics, in a registry of its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    300,
    900,
    3600,
)


class DispatchMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.received = Counter(
            "aedfleet_dispatch_events_received",
            "Event messages received from the broker",
            registry=self.registry,
        )
        self.handled = Counter(
            "aedfleet_dispatch_events",
            "Cabinet events by what coalescing made of them (sent, held, duplicate, "
            "not_dispatched, no_incident) or invalid",
            ["outcome"],
            registry=self.registry,
        )
        self.messages = Counter(
            "aedfleet_dispatch_messages",
            "Dispatch messages created, by kind (alert, update)",
            ["kind"],
            registry=self.registry,
        )
        self.unregistered = Counter(
            "aedfleet_dispatch_unregistered_messages",
            "Messages sent about cabinets the registry does not know "
            "(unregistered_cabinets = dispatch)",
            registry=self.registry,
        )
        self.refused = Counter(
            "aedfleet_dispatch_refused_events",
            "Events refused and dead-lettered, by reason (identity_mismatch, unknown_cabinet)",
            ["reason"],
            registry=self.registry,
        )
        self.dead_letter_failures = Counter(
            "aedfleet_dispatch_dead_letter_failures",
            "Dead letters the broker did not take; their events are left unacknowledged",
            registry=self.registry,
        )
        self.attempts = Counter(
            "aedfleet_dispatch_attempts",
            "Delivery attempts by endpoint and outcome (delivered, failed)",
            ["endpoint", "outcome"],
            registry=self.registry,
        )
        self.delivered = Counter(
            "aedfleet_dispatch_delivered",
            "Deliveries made, by endpoint",
            ["endpoint"],
            registry=self.registry,
        )
        self.expired = Counter(
            "aedfleet_dispatch_expired",
            "Deliveries given up on after their expiry, by endpoint",
            ["endpoint"],
            registry=self.registry,
        )
        self.pending = Gauge(
            "aedfleet_dispatch_pending",
            "Deliveries waiting to be made, by endpoint",
            ["endpoint"],
            registry=self.registry,
        )
        self.delivery_seconds = Histogram(
            "aedfleet_dispatch_delivery_seconds",
            "From the message's creation to its delivery, by endpoint",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.event_age_seconds = Histogram(
            "aedfleet_dispatch_event_age_seconds",
            "From an event's device time to its arrival here (cabinet clocks may be off)",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.handling_seconds = Histogram(
            "aedfleet_dispatch_handling_seconds",
            "From an event's arrival from the broker to its message in the outbox",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.readiness_seconds = Histogram(
            "aedfleet_dispatch_readiness_seconds",
            "Time to read a cabinet's twin from the state store",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.record_seconds = Histogram(
            "aedfleet_dispatch_record_seconds",
            "Time to write a batch of events to the outbox",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.outbox_failures = Counter(
            "aedfleet_dispatch_outbox_failures",
            "Failed outbox writes (each is retried)",
            registry=self.registry,
        )
