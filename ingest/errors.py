"""The ingest component's one exception tree.

Third-party errors are translated in the adapter that meets them: SQLAlchemy's and the
database drivers' in :mod:`ingest.store`, aiohttp's in :mod:`ingest.influx`, those of the
parsing libraries (csv, PyYAML, json, pydantic) in :mod:`ingest.registry`; MQTT errors are
:mod:`aedfleet.mqtt`'s. Each class lives in the module of its concept::

    IngestError
    ├── StoreError            (store.errors) the state store's database failed
    ├── RegistryError         (registry.errors) a registry file has problems; .problems
    └── InfluxError           (influx) the InfluxDB adapter failed
        └── InfluxWriteError      a batch not written, or not entirely; .status, .retryable
"""

from __future__ import annotations


class IngestError(Exception):
    """Root of the ingest's errors."""
