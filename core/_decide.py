"""The single entry point of the core: ``decide``.

Theory of operation: ``decide(definition, snapshot, input_, now)`` reads one instance's
snapshot (``None`` when the instance does not exist), one input and the time, and returns
either ``Success(Transition)``, the next snapshot plus the commands that carry it out, or
``Failure(Rejection)`` when the input cannot apply (nothing is written then). It is pure:
the same arguments always give the same result, it reads no clock, draws no random
number and calls no user function. It dispatches on the definition's job type (its
``JobKind``); each job type module holds only its own rules, on top of the shared
runtime.
"""

from __future__ import annotations

from typing import Any, TypeVar, overload

from returns.result import Result

from durable_jobs._continuous import ContinuousSnapshot
from durable_jobs._debounce import DebounceSnapshot
from durable_jobs._definitions import (
    ContinuousDefinition,
    DebounceDefinition,
    Definition,
    TaskDefinition,
    WorkerPoolDefinition,
)
from durable_jobs._errors import Rejection
from durable_jobs._inputs import Input
from durable_jobs._kinds import kind_of
from durable_jobs._pool import PoolSnapshot, PoolView
from durable_jobs._runtime import Transition
from durable_jobs._task import TaskSnapshot
from durable_jobs._time import Instant

__all__ = ["Snapshot", "decide"]

S = TypeVar("S")
E = TypeVar("E")

Snapshot = (
    ContinuousSnapshot[Any]
    | DebounceSnapshot[Any, Any]
    | TaskSnapshot[Any, Any]
    | PoolSnapshot[Any]
)
"""A stored snapshot. ``decide`` takes a ``PoolView`` (stored snapshot + queue rows) for a
WorkerPool shard and one of these for the other job types."""


@overload
def decide(
    definition: ContinuousDefinition[S],
    snapshot: ContinuousSnapshot[S] | None,
    input_: Input,
    now: Instant,
) -> Result[Transition[ContinuousSnapshot[S] | None], Rejection]: ...
@overload
def decide(
    definition: DebounceDefinition[E, S],
    snapshot: DebounceSnapshot[S, Any] | None,
    input_: Input,
    now: Instant,
) -> Result[Transition[DebounceSnapshot[S, Any] | None], Rejection]: ...
@overload
def decide(
    definition: TaskDefinition[S, E],
    snapshot: TaskSnapshot[S, Any] | None,
    input_: Input,
    now: Instant,
) -> Result[Transition[TaskSnapshot[S, Any] | None], Rejection]: ...
@overload
def decide(
    definition: WorkerPoolDefinition[E],
    snapshot: PoolView[E] | None,
    input_: Input,
    now: Instant,
) -> Result[Transition[PoolSnapshot[E] | None], Rejection]: ...
@overload
def decide(
    definition: Definition,
    snapshot: Snapshot | PoolView[Any] | None,
    input_: Input,
    now: Instant,
) -> Result[Transition[Any], Rejection]: ...
def decide(
    definition: Definition,
    snapshot: Snapshot | PoolView[Any] | None,
    input_: Input,
    now: Instant,
) -> Result[Transition[Any], Rejection]:
    """The next snapshot and commands for ``input_`` at ``now``, or why it cannot apply.

    >>> from durable_jobs import Debounce, Jobs
    >>> from durable_jobs.protocol import DebounceAdd
    >>> batcher = Jobs(b=Debounce.make(event=int, execute=print, flush_after="1 minute"))["b"]
    >>> transition = decide(batcher, None, DebounceAdd(id="u1", event=7), Instant(0)).unwrap()
    >>> transition.snapshot.event_count, [type(c).__name__ for c in transition.commands]
    (1, ['Emit', 'Persist', 'ScheduleAlarm', 'Reply'])
    """
    return kind_of(definition).decide(definition, snapshot, input_, now)
