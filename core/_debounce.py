"""Debounce: the rules of batching. The lifecycle itself is in ``_runtime``.

Theory of operation. A Debounce snapshot holds one batch: the reduced ``state``, its
``event_count``, when its first event arrived (``started_at``) and when its last one did
(``last_event_at``). The flush deadline is ``started_at + flush_after`` (a fixed window,
the original's meaning); with ``quiet_period`` the batch also flushes once no event came
for that long, whichever is first. The alarm is that deadline, or the pending retry.

* ``add`` runs the ``on_event`` reducer (when defined) before anything is written: the
  first event of a batch sees ``initial_state`` (or ``None``), never itself posing as the
  state (p-5). A reducer that fails or returns a state of the wrong type rejects the
  event: the caller gets the error and nothing is stored. Without a reducer the batch
  keeps the latest event.
* Reaching ``max_events`` makes a flush due at once (a ``flush`` entry in ``pending``):
  the ``add`` answers ``will_flush_at=now`` and a worker runs ``execute`` (issue 10:
  the reducer runs in the caller, ``execute`` never does). While a retry is pending,
  adds only accumulate (p-12): the pending retry alarm stays, and the retry runs over
  the batch as it is then.
* A manual ``flush`` likewise records a flush due now and answers ``flushing=True``.
* A request meeting a flush in flight (or work already pending) is queued behind it in
  ``pending``, in order (``queued=True``): an ``add`` is reduced in the worker when its
  turn comes, in the batch that follows (a reducer failure there is recorded as
  ``job.failed``: there is no caller to answer), a ``flush`` or ``clear`` applies to the
  batch as it is then. With ``wait`` the request is answered busy instead, and the
  interpreter waits. So a ``clear`` never reports events that a running flush took.
* The three flush triggers share one flush routine. A retry keeps the reason of the
  attempt that failed first (``ctx.flush_reason``, ``debounce.flushed``), fixing p-7.
* Success purges the instance (ready for a new batch; an instance with requests still
  pending stays, empty, until they are applied). Exhaustion writes the batch to the
  dead-letter store and purges: the batch is never silently lost, and there is no zombie
  instance after a failure without retry (p-6).
* A manual ``flush`` with a retry pending runs the pending attempt now.
"""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

import attrs
from returns.result import Result, Success

from durable_jobs import _runtime as rt
from durable_jobs._commands import Command, DebounceExecute, DebounceReduce, Emit, RunUserCode
from durable_jobs._definitions import DebounceDefinition
from durable_jobs._errors import Rejection
from durable_jobs._inputs import (
    AlarmFired,
    DebounceAdd,
    DebounceClear,
    DebounceFlush,
    DebounceGetState,
    DebounceStatus,
    Input,
    RunInterrupted,
    TerminateRequested,
    UserCodeFailed,
    UserCodeSucceeded,
)
from durable_jobs._keys import InstanceKey
from durable_jobs._results import (
    DebounceAddResult,
    DebounceClearResult,
    DebounceFlushResult,
    DebounceStatusResult,
    RequestFailed,
    StateResult,
)
from durable_jobs._telemetry import DebounceFlushed, DebounceStarted, FlushReason, base_fields
from durable_jobs._time import Instant, to_datetime

__all__ = ["DebounceSnapshot", "debounce_status", "decide_debounce"]

S = TypeVar("S")
E = TypeVar("E")


@attrs.frozen
class DebounceSnapshot(Generic[S, E]):
    key: InstanceKey
    created_at: Instant
    state: S | None = None
    event_count: int = 0
    started_at: Instant | None = None
    last_event_at: Instant | None = None
    retry_reason: FlushReason | None = None
    attempts: rt.Attempts = rt.FRESH
    in_flight: rt.InFlight | None = None
    alarm_at: Instant | None = None
    version: int = 0
    pending: tuple[rt.Pending[E], ...] = ()


