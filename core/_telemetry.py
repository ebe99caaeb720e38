"""Telemetry events, emitted by the core as ``Emit`` commands.

Theory of operation: every event is a frozen value with the same base fields (``type``,
``job_type``, ``job_name``, ``instance_id``, the user ``id`` and a ``timestamp``) plus its
own fields in snake_case. Events are part of the transition that caused them, so they are
committed with it and delivered even when the run they describe failed (the original lost
those, pitfall p-10). The names follow the original (``job.executed``, ``debounce.flushed``,
…) plus ``job.deadLettered`` and ``workerPool.queueRepaired``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal

import attrs

from durable_jobs._errors import ErrorInfo
from durable_jobs._keys import InstanceKey, JobType
from durable_jobs._time import Instant, to_datetime

__all__ = [
    "DebounceFlushed",
    "DebounceStarted",
    "ExhaustionReason",
    "FlushReason",
    "JobDeadLettered",
    "JobExecuted",
    "JobFailed",
    "JobRetryExhausted",
    "JobStarted",
    "JobTerminated",
    "PoolQueueRepaired",
    "TaskScheduled",
    "TelemetryEvent",
]

FlushReason = Literal["flushAfter", "maxEvents", "quietPeriod", "manual"]
ExhaustionReason = Literal["max_attempts", "max_duration"]


@attrs.frozen(kw_only=True)
class _Base:
    type: ClassVar[str]
    job_type: JobType
    job_name: str
    instance_id: str
    id: str
    timestamp: Instant

    @property
    def at(self) -> datetime:
        """The event time as an aware UTC datetime."""
        return to_datetime(self.timestamp)


def base_fields(key: InstanceKey, now: Instant, subject: str | None = None) -> dict[str, Any]:
    """The base fields of an event about instance ``key`` at ``now``.

    ``id`` is the instance's user id, or ``subject`` when given (a WorkerPool event's id:
    a shard's own id is only its index).
    """
    return {
        "job_type": key.job_type,
        "job_name": key.job_name,
        "instance_id": key.instance_id,
        "id": key.id if subject is None else subject,
        "timestamp": now,
    }


@attrs.frozen(kw_only=True)
class JobStarted(_Base):
    """A Continuous instance was created by ``start``."""

    type: ClassVar[str] = "job.started"
    input: Any


@attrs.frozen(kw_only=True)
class JobExecuted(_Base):
    """A hook of user code finished successfully.

    ``run_count`` is the job's own run counter: a Continuous job's ``run_count``, a
    Task's ``execute_count``, 0 for Debounce (which has none). ``duration_ms`` is how long
    the hook ran on the interpreter's clock (always 0 on the virtual clock). A Debounce
    ``on_event`` reducer is a fold, not a run: its successes emit nothing (one event per
    add would drown the stream); its failures emit ``job.failed``.
    """

    type: ClassVar[str] = "job.executed"
    hook: str
    run_count: int
    attempt: int
    duration_ms: int


@attrs.frozen(kw_only=True)
class JobFailed(_Base):
    """A hook of user code failed; ``will_retry`` says whether a retry is scheduled."""

    type: ClassVar[str] = "job.failed"
    hook: str
    run_count: int
    attempt: int
    will_retry: bool
    next_attempt: int | None
    retry_at: Instant | None
    error: ErrorInfo


@attrs.frozen(kw_only=True)
class JobRetryExhausted(_Base):
    """The last allowed attempt failed, or the retry window closed."""

    type: ClassVar[str] = "job.retryExhausted"
    attempts: int
    reason: ExhaustionReason


@attrs.frozen(kw_only=True)
class JobDeadLettered(_Base):
    """The failed payload was written to the dead-letter store."""

    type: ClassVar[str] = "job.deadLettered"
    attempts: int
    error: ErrorInfo


@attrs.frozen(kw_only=True)
class JobTerminated(_Base):
    """The instance was purged: by the client, by ``ctx.terminate`` or after exhaustion."""

    type: ClassVar[str] = "job.terminated"
    reason: str | None
    run_count: int


@attrs.frozen(kw_only=True)
class DebounceStarted(_Base):
    """The first event of a batch arrived."""

    type: ClassVar[str] = "debounce.started"
    flush_at: Instant


@attrs.frozen(kw_only=True)
class DebounceFlushed(_Base):
    """A batch was executed successfully.

    ``duration_ms`` is the age of the batch (first event to flush), as in the original,
    not the run time of ``execute``.
    """

    type: ClassVar[str] = "debounce.flushed"
    event_count: int
    reason: FlushReason
    duration_ms: int


@attrs.frozen(kw_only=True)
class TaskScheduled(_Base):
    """A task handler scheduled ``execute``."""

    type: ClassVar[str] = "task.scheduled"
    scheduled_at: Instant
    trigger: Literal["event", "execute", "idle", "error"]


@attrs.frozen(kw_only=True)
class PoolQueueRepaired(_Base):
    """A worker pool shard's counters promised pending events its queue rows do not hold
    (a row deleted by hand): they were set to what the rows show, none. ``counted`` is
    what they said. The events still stored are not affected; the ones that were lost
    cannot be named (their rows are gone)."""

    type: ClassVar[str] = "workerPool.queueRepaired"
    counted: int


TelemetryEvent = (
    JobStarted
    | JobExecuted
    | JobFailed
    | JobRetryExhausted
    | JobDeadLettered
    | JobTerminated
    | DebounceStarted
    | DebounceFlushed
    | TaskScheduled
    | PoolQueueRepaired
)
TELEMETRY_CLASSES: tuple[type[TelemetryEvent], ...] = (
    JobStarted,
    JobExecuted,
    JobFailed,
    JobRetryExhausted,
    JobDeadLettered,
    JobTerminated,
    DebounceStarted,
    DebounceFlushed,
    TaskScheduled,
    PoolQueueRepaired,
)
