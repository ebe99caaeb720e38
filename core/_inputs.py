"""Inputs to ``decide``: client requests, fired alarms and outcomes of user code.

Theory of operation: inputs are past-tense facts or requests, all frozen values. Requests
carry the user ``id`` of the instance they address and arrive already validated (the
client structures events and inputs through the converter before building a request).
An outcome of user code names the run it belongs to (``run_id``); an outcome for another
run, or an alarm for a time the instance no longer waits for, is stale and is a no-op.
"""

from __future__ import annotations

from typing import Any, Literal

import attrs

from durable_jobs._errors import ErrorInfo
from durable_jobs._time import Duration, Instant

__all__ = [
    "AlarmFired",
    "ContinuousGetState",
    "ContinuousStart",
    "ContinuousStatus",
    "ContinuousTerminate",
    "ContinuousTrigger",
    "DebounceAdd",
    "DebounceClear",
    "DebounceFlush",
    "DebounceGetState",
    "DebounceStatus",
    "Input",
    "Outcome",
    "PoolCancel",
    "PoolDrain",
    "PoolEnqueue",
    "PoolEnqueueMany",
    "PoolPause",
    "PoolResume",
    "PoolStatus",
    "Request",
    "RunInterrupted",
    "TaskGetState",
    "TaskSend",
    "TaskStatus",
    "TaskTerminate",
    "TaskTrigger",
    "TerminateRequested",
    "UserCodeFailed",
    "UserCodeSucceeded",
]


@attrs.frozen
class ContinuousStart:
    id: str
    input: Any


@attrs.frozen
class ContinuousTrigger:
    """Run ``execute`` now, outside the schedule (in a worker).

    ``wait`` (ms): with a run in flight (or requests queued ahead), ``None`` queues this
    request behind them; a number asks the interpreter to wait that long for the
    instance instead (the core answers busy, the interpreter asks again).
    """

    id: str
    wait: Duration | None = None


@attrs.frozen
class ContinuousTerminate:
    id: str
    reason: str | None = None


@attrs.frozen
class ContinuousStatus:
    id: str


@attrs.frozen
class ContinuousGetState:
    id: str


@attrs.frozen
class DebounceAdd:
    """Fold ``event`` into the batch (the reducer runs in the caller).

    ``wait`` (ms): with a run in flight (or requests queued ahead), ``None`` queues this
    request behind them; a number asks the interpreter to wait that long for the
    instance instead (the core answers busy, the interpreter asks again).
    """

    id: str
    event: Any
    wait: Duration | None = None


@attrs.frozen
class DebounceFlush:
    """Flush the batch now (in a worker).

    ``wait`` (ms): with a run in flight (or requests queued ahead), ``None`` queues this
    request behind them; a number asks the interpreter to wait that long for the
    instance instead (the core answers busy, the interpreter asks again).
    """

    id: str
    wait: Duration | None = None


@attrs.frozen
class DebounceClear:
    """Drop the batch without flushing it.

    ``wait`` (ms): with a run in flight (or requests queued ahead), ``None`` queues this
    request behind them; a number asks the interpreter to wait that long for the
    instance instead (the core answers busy, the interpreter asks again).
    """

    id: str
    wait: Duration | None = None


@attrs.frozen
class DebounceStatus:
    id: str


@attrs.frozen
class DebounceGetState:
    id: str


@attrs.frozen
class TaskSend:
    """Deliver ``event`` to ``on_event`` (in the caller).

    ``wait`` (ms): with a run in flight (or requests queued ahead), ``None`` queues this
    request behind them; a number asks the interpreter to wait that long for the
    instance instead (the core answers busy, the interpreter asks again).
    """

    id: str
    event: Any
    wait: Duration | None = None


@attrs.frozen
class TaskTrigger:
    """Run ``execute`` now (in a worker); the schedule stays.

    ``wait`` (ms): with a run in flight (or requests queued ahead), ``None`` queues this
    request behind them; a number asks the interpreter to wait that long for the
    instance instead (the core answers busy, the interpreter asks again).
    """

    id: str
    wait: Duration | None = None


@attrs.frozen
class TaskTerminate:
    id: str


@attrs.frozen
class TaskStatus:
    id: str


@attrs.frozen
class TaskGetState:
    id: str


@attrs.frozen
class PoolEnqueue:
    """Enqueue ``event`` as ``event_id`` on shard ``id`` (the shard index, as text).

    ``delay`` (from the time the request is decided) or ``at`` (at most one of them)
    holds the event back until it is due; a due time not after ``now`` means now.
    """

    id: str
    event_id: str
    event: Any
    partition_key: str | None = None
    priority: int = 0
    delay: Duration | None = None
    at: Instant | None = None


@attrs.frozen
class PoolEnqueueMany:
    """Enqueue ``events`` on shard ``id`` in one transition: every one of them, or none.

    Each is decided as if it were its own ``PoolEnqueue``, in order (a repeated id is a
    duplicate of the first), so the replies equal those of the one-by-one calls.
    """

    id: str
    events: tuple[PoolEnqueue, ...]


@attrs.frozen
class PoolPause:
    id: str


@attrs.frozen
class PoolResume:
    id: str


@attrs.frozen
class PoolCancel:
    id: str
    event_id: str


@attrs.frozen
class PoolDrain:
    id: str


@attrs.frozen
class PoolStatus:
    id: str


@attrs.frozen
class AlarmFired:
    """The instance's alarm set for ``at`` went off."""

    at: Instant


ScheduleChange = Literal["keep", "set", "cancel"]


@attrs.frozen(kw_only=True)
class UserCodeSucceeded:
    """The hook of run ``run_id`` returned; with what it asked for through its context."""

    run_id: int
    state_set: bool = False
    state: Any = None
    schedule: ScheduleChange = "keep"
    schedule_at: Instant | None = None
    duration_ms: int = 0


@attrs.frozen(kw_only=True)
class UserCodeFailed:
    """The hook of run ``run_id`` raised, returned a ``Failure``, or set an invalid state."""

    run_id: int
    error: ErrorInfo
    duration_ms: int = 0


@attrs.frozen(kw_only=True)
class TerminateRequested:
    """The hook of run ``run_id`` called ``ctx.terminate(reason)``."""

    run_id: int
    reason: str | None = None
    duration_ms: int = 0


@attrs.frozen(kw_only=True)
class RunInterrupted:
    """Run ``run_id`` never reported back (its worker died); it counts as a failure."""

    run_id: int


Outcome = UserCodeSucceeded | UserCodeFailed | TerminateRequested | RunInterrupted

ContinuousRequest = (
    ContinuousStart
    | ContinuousTrigger
    | ContinuousTerminate
    | ContinuousStatus
    | ContinuousGetState
)
DebounceRequest = DebounceAdd | DebounceFlush | DebounceClear | DebounceStatus | DebounceGetState
TaskRequest = TaskSend | TaskTrigger | TaskTerminate | TaskStatus | TaskGetState
PoolRequest = (
    PoolEnqueue | PoolEnqueueMany | PoolPause | PoolResume | PoolCancel | PoolDrain | PoolStatus
)
Request = ContinuousRequest | DebounceRequest | TaskRequest | PoolRequest
Input = Request | AlarmFired | Outcome
