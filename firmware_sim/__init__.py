"""A simulated cabinet fleet: physics, faults, scenarios and the ground truth to score by.

The cabinet's behaviour is a pure model (``cabinet``, ``climate``) advanced by explicit
times; ``hardware`` adapts it to the edge agent's ``CabinetHardware`` interface. Errors
all derive from :class:`firmware_sim.errors.SimulatorError`.
"""
