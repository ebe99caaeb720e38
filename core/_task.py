"""Task: the rules of an event-driven state machine. The lifecycle is in ``_runtime``.

Theory of operation. A Task snapshot holds the user state (``None`` until a handler sets
one), the counters, and ``scheduled_at``, the time the user asked ``execute`` to run.
The alarm is the earlier of that time and a pending retry.

* ``send`` runs ``on_event`` before anything is written. Its changes (state, schedule)
  are committed when it succeeds. When it fails, ``on_error`` handles it if defined;
  otherwise the caller gets the error and nothing is stored (telemetry aside).
* The alarm runs ``execute``; the stored schedule is cleared when its alarm fires (p-8),
  so a handler that schedules nothing leaves the task idle. ``trigger`` makes a run of
  ``execute`` due now (an entry in ``pending``, run by a worker) and leaves the schedule
  alone. A run started while a retry is pending is that retry's attempt.
* Where hooks run (issue 10): ``on_event``, and ``on_error`` after it, compute a
  ``send``'s own answer and run in the caller; ``execute``, ``on_idle`` and ``on_error``
  after ``execute`` run where due work runs. So a caller's ``send`` that leaves the task
  idle records ``on_idle`` as pending (``idle``) instead of running it.
* A request meeting a run in flight (or work already pending, other than an owed
  ``on_idle``: see ``_blocked``) is queued behind it in ``pending``, in order
  (``queued=True``): a ``send`` runs ``on_event`` in the worker
  when its turn comes (a failure there is recorded as ``job.failed``; there is no caller
  to answer), a ``trigger`` runs ``execute``. With ``wait`` the request is answered busy
  instead, and the interpreter waits. ``terminate`` always wins: the pending entries go
  with the instance.
* ``execute`` may have a ``retry`` policy. Its final failure writes the state to the
  dead-letter store, then ``on_error`` runs if defined. The task lives on.
* ``on_idle`` runs after any handler (``on_event``, ``execute``, ``on_error``) that leaves
  nothing scheduled and no retry pending (p-8). Failures of ``on_idle`` and ``on_error``
  are recorded (``job.failed``) and change nothing.
* A failed handler's buffered changes are dropped: ``on_error`` sees the state as it was
  before the failed handler.
* ``ctx.terminate()`` in any hook and the client's ``terminate`` purge the instance.
* ``status`` is ``"active"`` while ``execute`` will run again: a schedule is set or a
  failed ``execute`` waits for its retry (``next_run_at`` and ``attempt`` show which).
"""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

import attrs
from returns.result import Result, Success

from durable_jobs import _runtime as rt
from durable_jobs._commands import (
    Command,
    Emit,
    IdleReason,
    TaskExecute,
    TaskOnError,
    TaskOnEvent,
    TaskOnIdle,
    TaskView,
)
from durable_jobs._definitions import TaskDefinition
from durable_jobs._errors import ErrorInfo, Rejection
from durable_jobs._inputs import (
    AlarmFired,
    Input,
    RunInterrupted,
    TaskGetState,
    TaskSend,
    TaskStatus,
    TaskTerminate,
    TaskTrigger,
    TerminateRequested,
    UserCodeFailed,
    UserCodeSucceeded,
)
from durable_jobs._keys import InstanceKey
from durable_jobs._results import (
    ReplyValue,
    RequestFailed,
    StateResult,
    TaskSendResult,
    TaskStatusResult,
    TaskTerminateResult,
    TaskTriggerResult,
)
from durable_jobs._telemetry import TaskScheduled, base_fields
from durable_jobs._time import Instant, to_datetime

__all__ = ["TaskSnapshot", "decide_task", "task_status"]

S = TypeVar("S")
E = TypeVar("E")

Trigger = Literal["event", "execute", "idle", "error"]


@attrs.frozen
class TaskSnapshot(Generic[S, E]):
    key: InstanceKey
    created_at: Instant
    state: S | None = None
    event_count: int = 0
    execute_count: int = 0
    scheduled_at: Instant | None = None
    attempts: rt.Attempts = rt.FRESH
    in_flight: rt.InFlight | None = None
    alarm_at: Instant | None = None
    version: int = 0
    pending: tuple[rt.Pending[E], ...] = ()


