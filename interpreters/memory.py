"""The memory interpreter: dicts, a heap of alarms and a virtual clock.

Theory of operation: the interpreter holds each instance's snapshot in a dict, its alarm
in a heap, and a clock that moves only when asked (``advance``, ``advance_to``). A client
request or a fired alarm runs one *step*: ``decide`` → carry out the commands (persist,
alarms, telemetry, dead letters, purge) → when a ``RunUserCode`` came out, run the hook
and feed the outcome back to ``decide`` → … until a transition asks for no more user
code. The reply of the last transition answers the request. It holds no job semantics;
every rule is in the core.

It is the reference model for the other interpreters and the engine of simulations,
property-based tests and notebooks: deterministic and instant. ``advance`` fires every
alarm that falls due, in time order, each with the clock set to its own due time,
including alarms that those runs schedule inside the window.

Decisions where the issue was silent:

* A request from user code to the instance that is running it (re-entrancy) is refused
  with ``ConflictError``; other instances can be called freely from user code.
* ``advance`` may not be called from user code (it raises ``RuntimeError``).
* User code sees the clock frozen at the step's time; runs take no virtual time, so
  ``duration_ms`` is 0.
* ``trace`` keeps every step as ``TraceEntry(time, instance_id, input, commands)``; pass
  ``trace=False`` for long simulations.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
from returns.result import Failure, Success

from durable_jobs import (
    AlarmFired,
    CancelAlarm,
    ClearQueue,
    Client,
    Command,
    ConflictError,
    DeadLetter,
    Definition,
    DeleteFinished,
    DeleteQueueItem,
    DurableJobsError,
    Emit,
    Input,
    InstanceKey,
    Instant,
    Jobs,
    Persist,
    PoolSnapshot,
    PoolView,
    Purge,
    PutFinished,
    PutQueueItem,
    RecordDeadLetter,
    Reply,
    Request,
    RunUserCode,
    ScheduleAlarm,
    ScheduleRetry,
    Snapshot,
    TakeQueueItem,
    TelemetryEvent,
    Transition,
    WorkerPoolDefinition,
    decide,
    from_datetime,
    parse_duration,
    queue_reads,
    to_datetime,
)
from durable_jobs._results import Reply as ReplyValue
from durable_jobs.interpreters._queue import ShardQueue
from durable_jobs.interpreters._runner import run_sync

__all__ = ["MemoryInterpreter", "TraceEntry"]

DEFAULT_START = datetime(2026, 1, 1, tzinfo=UTC)
_NO_QUEUE = ShardQueue()


@attrs.frozen
class TraceEntry:
    """One committed transition: when, which instance, what came in, what went out."""

    time: datetime
    instance_id: str
    input: Input
    commands: tuple[Command, ...]


class MemoryInterpreter:
    """Runs jobs in memory on a virtual clock.

    >>> from durable_jobs import Debounce, Jobs
    >>> seen = []
    >>> batcher = Debounce.make(event=int, flush_after="1 minute",
    ...                         execute=lambda ctx: seen.append(ctx.state))
    >>> sim = MemoryInterpreter(Jobs(batcher=batcher))
    >>> sim.client().debounce(batcher).add(id="u", event=3).event_count
    1
    >>> sim.advance("2 minutes"); seen
    [3]
    """

    def __init__(self, jobs: Jobs, start: datetime | None = None, *, trace: bool = True) -> None:
        if not isinstance(jobs, Jobs):
            raise TypeError(f"expected a Jobs registry, got {jobs!r}")
        self._jobs = jobs
        self._now = from_datetime(start if start is not None else DEFAULT_START)
        self._store: dict[str, Snapshot] = {}
        self._alarms: dict[str, tuple[Instant, int]] = {}  # the alarm and when it was set
        self._heap: list[tuple[Instant, int, str]] = []
        self._seq = 0
        self._busy: set[str] = set()
        self._advancing = False
        self._trace_on = trace
        self.telemetry: list[TelemetryEvent] = []
        """Every telemetry event, in the order it was committed."""
        self.trace: list[TraceEntry] = []
        """Every step (when ``trace=True``): transitions, and queries that wrote nothing."""
        self._dead: list[DeadLetter[Any]] = []
        self._queues: dict[str, ShardQueue] = {}

    # ------------------------------------------------------------------ public surface
    @property
    def jobs(self) -> Jobs:
        return self._jobs

    def client(self) -> Client:
        """A client whose calls run on this interpreter."""
        return Client(self)

    def now(self) -> datetime:
        """The virtual clock (aware, UTC)."""
        return to_datetime(self._now)

    def next_alarm_at(self) -> datetime | None:
        """When the earliest pending alarm is due, or ``None``."""
        self._drop_stale()
        return to_datetime(self._heap[0][0]) if self._heap else None

    def advance(self, duration: timedelta | str) -> None:
        """Move the clock forward, firing every alarm that falls due on the way."""
        self.advance_to(to_datetime(Instant(self._now + parse_duration(duration, what="advance"))))

    def advance_to(self, when: datetime) -> None:
        """Move the clock to ``when`` (not backwards), firing alarms due up to then."""
        target = from_datetime(when)
        if target < self._now:
            raise ValueError(f"cannot move the clock back from {self.now()} to {when}")
        if self._advancing or self._busy:
            raise RuntimeError("advance cannot be called from user code")
        self._advancing = True
        try:
            while True:
                self._drop_stale()
                if not self._heap or self._heap[0][0] > target:
                    break
                at, _, instance_id = heapq.heappop(self._heap)
                del self._alarms[instance_id]
                self._now = max(self._now, at)
                snapshot = self._store.get(instance_id)
                if snapshot is None:  # pragma: no cover - purge cancels alarms
                    continue
                definition = self._jobs[snapshot.key.job_name]
                self._step(definition, instance_id, AlarmFired(at))
            self._now = target
        finally:
            self._advancing = False

    def instances(self) -> Iterator[Snapshot]:
        """The stored snapshots (for exploration)."""
        return iter(list(self._store.values()))

    # ------------------------------------------------------------ Dispatcher protocol
    def dispatch(self, definition: Definition, request: Request) -> ReplyValue:
        key = InstanceKey(definition.job_type, definition.name, request.id)
        reply = self._step(definition, key.instance_id, request)
        if reply is None:  # pragma: no cover - every request chain ends in a reply
            raise DurableJobsError(f"no reply to {request!r}")
        return reply

    def dispatch_many(
        self, definition: Definition, requests: Sequence[Request]
    ) -> list[ReplyValue]:
        """Decide every request first, then carry them all out: a rejection leaves
        nothing written (each request is for its own instance, so no decision depends on
        another's commands)."""
        keys = [InstanceKey(definition.job_type, definition.name, r.id) for r in requests]
        if len({key.instance_id for key in keys}) != len(keys):
            raise ValueError("dispatch_many takes one request per instance")
        decided = []
        for key, request in zip(keys, requests, strict=True):
            if key.instance_id in self._busy:
                raise ConflictError(
                    f"{key.instance_id} is running user code and cannot be called from it"
                )
            stored = self._store.get(key.instance_id)
            transition = self._decide(definition, key.instance_id, stored, request).unwrap()
            if any(isinstance(c, RunUserCode) for c in transition.commands):
                raise ValueError(f"{request!r} starts user code; use dispatch")
            decided.append((key.instance_id, request, transition))
        replies: list[ReplyValue] = []
        for instance_id, request, transition in decided:
            _, reply = self._apply(instance_id, transition.commands)
            if self._trace_on:
                self.trace.append(TraceEntry(self.now(), instance_id, request, transition.commands))
            if reply is None:  # pragma: no cover - every request ends in a reply
                raise DurableJobsError(f"no reply to {request!r}")
            replies.append(reply)
        return replies

    def dead_letters(self, definition: Definition) -> list[DeadLetter[Any]]:
        return [d for d in self._dead if d.job_name == definition.name]

    # ------------------------------------------------------------------------ engine
    def _step(self, definition: Definition, instance_id: str, input_: Input) -> ReplyValue | None:
        if instance_id in self._busy:
            raise ConflictError(f"{instance_id} is running user code and cannot be called from it")
        self._busy.add(instance_id)
        try:
            snapshot = self._store.get(instance_id)
            while True:
                transition = self._decide(definition, instance_id, snapshot, input_).unwrap()
                run, reply = self._apply(instance_id, transition.commands)
                if self._trace_on:
                    self.trace.append(
                        TraceEntry(self.now(), instance_id, input_, transition.commands)
                    )
                snapshot = transition.snapshot
                if run is None:
                    return reply
                input_ = run_sync(definition, run, self._now)
        finally:
            self._busy.discard(instance_id)

    def _decide(
        self, definition: Definition, instance_id: str, snapshot: Snapshot | None, input_: Input
    ) -> Success[Transition]:
        """``decide`` on ``snapshot`` (and, for a pool shard, its stored queue rows); a
        rejection raises its error."""
        if isinstance(definition, WorkerPoolDefinition):
            queue = self._queues.get(instance_id, _NO_QUEUE)
            reads = queue_reads(definition, input_, self._now)
            assert snapshot is None or isinstance(snapshot, PoolSnapshot)
            result = decide(definition, PoolView(snapshot, queue.view(reads)), input_, self._now)
        else:
            result = decide(definition, snapshot, input_, self._now)
        if isinstance(result, Failure):
            raise result.failure().error()
        assert isinstance(result, Success)
        return result

    def _apply(
        self, instance_id: str, commands: tuple[Command, ...]
    ) -> tuple[RunUserCode | None, ReplyValue | None]:
        run: RunUserCode | None = None
        reply: ReplyValue | None = None
        for command in commands:
            match command:
                case Persist(snapshot=snapshot):
                    self._store[instance_id] = snapshot
                case ScheduleAlarm(at=at) | ScheduleRetry(at=at):
                    self._seq += 1
                    self._alarms[instance_id] = (at, self._seq)
                    heapq.heappush(self._heap, (at, self._seq, instance_id))
                case CancelAlarm():
                    self._alarms.pop(instance_id, None)
                case Purge():
                    self._store.pop(instance_id, None)
                    self._alarms.pop(instance_id, None)
                case Emit(event=event):
                    self.telemetry.append(event)
                case RecordDeadLetter(record=record):
                    self._dead.append(record)
                case PutQueueItem(item=item):
                    self._queue(instance_id).put(item)
                case DeleteQueueItem(event_id=event_id) | TakeQueueItem(event_id=event_id):
                    self._queue(instance_id).delete(event_id)
                case ClearQueue():
                    self._queue(instance_id).clear()
                case PutFinished(record=record):
                    self._queue(instance_id).put_finished(record)
                case DeleteFinished(records=records):
                    self._queue(instance_id).delete_finished(records)
                case RunUserCode():
                    run = command
                case Reply(value=value):
                    reply = value
        return run, reply

    def _queue(self, instance_id: str) -> ShardQueue:
        queue = self._queues.get(instance_id)
        if queue is None:
            queue = self._queues[instance_id] = ShardQueue()
        return queue

    def _drop_stale(self) -> None:
        heap = self._heap
        # An entry is live only if it is the latest setting of its instance's alarm: alarms
        # due at the same instant fire in the order they were last set.
        while heap and self._alarms.get(heap[0][2]) != (heap[0][0], heap[0][1]):
            heapq.heappop(heap)
