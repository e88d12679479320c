"""The state store: the fleet registry and the cabinet twins (SQLite or PostgreSQL)."""

from __future__ import annotations

from ingest.store.errors import StoreError
from ingest.store.migration import migrate
from ingest.store.store import StateStore

__all__ = ["StateStore", "StoreError", "migrate"]