def _deadlines(
    definition: DebounceDefinition[Any, Any], snapshot: DebounceSnapshot[Any, Any]
) -> tuple[Instant, Instant | None]:
    assert snapshot.started_at is not None
    assert snapshot.last_event_at is not None
    hard = Instant(snapshot.started_at + definition.flush_after)
    quiet = definition.quiet_period
    return hard, None if quiet is None else Instant(snapshot.last_event_at + quiet)


def _alarm_for(definition: DebounceDefinition[Any, Any]) -> Any:
    def alarm(snapshot: DebounceSnapshot[Any, Any]) -> Instant | None:
        if snapshot.pending:
            return snapshot.pending[0].at
        if snapshot.attempts.retry_at is not None:
            return snapshot.attempts.retry_at
        if snapshot.event_count == 0:
            return None
        hard, quiet = _deadlines(definition, snapshot)
        return hard if quiet is None else min(hard, quiet)

    return alarm


def _flush_run(
    definition: DebounceDefinition[Any, Any],
    snapshot: DebounceSnapshot[Any, Any],
    effects: list[Command],
    *,
    reason: FlushReason,
    origin: rt.Origin,
    now: Instant,
    created: bool = False,
) -> rt.Transition[Any]:
    """Start ``execute`` over the batch; a pending retry's attempt and reason carry on."""
    if snapshot.attempts.retry_at is not None and snapshot.retry_reason is not None:
        reason = snapshot.retry_reason
    flush_reason = reason

    def command(running: DebounceSnapshot[Any, Any]) -> RunUserCode:
        assert running.started_at is not None
        payload = DebounceExecute(
            running.state, running.event_count, running.started_at, flush_reason
        )
        return rt.run_command(running, payload)

    return rt.commit_start(
        snapshot,
        effects,
        command,
        hook="execute",
        origin=origin,
        now=now,
        attempt=rt.pending_attempt(snapshot),
        created=created,
        flush_reason=flush_reason,
    )


def _accept(
    definition: DebounceDefinition[Any, Any],
    snapshot: DebounceSnapshot[Any, Any],
    new_state: Any,
    now: Instant,
    created: bool,
    caller: bool = True,
) -> rt.Transition[Any]:
    """Fold one accepted event into the batch; flush when ``max_events`` is reached (a
    flush due now for a caller's ``add``; at once when a worker applies a queued one)."""
    # The hot path of the library: built field by field, once (attrs.evolve is slower and
    # commit would copy the snapshot a second time just to set the alarm and version).
    first = snapshot.event_count == 0
    count = snapshot.event_count + 1
    started = now if first else snapshot.started_at
    attempts = snapshot.attempts
    backing_off = attempts.retry_at is not None
    if backing_off:
        alarm: Instant | None = attempts.retry_at
    else:
        assert started is not None
        alarm = Instant(started + definition.flush_after)
        if definition.quiet_period is not None:
            alarm = min(alarm, Instant(now + definition.quiet_period))
    flushing = definition.max_events is not None and count >= definition.max_events
    pending = snapshot.pending
    flush_at = alarm  # when the batch flushes (the alarm may wake sooner, for pending work)
    if flushing and not backing_off and caller:  # pending is empty: the caller was not queued
        pending, alarm, flushing = (rt.Pending("flush", now, reason="maxEvents"),), now, False
        flush_at = now
    elif pending:
        alarm = pending[0].at
    grown = DebounceSnapshot(
        key=snapshot.key,
        created_at=snapshot.created_at,
        state=new_state,
        event_count=count,
        started_at=started,
        last_event_at=now,
        retry_reason=snapshot.retry_reason,
        attempts=attempts,
        in_flight=None,
        alarm_at=snapshot.alarm_at if flushing and not backing_off else alarm,
        version=snapshot.version if flushing and not backing_off else snapshot.version + 1,
        pending=pending,
    )
    effects: list[Command] = []
    if first:
        assert flush_at is not None
        effects.append(Emit(DebounceStarted(**base_fields(grown.key, now), flush_at=flush_at)))
    if flushing and not backing_off:
        return _flush_run(definition, grown, effects, reason="maxEvents", origin="queued", now=now)
    reply = DebounceAddResult(
        instance_id=grown.key.instance_id,
        event_count=count,
        will_flush_at=None if flush_at is None else to_datetime(flush_at),
        created=created,
        retry_scheduled=backing_off,
    )
    return rt.committed(snapshot.alarm_at, grown, effects, reply=reply)


