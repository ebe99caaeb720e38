"""Continuous: the rules of recurring work. The lifecycle itself is in ``_runtime``.

Theory of operation. A Continuous snapshot holds the user state, ``run_count`` and
``next_slot``, the next regular run of its schedule. Its alarm is the pending retry when
there is one, otherwise ``next_slot``.

* ``start`` creates the instance (the input becomes the state), emits ``job.started``,
  and either makes a run due now (``start_immediately``: a ``trigger`` in ``pending``,
  run by a worker) or waits for the first slot. A second ``start`` for a live id
  answers ``created=False`` and changes nothing.
* A slot alarm increments ``run_count`` and runs attempt 1; ``next_slot`` moves to the
  first slot after now (fixed rate, missed slots collapse into this one run). A retry
  alarm re-runs with the same ``run_count`` and the next attempt.
* ``trigger`` is an extra run now: the request only records it (``pending``) and answers;
  the alarm, due at once, runs it where due work runs (a worker). That run opens a fresh
  failure sequence (a pending retry is replaced), increments ``run_count``, and leaves
  the regular schedule where it is. Each trigger is one run.
* Exhaustion (the last attempt failed, or ``max_duration`` passed) writes the state to the
  dead-letter store, then the job goes on with its next slot, keeping its state; with
  ``on_retry_exhausted="terminate"`` the instance is purged instead. A failure without a
  retry policy is an exhausted first attempt: never a zombie (p-3).
* ``ctx.terminate()`` and the client's ``terminate`` purge the instance and emit
  ``job.terminated``; the id can be started afresh afterwards.
* A ``trigger`` while a run is in flight (or with triggers still pending) is queued
  behind them (``queued=True``), or, when the caller asked to ``wait``, answered busy so
  that the interpreter waits. ``terminate`` always wins (pending triggers go with the
  instance), and the in-flight run's outcome then finds nothing and is ignored.
"""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

import attrs
from returns.result import Result, Success

from durable_jobs import _runtime as rt
from durable_jobs._commands import Command, ContinuousExecute, Emit, RunUserCode
from durable_jobs._definitions import ContinuousDefinition
from durable_jobs._errors import Rejection
from durable_jobs._inputs import (
    AlarmFired,
    ContinuousGetState,
    ContinuousStart,
    ContinuousStatus,
    ContinuousTerminate,
    ContinuousTrigger,
    Input,
    RunInterrupted,
    TerminateRequested,
    UserCodeFailed,
    UserCodeSucceeded,
)
from durable_jobs._keys import InstanceKey
from durable_jobs._results import (
    ContinuousStartResult,
    ContinuousStatusResult,
    ContinuousTerminateResult,
    ContinuousTriggerResult,
    StateResult,
)
from durable_jobs._telemetry import JobStarted, base_fields
from durable_jobs._time import Instant, to_datetime

__all__ = ["ContinuousSnapshot", "continuous_status", "decide_continuous"]

S = TypeVar("S")


@attrs.frozen
class ContinuousSnapshot(Generic[S]):
    key: InstanceKey
    state: S
    created_at: Instant
    run_count: int = 0
    next_slot: Instant | None = None
    attempts: rt.Attempts = rt.FRESH
    in_flight: rt.InFlight | None = None
    alarm_at: Instant | None = None
    version: int = 0
    pending: tuple[rt.Pending[Any], ...] = ()


def continuous_status(snapshot: ContinuousSnapshot[Any]) -> Literal["running"]:
    """A Continuous instance that exists is running (terminate purges it)."""
    return "running"


def _alarm(snapshot: ContinuousSnapshot[Any]) -> Instant | None:
    if snapshot.pending:
        return snapshot.pending[0].at
    retry_at = snapshot.attempts.retry_at
    return retry_at if retry_at is not None else snapshot.next_slot


def _run(snapshot: ContinuousSnapshot[Any]) -> RunUserCode:
    return rt.run_command(snapshot, ContinuousExecute(snapshot.state, snapshot.run_count))


def _start_run(
    snapshot: ContinuousSnapshot[Any],
    effects: list[Command],
    *,
    origin: rt.Origin,
    now: Instant,
    attempt: int = 1,
    created: bool = False,
    **changes: Any,
) -> rt.Transition[Any]:
    """Start ``execute`` (with ``changes`` to other fields, in the same rebuild)."""
    return rt.commit_start(
        snapshot,
        effects,
        _run,
        hook="execute",
        origin=origin,
        now=now,
        attempt=attempt,
        created=created,
        **changes,
    )


def _next_slot(
    definition: ContinuousDefinition[Any], slot: Instant | None, now: Instant
) -> Instant:
    if slot is None:
        return definition.schedule.first_after(now)
    if slot > now:
        return slot
    return definition.schedule.next_slot(slot, now)


