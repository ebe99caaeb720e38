"""The client facade, shared by every interpreter.

Theory of operation: a client method validates what the caller gave (the id, and the
event or input, typed or in JSON form, through the converter), builds a request value,
hands it to the interpreter's ``Dispatcher`` and turns the reply into its result value
or an exception. Validation happens here, before the request exists, so bad input is
refused with nothing written. The facade does no IO itself; the dispatcher does.

``client.continuous(ticker)`` with the definition object keeps its type parameters, so
``start(input=...)`` only takes the job's state type under a type checker and
``get_state`` is typed as the job's state; with a name the types are ``Any``. A value in
its unstructured JSON form (a ``dict`` from a web request, say) goes through the
explicit ``Unstructured(...)`` wrapper, which says that the converter will build the
typed value from it; at run time both forms are checked against the declared type.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar, overload

import attrs

from durable_jobs._definitions import (
    ContinuousDefinition,
    DebounceDefinition,
    Definition,
    Jobs,
    TaskDefinition,
    WorkerPoolDefinition,
)
from durable_jobs._errors import (
    DefinitionError,
    DurableJobsError,
    UserCodeError,
    ValidationError,
)
from durable_jobs._inputs import (
    ContinuousGetState,
    ContinuousStart,
    ContinuousStatus,
    ContinuousTerminate,
    ContinuousTrigger,
    DebounceAdd,
    DebounceClear,
    DebounceFlush,
    DebounceGetState,
    DebounceStatus,
    PoolCancel,
    PoolDrain,
    PoolEnqueue,
    PoolEnqueueMany,
    PoolPause,
    PoolResume,
    PoolStatus,
    Request,
    TaskGetState,
    TaskSend,
    TaskStatus,
    TaskTerminate,
    TaskTrigger,
)
from durable_jobs._keys import check_id
from durable_jobs._pool import shard_index
from durable_jobs._results import (
    ContinuousStartResult,
    ContinuousStatusResult,
    ContinuousTerminateResult,
    ContinuousTriggerResult,
    DeadLetter,
    DebounceAddResult,
    DebounceClearResult,
    DebounceFlushResult,
    DebounceStatusResult,
    PoolCancelResult,
    PoolDrainResult,
    PoolEnqueueManyResult,
    PoolEnqueueResult,
    PoolInstanceStatus,
    PoolPauseResult,
    PoolResumeResult,
    PoolStatusResult,
    ReplyValue,
    RequestFailed,
    StateResult,
    TaskSendResult,
    TaskStatusResult,
    TaskTerminateResult,
    TaskTriggerResult,
)
from durable_jobs._serialization import MAX_INT, Unstructured, validate
from durable_jobs._time import Duration, DurationLike, Instant, from_datetime, parse_duration

__all__ = [
    "INVALID_STATE",
    "Client",
    "ContinuousClient",
    "DebounceClient",
    "Dispatcher",
    "Enqueue",
    "TaskClient",
    "Unstructured",
    "WorkerPoolClient",
]

S = TypeVar("S")
E = TypeVar("E")
R = TypeVar("R")

INVALID_STATE = "durable_jobs.ValidationError"
"""The ``ErrorInfo.type`` of a run whose user code produced a state of the wrong type."""


class Dispatcher(Protocol):
    """What an interpreter offers the client facade."""

    @property
    def jobs(self) -> Jobs: ...

    def dispatch(self, definition: Definition, request: Request) -> ReplyValue:
        """Run ``request`` to completion (including user code it starts); its reply."""
        ...

    def dispatch_many(
        self, definition: Definition, requests: Sequence[Request]
    ) -> list[ReplyValue]:
        """Run ``requests``, each for a different instance and none starting user code;
        their replies in order. A rejection raises its error with none of them written
        (memory and SQLite); an interpreter whose instances live apart may have written
        the instances before the rejected one, in order."""
        ...

    def dead_letters(self, definition: Definition) -> list[DeadLetter[Any]]:
        """The dead-letter records of ``definition``'s job, oldest first."""
        ...


def _expect(reply: ReplyValue, kind: type[R], definition: Definition) -> R:
    if isinstance(reply, RequestFailed):
        if reply.error.type == INVALID_STATE:
            raise ValidationError(reply.error.message)
        raise UserCodeError(definition.name, reply.hook, reply.error)
    if not isinstance(reply, kind):
        raise DurableJobsError(f"unexpected reply {reply!r}; expected {kind.__name__}")
    return reply


