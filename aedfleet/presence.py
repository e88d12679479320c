"""Which connection state to believe for a cabinet (pure).

``online`` and ``offline`` are both retained and may arrive late or twice: a last will
of an old connection can reach a consumer after the cabinet is back. The rule follows
Sparkplug's bdSeq: an ``offline`` counts only when it belongs to the very connection
(boot id and connection number) of the ``online`` being held.
"""

from __future__ import annotations

from aedfleet.contract import ConnectionState, Status


def apply_status(current: Status | None, incoming: Status) -> Status:
    """The status to hold after ``incoming`` arrives while ``current`` is held."""
    if current is None:
        return incoming
    same_connection = (incoming.boot_id, incoming.seq) == (current.boot_id, current.seq)
    if incoming.state is ConnectionState.OFFLINE:
        if current.state is ConnectionState.ONLINE and not same_connection:
            return current
        return incoming
    if current.state is ConnectionState.OFFLINE and same_connection:
        return current  # a redelivered online of a connection that has already ended
    if incoming.ts < current.ts:
        return current
    return incoming
