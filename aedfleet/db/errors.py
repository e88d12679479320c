"""The state store's one error type, the root of :mod:`aedfleet.db`'s errors.

Every failure of the database underneath (unreachable server, constraint violation,
lock timeout, failed migration) reaches callers as :class:`StoreError`; no SQLAlchemy or
driver exception leaves :mod:`aedfleet.db`. Stores of the components above
(:class:`alerting.store.AlarmStore`, :class:`dispatch.outbox.DispatchOutbox`) raise
their own component's error type instead (``DatabaseStore._error_type``).
"""

from __future__ import annotations


class StoreError(Exception):
    """The state store could not do what was asked; the message says what and why."""
