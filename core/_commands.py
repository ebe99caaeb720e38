"""Command values: what a transition asks an interpreter to do.

Theory of operation: ``decide`` never acts; it returns the next snapshot and a tuple of
these commands, in the order an interpreter must carry them out. Everything but
``RunUserCode`` and ``Reply`` belongs to one atomic commit (snapshot, alarm, queue rows,
dead letters, telemetry); ``plan_of`` gathers those into a ``CommitPlan``.
``RunUserCode`` comes after the commit: the interpreter runs the named hook and feeds
its outcome back to ``decide`` as a new input. ``Reply`` is the answer to the client
request that started the chain of transitions.

``RunUserCode`` carries one *hook payload*: a small value per hook (``ContinuousExecute``,
``DebounceReduce``, ``TaskOnError``, ``PoolExecute`` …) holding exactly what that hook's
context shows. The payload is typed by the job's state and event types, so it
round-trips through the codec like every other value. The core decides everything a
context shows; in particular ``DebounceReduce.first`` says whether the reducer starts a
new batch, and so sees the definition's ``initial_state`` instead of the stored state.

``ScheduleRetry`` is an alarm like ``ScheduleAlarm``, set because an attempt failed; an
interpreter treats both the same way. (The name ``Retry`` is taken by the retry policy.)
"""

from __future__ import annotations

from typing import Any, ClassVar, Generic, Literal, TypeVar, get_args, get_origin

import attrs

from durable_jobs._errors import ErrorInfo
from durable_jobs._keys import InstanceKey
from durable_jobs._queue import FinishedEvent, QueueItem
from durable_jobs._results import DeadLetter, ReplyValue
from durable_jobs._telemetry import FlushReason, TelemetryEvent
from durable_jobs._time import Instant

__all__ = [
    "PAYLOAD_CLASSES",
    "CancelAlarm",
    "ClearQueue",
    "Command",
    "ContinuousExecute",
    "DebounceExecute",
    "DebounceReduce",
    "DeleteFinished",
    "DeleteQueueItem",
    "Emit",
    "Hook",
    "HookPayload",
    "IdleReason",
    "Persist",
    "PoolExecute",
    "PoolOnDeadLetter",
    "PoolOnEmpty",
    "Purge",
    "PutFinished",
    "PutQueueItem",
    "QueueChange",
    "RecordDeadLetter",
    "ReleaseQueueItem",
    "Reply",
    "RunUserCode",
    "ScheduleAlarm",
    "ScheduleRetry",
    "TakeQueueItem",
    "TaskExecute",
    "TaskOnError",
    "TaskOnEvent",
    "TaskOnIdle",
    "TaskView",
]

S = TypeVar("S")
E = TypeVar("E")
SnapshotT = TypeVar("SnapshotT")

Hook = Literal["execute", "on_event", "on_idle", "on_error", "on_dead_letter", "on_empty"]
IdleReason = Literal["onEvent", "execute", "onError"]


@attrs.frozen
class Persist(Generic[SnapshotT]):
    """Write this snapshot as the instance's stored record."""

    snapshot: SnapshotT


@attrs.frozen
class Purge:
    """Delete the instance: its snapshot and its alarm."""

    key: InstanceKey


@attrs.frozen
class ScheduleAlarm:
    """Set the instance's single alarm to ``at`` (replacing any other)."""

    at: Instant


@attrs.frozen
class ScheduleRetry:
    """Set the alarm to ``at`` for retry ``attempt`` of a failed run."""

    at: Instant
    attempt: int


@attrs.frozen
class CancelAlarm:
    """Remove the instance's alarm, if any."""


@attrs.frozen
class Emit:
    """Record a telemetry event."""

    event: TelemetryEvent


@attrs.frozen
class RecordDeadLetter:
    """Keep a failed payload in the dead-letter store."""

    record: DeadLetter[Any]


@attrs.frozen
class Reply:
    """Answer the client request that started this chain of transitions."""

    value: ReplyValue


# ------------------------------------------------------------------ hook payloads


@attrs.frozen
class ContinuousExecute(Generic[S]):
    """A Continuous ``execute``: the state and the run number."""

    hook: ClassVar[Hook] = "execute"
    state: S
    run_count: int


@attrs.frozen
class DebounceReduce(Generic[E, S]):
    """A Debounce ``on_event`` reducer folding ``event`` into the batch.

    ``first`` is true for the first event of a batch: the reducer then sees the
    definition's ``initial_state`` (or ``None``), never the event posing as state (p-5).
    """

    hook: ClassVar[Hook] = "on_event"
    event: E
    state: S | None
    event_count: int
    first: bool


@attrs.frozen
class DebounceExecute(Generic[S]):
    """A Debounce ``execute`` over one batch."""

    hook: ClassVar[Hook] = "execute"
    state: S
    event_count: int
    started_at: Instant
    flush_reason: FlushReason


@attrs.frozen
class TaskView(Generic[S]):
    """What every Task hook's context shows of the instance."""

    state: S | None
    event_count: int
    execute_count: int
    created_at: Instant
    scheduled_at: Instant | None