@attrs.frozen
class Enqueue(Generic[E]):
    """One event for ``WorkerPoolClient.enqueue_many``: the arguments of ``enqueue``.

    >>> Enqueue("order-1", {"sku": "A"}, priority=5, delay="10 minutes").delay
    '10 minutes'
    """

    id: str
    event: E | Unstructured
    partition_key: str | None = None
    priority: int = 0
    delay: DurationLike | None = None
    at: datetime | None = None


D = TypeVar("D", bound=Definition)


class _JobClient(Generic[D]):
    def __init__(self, dispatcher: Dispatcher, definition: D, wait: Duration | None = None) -> None:
        self._dispatcher = dispatcher
        self._definition = definition
        self._wait = wait

    def _waiting(self, wait: DurationLike | None) -> Duration | None:
        """The wait of one call: its own ``wait`` when given, else the client's."""
        return self._wait if wait is None else parse_duration(wait, what="wait")

    def _call(self, request: Request, kind: type[R]) -> R:
        return _expect(self._dispatcher.dispatch(self._definition, request), kind, self._definition)

    def _state(self, request: Request) -> Any:
        return self._call(request, StateResult).state

    def _dead_letters(self) -> list[DeadLetter[Any]]:
        return self._dispatcher.dead_letters(self._definition)


class ContinuousClient(_JobClient[ContinuousDefinition[S]]):
    """Client actions of one Continuous job."""

    def start(self, *, id: str, input: S | Unstructured) -> ContinuousStartResult:
        """Create the instance with ``input`` as its state (no-op when it exists)."""
        value = validate(input, self._definition.state, what="input")
        return self._call(ContinuousStart(check_id(id), value), ContinuousStartResult)

    def trigger(self, id: str, *, wait: DurationLike | None = None) -> ContinuousTriggerResult:
        """Make a run of ``execute`` due now, outside the schedule: a worker runs it (the
        memory interpreter runs it before returning). Answers at once; with a run in
        flight the trigger is queued behind it (``queued=True``), unless the call or the
        client waits (``wait=``, ``client(wait=...)``)."""
        request = ContinuousTrigger(check_id(id), self._waiting(wait))
        return self._call(request, ContinuousTriggerResult)

    def terminate(self, id: str, reason: str | None = None) -> ContinuousTerminateResult:
        """Purge the instance; the id can be started again afterwards."""
        if reason is not None:
            reason = validate(reason, str, what="reason")
        request = ContinuousTerminate(check_id(id), reason)
        return self._call(request, ContinuousTerminateResult)

    def status(self, id: str) -> ContinuousStatusResult:
        return self._call(ContinuousStatus(check_id(id)), ContinuousStatusResult)

    def get_state(self, id: str) -> S | None:
        """The instance's state, or ``None`` when there is no instance."""
        state: S | None = self._state(ContinuousGetState(check_id(id)))
        return state

    def dead_letters(self) -> list[DeadLetter[S]]:
        """Dead-letter records of this job (its state at exhaustion), oldest first."""
        return self._dead_letters()


class DebounceClient(_JobClient[DebounceDefinition[E, S]]):
    """Client actions of one Debounce job."""

    def add(
        self, *, id: str, event: E | Unstructured, wait: DurationLike | None = None
    ) -> DebounceAddResult:
        """Fold ``event`` into the instance's batch (creating it on the first event).

        The reducer (``on_event``) runs here, in the caller; reaching ``max_events``
        makes the flush due now, and a worker runs ``execute``. During a flush the event
        is queued behind it (``queued=True``), unless the client waits."""
        value = validate(event, self._definition.event, what="event")
        request = DebounceAdd(check_id(id), value, self._waiting(wait))
        return self._call(request, DebounceAddResult)

    def flush(self, id: str, *, wait: DurationLike | None = None) -> DebounceFlushResult:
        """Make a flush of the batch due now (``flushing=True``): a worker runs
        ``execute``."""
        request = DebounceFlush(check_id(id), self._waiting(wait))
        return self._call(request, DebounceFlushResult)

    def clear(self, id: str, *, wait: DurationLike | None = None) -> DebounceClearResult:
        """Drop the batch without running ``execute`` (during a flush: queued behind it,
        unless the client waits)."""
        request = DebounceClear(check_id(id), self._waiting(wait))
        return self._call(request, DebounceClearResult)

    def status(self, id: str) -> DebounceStatusResult:
        return self._call(DebounceStatus(check_id(id)), DebounceStatusResult)

    def get_state(self, id: str) -> S | None:
        state: S | None = self._state(DebounceGetState(check_id(id)))
        return state

    def dead_letters(self) -> list[DeadLetter[S]]:
        """Dead-letter records of this job (the batch's state), oldest first."""
        return self._dead_letters()


