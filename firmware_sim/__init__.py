"""A simulated cabinet fleet: physics, faults, scenarios and the ground truth to score by.

The cabinet's behaviour is a pure model (``cabinet``, ``climate``) advanced by explicit
times; ``hardware`` adapts it to the edge agent's ``CabinetHardware`` interface. Errors
all derive from :class:`firmware_sim.errors.SimulatorError`.
"""

from typing import Final

MAX_CABINETS: Final = 20_000
"""Cabinets one process simulates at most: each holds a socket, and the open-files limit
is 20,000 here. In the package itself so that the command line checks it without
importing the simulator."""