@attrs.frozen
class TaskOnEvent(Generic[S, E]):
    """A Task ``on_event`` handling ``event`` (``event_count`` counts it already)."""

    hook: ClassVar[Hook] = "on_event"
    task: TaskView[S]
    event: E


@attrs.frozen
class TaskExecute(Generic[S]):
    """A Task ``execute``."""

    hook: ClassVar[Hook] = "execute"
    task: TaskView[S]


@attrs.frozen
class TaskOnIdle(Generic[S]):
    """A Task ``on_idle`` after a handler left nothing scheduled."""

    hook: ClassVar[Hook] = "on_idle"
    task: TaskView[S]
    reason: IdleReason


@attrs.frozen
class TaskOnError(Generic[S]):
    """A Task ``on_error`` handling the failure of ``on_event`` or ``execute``."""

    hook: ClassVar[Hook] = "on_error"
    task: TaskView[S]
    error: ErrorInfo
    source: Literal["onEvent", "execute"]


@attrs.frozen
class PoolExecute(Generic[E]):
    """A WorkerPool ``execute`` of one event."""

    hook: ClassVar[Hook] = "execute"
    item: QueueItem[E]


@attrs.frozen
class PoolOnDeadLetter(Generic[E]):
    """A WorkerPool ``on_dead_letter`` for an event whose attempts are all used."""

    hook: ClassVar[Hook] = "on_dead_letter"
    item: QueueItem[E]
    error: ErrorInfo


@attrs.frozen
class PoolOnEmpty:
    """A WorkerPool ``on_empty``: the shard just ran out of work."""

    hook: ClassVar[Hook] = "on_empty"
    processed_count: int


HookPayload = (
    ContinuousExecute[Any]
    | DebounceReduce[Any, Any]
    | DebounceExecute[Any]
    | TaskOnEvent[Any, Any]
    | TaskExecute[Any]
    | TaskOnIdle[Any]
    | TaskOnError[Any]
    | PoolExecute[Any]
    | PoolOnDeadLetter[Any]
    | PoolOnEmpty
)
"""What a ``RunUserCode`` carries: one value per hook, with what its context shows."""

PAYLOAD_CLASSES: tuple[type, ...] = tuple(get_origin(m) or m for m in get_args(HookPayload))
"""The payload classes themselves (the members of ``HookPayload``, unparametrised)."""


@attrs.frozen
class RunUserCode:
    """Run the hook ``payload`` names, with a context built from the payload.

    The outcome goes back to ``decide`` carrying ``run_id``; an outcome whose ``run_id``
    is not the instance's current run is stale and ignored.

    >>> run = RunUserCode(InstanceKey("continuous", "j", "u"), run_id=3, attempt=1,
    ...                   payload=ContinuousExecute(state=7, run_count=2))
    >>> run.hook, run.payload.state
    ('execute', 7)
    """

    key: InstanceKey
    run_id: int
    attempt: int
    payload: HookPayload

    @property
    def hook(self) -> Hook:
        """The hook to run: ``execute``, ``on_event``, ``on_idle`` …"""
        return self.payload.hook


# ------------------------------------------------------------------- queue rows


@attrs.frozen
class PutQueueItem(Generic[E]):
    """Store a pending WorkerPool event in the shard's queue (ordered by priority, seq),
    or, when its ``due_at`` is set, a delayed one in the delayed index (by due time)."""

    item: QueueItem[E]


@attrs.frozen
class ReleaseQueueItem(Generic[E]):
    """A delayed event fell due: its delayed row becomes ``item`` (the same event with
    ``due_at`` cleared), pending in the queue by its priority and original ``seq``."""

    item: QueueItem[E]


@attrs.frozen
class DeleteQueueItem:
    """Remove a pending or delayed event from the shard."""

    event_id: str


@attrs.frozen
class TakeQueueItem:
    """The pending event becomes the shard's current one: it leaves the queue as with
    ``DeleteQueueItem``. A ``PutFinished`` for the same id always follows (the event is
    finished one way or another), so an interpreter may keep the row for it."""

    event_id: str


@attrs.frozen
class ClearQueue:
    """Remove every pending and every delayed event of the shard."""


@attrs.frozen
class PutFinished:
    """Remember that an event finished (for idempotent enqueue until it expires)."""

    record: FinishedEvent


@attrs.frozen
class DeleteFinished:
    """Forget expired finished-event records (only those with these exact times)."""

    records: tuple[FinishedEvent, ...]


QueueChange = (
    PutQueueItem[Any]
    | ReleaseQueueItem[Any]
    | DeleteQueueItem
    | TakeQueueItem
    | ClearQueue
    | PutFinished
    | DeleteFinished
)
"""The commands that change a WorkerPool shard's queue rows, applied in order."""

Command = (
    Persist[Any]
    | Purge
    | ScheduleAlarm
    | ScheduleRetry
    | CancelAlarm
    | Emit
    | RecordDeadLetter
    | Reply
    | RunUserCode
    | PutQueueItem[Any]
    | ReleaseQueueItem[Any]
    | DeleteQueueItem
    | TakeQueueItem
    | ClearQueue
    | PutFinished
    | DeleteFinished
)