class TaskClient(_JobClient[TaskDefinition[S, E]]):
    """Client actions of one Task job."""

    def send(
        self, *, id: str, event: E | Unstructured, wait: DurationLike | None = None
    ) -> TaskSendResult:
        """Deliver ``event`` to ``on_event`` (creating the instance on the first one).

        ``on_event`` (and ``on_error`` when it fails) runs here, in the caller;
        ``on_idle`` after it runs in a worker. While a run is in flight the event is
        queued behind it (``queued=True``) and handled in order when it ends, unless
        the client waits (``client(wait=...)``)."""
        value = validate(event, self._definition.event, what="event")
        return self._call(TaskSend(check_id(id), value, self._waiting(wait)), TaskSendResult)

    def trigger(self, id: str, *, wait: DurationLike | None = None) -> TaskTriggerResult:
        """Make a run of ``execute`` due now (a worker runs it); the schedule stays."""
        return self._call(TaskTrigger(check_id(id), self._waiting(wait)), TaskTriggerResult)

    def terminate(self, id: str) -> TaskTerminateResult:
        return self._call(TaskTerminate(check_id(id)), TaskTerminateResult)

    def status(self, id: str) -> TaskStatusResult:
        return self._call(TaskStatus(check_id(id)), TaskStatusResult)

    def get_state(self, id: str) -> S | None:
        state: S | None = self._state(TaskGetState(check_id(id)))
        return state

    def dead_letters(self) -> list[DeadLetter[S | None]]:
        """Dead-letter records of this job: the state when ``execute`` gave up (``None``
        when no handler had set one yet)."""
        return self._dead_letters()


def _due(delay: object, at: object) -> tuple[Duration | None, Instant | None]:
    """The checked ``delay`` or ``at`` of an enqueue (a request's input: refusals are
    ``ValidationError``).

    >>> _due("90 seconds", None)
    (90000, None)
    >>> _due("1 second", datetime(2030, 1, 1))
    Traceback (most recent call last):
    ...
    durable_jobs._errors.ValidationError: give delay or at, not both
    """
    if delay is not None and at is not None:
        raise ValidationError("give delay or at, not both")
    try:
        if delay is not None:
            return parse_duration(delay, what="delay"), None  # type: ignore[arg-type]
        if at is not None:
            if not isinstance(at, datetime):
                raise ValidationError(f"at must be an aware datetime, got {at!r}")
            return None, from_datetime(at)
    except DefinitionError as error:
        raise ValidationError(str(error) if at is None else f"at: {error}") from None
    return None, None


_CANCEL_PREFERENCE = ("cancelled", "already_processing", "already_completed", "not_found")


