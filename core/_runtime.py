"""The job runtime: the lifecycle every job type shares, written once.

Theory of operation. Every snapshot carries the same lifecycle fields:

* ``attempts`` (``Attempts``): the attempt that runs next, when the current failure
  sequence began, and the time of a pending retry;
* ``in_flight`` (``InFlight``): the run of user code that has started and not reported
  back, with a ``run_id`` that outcomes must quote;
* ``alarm_at``: the instance's one alarm, and ``version``: bumped on every commit.

A job type module supplies only its own rules: what a request means, what its alarm time
is (``desired_alarm``), and what to do after a success, a scheduled retry, an exhausted
run or a terminate. This module does the rest, for all of them:

* ``begin_run`` records an attempt as started (and, for runs that own a retry policy,
  commits that record *before* user code runs, so a crash mid-run counts as a failed
  attempt) and emits ``RunUserCode``;
* ``match_outcome`` drops stale outcomes (wrong ``run_id``, instance gone) and turns an
  interrupted run into a failure value;
* ``decide_failure`` applies the retry policy: ``max_attempts`` counts total executions,
  backoff with deterministic jitter, ``max_duration`` measured from the start of the
  failure sequence;
* ``failure_effects`` writes the telemetry (``job.failed`` with the real error every time,
  ``job.retryExhausted`` with the real reason, ``job.deadLettered``) and the dead-letter
  record;
* ``commit`` derives the alarm from the snapshot (no alarm while a run is in flight; the
  retry time wins while a retry is pending) and emits ``Persist`` plus the alarm command
  only when the alarm changed. This is the one place alarms are decided.

*Working snapshots.* A request whose answer depends on user code (a Debounce reducer,
a Task ``on_event``) runs that code before anything is stored: if it fails, nothing of
the request may remain. ``hold`` builds that transition: the snapshot it carries has the
run marked in flight but is **not written** (``Transition.unsaved``): no command of it
touches the instance's record (telemetry of a failed handler still commits). An
interpreter keeps the working snapshot in memory for the outcome, and, because other writers may have changed the instance meanwhile, checks
before deciding the outcome that the stored version is still the one the request
started from; if not, it runs the whole request again from the top.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final, Generic, Literal, NamedTuple, Protocol, TypeVar

import attrs
from returns.result import Failure, Result, Success

from durable_jobs._commands import (
    CancelAlarm,
    Command,
    Emit,
    Hook,
    HookPayload,
    Persist,
    Purge,
    RecordDeadLetter,
    Reply,
    RunUserCode,
    ScheduleAlarm,
    ScheduleRetry,
)
from durable_jobs._errors import ErrorInfo, Rejection
from durable_jobs._inputs import (
    Outcome,
    RunInterrupted,
    TerminateRequested,
    UserCodeFailed,
    UserCodeSucceeded,
)
from durable_jobs._keys import InstanceKey
from durable_jobs._results import DeadLetter, ReplyValue
from durable_jobs._retry import NO_RETRY, Retry, jittered
from durable_jobs._telemetry import (
    ExhaustionReason,
    FlushReason,
    JobDeadLettered,
    JobExecuted,
    JobFailed,
    JobRetryExhausted,
    JobTerminated,
    base_fields,
)
from durable_jobs._time import Instant, to_datetime

__all__ = [
    "MAX_PENDING",
    "Attempts",
    "Exhausted",
    "InFlight",
    "Origin",
    "Pending",
    "RetryAt",
    "Transition",
    "after_interrupt",
    "owes_work",
]

Origin = Literal["alarm", "start", "trigger", "add", "flush", "send", "queued"]
"""What started a run: ``send``/``add`` are a caller's own request (its hooks run in the
caller); ``queued`` is a request taken from ``pending`` in a worker."""

PendingKind = Literal["trigger", "send", "add", "flush", "clear", "idle"]

MAX_INTERRUPTS: Final = 3
"""How many times a queued request's hook may be cut off by its worker dying before the
request is dropped (recorded as ``job.failed``): a request whose hook kills the worker
(say, it exhausts memory) must not stop its instance, and crash worker after worker,
for ever."""

MAX_PENDING: Final = 1000
"""How many entries ``pending`` holds at most; a request beyond is refused
(``QueueFullError``) with nothing written, so a flood of requests to one busy instance
cannot grow its stored row without bound."""

INTERRUPTED = ErrorInfo(
    type="Interrupted", message="the run did not report back: its worker stopped during the run"
)


@attrs.frozen
class Attempts:
    """Where the instance is in a failure sequence.

    ``attempt`` is the number of the attempt that runs next (1 when no failure is
    pending); ``retry_at`` is set while a retry waits for its alarm.
    """

    attempt: int = 1
    sequence_started_at: Instant | None = None
    retry_at: Instant | None = None


FRESH = Attempts()

E = TypeVar("E")


@attrs.frozen
class Pending(Generic[E]):
    """Work an instance owes a worker, in order (the snapshot's ``pending``).

    Either a run a request made due now (``trigger``; ``flush`` of a Debounce batch;
    ``idle``, a Task's ``on_idle`` after a caller's ``send``), or a request that met a
    run in flight and was queued behind it (``send``/``add`` with its ``event``,
    ``trigger``, ``flush``, ``clear``). While there is no run in flight the alarm is due
    at the first entry's ``at``; the alarm step takes entries one at a time, in order.
    ``reason`` is a flush reason or an idle reason.

    >>> Pending("send", Instant(0), event={"n": 1}).kind
    'send'
    """

    kind: PendingKind
    at: Instant
    event: E | None = None
    reason: str | None = None
    interrupted: int = 0
    """How many times a worker died while this entry's hook ran (see ``after_interrupt``)."""


@attrs.frozen
class InFlight:
    """A run of user code that has started and not yet reported back."""

    run_id: int
    hook: Hook
    attempt: int
    started_at: Instant
    origin: Origin
    created: bool = False
    flush_reason: FlushReason | None = None
    error_source: Literal["onEvent", "execute"] | None = None


SnapshotT_co = TypeVar("SnapshotT_co", covariant=True)
"""The snapshot type of a ``Transition`` (``None`` included)."""


class Transition(NamedTuple, Generic[SnapshotT_co]):
    """The next snapshot (``None`` when the instance is gone) and the commands to run.

    The type parameter is the snapshot's type, ``None`` included (``decide`` on a
    Continuous job gives a ``Transition[ContinuousSnapshot[S] | None]``).

    ``unsaved`` marks a working snapshot: a run is in flight on it but nothing was
    written (see ``hold``); the interpreter keeps it for the run's outcome. (A frozen
    named tuple: one is built per ``decide``, and a tuple is the cheapest value to build.)

    >>> Transition(None, ()).unsaved
    False
    """

    snapshot: SnapshotT_co
    commands: tuple[Command, ...]
    unsaved: bool = False


class LifecycleSnapshot(Protocol):
    @property
    def key(self) -> InstanceKey: ...
    @property
    def attempts(self) -> Attempts: ...
    @property
    def in_flight(self) -> InFlight | None: ...
    @property
    def alarm_at(self) -> Instant | None: ...
    @property
    def version(self) -> int: ...


class OwingSnapshot(LifecycleSnapshot, Protocol):
    @property
    def pending(self) -> tuple[Pending[Any], ...]: ...


SnapshotT = TypeVar("SnapshotT", bound=LifecycleSnapshot)


# ---------------------------------------------------------------------------- commits

_FIELDS: dict[type, tuple[str, ...]] = {}
T = TypeVar("T")


def evolve(instance: T, **changes: Any) -> T:
    """``attrs.evolve`` for the framework's own frozen classes (public field names, no
    private aliases), with the field names looked up once per class: snapshots are
    rebuilt on every step, so this is on every hot path.

    >>> evolve(Attempts(), attempt=2)
    Attempts(attempt=2, sequence_started_at=None, retry_at=None)
    """
    cls = type(instance)
    names = _FIELDS.get(cls)
    if names is None:
        fields = attrs.fields(cls)  # type: ignore[arg-type]
        if any(not f.init or f.alias != f.name for f in fields):
            raise TypeError(f"evolve needs plain attrs fields; {cls.__name__} has others")
        names = _FIELDS[cls] = tuple(f.name for f in fields)
    for name in names:
        if name not in changes:
            changes[name] = getattr(instance, name)
    return cls(**changes)


def commit(
    desired_alarm: Callable[[SnapshotT], Instant | None],
    after: SnapshotT,
    effects: Sequence[Command] = (),
    *,
    run: RunUserCode | None = None,
    reply: ReplyValue | None = None,
) -> Transition[Any]:
    """Persist ``after``: derive its alarm, bump its version, and emit the commands.

    ``after.alarm_at`` must still hold the alarm that is currently set (the one stored
    before this transition), so that only a change produces an alarm command.
    """
    alarm = None if after.in_flight is not None else desired_alarm(after)
    stored = evolve(after, alarm_at=alarm, version=after.version + 1)
    return committed(after.alarm_at, stored, effects, run=run, reply=reply)


def committed(
    previous_alarm: Instant | None,
    stored: LifecycleSnapshot,
    effects: Sequence[Command] = (),
    *,
    run: RunUserCode | None = None,
    reply: ReplyValue | None = None,
) -> Transition[Any]:
    """The commands that persist ``stored``, which already carries its derived alarm and
    bumped version (``commit`` builds it; a hot path may build it in one step itself)."""
    alarm = stored.alarm_at
    commands: list[Command] = [*effects, Persist(stored)]
    if alarm != previous_alarm:
        if alarm is None:
            commands.append(CancelAlarm())
        elif alarm == stored.attempts.retry_at:
            commands.append(ScheduleRetry(alarm, stored.attempts.attempt))
        else:
            commands.append(ScheduleAlarm(alarm))
    if run is not None:
        commands.append(run)
    if reply is not None:
        commands.append(Reply(reply))
    return Transition(stored, tuple(commands))


def keep(
    snapshot: Any, effects: Sequence[Command] = (), reply: ReplyValue | None = None
) -> Transition[Any]:
    """A transition that writes no snapshot (a query, a stale input, a rejected run)."""
    commands = tuple(effects) if reply is None else (*effects, Reply(reply))
    return Transition(snapshot, commands)


def hold(
    working: LifecycleSnapshot, payload: HookPayload, effects: Sequence[Command] = ()
) -> Transition[Any]:
    """Run user code on ``working`` (a run marked in flight by ``begin_run``) without
    writing anything: the request's answer waits for the outcome (see the header)."""
    return Transition(working, (*effects, run_command(working, payload)), unsaved=True)


def purge(
    key: InstanceKey, effects: Sequence[Command] = (), reply: ReplyValue | None = None
) -> Transition[Any]:
    """Delete the instance (snapshot and alarm)."""
    commands: tuple[Command, ...] = (*effects, Purge(key))
    if reply is not None:
        commands = (*commands, Reply(reply))
    return Transition(None, commands)


# ------------------------------------------------------------------------------- runs


def begin_run(
    snapshot: SnapshotT,
    *,
    hook: Hook,
    origin: Origin,
    now: Instant,
    attempt: int = 1,
    created: bool = False,
    flush_reason: FlushReason | None = None,
    error_source: Literal["onEvent", "execute"] | None = None,
    **changes: Any,
) -> SnapshotT:
    """The snapshot with a run marked in flight (and a failure sequence opened), and
    ``changes`` to other fields made in the same step."""
    in_flight = InFlight(
        run_id=snapshot.version + 1,
        hook=hook,
        attempt=attempt,
        started_at=now,
        origin=origin,
        created=created,
        flush_reason=flush_reason,
        error_source=error_source,
    )
    attempts = snapshot.attempts
    if hook == "execute":
        started = now if attempt == 1 else attempts.sequence_started_at
        attempts = Attempts(attempt=attempt, sequence_started_at=started, retry_at=None)
    return evolve(snapshot, in_flight=in_flight, attempts=attempts, **changes)


def commit_start(
    snapshot: SnapshotT,
    effects: Sequence[Command],
    run: Callable[[SnapshotT], RunUserCode],
    *,
    hook: Hook,
    origin: Origin,
    now: Instant,
    attempt: int = 1,
    **changes: Any,
) -> Transition[Any]:
    """``begin_run`` and ``commit`` in one step (one snapshot rebuilt, not two): a run in
    flight has no alarm, so none needs deriving. ``run`` builds the ``RunUserCode``
    from the stored snapshot.
    """
    stored = begin_run(
        snapshot,
        hook=hook,
        origin=origin,
        now=now,
        attempt=attempt,
        alarm_at=None,
        version=snapshot.version + 1,
        **changes,
    )
    return committed(snapshot.alarm_at, stored, effects, run=run(stored))


def match_outcome(
    snapshot: LifecycleSnapshot | None, outcome: Outcome
) -> tuple[InFlight, UserCodeSucceeded | UserCodeFailed | TerminateRequested] | None:
    """The in-flight run an outcome belongs to, or ``None`` when the outcome is stale."""
    if snapshot is None or snapshot.in_flight is None:
        return None
    if snapshot.in_flight.run_id != outcome.run_id:
        return None
    if isinstance(outcome, RunInterrupted):
        return snapshot.in_flight, UserCodeFailed(run_id=outcome.run_id, error=INTERRUPTED)
    return snapshot.in_flight, outcome


def interrupted(outcome: object) -> bool:
    """Whether an outcome is the failure ``match_outcome`` made of a ``RunInterrupted``
    (the worker stopped during the run), not one of user code."""
    return isinstance(outcome, UserCodeFailed) and outcome.error is INTERRUPTED


def busy(snapshot: OwingSnapshot) -> Failure[Rejection]:
    """The rejection of a request that asked to wait (``wait``) for an instance that owes
    work: a run in flight, or requests queued for a worker. The interpreter waits and
    asks again; the message says what the instance is busy with."""
    instance_id = snapshot.key.instance_id
    run = snapshot.in_flight
    if run is not None:
        since = to_datetime(run.started_at).isoformat()
        what = f"a run of {run.hook} (attempt {run.attempt}) since {since}"
    else:
        kinds = ", ".join(entry.kind for entry in snapshot.pending[:3])
        more = ", ..." if len(snapshot.pending) > 3 else ""
        what = f"{len(snapshot.pending)} pending for a worker ({kinds}{more})"
    return Failure(Rejection("busy", f"{instance_id} is busy with {what}"))


def owes(snapshot: OwingSnapshot | None) -> bool:
    """Whether a request to ``snapshot`` must wait or be queued: a run is in flight, or
    work is pending ahead of it (a caller's requests are applied in their order)."""
    return snapshot is not None and (snapshot.in_flight is not None or bool(snapshot.pending))


def owes_work(snapshot: object) -> bool:
    """Whether a stored snapshot has pending work due for a worker now (no run in
    flight, ``pending`` not empty): an interpreter that runs due-now work in the caller
    (the memory interpreter; SQLite with ``inline=True``) runs it before answering.

    >>> owes_work(None)
    False
    """
    pending = getattr(snapshot, "pending", None)
    return bool(pending) and getattr(snapshot, "in_flight", None) is None


def queue_behind(
    snapshot: SnapshotT,
    desired_alarm: Callable[[SnapshotT], Instant | None],
    entry: Pending[Any],
    reply: ReplyValue,
    *,
    wait: int | None = None,
) -> Result[Transition[Any], Rejection]:
    """Append ``entry`` to ``pending`` (a request made due now, or queued behind a run)
    and answer ``reply``; refused when ``pending`` is full. A request that asked to
    ``wait`` is answered busy instead (the interpreter waits and asks again)."""
    if wait is not None:
        return busy(snapshot)  # type: ignore[arg-type]
    pending: tuple[Pending[Any], ...] = snapshot.pending  # type: ignore[attr-defined]
    if len(pending) >= MAX_PENDING:
        return Failure(
            Rejection(
                "queue_full",
                f"{snapshot.key.instance_id} has {MAX_PENDING} requests queued already",
            )
        )
    owing = evolve(snapshot, pending=(*pending, entry))
    return Success(commit(desired_alarm, owing, reply=reply))


def after_interrupt(snapshot: SnapshotT) -> tuple[SnapshotT, ErrorInfo]:
    """The snapshot after the worker died while the hook of the queued request at the
    head of ``pending`` ran: the request stays at the head and runs again, or, once it
    was cut off ``MAX_INTERRUPTS`` times, is taken off; and the error to record.

    >>> from durable_jobs.protocol import InstanceKey, TaskSnapshot
    >>> owing = TaskSnapshot(InstanceKey("task", "t", "u"), Instant(0),
    ...                      pending=(Pending("send", Instant(0), 1),))
    >>> once, error = after_interrupt(owing)
    >>> once.pending[0].interrupted, error.message
    (1, 'the worker stopped while a queued send was handled; it runs again')
    >>> after_interrupt(after_interrupt(once)[0])[0].pending
    ()
    """
    pending: tuple[Pending[Any], ...] = snapshot.pending  # type: ignore[attr-defined]
    entry, rest = pending[0], pending[1:]
    times = entry.interrupted + 1
    if times >= MAX_INTERRUPTS:
        message = (
            f"the worker stopped {times} times while a queued {entry.kind} was handled; "
            "the request is dropped"
        )
        return evolve(snapshot, in_flight=None, pending=rest), ErrorInfo("Interrupted", message)
    message = f"the worker stopped while a queued {entry.kind} was handled; it runs again"
    again = (evolve(entry, interrupted=times), *rest)
    return evolve(snapshot, in_flight=None, pending=again), ErrorInfo("Interrupted", message)


def take_pending(snapshot: SnapshotT) -> tuple[Pending[Any], SnapshotT]:
    """The first pending entry, and the snapshot without it."""
    pending: tuple[Pending[Any], ...] = snapshot.pending  # type: ignore[attr-defined]
    return pending[0], evolve(snapshot, pending=pending[1:])


def pending_attempt(snapshot: LifecycleSnapshot) -> int:
    """The attempt a run started now should be: the pending retry's, or a fresh 1."""
    return snapshot.attempts.attempt if snapshot.attempts.retry_at is not None else 1


def alarm_due(snapshot: LifecycleSnapshot | None, at: Instant) -> bool:
    """Whether a fired alarm for ``at`` is the one this instance waits for (else stale)."""
    return snapshot is not None and snapshot.in_flight is None and snapshot.alarm_at == at


def after_outcome(
    snapshot: SnapshotT | None,
    outcome: Outcome,
    handle: Callable[
        [SnapshotT, InFlight, UserCodeSucceeded | UserCodeFailed | TerminateRequested],
        Transition[Any],
    ],
) -> Transition[Any]:
    """``handle`` the outcome of the run in flight, or do nothing for a stale outcome."""
    matched = match_outcome(snapshot, outcome)
    if matched is None or snapshot is None:
        return keep(snapshot)
    return handle(snapshot, *matched)


def not_for(job_type: str, input_: object) -> Failure[Rejection]:
    """The rejection of an input that belongs to another job type."""
    return Failure(Rejection("wrong_job_type", f"{job_type} jobs do not take {input_!r}"))


def settled(snapshot: SnapshotT, **changes: Any) -> SnapshotT:
    """The snapshot with no run in flight and no failure pending (and ``changes``)."""
    return evolve(snapshot, in_flight=None, attempts=FRESH, **changes)


# --------------------------------------------------------------------------- failures


@attrs.frozen
class RetryAt:
    at: Instant
    attempt: int


@attrs.frozen
class Exhausted:
    reason: ExhaustionReason
    attempts: int


def decide_failure(
    policy: Retry | None, key: InstanceKey, attempts: Attempts, attempt: int, now: Instant
) -> RetryAt | Exhausted:
    """Retry or give up after failed attempt ``attempt``, by the shared policy rules."""
    rules = policy if policy is not None else NO_RETRY
    if attempt >= rules.max_attempts:
        return Exhausted("max_attempts", attempt)
    delay = rules.backoff.delay(attempt)
    if rules.jitter:
        delay = jittered(delay, key.instance_id, attempt)
    at = Instant(now + delay)
    started = attempts.sequence_started_at if attempts.sequence_started_at is not None else now
    if rules.max_duration is not None and at - started > rules.max_duration:
        return Exhausted("max_duration", attempt)
    return RetryAt(at, attempt + 1)


def success_effects(
    key: InstanceKey,
    run: InFlight,
    outcome: UserCodeSucceeded,
    run_count: int,
    now: Instant,
    subject: str | None = None,
) -> list[Command]:
    return [
        Emit(
            JobExecuted(
                **base_fields(key, now, subject),
                hook=run.hook,
                run_count=run_count,
                attempt=run.attempt,
                duration_ms=outcome.duration_ms,
            )
        )
    ]


def failure_effects(
    key: InstanceKey,
    run: InFlight,
    error: ErrorInfo,
    decision: RetryAt | Exhausted | None,
    run_count: int,
    now: Instant,
    payload: Any = None,
    subject: str | None = None,
) -> list[Command]:
    """Telemetry (and the dead letter) for a failed run.

    ``decision`` is ``None`` for hooks that are never retried nor dead-lettered (a
    request's ``on_event``, ``on_idle``, ``on_error``).
    """
    base = base_fields(key, now, subject)
    retry = decision if isinstance(decision, RetryAt) else None
    effects: list[Command] = [
        Emit(
            JobFailed(
                **base,
                hook=run.hook,
                run_count=run_count,
                attempt=run.attempt,
                will_retry=retry is not None,
                next_attempt=None if retry is None else retry.attempt,
                retry_at=None if retry is None else retry.at,
                error=error,
            )
        )
    ]
    if isinstance(decision, Exhausted):
        effects.append(
            Emit(JobRetryExhausted(**base, attempts=decision.attempts, reason=decision.reason))
        )
        effects.append(
            RecordDeadLetter(
                DeadLetter(
                    job_type=key.job_type,
                    job_name=key.job_name,
                    id=key.id if subject is None else subject,
                    instance_id=key.instance_id,
                    payload=payload,
                    error=error,
                    attempts=decision.attempts,
                    failed_at=to_datetime(now),
                )
            )
        )
        effects.append(Emit(JobDeadLettered(**base, attempts=decision.attempts, error=error)))
    return effects


def with_retry(snapshot: SnapshotT, retry: RetryAt) -> SnapshotT:
    """The snapshot waiting for ``retry``; the failed run's changes are dropped."""
    attempts = Attempts(
        attempt=retry.attempt,
        sequence_started_at=snapshot.attempts.sequence_started_at,
        retry_at=retry.at,
    )
    return evolve(snapshot, in_flight=None, attempts=attempts)


def terminated_effects(
    key: InstanceKey, reason: str | None, run_count: int, now: Instant, subject: str | None = None
) -> list[Command]:
    fields = base_fields(key, now, subject)
    return [Emit(JobTerminated(**fields, reason=reason, run_count=run_count))]


def run_command(snapshot: LifecycleSnapshot, payload: HookPayload) -> RunUserCode:
    """The ``RunUserCode`` command for the run now marked in flight on ``snapshot``."""
    run = snapshot.in_flight
    assert run is not None
    assert run.hook == payload.hook
    return RunUserCode(key=snapshot.key, run_id=run.run_id, attempt=run.attempt, payload=payload)
