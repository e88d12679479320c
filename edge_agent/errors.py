"""The edge agent's one exception tree.

Third-party errors are translated where they happen: sqlite3's in
:mod:`edge_agent.outbox`, a driver's own in the driver; MQTT errors are
:mod:`aedfleet.mqtt`'s, which the agent handles and never lets out::

    EdgeAgentError
    ├── EdgeOutboxError    the on-disk queue cannot be opened, read or written
    │                      (:mod:`edge_agent.outbox`; names the file and the cabinet)
    └── HardwareError      a driver could not read or act on the hardware
                           (:mod:`edge_agent.hardware`)
"""

from __future__ import annotations


class EdgeAgentError(Exception):
    """Root of the edge agent's errors."""