_TRIGGERS: dict[str, Trigger] = {
    "on_event": "event",
    "execute": "execute",
    "on_idle": "idle",
    "on_error": "error",
}


_IDLE_REASONS: dict[str, IdleReason] = {
    "on_event": "onEvent",
    "execute": "execute",
    "on_error": "onError",
}


def task_status(snapshot: TaskSnapshot[Any, Any]) -> Literal["active", "idle"]:
    """``"active"`` while ``execute`` will run again (scheduled, a retry pending, or a
    trigger pending)."""
    pending = snapshot.scheduled_at is not None or snapshot.attempts.retry_at is not None
    if not pending:
        pending = any(entry.kind == "trigger" for entry in snapshot.pending)
    return "active" if pending else "idle"


def _alarm(snapshot: TaskSnapshot[Any, Any]) -> Instant | None:
    if snapshot.pending:
        return snapshot.pending[0].at
    times = [t for t in (snapshot.attempts.retry_at, snapshot.scheduled_at) if t is not None]
    return min(times) if times else None


def _blocked(snapshot: TaskSnapshot[Any, Any]) -> bool:
    """Whether a request must queue behind (or wait for) work in flight or pending. An
    owed ``on_idle`` alone does not block: the next event or trigger goes on (a ``send``
    replaces the owed ``on_idle`` with its own, so a burst of events gets one ``on_idle``
    once the task is idle after the last of them, not one per event)."""
    if snapshot.in_flight is not None:
        return True
    return any(entry.kind != "idle" for entry in snapshot.pending)


def _next_execute(snapshot: TaskSnapshot[Any, Any]) -> Instant | None:
    """When ``execute`` runs next: a pending trigger, the schedule or a pending retry,
    whichever is first (an owed ``on_idle`` or a queued ``send`` is not an ``execute``)."""
    times = [t for t in (snapshot.attempts.retry_at, snapshot.scheduled_at) if t is not None]
    times += [entry.at for entry in snapshot.pending if entry.kind == "trigger"]
    return min(times) if times else None


def _view(snapshot: TaskSnapshot[S, Any], event_count: int | None = None) -> TaskView[S]:
    return TaskView(
        state=snapshot.state,
        event_count=snapshot.event_count if event_count is None else event_count,
        execute_count=snapshot.execute_count,
        created_at=snapshot.created_at,
        scheduled_at=snapshot.scheduled_at,
    )


def _execute(
    snapshot: TaskSnapshot[Any, Any], *, origin: rt.Origin, now: Instant
) -> rt.Transition[Any]:
    attempt = rt.pending_attempt(snapshot)
    counted = (
        snapshot
        if attempt > 1
        else attrs.evolve(snapshot, execute_count=snapshot.execute_count + 1)
    )
    running = rt.begin_run(counted, hook="execute", origin=origin, now=now, attempt=attempt)
    return rt.commit(_alarm, running, [], run=rt.run_command(running, TaskExecute(_view(running))))