class WorkerPoolClient(_JobClient[WorkerPoolDefinition[E]]):
    """Client actions of one WorkerPool.

    Routing is ``abs(java_hash32(key)) % concurrency`` with the partition key, or the event
    id without one; ``cancel`` asks every shard (the event may have been routed by its
    partition key) and ``status`` gathers every shard.
    """

    @property
    def _shards(self) -> range:
        return range(self._definition.concurrency)

    def _index(self, index: object) -> int:
        if isinstance(index, bool) or not isinstance(index, int) or index not in self._shards:
            raise ValidationError(
                f"instance index must be an int in [0, {self._definition.concurrency}), "
                f"got {index!r}"
            )
        return index

    def _indexes(self, index: int | None) -> list[int]:
        return list(self._shards) if index is None else [self._index(index)]

    def enqueue(
        self,
        *,
        id: str,
        event: E | Unstructured,
        partition_key: str | None = None,
        priority: int = 0,
        delay: DurationLike | None = None,
        at: datetime | None = None,
    ) -> PoolEnqueueResult:
        """Queue ``event`` under the event id ``id`` (re-sending an id is answered as a
        duplicate while it is delayed, pending, running, or finished within
        ``dedup_retention``).

        ``delay`` (a duration from now) or ``at`` (an aware ``datetime``; one of them at
        most) stores the event at once but holds it back until it is due; then it takes
        its place by priority and enqueue order. A due time not in the future means now.
        The result's ``due_at`` says when a delayed event is due.

        >>> from datetime import timedelta
        >>> from durable_jobs import Jobs, WorkerPool
        >>> from durable_jobs.interpreters.memory import MemoryInterpreter
        >>> mail = WorkerPool.make(event=str, concurrency=1, execute=lambda c: print(c.event))
        >>> sim = MemoryInterpreter(Jobs(mail=mail))
        >>> pool = sim.client().worker_pool(mail)
        >>> pool.enqueue(id="later", event="see you", delay="1 hour").due_at - sim.now()
        datetime.timedelta(seconds=3600)
        >>> sim.advance("59 minutes")
        >>> sim.advance("1 minute")
        see you
        """
        request = self._enqueue_request(id, event, partition_key, priority, delay, at)
        return self._call(request, PoolEnqueueResult)

    def enqueue_many(self, events: Iterable[Enqueue[E]]) -> list[PoolEnqueueResult]:
        """Queue several events in one go; one result per event, in their order.

        The results equal those of calling ``enqueue`` for each event in turn (an id sent
        twice is a duplicate of the first). Every event is validated before anything is
        written. Each shard's events are written together or not at all; on memory and
        SQLite the whole call is one transaction (one commit, however many events), so a
        ``QueueFullError`` leaves nothing written. Interpreters whose shards live apart
        write shard by shard: after an error, send the same batch again — the ids already
        queued come back as duplicates.

        >>> from durable_jobs import Enqueue, Jobs, WorkerPool
        >>> from durable_jobs.interpreters.memory import MemoryInterpreter
        >>> mail = WorkerPool.make(event=str, concurrency=2, execute=print)
        >>> pool = MemoryInterpreter(Jobs(mail=mail)).client().worker_pool(mail)
        >>> sent = pool.enqueue_many([Enqueue("a", "hi"), Enqueue("b", "yo"), Enqueue("a", "hi")])
        >>> [(r.event_id, r.duplicate) for r in sent]
        [('a', False), ('b', False), ('a', True)]
        """
        batch = list(events)
        for one in batch:
            if not isinstance(one, Enqueue):
                raise ValidationError(f"enqueue_many takes Enqueue values, got {one!r}")
        requests = [
            self._enqueue_request(
                one.id, one.event, one.partition_key, one.priority, one.delay, one.at
            )
            for one in batch
        ]
        shards: dict[str, list[PoolEnqueue]] = {}
        for request in requests:
            shards.setdefault(request.id, []).append(request)
        if not shards:
            return []
        grouped = [PoolEnqueueMany(index, tuple(group)) for index, group in shards.items()]
        replies = self._dispatcher.dispatch_many(self._definition, grouped)
        answers: dict[str, list[PoolEnqueueResult]] = {}
        for request_many, reply in zip(grouped, replies, strict=True):
            result = _expect(reply, PoolEnqueueManyResult, self._definition)
            answers[request_many.id] = list(reversed(result.results))
        return [answers[request.id].pop() for request in requests]

    def _enqueue_request(
        self,
        id: object,
        event: object,
        partition_key: object,
        priority: object,
        delay: object = None,
        at: object = None,
    ) -> PoolEnqueue:
        event_id = check_id(id)
        key = None if partition_key is None else check_id(partition_key, "partition_key")
        if isinstance(priority, bool) or not isinstance(priority, int) or abs(priority) > MAX_INT:
            raise ValidationError(
                f"priority must be an int between -{MAX_INT} and {MAX_INT}, got {priority!r}"
            )
        wait, when = _due(delay, at)
        value = validate(event, self._definition.event, what="event")
        index = shard_index(key if key is not None else event_id, len(self._shards))
        return PoolEnqueue(str(index), event_id, value, key, priority, wait, when)

    def pause(self, index: int | None = None) -> PoolPauseResult:
        """Stop processing (one shard, or all); enqueues are still accepted."""
        results = [self._call(PoolPause(str(i)), PoolPauseResult) for i in self._indexes(index)]
        return PoolPauseResult(all(r.paused for r in results))

    def resume(self, index: int | None = None) -> PoolResumeResult:
        """Process again; a pending retry backoff is honoured."""
        results = [self._call(PoolResume(str(i)), PoolResumeResult) for i in self._indexes(index)]
        return PoolResumeResult(all(r.resumed for r in results))

    def cancel(self, event_id: str) -> PoolCancelResult:
        """Remove a pending or delayed event; says why when it cannot."""
        checked = check_id(event_id)
        answers: list[PoolCancelResult] = [
            self._call(PoolCancel(str(i), checked), PoolCancelResult) for i in self._shards
        ]
        return min(answers, key=lambda r: _CANCEL_PREFERENCE.index(r.reason))

    def drain(self, index: int | None = None) -> PoolDrainResult:
        """Remove every pending and delayed event (one shard, or all); the running one
        finishes."""
        results = [self._call(PoolDrain(str(i)), PoolDrainResult) for i in self._indexes(index)]
        return PoolDrainResult(
            drained=all(r.drained for r in results),
            events_cleared=sum(r.events_cleared for r in results),
        )

    def instance_status(self, index: int) -> PoolInstanceStatus:
        """One shard's status."""
        request = PoolStatus(str(self._index(index)))
        return self._call(request, PoolInstanceStatus)

    def status(self) -> PoolStatusResult:
        """Every shard's status and the sums."""
        shards = tuple(self.instance_status(i) for i in self._shards)
        return PoolStatusResult(
            instances=shards,
            total_pending=sum(s.pending_count for s in shards),
            total_processed=sum(s.processed_count for s in shards),
            total_dead_lettered=sum(s.dead_lettered_count for s in shards),
            active_instances=sum(s.status in ("processing", "idle") for s in shards),
            paused_instances=sum(s.status == "paused" for s in shards),
            total_delayed=sum(s.delayed_count for s in shards),
        )

    def dead_letters(self) -> list[DeadLetter[E]]:
        """Dead-letter records of this pool (the events), oldest first."""
        return self._dead_letters()