def decide_debounce(
    definition: DebounceDefinition[Any, S],
    snapshot: DebounceSnapshot[S, Any] | None,
    input_: Input,
    now: Instant,
) -> Result[rt.Transition[Any], Rejection]:
    match input_:
        case DebounceAdd(id=id_, event=event, wait=wait):
            if snapshot is not None and rt.owes(snapshot):
                reply = DebounceAddResult(snapshot.key.instance_id, 0, None, False, queued=True)
                entry = rt.Pending("add", now, event)
                alarm = _alarm_for(definition)
                return rt.queue_behind(snapshot, alarm, entry, reply, wait=wait)
            created = snapshot is None
            batch = snapshot or DebounceSnapshot(
                key=InstanceKey("debounce", definition.name, id_), created_at=now
            )
            if definition.on_event is None:
                return Success(_accept(definition, batch, event, now, created))
            reducing = rt.begin_run(batch, hook="on_event", origin="add", now=now, created=created)
            first = batch.event_count == 0
            payload = DebounceReduce(event, batch.state, batch.event_count + 1, first=first)
            return Success(rt.hold(reducing, payload))

        case DebounceFlush(wait=wait):
            if snapshot is None:
                return Success(rt.keep(None, reply=DebounceFlushResult(False, 0, "empty")))
            alarm = _alarm_for(definition)
            flush: rt.Pending[Any] = rt.Pending("flush", now, reason="manual")
            if rt.owes(snapshot):
                queued = DebounceFlushResult(True, 0, "manual", queued=True)
                return rt.queue_behind(snapshot, alarm, flush, queued, wait=wait)
            if snapshot.event_count == 0:
                return Success(rt.purge(snapshot.key, reply=DebounceFlushResult(False, 0, "empty")))
            flushing = DebounceFlushResult(True, snapshot.event_count, "manual")
            return rt.queue_behind(snapshot, alarm, flush, flushing)

        case DebounceClear(wait=wait):
            if snapshot is None:
                return Success(rt.keep(None, reply=DebounceClearResult(False, 0)))
            if rt.owes(snapshot):
                queued_clear = DebounceClearResult(True, 0, queued=True)
                clear: rt.Pending[Any] = rt.Pending("clear", now)
                alarm = _alarm_for(definition)
                return rt.queue_behind(snapshot, alarm, clear, queued_clear, wait=wait)
            return Success(
                rt.purge(snapshot.key, reply=DebounceClearResult(True, snapshot.event_count))
            )

        case DebounceStatus():
            if snapshot is None:
                return Success(rt.keep(None, reply=DebounceStatusResult("not_found")))
            return Success(rt.keep(snapshot, reply=_status(definition, snapshot)))

        case DebounceGetState():
            state = None if snapshot is None else snapshot.state
            return Success(rt.keep(snapshot, reply=StateResult(state)))

        case AlarmFired(at=at):
            if snapshot is None or not rt.alarm_due(snapshot, at):
                return Success(rt.keep(snapshot))
            if snapshot.pending:
                return Success(_take_pending(definition, snapshot, now))
            if snapshot.event_count == 0:
                return Success(rt.purge(snapshot.key))
            reason = _stored_reason(snapshot) if snapshot.attempts.retry_at == at else None
            if reason is None:
                hard, quiet = _deadlines(definition, snapshot)
                reason = "quietPeriod" if quiet is not None and quiet < hard else "flushAfter"
            return Success(
                _flush_run(definition, snapshot, [], reason=reason, origin="alarm", now=now)
            )

        case UserCodeSucceeded() | UserCodeFailed() | TerminateRequested() | RunInterrupted():

            def after(
                batch: DebounceSnapshot[Any, Any],
                run: rt.InFlight,
                outcome: UserCodeSucceeded | UserCodeFailed | TerminateRequested,
            ) -> rt.Transition[Any]:
                if run.hook == "on_event":
                    return _after_reduce(definition, batch, run, outcome, now)
                return _after_flush(definition, batch, run, outcome, now)

            return Success(rt.after_outcome(snapshot, input_, after))

        case _:
            return rt.not_for("debounce", input_)