def decide_continuous(
    definition: ContinuousDefinition[S],
    snapshot: ContinuousSnapshot[S] | None,
    input_: Input,
    now: Instant,
) -> Result[rt.Transition[Any], Rejection]:
    match input_:
        case ContinuousStart(id=id_, input=value):
            key = InstanceKey("continuous", definition.name, id_)
            if snapshot is not None:
                return Success(
                    rt.keep(
                        snapshot, reply=ContinuousStartResult(key.instance_id, False, "running")
                    )
                )
            fresh = ContinuousSnapshot(
                key=key,
                state=value,
                created_at=now,
                next_slot=definition.schedule.first_after(now),
            )
            effects: list[Command] = [Emit(JobStarted(**base_fields(key, now), input=value))]
            if definition.start_immediately:
                fresh = attrs.evolve(fresh, pending=(rt.Pending("trigger", now),))
            reply = ContinuousStartResult(key.instance_id, True, "running")
            return Success(rt.commit(_alarm, fresh, effects, reply=reply))

        case ContinuousTrigger(wait=wait):
            if snapshot is None:
                return Success(rt.keep(None, reply=ContinuousTriggerResult(triggered=False)))
            queued = rt.owes(snapshot)
            if queued and wait is not None:
                return rt.busy(snapshot)
            triggered = ContinuousTriggerResult(triggered=True, queued=queued)
            return rt.queue_behind(snapshot, _alarm, rt.Pending("trigger", now), triggered)

        case ContinuousTerminate(reason=reason):
            if snapshot is None:
                return Success(rt.keep(None, reply=ContinuousTerminateResult(False, "not_found")))
            effects = rt.terminated_effects(snapshot.key, reason, snapshot.run_count, now)
            return Success(rt.purge(snapshot.key, effects, ContinuousTerminateResult(True, reason)))

        case ContinuousStatus():
            if snapshot is None:
                return Success(rt.keep(None, reply=ContinuousStatusResult("not_found")))
            alarm = snapshot.alarm_at
            return Success(
                rt.keep(
                    snapshot,
                    reply=ContinuousStatusResult(
                        continuous_status(snapshot),
                        next_run_at=None if alarm is None else to_datetime(alarm),
                        run_count=snapshot.run_count,
                        attempt=snapshot.attempts.attempt,
                    ),
                )
            )

        case ContinuousGetState():
            return Success(
                rt.keep(snapshot, reply=StateResult(None if snapshot is None else snapshot.state))
            )

        case AlarmFired(at=at):
            if snapshot is None or not rt.alarm_due(snapshot, at):
                return Success(rt.keep(snapshot))
            if snapshot.pending:  # a trigger: a first attempt, so begin_run opens a
                # fresh failure sequence (a pending retry is replaced)
                _, rest = rt.take_pending(snapshot)
                count = snapshot.run_count + 1
                return Success(_start_run(rest, [], origin="trigger", now=now, run_count=count))
            if snapshot.attempts.retry_at == at:
                return Success(
                    _start_run(
                        snapshot, [], origin="alarm", now=now, attempt=snapshot.attempts.attempt
                    )
                )
            return Success(
                _start_run(
                    snapshot,
                    [],
                    origin="alarm",
                    now=now,
                    run_count=snapshot.run_count + 1,
                    next_slot=_next_slot(definition, snapshot.next_slot, now),
                )
            )

        case UserCodeSucceeded() | UserCodeFailed() | TerminateRequested() | RunInterrupted():
            return Success(
                rt.after_outcome(
                    snapshot, input_, lambda s, r, o: _after_run(definition, s, r, o, now)
                )
            )

        case _:
            return rt.not_for("continuous", input_)


def _after_run(
    definition: ContinuousDefinition[Any],
    snapshot: ContinuousSnapshot[Any],
    run: rt.InFlight,
    outcome: UserCodeSucceeded | UserCodeFailed | TerminateRequested,
    now: Instant,
) -> rt.Transition[Any]:
    key = snapshot.key
    if isinstance(outcome, TerminateRequested):
        effects = rt.terminated_effects(key, outcome.reason, snapshot.run_count, now)
        return rt.purge(key, effects)

    if isinstance(outcome, UserCodeSucceeded):
        effects = rt.success_effects(key, run, outcome, snapshot.run_count, now)
        changes: dict[str, Any] = {"next_slot": _next_slot(definition, snapshot.next_slot, now)}
        if outcome.state_set:
            changes["state"] = outcome.state
        done = rt.settled(snapshot, **changes)
        return rt.commit(_alarm, done, effects)

    decision = rt.decide_failure(definition.retry, key, snapshot.attempts, run.attempt, now)
    effects = rt.failure_effects(
        key, run, outcome.error, decision, snapshot.run_count, now, payload=snapshot.state
    )
    if isinstance(decision, rt.RetryAt):
        waiting = rt.with_retry(snapshot, decision)
        return rt.commit(_alarm, waiting, effects)
    if definition.on_retry_exhausted == "terminate":
        effects += rt.terminated_effects(key, "retry_exhausted", snapshot.run_count, now)
        return rt.purge(key, effects)
    done = rt.settled(snapshot, next_slot=_next_slot(definition, snapshot.next_slot, now))
    return rt.commit(_alarm, done, effects)
