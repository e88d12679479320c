"""The state store's one error type, an :class:`ingest.errors.IngestError`.

Every failure of the database underneath (unreachable server, constraint violation,
lock timeout, failed migration) reaches callers as :class:`StoreError`; no SQLAlchemy or
driver exception leaves :mod:`ingest.store`.
"""

from __future__ import annotations

from ingest.errors import IngestError


class StoreError(IngestError):
    """The state store could not do what was asked; the message says what and why."""
