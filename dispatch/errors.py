"""The dispatch component's one exception tree.

Third-party errors (SQLAlchemy, aiohttp, paho) are translated where they happen, in
:mod:`dispatch.outbox` and :mod:`dispatch.sender`; nothing else leaves the package::

    DispatchError
    ├── OutboxError        the outbox database failed (unreachable, constraint, migration)
    ├── DeliveryError      one attempt to deliver to an endpoint failed (it is retried)
    └── SignatureError     (receiver side) a request's signature must be refused
"""

from __future__ import annotations


class DispatchError(Exception):
    """Root of the dispatch component's errors."""


class OutboxError(DispatchError):
    """The outbox could not do what was asked; the message says what and why."""


class DeliveryError(DispatchError):
    """An attempt that did not deliver: the endpoint, and the HTTP status if one came."""

    def __init__(self, endpoint: str, detail: str, status: int | None = None) -> None:
        super().__init__(f"endpoint {endpoint}: {detail}")
        self.endpoint = endpoint
        self.detail = detail
        self.status = status
