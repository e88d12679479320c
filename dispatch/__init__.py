"""Dispatch: a cabinet door opening, sent to the 120 command centre within a second.

When a cabinet door opens or its AED is taken, someone nearby may be in cardiac arrest.
The dispatch service (its own process: ``aedfleet dispatch --config dispatch.toml``)
subscribes to cabinet events alone, coalesces them into incidents, enriches them with
where the cabinet is and whether its AED is usable, and delivers them through a durable
outbox to every configured endpoint (JSON or CAP 1.2 over HTTPS, and MQTT), in order
per cabinet, retried until delivered or expired. One module per concept:

- :mod:`dispatch.incident`: incident coalescing and rate limiting (pure);
- :mod:`dispatch.enrichment`: registry particulars and readiness (pure, plus a cache);
- :mod:`dispatch.formats`: JSON and CAP 1.2 (pure);
- :mod:`dispatch.signing`: bearer and HMAC authentication, and the receiver's check;
- :mod:`dispatch.tables`, :mod:`dispatch.outbox`: the outbox in the state store;
- :mod:`dispatch.sender`: HTTP (aiohttp) and MQTT transports;
- :mod:`dispatch.delivery`: per (endpoint, cabinet) lanes with retry and expiry;
- :mod:`dispatch.service`: the service; :mod:`dispatch.api`, :mod:`dispatch.metrics`;
- :mod:`dispatch.config`: its settings; :mod:`dispatch.cli`: ``aedfleet dispatch``.

See ``docs/dispatch.md``.
"""
