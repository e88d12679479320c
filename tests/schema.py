"""The state store's whole schema: each component adds its tables to the one metadata
when its ``tables`` module is imported."""

import alerting.tables  # noqa: F401
import dispatch.tables  # noqa: F401
from aedfleet.db.tables import metadata

__all__ = ["metadata"]