def decide_task(
    definition: TaskDefinition[S, Any],
    snapshot: TaskSnapshot[S, Any] | None,
    input_: Input,
    now: Instant,
) -> Result[rt.Transition[Any], Rejection]:
    match input_:
        case TaskSend(id=id_, event=event, wait=wait):
            if snapshot is not None and _blocked(snapshot):
                answer = TaskSendResult(snapshot.key.instance_id, False, None, queued=True)
                entry = rt.Pending("send", now, event)
                return rt.queue_behind(snapshot, _alarm, entry, answer, wait=wait)
            created = snapshot is None
            task = snapshot or TaskSnapshot(
                key=InstanceKey("task", definition.name, id_), created_at=now
            )
            if task.pending:  # only an owed on_idle: this event's outcome replaces it
                task = attrs.evolve(task, pending=())
            handling = rt.begin_run(task, hook="on_event", origin="send", now=now, created=created)
            payload = TaskOnEvent(_view(handling, task.event_count + 1), event)
            return Success(rt.hold(handling, payload))

        case TaskTrigger(id=id_, wait=wait):
            if snapshot is None:
                missing = InstanceKey("task", definition.name, id_).instance_id
                return Success(rt.keep(None, reply=TaskTriggerResult(missing, False)))
            queued = _blocked(snapshot)
            if queued and wait is not None:
                return rt.busy(snapshot)
            triggered = TaskTriggerResult(snapshot.key.instance_id, True, queued=queued)
            return rt.queue_behind(snapshot, _alarm, rt.Pending("trigger", now), triggered)

        case TaskTerminate(id=id_):
            if snapshot is None:
                missing = InstanceKey("task", definition.name, id_).instance_id
                return Success(rt.keep(None, reply=TaskTerminateResult(missing, False)))
            effects = rt.terminated_effects(snapshot.key, None, snapshot.execute_count, now)
            reply = TaskTerminateResult(snapshot.key.instance_id, True)
            return Success(rt.purge(snapshot.key, effects, reply))

        case TaskStatus():
            if snapshot is None:
                return Success(rt.keep(None, reply=TaskStatusResult("not_found")))
            at, upcoming = snapshot.scheduled_at, _next_execute(snapshot)
            return Success(
                rt.keep(
                    snapshot,
                    reply=TaskStatusResult(
                        task_status(snapshot),
                        scheduled_at=None if at is None else to_datetime(at),
                        created_at=to_datetime(snapshot.created_at),
                        event_count=snapshot.event_count,
                        execute_count=snapshot.execute_count,
                        next_run_at=None if upcoming is None else to_datetime(upcoming),
                        attempt=snapshot.attempts.attempt,
                    ),
                )
            )

        case TaskGetState():
            state = None if snapshot is None else snapshot.state
            return Success(rt.keep(snapshot, reply=StateResult(state)))

        case AlarmFired(at=at):
            if snapshot is None or not rt.alarm_due(snapshot, at):
                return Success(rt.keep(snapshot))
            if snapshot.pending:
                return Success(_take_pending(snapshot, now))
            due = snapshot
            if snapshot.scheduled_at is not None and snapshot.scheduled_at <= now:
                due = attrs.evolve(snapshot, scheduled_at=None)
            return Success(_execute(due, origin="alarm", now=now))

        case UserCodeSucceeded() | UserCodeFailed() | TerminateRequested() | RunInterrupted():
            return Success(
                rt.after_outcome(
                    snapshot, input_, lambda s, r, o: _after_run(definition, s, r, o, now)
                )
            )

        case _:
            return rt.not_for("task", input_)


def _take_pending(snapshot: TaskSnapshot[Any, Any], now: Instant) -> rt.Transition[Any]:
    """Run the first pending entry (in a worker): a trigger's ``execute``, a caller's
    ``on_idle``, or a queued ``send``'s ``on_event``."""
    entry, rest = rt.take_pending(snapshot)
    if entry.kind == "trigger":
        return _execute(rest, origin="trigger", now=now)
    if entry.kind == "idle":
        idling = rt.begin_run(rest, hook="on_idle", origin="alarm", now=now)
        reason: IdleReason = entry.reason  # type: ignore[assignment]
        return rt.commit(
            _alarm, idling, [], run=rt.run_command(idling, TaskOnIdle(_view(idling), reason))
        )
    # A queued send: its on_event runs as a committed run, the entry kept at the head
    # until the outcome commits (requests that come meanwhile queue behind the run, and
    # a worker that dies mid-run leaves the entry to run again).
    handling = rt.begin_run(snapshot, hook="on_event", origin="queued", now=now)
    payload = TaskOnEvent(_view(handling, snapshot.event_count + 1), entry.event)
    return rt.commit(_alarm, handling, [], run=rt.run_command(handling, payload))


def _reply(
    run: rt.InFlight, snapshot: TaskSnapshot[Any, Any] | None, key: InstanceKey
) -> ReplyValue | None:
    """The answer to a caller's ``send`` whose hooks ran in the caller (none otherwise:
    every other request is answered when it is recorded)."""
    if run.origin == "send":
        at = None if snapshot is None else snapshot.scheduled_at
        return TaskSendResult(
            key.instance_id,
            created=run.created,
            scheduled_at=None if at is None else to_datetime(at),
        )
    return None


