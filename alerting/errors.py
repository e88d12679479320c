"""Alerting's one exception tree.

Third-party errors are translated in the adapters that meet them: SQLAlchemy's in
:mod:`alerting.store`, aiosmtplib's and aiohttp's in :mod:`alerting.notifiers`, the
template engine's in :mod:`alerting.render`. Each class lives in the module of its
concept::

    AlertingError
    ├── LifecycleError           (lifecycle) a change the alarm lifecycle cannot apply
    ├── EscalationError          (escalation) an escalation advanced with the wrong alarm
    ├── AlarmStoreError          the alarm store's database failed, or the request cannot be done
    │   ├── AlarmNotFoundError       no alarm has that id; .alarm_id
    │   └── TransitionRefusedError   the lifecycle forbids it (acknowledging a resolved alarm)
    ├── SilenceError             (silences) a well-formed silence that cannot be accepted now
    ├── LinkError                (links) an acknowledgement link that grants nothing; .reason
    └── NotifyError              (notifiers.base) a notice not delivered; .retryable
        ├── ChannelError             one channel could not deliver; .channel, .endpoint
        │   └── ChannelTimeoutError      the endpoint did not answer in time
        └── RenderError              a template failed on this notice (never retried)

LifecycleError, EscalationError and SilenceError are also ``ValueError``: they refuse a
value, and callers validating requests catch them with pydantic's.
"""

from __future__ import annotations


class AlertingError(Exception):
    """Root of alerting's errors; each module derives its own."""


class AlarmStoreError(AlertingError):
    """The alarm store could not do what was asked; the message says what and why."""


class AlarmNotFoundError(AlarmStoreError):
    def __init__(self, alarm_id: int) -> None:
        super().__init__(f"no alarm has the id {alarm_id}")
        self.alarm_id = alarm_id


class TransitionRefusedError(AlarmStoreError):
    """The alarm lifecycle does not allow the transition (the message says why)."""
