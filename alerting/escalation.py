"""Escalation: who is paged about an unacknowledged alarm, and when. Pure.

An :class:`EscalationPolicy` is a first round of steps, each ``after`` some time since
the escalation started, naming the roles to page; then, optionally, repeat rounds every
``repeat_every``. A repeat round pages every role the steps name, at once: the whole
chain is still waiting, so the whole chain is told again. The first round's notices are
pages; the repeat rounds send ``repeat_kind`` (a page, or a reminder for warnings).
Info-level alarms page nobody (``digest``): they go into the captain's daily digest.

The defaults (:class:`EscalationPolicies`), from the issue:

============  ============================================================  =============
severity      first round                                                    repeat
============  ============================================================  =============
critical      captain at once, backup after 10 min, coordinator after 30 min  all, every 30 min
                                                                              (60, 90, ... min)
high          captain at once, backup after 30 min, coordinator after 2 h      all, every 4 h
                                                                              (6 h, 10 h, ...)
warning       captain at once                                                 captain reminded
                                                                              daily
info          nobody: the daily digest                                         none
============  ============================================================  =============

:class:`EscalationState` is where an alarm's escalation stands: the round and step of
the next notice and when it is due (None once there is nothing more to send, or for a
digest). :func:`advance` returns every page due at ``now`` and the state after them. It
catches up after a pause: every overdue step of the first round is paged exactly once;
missed repeat rounds collapse into the latest one (a service down for five hours does
not fire ten rounds), and a role already paged by a step caught up in the same call is
not paged again by that round. An alarm that is no longer raised (acknowledged,
resolved) is never paged: :func:`advance` returns no pages and a stopped state, whatever
the caller asked.

A :class:`~alerting.model.Page`'s ``key`` is (alarm, kind, round, step, role). When an
upgrade restarts the escalation (:func:`start` with ``previous``), the new policy's
rounds are numbered after the old ones, so that no key of the new escalation repeats a
page already recorded (which the store would refuse as a duplicate).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import ClassVar, Final

from pydantic import BaseModel, ConfigDict, Field, model_validator

from aedfleet.contract import UtcTimestamp
from aedfleet.registry import Role
from alerting.errors import AlertingError
from alerting.model import Alarm, AlarmState, NoticeKind, Page, Severity

__all__ = [
    "EscalationError",
    "EscalationPolicies",
    "EscalationPolicy",
    "EscalationState",
    "EscalationStep",
    "advance",
    "start",
]


class EscalationError(AlertingError, ValueError):
    """Escalation asked to advance the wrong alarm's state."""


