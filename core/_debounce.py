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
* Reaching ``max_events`` flushes at once, inside the ``add``. While a retry is pending,
  adds only accumulate (p-12): the pending retry alarm stays, and the retry runs over
  the batch as it is then.
* The three flush triggers share one flush routine. A retry keeps the reason of the
  attempt that failed first (``ctx.flush_reason``, ``debounce.flushed``), fixing p-7.
* Success purges the instance (ready for a new batch). Exhaustion writes the batch to the
  dead-letter store and purges: the batch is never silently lost, and there is no zombie
  instance after a failure without retry (p-6).
* A manual ``flush`` with a retry pending runs the pending attempt now. A ``flush`` of a
  batch that only scheduled a retry answers ``flushed=False, retry_scheduled=True``.
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
    ReplyValue,
    RequestFailed,
    StateResult,
)
from durable_jobs._telemetry import DebounceFlushed, DebounceStarted, FlushReason, base_fields
from durable_jobs._time import Instant, to_datetime

__all__ = ["DebounceSnapshot", "debounce_status", "decide_debounce"]

S = TypeVar("S")


@attrs.frozen
class DebounceSnapshot(Generic[S]):
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


def _deadlines(
    definition: DebounceDefinition[Any, Any], snapshot: DebounceSnapshot[Any]
) -> tuple[Instant, Instant | None]:
    assert snapshot.started_at is not None
    assert snapshot.last_event_at is not None
    hard = Instant(snapshot.started_at + definition.flush_after)
    quiet = definition.quiet_period
    return hard, None if quiet is None else Instant(snapshot.last_event_at + quiet)


def _alarm_for(definition: DebounceDefinition[Any, Any]) -> Any:
    def alarm(snapshot: DebounceSnapshot[Any]) -> Instant | None:
        if snapshot.attempts.retry_at is not None:
            return snapshot.attempts.retry_at
        if snapshot.event_count == 0:
            return None
        hard, quiet = _deadlines(definition, snapshot)
        return hard if quiet is None else min(hard, quiet)

    return alarm


def _flush_run(
    definition: DebounceDefinition[Any, Any],
    snapshot: DebounceSnapshot[Any],
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

    def command(running: DebounceSnapshot[Any]) -> RunUserCode:
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
    snapshot: DebounceSnapshot[Any],
    new_state: Any,
    now: Instant,
    created: bool,
) -> rt.Transition[Any]:
    """Fold one accepted event into the batch; flush when ``max_events`` is reached."""
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
    )
    effects: list[Command] = []
    if first:
        assert alarm is not None
        effects.append(Emit(DebounceStarted(**base_fields(grown.key, now), flush_at=alarm)))
    if flushing and not backing_off:
        return _flush_run(
            definition, grown, effects, reason="maxEvents", origin="add", now=now, created=created
        )
    reply = DebounceAddResult(
        instance_id=grown.key.instance_id,
        event_count=count,
        will_flush_at=None if alarm is None else to_datetime(alarm),
        created=created,
        retry_scheduled=backing_off,
    )
    return rt.committed(snapshot.alarm_at, grown, effects, reply=reply)


def decide_debounce(
    definition: DebounceDefinition[Any, S],
    snapshot: DebounceSnapshot[S] | None,
    input_: Input,
    now: Instant,
) -> Result[rt.Transition[Any], Rejection]:
    match input_:
        case DebounceAdd(id=id_, event=event):
            if snapshot is not None and snapshot.in_flight is not None:
                return rt.busy(snapshot.key)
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

        case DebounceFlush():
            if snapshot is None:
                return Success(rt.keep(None, reply=DebounceFlushResult(False, 0, "empty")))
            if snapshot.in_flight is not None:
                return rt.busy(snapshot.key)
            if snapshot.event_count == 0:
                return Success(rt.purge(snapshot.key, reply=DebounceFlushResult(False, 0, "empty")))
            return Success(
                _flush_run(definition, snapshot, [], reason="manual", origin="flush", now=now)
            )

        case DebounceClear():
            if snapshot is None:
                return Success(rt.keep(None, reply=DebounceClearResult(False, 0)))
            return Success(
                rt.purge(snapshot.key, reply=DebounceClearResult(True, snapshot.event_count))
            )

        case DebounceStatus():
            if snapshot is None:
                return Success(rt.keep(None, reply=DebounceStatusResult("not_found")))
            return Success(rt.keep(snapshot, reply=_status(snapshot)))

        case DebounceGetState():
            state = None if snapshot is None else snapshot.state
            return Success(rt.keep(snapshot, reply=StateResult(state)))

        case AlarmFired(at=at):
            if snapshot is None or not rt.alarm_due(snapshot, at):
                return Success(rt.keep(snapshot))
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
                batch: DebounceSnapshot[Any],
                run: rt.InFlight,
                outcome: UserCodeSucceeded | UserCodeFailed | TerminateRequested,
            ) -> rt.Transition[Any]:
                if run.hook == "on_event":
                    return _after_reduce(definition, batch, run, outcome, now)
                return _after_flush(definition, batch, run, outcome, now)

            return Success(rt.after_outcome(snapshot, input_, after))

        case _:
            return rt.not_for("debounce", input_)


