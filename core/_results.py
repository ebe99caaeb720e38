"""Results of client calls: frozen values, the values a ``Reply`` command carries.

Theory of operation: the fields are the snake_case of the original's response fields, and
the status strings keep the original's values. Times are aware UTC ``datetime`` values,
computed from ``Instant`` by pure arithmetic. A ``RequestFailed`` reply says that user
code run on behalf of the request failed and nothing handled it; the client raises it as
``UserCodeError`` (or ``ValidationError`` for a state of the wrong type).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

import attrs

from durable_jobs._errors import ErrorInfo
from durable_jobs._telemetry import FlushReason

__all__ = [
    "ContinuousStartResult",
    "ContinuousStatusResult",
    "ContinuousTerminateResult",
    "ContinuousTriggerResult",
    "DeadLetter",
    "DebounceAddResult",
    "DebounceClearResult",
    "DebounceFlushResult",
    "DebounceStatusResult",
    "PoolCancelResult",
    "PoolDrainResult",
    "PoolEnqueueManyResult",
    "PoolEnqueueResult",
    "PoolInstanceStatus",
    "PoolPauseResult",
    "PoolResumeResult",
    "PoolStatusResult",
    "ReplyValue",
    "RequestFailed",
    "StateResult",
    "TaskSendResult",
    "TaskStatusResult",
    "TaskTerminateResult",
    "TaskTriggerResult",
]

P = TypeVar("P")


@attrs.frozen
class ContinuousStartResult:
    """``status`` is ``"running"``: the instance exists (a first run, with
    ``start_immediately``, is due now and runs in a worker)."""

    instance_id: str
    created: bool
    status: Literal["running"]


@attrs.frozen
class ContinuousTriggerResult:
    """``triggered``: a run is due now (a worker runs it); ``False`` when there is no
    instance. ``queued``: the instance was busy with a run (or owed work already), so
    the trigger was queued behind it and runs after it, in order."""

    triggered: bool
    queued: bool = False


@attrs.frozen
class ContinuousTerminateResult:
    terminated: bool
    reason: str | None


@attrs.frozen
class ContinuousStatusResult:
    status: Literal["running", "not_found"]
    next_run_at: datetime | None = None
    run_count: int | None = None
    attempt: int | None = None


@attrs.frozen
class DebounceAddResult:
    """``will_flush_at`` is when the batch is due to flush (now, when this event reached
    ``max_events``: a worker flushes it). ``queued``: a flush was running (or requests
    were queued ahead), so the event was stored behind it and is reduced, in order, when
    it ends; ``event_count`` and ``will_flush_at`` are then 0 and ``None``."""

    instance_id: str
    event_count: int
    will_flush_at: datetime | None
    created: bool
    retry_scheduled: bool = False
    queued: bool = False


@attrs.frozen
class DebounceFlushResult:
    """``flushing``: a flush of the batch's ``event_count`` events is due now (a worker
    runs ``execute``; a pending retry's attempt runs then). ``reason`` is ``"empty"``
    when there was nothing to flush. ``queued``: a flush was running (or requests were
    queued ahead), so this one was queued behind it (``event_count`` 0)."""

    flushing: bool
    event_count: int
    reason: FlushReason | Literal["empty"]
    queued: bool = False


@attrs.frozen
class DebounceClearResult:
    """``queued``: a flush was running (or requests were queued ahead), so the clear was
    queued behind it and drops what is in the batch when its turn comes."""

    cleared: bool
    discarded_events: int
    queued: bool = False


@attrs.frozen
class DebounceStatusResult:
    status: Literal["debouncing", "idle", "not_found"]
    event_count: int | None = None
    started_at: datetime | None = None
    will_flush_at: datetime | None = None


@attrs.frozen
class TaskSendResult:
    """``queued``: a run was in flight (or requests were queued ahead), so the event was
    stored behind it and ``on_event`` runs, in order, in a worker when it ends;
    ``scheduled_at`` is then ``None``."""

    instance_id: str
    created: bool
    scheduled_at: datetime | None
    queued: bool = False


@attrs.frozen
class TaskTriggerResult:
    """``triggered``: ``execute`` is due now (a worker runs it). ``queued``: a run was in
    flight (or requests were queued ahead), so it runs after them, in order."""

    instance_id: str
    triggered: bool
    queued: bool = False


@attrs.frozen
class TaskTerminateResult:
    instance_id: str
    terminated: bool


@attrs.frozen
class TaskStatusResult:
    """``scheduled_at`` is the time a handler asked ``execute`` to run; ``next_run_at`` is
    when ``execute`` runs next, that schedule or a pending retry, whichever is first, and
    ``attempt`` the attempt it will be. A task with either is ``"active"``."""

    status: Literal["active", "idle", "not_found"]
    scheduled_at: datetime | None = None
    created_at: datetime | None = None
    event_count: int | None = None
    execute_count: int | None = None
    next_run_at: datetime | None = None
    attempt: int | None = None


@attrs.frozen
class PoolEnqueueResult:
    """``position`` is the 0-based rank in processing order (the running event is 0);
    ``None`` for a duplicate of an event that already finished, and for a delayed event
    (it is not in line until it is due). ``created`` says the shard was created by this
    call. ``due_at`` is when a delayed event falls due (for a duplicate, the stored
    event's); ``None`` for an event that is in line."""

    event_id: str
    instance_id: str
    instance_index: int
    position: int | None
    created: bool
    duplicate: bool
    due_at: datetime | None = None


@attrs.frozen
class PoolEnqueueManyResult:
    """One ``PoolEnqueueResult`` per event of a ``PoolEnqueueMany``, in its order."""

    results: tuple[PoolEnqueueResult, ...]


@attrs.frozen
class PoolPauseResult:
    paused: bool


@attrs.frozen
class PoolResumeResult:
    resumed: bool


@attrs.frozen
class PoolCancelResult:
    cancelled: bool
    reason: Literal["cancelled", "already_processing", "already_completed", "not_found"]


@attrs.frozen
class PoolDrainResult:
    drained: bool
    events_cleared: int


@attrs.frozen
class PoolInstanceStatus:
    """One shard. ``pending_count`` counts the events in line, the current one included;
    ``delayed_count`` the events waiting for their due time (not in ``pending_count``).
    A shard holding only delayed events is ``"idle"``."""

    status: Literal["processing", "idle", "paused", "not_found"]
    instance_index: int
    pending_count: int = 0
    processed_count: int = 0
    dead_lettered_count: int = 0
    current_event_id: str | None = None
    oldest_enqueued_at: datetime | None = None
    delayed_count: int = 0


@attrs.frozen
class PoolStatusResult:
    """The whole pool: every shard, and sums."""

    instances: tuple[PoolInstanceStatus, ...]
    total_pending: int
    total_processed: int
    total_dead_lettered: int
    active_instances: int
    paused_instances: int
    total_delayed: int = 0


@attrs.frozen
class StateResult:
    """The state of an instance, or ``None`` when there is no instance."""

    state: Any


@attrs.frozen
class RequestFailed:
    """User code run for a request failed and nothing handled it."""

    hook: str
    error: ErrorInfo


@attrs.frozen
class DeadLetter(Generic[P]):
    """A failed payload kept after its last attempt: a state, a batch or an event."""

    job_type: str
    job_name: str
    id: str
    instance_id: str
    payload: P
    error: ErrorInfo
    attempts: int
    failed_at: datetime


ReplyValue = (
    ContinuousStartResult
    | ContinuousTriggerResult
    | ContinuousTerminateResult
    | ContinuousStatusResult
    | DebounceAddResult
    | DebounceFlushResult
    | DebounceClearResult
    | DebounceStatusResult
    | TaskSendResult
    | TaskTriggerResult
    | TaskTerminateResult
    | TaskStatusResult
    | StateResult
    | RequestFailed
    | PoolEnqueueResult
    | PoolEnqueueManyResult
    | PoolPauseResult
    | PoolResumeResult
    | PoolCancelResult
    | PoolDrainResult
    | PoolInstanceStatus
)
