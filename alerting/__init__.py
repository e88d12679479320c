"""Alerting: readiness rules, alarms with a lifecycle, and the AED captain system.

Pure cores (no I/O, an injected ``now``): :mod:`alerting.rules` (facts and readiness),
:mod:`alerting.lifecycle` (raise, acknowledge, resolve with hysteresis),
:mod:`alerting.escalation` (who is paged when), :mod:`alerting.silences`,
:mod:`alerting.quiet` (quiet hours and grouping). Adapters: :mod:`alerting.store`
(alarms and escalations in the state store), :mod:`alerting.notifiers` (email,
webhooks, SMS), :mod:`alerting.http` (ack links and the API); :mod:`alerting.service`
wires them to the ingest's message seam and the scheduler.
"""