def debounce_status(snapshot: DebounceSnapshot[Any]) -> Literal["debouncing", "idle"]:
    """``"debouncing"`` while the batch holds events."""
    return "debouncing" if snapshot.event_count > 0 else "idle"


def _status(snapshot: DebounceSnapshot[Any]) -> DebounceStatusResult:
    return DebounceStatusResult(
        debounce_status(snapshot),
        event_count=snapshot.event_count,
        started_at=None if snapshot.started_at is None else to_datetime(snapshot.started_at),
        will_flush_at=None if snapshot.alarm_at is None else to_datetime(snapshot.alarm_at),
    )


def _stored_reason(snapshot: DebounceSnapshot[Any]) -> FlushReason | None:
    return snapshot.retry_reason


def _after_reduce(
    definition: DebounceDefinition[Any, Any],
    snapshot: DebounceSnapshot[Any],
    run: rt.InFlight,
    outcome: UserCodeSucceeded | UserCodeFailed | TerminateRequested,
    now: Instant,
) -> rt.Transition[Any]:
    if isinstance(outcome, UserCodeSucceeded):
        return _accept(definition, snapshot, outcome.state, now, run.created)
    before = None if run.created else attrs.evolve(snapshot, in_flight=None)
    if isinstance(outcome, TerminateRequested):
        # A reducer asked to terminate: the event is dropped and the batch purged.
        effects = rt.terminated_effects(snapshot.key, outcome.reason, 0, now)
        if before is None:
            return rt.keep(
                None, effects, DebounceAddResult(snapshot.key.instance_id, 0, None, False)
            )
        return rt.purge(
            snapshot.key, effects, DebounceAddResult(snapshot.key.instance_id, 0, None, False)
        )
    effects = rt.failure_effects(snapshot.key, run, outcome.error, None, 0, now)
    return rt.keep(before, effects, RequestFailed(hook="on_event", error=outcome.error))


def _after_flush(
    definition: DebounceDefinition[Any, Any],
    snapshot: DebounceSnapshot[Any],
    run: rt.InFlight,
    outcome: UserCodeSucceeded | UserCodeFailed | TerminateRequested,
    now: Instant,
) -> rt.Transition[Any]:
    key = snapshot.key
    reason: FlushReason = run.flush_reason or "flushAfter"
    count = snapshot.event_count
    if isinstance(outcome, TerminateRequested):
        effects = rt.terminated_effects(key, outcome.reason, 0, now)
        return rt.purge(key, effects, _flush_reply(run, key, count, flushed=False))
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
        return rt.purge(key, effects, _flush_reply(run, key, count, flushed=True))
    decision = rt.decide_failure(definition.retry, key, snapshot.attempts, run.attempt, now)
    effects = rt.failure_effects(key, run, outcome.error, decision, 0, now, payload=snapshot.state)
    if isinstance(decision, rt.RetryAt):
        waiting = attrs.evolve(rt.with_retry(snapshot, decision), retry_reason=reason)
        reply = _flush_reply(run, key, count, flushed=False, retry_at=decision.at)
        return rt.commit(_alarm_for(definition), waiting, effects, reply=reply)
    return rt.purge(key, effects, _flush_reply(run, key, count, flushed=False))


def _flush_reply(
    run: rt.InFlight,
    key: InstanceKey,
    count: int,
    *,
    flushed: bool,
    retry_at: Instant | None = None,
) -> ReplyValue | None:
    retrying = retry_at is not None
    if run.origin == "add":
        return DebounceAddResult(
            instance_id=key.instance_id,
            event_count=count,
            will_flush_at=None if retry_at is None else to_datetime(retry_at),
            created=run.created,
            retry_scheduled=retrying,
        )
    if run.origin == "flush":
        return DebounceFlushResult(flushed, count, "manual", retry_scheduled=retrying)
    return None
