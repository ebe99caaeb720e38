"""One record per job type: what the rest of the library needs to know about it.

Theory of operation: a ``JobKind`` gathers, for one job type, its definition class, its
snapshot class, its ``decide`` function, its context factory (``HookCall`` for a
``RunUserCode``), its status word, and, for a WorkerPool, the queue rows an input needs
(``reads``). ``kind_of(definition)`` and ``kind_named(job_type)`` find the record;
``decide``, the codec and the interpreters go through it instead of asking
``isinstance`` of each definition class in turn. A value that is not one of the four
definitions (or a job type nobody registered) is an error, never a silent default.

``job_status(snapshot)`` is the one place a stored snapshot becomes the status word the
client shows (``"running"``, ``"debouncing"``, ``"active"``, ``"processing"`` …);
``durable-jobs inspect`` uses it too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import attrs
from returns.result import Result

from durable_jobs._context import (
    HookCall,
    continuous_call,
    debounce_call,
    pool_call,
    task_call,
)
from durable_jobs._continuous import ContinuousSnapshot, continuous_status, decide_continuous
from durable_jobs._debounce import DebounceSnapshot, debounce_status, decide_debounce
from durable_jobs._definitions import (
    ContinuousDefinition,
    DebounceDefinition,
    Definition,
    TaskDefinition,
    WorkerPoolDefinition,
)
from durable_jobs._errors import Rejection
from durable_jobs._inputs import Input
from durable_jobs._keys import JobType
from durable_jobs._pool import PoolSnapshot, decide_pool, pool_status, queue_reads
from durable_jobs._queue import QueueReads
from durable_jobs._runtime import Transition
from durable_jobs._task import TaskSnapshot, decide_task, task_status
from durable_jobs._time import Instant

__all__ = ["KINDS", "JobKind", "job_status", "kind_named", "kind_of"]


@attrs.frozen
class JobKind:
    """What the library knows about one job type.

    >>> kind_named("debounce").snapshot.__name__
    'DebounceSnapshot'
    """

    job_type: JobType
    definition: type
    snapshot: type
    """The snapshot class (generic in the job's state or event type)."""
    decide: Callable[[Any, Any, Input, Instant], Result[Transition[Any], Rejection]]
    call: Callable[[Any, Any, Instant], HookCall]
    """The context factory: how to call the hook a ``RunUserCode`` names."""
    status: Callable[[Any], str]
    reads: Callable[[Any, Input, Instant], QueueReads] | None = None
    """For a job whose instances own queue rows (WorkerPool): the rows an input needs.
    ``decide`` then takes a ``PoolView`` of the snapshot and those rows."""


KINDS: Final = (
    JobKind(
        "continuous",
        ContinuousDefinition,
        ContinuousSnapshot,
        decide_continuous,
        continuous_call,
        continuous_status,
    ),
    JobKind(
        "debounce",
        DebounceDefinition,
        DebounceSnapshot,
        decide_debounce,
        debounce_call,
        debounce_status,
    ),
    JobKind("task", TaskDefinition, TaskSnapshot, decide_task, task_call, task_status),
    JobKind(
        "workerPool",
        WorkerPoolDefinition,
        PoolSnapshot,
        decide_pool,
        pool_call,
        pool_status,
        reads=queue_reads,
    ),
)
_BY_CLASS: Final[dict[type, JobKind]] = {kind.definition: kind for kind in KINDS}
_BY_TYPE: Final[dict[str, JobKind]] = {kind.job_type: kind for kind in KINDS}


def kind_of(definition: Definition) -> JobKind:
    """The record of ``definition``'s job type.

    >>> from durable_jobs import Task
    >>> kind_of(Task.make(state=int, event=int, on_event=print, execute=print)).job_type
    'task'
    >>> kind_of("task")
    Traceback (most recent call last):
    ...
    TypeError: not a job definition: 'task'
    """
    kind = _BY_CLASS.get(type(definition))
    if kind is None:
        raise TypeError(f"not a job definition: {definition!r}")
    return kind


def kind_named(job_type: str) -> JobKind:
    """The record of the job type named ``job_type`` (as stored: ``"workerPool"`` …).

    >>> kind_named("workerPool").reads is not None  # a pool's decide sees queue rows
    True
    """
    kind = _BY_TYPE.get(job_type)
    if kind is None:
        raise LookupError(f"unknown job type {job_type!r}")
    return kind


def job_status(snapshot: Any) -> str:
    """The status word the client shows for a stored snapshot.

    >>> from durable_jobs import Instant
    >>> from durable_jobs.protocol import InstanceKey
    >>> job_status(DebounceSnapshot(InstanceKey("debounce", "b", "u"), Instant(0), event_count=2))
    'debouncing'
    """
    return kind_named(snapshot.key.job_type).status(snapshot)