def _applied(
    snapshot: TaskSnapshot[Any, Any], outcome: UserCodeSucceeded, trigger: Trigger, now: Instant
) -> tuple[TaskSnapshot[Any, Any], list[Command]]:
    """The snapshot with a successful handler's buffered changes, and their telemetry."""
    changed = snapshot
    effects: list[Command] = []
    if outcome.state_set:
        changed = attrs.evolve(changed, state=outcome.state)
    if outcome.schedule == "cancel":
        changed = attrs.evolve(changed, scheduled_at=None)
    elif outcome.schedule == "set" and outcome.schedule_at is not None:
        changed = attrs.evolve(changed, scheduled_at=outcome.schedule_at)
        event = TaskScheduled(
            **base_fields(snapshot.key, now), scheduled_at=outcome.schedule_at, trigger=trigger
        )
        effects.append(Emit(event))
    return changed, effects


def _continue(
    definition: TaskDefinition[Any, Any],
    snapshot: TaskSnapshot[Any, Any],
    run: rt.InFlight,
    effects: list[Command],
    reason: IdleReason,
    now: Instant,
) -> rt.Transition[Any]:
    """Commit a finished handler; run ``on_idle`` next when nothing is pending (in a
    worker: after a caller's ``send`` it is recorded as pending instead)."""
    done = attrs.evolve(snapshot, in_flight=None)
    idle = done.scheduled_at is None and done.attempts.retry_at is None
    if idle and definition.on_idle is not None and run.origin == "send":
        owing = attrs.evolve(done, pending=(*done.pending, rt.Pending("idle", now, reason=reason)))
        return rt.commit(_alarm, owing, effects, reply=_reply(run, owing, done.key))
    if idle and definition.on_idle is not None:
        idling = rt.begin_run(done, hook="on_idle", origin=run.origin, now=now, created=run.created)
        command = rt.run_command(idling, TaskOnIdle(_view(idling), reason))
        return rt.commit(_alarm, idling, effects, run=command)
    return rt.commit(_alarm, done, effects, reply=_reply(run, done, done.key))


def _on_error(
    definition: TaskDefinition[Any, Any],
    snapshot: TaskSnapshot[Any, Any],
    run: rt.InFlight,
    effects: list[Command],
    error: ErrorInfo,
    source: Literal["onEvent", "execute"],
    now: Instant,
    *,
    persist: bool,
) -> rt.Transition[Any]:
    handling = rt.begin_run(
        attrs.evolve(snapshot, in_flight=None),
        hook="on_error",
        origin=run.origin,
        now=now,
        created=run.created,
        error_source=source,
    )
    payload = TaskOnError(_view(handling), error, source)
    if persist:
        return rt.commit(_alarm, handling, effects, run=rt.run_command(handling, payload))
    return rt.hold(handling, payload, effects)


