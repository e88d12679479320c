"""The state store: the fleet registry and the cabinet twins (SQLite or PostgreSQL)."""

from __future__ import annotations

from aedfleet.db.errors import StoreError
from aedfleet.db.migration import migrate
from aedfleet.db.state import StateStore

__all__ = ["StateStore", "StoreError", "migrate"]