def debounce_status(snapshot: DebounceSnapshot[Any, Any]) -> Literal["debouncing", "idle"]:
    """``"debouncing"`` while the batch holds events."""
    return "debouncing" if snapshot.event_count > 0 else "idle"


def _status(
    definition: DebounceDefinition[Any, Any], snapshot: DebounceSnapshot[Any, Any]
) -> DebounceStatusResult:
    # When the batch flushes: a flush made due (or queued), else its deadline or retry;
    # a queued add or clear is not a flush.
    flushes = [entry.at for entry in snapshot.pending if entry.kind == "flush"]
    if flushes:
        flush_at: Instant | None = flushes[0]
    elif (snapshot.in_flight is not None and snapshot.in_flight.hook == "execute") or _no_batch(
        snapshot
    ):
        flush_at = None  # flushing now, or nothing to flush
    else:
        flush_at = _alarm_for(definition)(attrs.evolve(snapshot, pending=()))
    return DebounceStatusResult(
        debounce_status(snapshot),
        event_count=snapshot.event_count,
        started_at=None if snapshot.started_at is None else to_datetime(snapshot.started_at),
        will_flush_at=None if flush_at is None else to_datetime(flush_at),
    )


def _stored_reason(snapshot: DebounceSnapshot[Any, Any]) -> FlushReason | None:
    return snapshot.retry_reason


def _after_reduce(
    definition: DebounceDefinition[Any, Any],
    snapshot: DebounceSnapshot[Any, Any],
    run: rt.InFlight,
    outcome: UserCodeSucceeded | UserCodeFailed | TerminateRequested,
    now: Instant,
) -> rt.Transition[Any]:
    caller = run.origin != "queued"
    if not caller:
        if rt.interrupted(outcome):
            # The worker died while the reducer of a queued add ran: the add stays at
            # the head of pending and is reduced again, up to MAX_INTERRUPTS times.
            again, error = rt.after_interrupt(snapshot)
            effects = rt.failure_effects(snapshot.key, run, error, None, 0, now)
            if _no_batch(again):
                return _emptied(definition, again, effects, now)  # (dropped, and no batch)
            return rt.commit(_alarm_for(definition), again, effects)
        snapshot = attrs.evolve(snapshot, pending=snapshot.pending[1:])  # decided: taken off
    if isinstance(outcome, UserCodeSucceeded):
        return _accept(definition, snapshot, outcome.state, now, run.created, caller)
    before = None if run.created else attrs.evolve(snapshot, in_flight=None)
    if isinstance(outcome, TerminateRequested):
        # A reducer asked to terminate: the event is dropped and the batch purged (the
        # requests queued behind it, if any, are kept for the batch that follows).
        effects = rt.terminated_effects(snapshot.key, outcome.reason, 0, now)
        dropped = DebounceAddResult(snapshot.key.instance_id, 0, None, False)
        if before is None:
            return rt.keep(None, effects, dropped)
        if not caller:
            return _emptied(definition, before, effects, now)
        return rt.purge(snapshot.key, effects, dropped)
    effects = rt.failure_effects(snapshot.key, run, outcome.error, None, 0, now)
    if not caller and before is not None:  # a queued event: no caller to answer
        if _no_batch(before):
            return _emptied(definition, before, effects, now)  # no batch: nothing to keep
        return rt.commit(_alarm_for(definition), before, effects)
    return rt.keep(before, effects, RequestFailed(hook="on_event", error=outcome.error))