def _after_run(
    definition: TaskDefinition[Any, Any],
    snapshot: TaskSnapshot[Any, Any],
    run: rt.InFlight,
    outcome: UserCodeSucceeded | UserCodeFailed | TerminateRequested,
    now: Instant,
) -> rt.Transition[Any]:
    key = snapshot.key
    queued = run.origin == "queued" and run.hook in ("on_event", "on_error")
    if queued and rt.interrupted(outcome):
        # The worker died while a queued send's handler ran: the send stays at the head
        # of pending and runs again, up to MAX_INTERRUPTS times (each recorded).
        again, error = rt.after_interrupt(snapshot)
        effects = rt.failure_effects(key, run, error, None, snapshot.execute_count, now)
        if _untouched(again):
            return rt.purge(key, effects)
        return rt.commit(_alarm, again, effects)
    handing_on = (
        run.hook == "on_event"
        and isinstance(outcome, UserCodeFailed)
        and definition.on_error is not None
    )
    if queued and not handing_on:  # the queued send is decided: take it off pending
        snapshot = attrs.evolve(snapshot, pending=snapshot.pending[1:])
    if isinstance(outcome, TerminateRequested):
        effects = rt.terminated_effects(key, outcome.reason, snapshot.execute_count, now)
        return _terminated(snapshot, effects, _reply(run, None, key), now)

    # A send is accepted only once its handler (or on_error) succeeds: count it then.
    accepted = snapshot
    if run.origin in ("send", "queued") and run.hook in ("on_event", "on_error"):
        accepted = attrs.evolve(snapshot, event_count=snapshot.event_count + 1)

    if isinstance(outcome, UserCodeSucceeded):
        effects = rt.success_effects(key, run, outcome, snapshot.execute_count, now)
        if run.hook == "execute":
            accepted = attrs.evolve(accepted, attempts=rt.FRESH)
        trigger = _TRIGGERS[run.hook]
        changed, scheduled = _applied(accepted, outcome, trigger, now)
        effects += scheduled
        if run.hook == "on_idle":
            done = attrs.evolve(changed, in_flight=None)
            return rt.commit(_alarm, done, effects, reply=_reply(run, done, key))
        return _continue(definition, changed, run, effects, _IDLE_REASONS[run.hook], now)

    error = outcome.error
    if run.hook == "on_event":
        effects = rt.failure_effects(key, run, error, None, snapshot.execute_count, now)
        if definition.on_error is not None:
            return _on_error(
                definition, snapshot, run, effects, error, "onEvent", now, persist=queued
            )
        return _rejected(snapshot, run, effects, "on_event", error)

    if run.hook == "execute":
        decision = rt.decide_failure(definition.retry, key, snapshot.attempts, run.attempt, now)
        effects = rt.failure_effects(
            key, run, error, decision, snapshot.execute_count, now, payload=snapshot.state
        )
        if isinstance(decision, rt.RetryAt):
            waiting = rt.with_retry(snapshot, decision)
            return rt.commit(_alarm, waiting, effects, reply=_reply(run, waiting, key))
        done = rt.settled(snapshot)
        if definition.on_error is not None:
            return _on_error(definition, done, run, effects, error, "execute", now, persist=True)
        return _continue(definition, done, run, effects, "execute", now)

    # on_idle or on_error failed: recorded, nothing changes.
    effects = rt.failure_effects(key, run, error, None, snapshot.execute_count, now)
    if run.hook == "on_error" and run.error_source == "onEvent":
        return _rejected(snapshot, run, effects, "on_error", error)
    done = attrs.evolve(snapshot, in_flight=None)
    return rt.commit(_alarm, done, effects, reply=_reply(run, done, key))


def _rejected(
    snapshot: TaskSnapshot[Any, Any],
    run: rt.InFlight,
    effects: list[Command],
    hook: str,
    error: ErrorInfo,
) -> rt.Transition[Any]:
    """An event ``on_event`` (and ``on_error``) did not accept: a caller's ``send`` gets
    the error and nothing is stored (telemetry aside); a queued one has no caller, so
    its entry is taken off with the failure recorded (``job.failed``)."""
    before = None if run.created else attrs.evolve(snapshot, in_flight=None)
    if run.origin == "queued" and before is not None:
        if _untouched(before):  # a fresh task (after a terminate) its only send left
            return rt.purge(before.key, effects)
        return rt.commit(_alarm, before, effects)
    return rt.keep(before, effects, RequestFailed(hook=hook, error=error))


def _terminated(
    snapshot: TaskSnapshot[Any, Any], effects: list[Command], reply: ReplyValue | None, now: Instant
) -> rt.Transition[Any]:
    """A hook called ``ctx.terminate()``: purge the task. Requests queued behind the run
    were answered ``queued=True`` and come after it: from the first send on they are
    kept, in order, for a fresh task (as a send after a terminate would create one);
    triggers before any send (a trigger of no task does nothing) and an owed
    ``on_idle`` go with the task."""
    kept: list[rt.Pending[Any]] = []
    for entry in snapshot.pending:  # from the first send on, in order (an owed on_idle
        if (kept or entry.kind == "send") and entry.kind != "idle":  # is the old task's)
            kept.append(entry)
    sends = tuple(kept)
    if not sends:
        return rt.purge(snapshot.key, effects, reply)
    fresh: TaskSnapshot[Any, Any] = TaskSnapshot(
        key=snapshot.key,
        created_at=now,
        pending=sends,
        alarm_at=snapshot.alarm_at,
        version=snapshot.version,
    )
    return rt.commit(_alarm, fresh, effects, reply=reply)


def _untouched(snapshot: TaskSnapshot[Any, Any]) -> bool:
    """A task that holds nothing: no state, no event accepted, no run, nothing scheduled
    or pending (what a fresh task is when the sends it was made for did not take)."""
    return (
        snapshot.state is None
        and snapshot.event_count == 0
        and snapshot.execute_count == 0
        and snapshot.scheduled_at is None
        and not snapshot.pending
        and snapshot.in_flight is None
        and snapshot.attempts == rt.FRESH
    )
