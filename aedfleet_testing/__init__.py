"""The test harness: real servers on loopback (Mosquitto, InfluxDB behind nginx), an
SMTP mailbox, the dispatch receiver, and the helpers that seed and configure them.

The tests (``tests/``) and the benchmarks (``benchmarks/``) both use it; it imports the
components but nothing imports it, and it is not installed with the package. The pytest
side (fixtures, the collection hook that marks tiers) stays in ``tests/conftest.py``.
"""