def _after_flush(
    definition: DebounceDefinition[Any, Any],
    snapshot: DebounceSnapshot[Any, Any],
    run: rt.InFlight,
    outcome: UserCodeSucceeded | UserCodeFailed | TerminateRequested,
    now: Instant,
) -> rt.Transition[Any]:
    key = snapshot.key
    reason: FlushReason = run.flush_reason or "flushAfter"
    count = snapshot.event_count
    if isinstance(outcome, TerminateRequested):
        # Purged; requests queued behind the flush come after it: they are kept.
        effects = rt.terminated_effects(key, outcome.reason, 0, now)
        return _emptied(definition, snapshot, effects, now)
    if isinstance(outcome, UserCodeSucceeded):
        effects = rt.success_effects(key, run, outcome, 0, now)
        started = snapshot.started_at if snapshot.started_at is not None else now
        effects.append(
            Emit(
                DebounceFlushed(
                    **base_fields(key, now),
                    event_count=count,
                    reason=reason,
                    duration_ms=now - started,
                )
            )
        )
        return _emptied(definition, snapshot, effects, now)
    decision = rt.decide_failure(definition.retry, key, snapshot.attempts, run.attempt, now)
    effects = rt.failure_effects(key, run, outcome.error, decision, 0, now, payload=snapshot.state)
    if isinstance(decision, rt.RetryAt):
        waiting = attrs.evolve(rt.with_retry(snapshot, decision), retry_reason=reason)
        return rt.commit(_alarm_for(definition), waiting, effects)
    return _emptied(definition, snapshot, effects, now)


def _no_batch(snapshot: DebounceSnapshot[Any, Any]) -> bool:
    """No events in the batch and no retry waiting for it."""
    return snapshot.event_count == 0 and snapshot.attempts.retry_at is None


def _emptied(
    definition: DebounceDefinition[Any, Any],
    snapshot: DebounceSnapshot[Any, Any],
    effects: list[Command],
    now: Instant,
) -> rt.Transition[Any]:
    """The batch is gone (flushed, dead-lettered or cleared): purge the instance, or,
    with requests still pending, keep it empty until a worker applied them."""
    if not snapshot.pending:
        return rt.purge(snapshot.key, effects)
    empty: DebounceSnapshot[Any, Any] = DebounceSnapshot(
        key=snapshot.key,
        created_at=now,
        pending=snapshot.pending,
        alarm_at=snapshot.alarm_at,
        version=snapshot.version,
    )
    return rt.commit(_alarm_for(definition), empty, effects)


def _take_pending(
    definition: DebounceDefinition[Any, Any], snapshot: DebounceSnapshot[Any, Any], now: Instant
) -> rt.Transition[Any]:
    """Apply the first pending entry (in a worker): a flush runs ``execute`` over the
    batch as it is now, a clear drops it, a queued ``add`` is reduced."""
    entry, rest = rt.take_pending(snapshot)
    if entry.kind == "clear" or (entry.kind == "flush" and rest.event_count == 0):
        return _emptied(definition, rest, [], now)
    if entry.kind == "flush":
        reason: FlushReason = entry.reason  # type: ignore[assignment]
        return _flush_run(definition, rest, [], reason=reason, origin="flush", now=now)
    if definition.on_event is None:
        return _accept(definition, rest, entry.event, now, False, caller=False)
    # The reducer of a queued add runs as a committed run, the entry kept at the head
    # until its outcome commits (requests that come meanwhile queue behind it, and a
    # worker that dies mid-run leaves the entry to run again).
    reducing = rt.begin_run(snapshot, hook="on_event", origin="queued", now=now)
    first = snapshot.event_count == 0
    payload = DebounceReduce(entry.event, snapshot.state, snapshot.event_count + 1, first=first)
    return rt.commit(_alarm_for(definition), reducing, [], run=rt.run_command(reducing, payload))
