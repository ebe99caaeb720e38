"""Command values: what a transition asks an interpreter to do.

Theory of operation: ``decide`` never acts; it returns the next snapshot and a tuple of
these commands, in the order an interpreter must carry them out. Everything but
``RunUserCode`` and ``Reply`` belongs to one atomic commit (snapshot, alarm, dead letters,
telemetry). ``RunUserCode`` comes after the commit: the interpreter runs the named hook
and feeds its outcome back to ``decide`` as a new input. ``Reply`` is the answer to the
client request that started the chain of transitions.

``ScheduleRetry`` is an alarm like ``ScheduleAlarm``, set because an attempt failed; an
interpreter treats both the same way. (The name ``Retry`` is taken by the retry policy.)
"""

from __future__ import annotations

from typing import Any, Literal

import attrs

from durable_jobs._errors import ErrorInfo
from durable_jobs._keys import InstanceKey
from durable_jobs._results import DeadLetter
from durable_jobs._results import Reply as ReplyValue
from durable_jobs._telemetry import FlushReason, TelemetryEvent
from durable_jobs._time import Instant

__all__ = [
    "CancelAlarm",
    "ClearQueue",
    "Command",
    "DeleteFinished",
    "DeleteQueueItem",
    "Emit",
    "Hook",
    "Persist",
    "Purge",
    "PutFinished",
    "PutQueueItem",
    "RecordDeadLetter",
    "Reply",
    "RunUserCode",
    "ScheduleAlarm",
    "ScheduleRetry",
    "TakeQueueItem",
]

Hook = Literal["execute", "on_event", "on_idle", "on_error", "on_dead_letter", "on_empty"]


@attrs.frozen
class Persist:
    """Write this snapshot as the instance's stored record."""

    snapshot: Any


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


@attrs.frozen(kw_only=True)
class RunUserCode:
    """Run ``hook`` of the job's definition with a context built from these fields.

    The outcome goes back to ``decide`` carrying ``run_id``; an outcome whose ``run_id``
    is not the instance's current run is stale and ignored.
    """

    key: InstanceKey
    hook: Hook
    run_id: int
    attempt: int = 1
    state: Any = None
    event: Any = None
    event_count: int = 0
    run_count: int = 0
    execute_count: int = 0
    created_at: Instant | None = None
    started_at: Instant | None = None
    scheduled_at: Instant | None = None
    flush_reason: FlushReason | None = None
    error: ErrorInfo | None = None
    error_source: Literal["onEvent", "execute"] | None = None
    idle_reason: Literal["onEvent", "execute", "onError"] | None = None
    item: Any = None
    """The queue item (``QueueItem``) a WorkerPool hook is about."""


@attrs.frozen
class PutQueueItem:
    """Store a pending WorkerPool event in the shard's queue (ordered by priority, seq)."""

    item: Any


@attrs.frozen
class DeleteQueueItem:
    """Remove a pending event from the shard's queue."""

    event_id: str


@attrs.frozen
class TakeQueueItem:
    """The pending event becomes the shard's current one: it leaves the queue as with
    ``DeleteQueueItem``. A ``PutFinished`` for the same id always follows (the event is
    finished one way or another), so an interpreter may keep the row for it."""

    event_id: str


@attrs.frozen
class ClearQueue:
    """Remove every pending event of the shard's queue."""


@attrs.frozen
class PutFinished:
    """Remember that an event finished (for idempotent enqueue until it expires)."""

    record: Any


@attrs.frozen
class DeleteFinished:
    """Forget expired finished-event records (only those with these exact times)."""

    records: tuple[Any, ...]


Command = (
    Persist
    | Purge
    | ScheduleAlarm
    | ScheduleRetry
    | CancelAlarm
    | Emit
    | RecordDeadLetter
    | Reply
    | RunUserCode
    | PutQueueItem
    | DeleteQueueItem
    | TakeQueueItem
    | ClearQueue
    | PutFinished
    | DeleteFinished
)
