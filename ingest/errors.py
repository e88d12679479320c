"""The ingest component's one exception tree.

Third-party errors are translated in the adapter that meets them: those of the parsing
libraries (csv, PyYAML, json, pydantic) in :mod:`ingest.registry`. The shared adapters the
ingest runs on raise the ground layer's errors: :class:`aedfleet.db.StoreError` (the state
store), :class:`aedfleet.influx.writer.InfluxError` (InfluxDB) and
:class:`aedfleet.mqtt.MqttError` (the broker). Each class lives in the module of its
concept::

    IngestError
    └── RegistryError         (registry.errors) a registry file has problems; .problems
"""

from __future__ import annotations


class IngestError(Exception):
    """Root of the ingest's errors."""