class Client:
    """Entry point to the job clients of one interpreter; from ``interpreter.client()``.

    ``wait`` (a duration, or ``None``): what a request does when it meets a busy
    instance (a run in flight, or requests already queued for a worker). ``None``, the
    default, queues it behind them, durably and in order, and answers at once with
    ``queued=True``; a duration makes the call wait up to that long, then apply it and
    answer as usual, or raise ``BusyError`` with nothing written. The calls that can
    meet a busy instance (``trigger``, ``add``, ``flush``, ``clear``, ``send``) take a
    ``wait=`` of their own too, which overrides the client's for that call.
    """

    def __init__(self, dispatcher: Dispatcher, *, wait: DurationLike | None = None) -> None:
        self._dispatcher = dispatcher
        self._wait = None if wait is None else parse_duration(wait, what="wait")

    @overload
    def continuous(self, job: ContinuousDefinition[S]) -> ContinuousClient[S]: ...
    @overload
    def continuous(self, job: str) -> ContinuousClient[Any]: ...
    def continuous(self, job: str | ContinuousDefinition[Any]) -> ContinuousClient[Any]:
        definition = self._dispatcher.jobs.resolve(job, ContinuousDefinition)
        return ContinuousClient(self._dispatcher, definition, self._wait)

    @overload
    def debounce(self, job: DebounceDefinition[E, S]) -> DebounceClient[E, S]: ...
    @overload
    def debounce(self, job: str) -> DebounceClient[Any, Any]: ...
    def debounce(self, job: str | DebounceDefinition[Any, Any]) -> DebounceClient[Any, Any]:
        definition = self._dispatcher.jobs.resolve(job, DebounceDefinition)
        return DebounceClient(self._dispatcher, definition, self._wait)

    @overload
    def task(self, job: TaskDefinition[S, E]) -> TaskClient[S, E]: ...
    @overload
    def task(self, job: str) -> TaskClient[Any, Any]: ...
    def task(self, job: str | TaskDefinition[Any, Any]) -> TaskClient[Any, Any]:
        definition = self._dispatcher.jobs.resolve(job, TaskDefinition)
        return TaskClient(self._dispatcher, definition, self._wait)

    @overload
    def worker_pool(self, job: WorkerPoolDefinition[E]) -> WorkerPoolClient[E]: ...
    @overload
    def worker_pool(self, job: str) -> WorkerPoolClient[Any]: ...
    def worker_pool(self, job: str | WorkerPoolDefinition[Any]) -> WorkerPoolClient[Any]:
        definition = self._dispatcher.jobs.resolve(job, WorkerPoolDefinition)
        return WorkerPoolClient(self._dispatcher, definition, self._wait)