class _Value(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class EscalationStep(_Value):
    after: timedelta = Field(ge=timedelta(0), description="Since the escalation started")
    roles: tuple[Role, ...] = Field(
        min_length=1,
        description="Who is paged: the cabinet's captain, its backups, its unit's coordinator",
    )


class EscalationPolicy(_Value):
    # A policy in a file is taken as written: left out, repeat_every means no repeats
    # (TOML cannot write "unset" over a default that repeats).
    replaced_whole: ClassVar[bool] = True

    steps: tuple[EscalationStep, ...] = Field(
        default=(), description="Who is paged when, in the order of their after times"
    )
    repeat_every: timedelta | None = Field(
        default=None,
        gt=timedelta(0),
        description="Page every role of the steps again this often after the last step; unset "
        "(also when a policy's table leaves it out): no repeat",
    )
    repeat_kind: NoticeKind = Field(
        default=NoticeKind.PAGE,
        description="What the repeat rounds send to every role of the steps: page or reminder",
    )
    digest: bool = Field(default=False, description="Page nobody: the daily digest lists it")

    @model_validator(mode="after")
    def _check(self) -> EscalationPolicy:
        if self.digest:
            if self.steps or self.repeat_every is not None:
                raise ValueError("a digest policy pages nobody: it takes no steps nor repeat")
            return self
        if not self.steps:
            raise ValueError("a policy that pages needs at least one step (or digest: true)")
        if any(a.after > b.after for a, b in zip(self.steps, self.steps[1:], strict=False)):
            raise ValueError("escalation steps must be in the order of their 'after' times")
        if self.repeat_kind not in {NoticeKind.PAGE, NoticeKind.REMINDER}:
            raise ValueError("repeat rounds send a page or a reminder")
        return self

    @property
    def repeat_roles(self) -> tuple[Role, ...]:
        """Every role of the steps, in the order they are first paged."""
        return tuple(dict.fromkeys(role for step in self.steps for role in step.roles))


_MINUTE: Final = timedelta(minutes=1)


class EscalationPolicies(_Value):
    """One policy per severity (configuration; the defaults are the issue's)."""

    critical: EscalationPolicy = Field(
        default=EscalationPolicy(
            steps=(
                EscalationStep(after=timedelta(0), roles=(Role.CAPTAIN,)),
                EscalationStep(after=10 * _MINUTE, roles=(Role.BACKUP,)),
                EscalationStep(after=30 * _MINUTE, roles=(Role.COORDINATOR,)),
            ),
            repeat_every=30 * _MINUTE,
        ),
        description="Critical alarms; by default the captain at once, the backups after "
        "10 min, the coordinator after 30 min, all three again every 30 min",
    )
    high: EscalationPolicy = Field(
        default=EscalationPolicy(
            steps=(
                EscalationStep(after=timedelta(0), roles=(Role.CAPTAIN,)),
                EscalationStep(after=30 * _MINUTE, roles=(Role.BACKUP,)),
                EscalationStep(after=120 * _MINUTE, roles=(Role.COORDINATOR,)),
            ),
            repeat_every=240 * _MINUTE,
        ),
        description="High alarms; by default the captain at once, the backups after 30 min, "
        "the coordinator after 2 h, all three again every 4 h",
    )
    warning: EscalationPolicy = Field(
        default=EscalationPolicy(
            steps=(EscalationStep(after=timedelta(0), roles=(Role.CAPTAIN,)),),
            repeat_every=timedelta(days=1),
            repeat_kind=NoticeKind.REMINDER,
        ),
        description="Warnings; by default the captain at once, and a reminder every day",
    )
    info: EscalationPolicy = Field(
        default=EscalationPolicy(digest=True),
        description="Info alarms; by default nobody is paged: the captain's daily digest "
        "lists them",
    )

    def for_severity(self, severity: Severity) -> EscalationPolicy:
        policy: EscalationPolicy = getattr(self, severity.value)
        return policy


class EscalationState(_Value):
    """Where one alarm's escalation stands.

    ``severity`` names the policy that drives it (the one it started or restarted
    under); ``started_at`` is when that policy's first round began, as ``first_round``
    numbers it. ``round`` and ``next_step`` say which notice is next, due at ``due_at``;
    ``due_at`` is None when nothing more is due (stopped, finished, or a digest).
    """

    alarm_id: int
    severity: Severity
    started_at: UtcTimestamp
    first_round: int = Field(default=0, ge=0)
    round: int = Field(ge=0)
    next_step: int = Field(ge=0)
    due_at: UtcTimestamp | None

    @property
    def finished(self) -> bool:
        return self.due_at is None


def start(
    alarm: Alarm,
    policy: EscalationPolicy,
    now: datetime,
    *,
    previous: EscalationState | None = None,
) -> EscalationState:
    """The escalation of a newly raised (or, with ``previous``, upgraded) alarm at ``now``.

    Nothing is paged yet: the first step is due at ``now`` plus its ``after``, and the
    caller's :func:`advance` sends it. A restart numbers its rounds after ``previous``.
    """
    if previous is not None and previous.alarm_id != alarm.alarm_id:
        raise EscalationError(
            f"alarm {alarm.alarm_id} cannot restart the escalation of alarm {previous.alarm_id}"
        )
    first_round = 0 if previous is None else previous.round + 1
    due_at = None if policy.digest else now + policy.steps[0].after
    return EscalationState(
        alarm_id=alarm.alarm_id,
        severity=alarm.severity,
        started_at=now,
        first_round=first_round,
        round=first_round,
        next_step=0,
        due_at=due_at,
    )


def advance(
    alarm: Alarm, state: EscalationState, policy: EscalationPolicy, now: datetime
) -> tuple[tuple[Page, ...], EscalationState]:
    """The pages due at ``now`` and the escalation state after them (see the module doc).

    ``policy`` is the policy of ``state.severity``. Nothing is due before ``due_at``.
    """
    if state.alarm_id != alarm.alarm_id:
        raise EscalationError(
            f"the escalation of alarm {state.alarm_id} cannot page for alarm {alarm.alarm_id}"
        )
    if alarm.state is not AlarmState.RAISED:
        stopped = state if state.due_at is None else state.model_copy(update={"due_at": None})
        return (), stopped
    if state.due_at is None or now < state.due_at or policy.digest:
        return (), state

    pages: list[Page] = []
    round_, step = state.round, state.next_step
    repeat_every = policy.repeat_every
    if round_ == state.first_round:
        while step < len(policy.steps) and state.started_at + policy.steps[step].after <= now:
            pages += [
                Page(
                    alarm_id=alarm.alarm_id,
                    role=role,
                    kind=NoticeKind.PAGE,
                    round=round_,
                    step=step,
                )
                for role in policy.steps[step].roles
            ]
            step += 1
        if step < len(policy.steps):
            due_at = state.started_at + policy.steps[step].after
            return tuple(pages), _moved(state, round_, step, due_at)
        if repeat_every is None:
            return tuple(pages), _moved(state, round_, step, None)
        round_, step = round_ + 1, 0
    if repeat_every is None:  # a finished first round of a policy without repeats
        return tuple(pages), _moved(state, round_, step, None)

    repeats_from = state.started_at + policy.steps[-1].after
    repeat = round_ - state.first_round
    if repeats_from + repeat * repeat_every <= now:
        repeat = (now - repeats_from) // repeat_every  # the latest round due
        round_ = state.first_round + repeat
        paged = {page.role for page in pages}
        pages += [
            Page(alarm_id=alarm.alarm_id, role=role, kind=policy.repeat_kind, round=round_, step=0)
            for role in policy.repeat_roles
            if role not in paged
        ]
        repeat += 1
        round_ += 1
    due_at = repeats_from + repeat * repeat_every
    return tuple(pages), _moved(state, round_, 0, due_at)


def _moved(
    state: EscalationState, round_: int, next_step: int, due_at: datetime | None
) -> EscalationState:
    return state.model_copy(update={"round": round_, "next_step": next_step, "due_at": due_at})
