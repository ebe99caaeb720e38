"""The single entry point of the core: ``decide``.

Theory of operation: ``decide(definition, snapshot, input_, now)`` reads one instance's
snapshot (``None`` when the instance does not exist), one input and the time, and returns
either ``Success(Transition)``, the next snapshot plus the commands that carry it out, or
``Failure(Rejection)`` when the input cannot apply (nothing is written then). It is pure:
the same arguments always give the same result, it reads no clock, draws no random
number and calls no user function. It dispatches on the definition's job type; each job
type module holds only its own rules, on top of the shared runtime.
"""

from __future__ import annotations

from typing import Any

from returns.result import Result

from durable_jobs._continuous import ContinuousSnapshot, decide_continuous
from durable_jobs._debounce import DebounceSnapshot, decide_debounce
from durable_jobs._definitions import (
    ContinuousDefinition,
    DebounceDefinition,
    Definition,
    TaskDefinition,
    WorkerPoolDefinition,
)
from durable_jobs._errors import Rejection
from durable_jobs._inputs import Input
from durable_jobs._pool import PoolSnapshot, PoolView, decide_pool
from durable_jobs._runtime import Transition
from durable_jobs._task import TaskSnapshot, decide_task
from durable_jobs._time import Instant

__all__ = ["Snapshot", "decide"]

Snapshot = ContinuousSnapshot[Any] | DebounceSnapshot[Any] | TaskSnapshot[Any] | PoolSnapshot[Any]
"""A stored snapshot. ``decide`` takes a ``PoolView`` (stored snapshot + queue rows) for a
WorkerPool shard and one of these for the other job types."""


def decide(
    definition: Definition,
    snapshot: Snapshot | PoolView[Any] | None,
    input_: Input,
    now: Instant,
) -> Result[Transition, Rejection]:
    """The next snapshot and commands for ``input_`` at ``now``, or why it cannot apply.

    >>> from durable_jobs import Debounce, DebounceAdd, Jobs
    >>> batcher = Jobs(b=Debounce.make(event=int, execute=print, flush_after="1 minute"))["b"]
    >>> transition = decide(batcher, None, DebounceAdd(id="u1", event=7), Instant(0)).unwrap()
    >>> transition.snapshot.event_count, [type(c).__name__ for c in transition.commands]
    (1, ['Emit', 'Persist', 'ScheduleAlarm', 'Reply'])
    """
    if isinstance(definition, DebounceDefinition):
        assert snapshot is None or isinstance(snapshot, DebounceSnapshot)
        return decide_debounce(definition, snapshot, input_, now)
    if isinstance(definition, ContinuousDefinition):
        assert snapshot is None or isinstance(snapshot, ContinuousSnapshot)
        return decide_continuous(definition, snapshot, input_, now)
    if isinstance(definition, TaskDefinition):
        assert snapshot is None or isinstance(snapshot, TaskSnapshot)
        return decide_task(definition, snapshot, input_, now)
    if isinstance(definition, WorkerPoolDefinition):
        assert snapshot is None or isinstance(snapshot, PoolView)
        return decide_pool(definition, snapshot, input_, now)
    raise TypeError(f"not a job definition: {definition!r}")  # pragma: no cover
