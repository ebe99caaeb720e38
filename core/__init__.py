"""durable-jobs: durable Continuous, Debounce, Task and WorkerPool jobs on a pure core.

This package holds what you write jobs with: the definitions and their registry, retry
policies, the contexts your functions receive, the client results, the errors, the
telemetry events and dead letters. Interpreters run the jobs:
``durable_jobs.interpreters.memory`` (a virtual clock, for tests, simulations and
notebooks) and ``durable_jobs.interpreters.sqlite`` (durable, one file, workers). What
an interpreter's author needs besides (inputs, commands, ``decide``, the codec, commit
plans) is in ``durable_jobs.protocol``.

>>> import attrs
>>> from durable_jobs import Continuous, Jobs
>>> from durable_jobs.interpreters.memory import MemoryInterpreter
>>> @attrs.frozen
... class Counter:
...     count: int
>>> ticker = Continuous.make(
...     state=Counter,
...     schedule=Continuous.every("30 minutes"),
...     execute=lambda ctx: ctx.update_state(lambda s: Counter(s.count + 1)),
... )
>>> sim = MemoryInterpreter(Jobs(ticker=ticker))
>>> client = sim.client()
>>> client.continuous(ticker).start(id="user-1", input=Counter(0)).created
True
>>> sim.advance("2 hours")
>>> client.continuous(ticker).get_state("user-1")
Counter(count=5)
"""

from durable_jobs._client import (
    Client,
    ContinuousClient,
    DebounceClient,
    Enqueue,
    TaskClient,
    Unstructured,
    WorkerPoolClient,
)
from durable_jobs._context import (
    ContinuousContext,
    DebounceContext,
    DebounceEventContext,
    PoolContext,
    PoolDeadLetterContext,
    PoolEmptyContext,
    TaskContext,
)
from durable_jobs._definitions import (
    Continuous,
    ContinuousDefinition,
    Debounce,
    DebounceDefinition,
    Definition,
    Jobs,
    Task,
    TaskDefinition,
    WorkerPool,
    WorkerPoolDefinition,
)
from durable_jobs._errors import (
    BusyError,
    ConflictError,
    DefinitionError,
    DurableJobsError,
    ErrorInfo,
    JobNotFoundError,
    QueueFullError,
    StorageError,
    UserCodeError,
    ValidationError,
)
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
    PoolEnqueueResult,
    PoolInstanceStatus,
    PoolPauseResult,
    PoolResumeResult,
    PoolStatusResult,
    TaskSendResult,
    TaskStatusResult,
    TaskTerminateResult,
    TaskTriggerResult,
)
from durable_jobs._retry import Backoff, BackoffPolicy, Retry
from durable_jobs._schedule import Schedule
from durable_jobs._telemetry import (
    DebounceFlushed,
    DebounceStarted,
    JobDeadLettered,
    JobExecuted,
    JobFailed,
    JobRetryExhausted,
    JobStarted,
    JobTerminated,
    PoolQueueRepaired,
    TaskScheduled,
    TelemetryEvent,
)
from durable_jobs._time import Duration, Instant

__all__ = [
    "Backoff",
    "BackoffPolicy",
    "BusyError",
    "Client",
    "ConflictError",
    "Continuous",
    "ContinuousClient",
    "ContinuousContext",
    "ContinuousDefinition",
    "ContinuousStartResult",
    "ContinuousStatusResult",
    "ContinuousTerminateResult",
    "ContinuousTriggerResult",
    "DeadLetter",
    "Debounce",
    "DebounceAddResult",
    "DebounceClearResult",
    "DebounceClient",
    "DebounceContext",
    "DebounceDefinition",
    "DebounceEventContext",
    "DebounceFlushResult",
    "DebounceFlushed",
    "DebounceStarted",
    "DebounceStatusResult",
    "Definition",
    "DefinitionError",
    "DurableJobsError",
    "Duration",
    "Enqueue",
    "ErrorInfo",
    "Instant",
    "JobDeadLettered",
    "JobExecuted",
    "JobFailed",
    "JobNotFoundError",
    "JobRetryExhausted",
    "JobStarted",
    "JobTerminated",
    "Jobs",
    "PoolCancelResult",
    "PoolContext",
    "PoolDeadLetterContext",
    "PoolDrainResult",
    "PoolEmptyContext",
    "PoolEnqueueResult",
    "PoolInstanceStatus",
    "PoolPauseResult",
    "PoolQueueRepaired",
    "PoolResumeResult",
    "PoolStatusResult",
    "QueueFullError",
    "Retry",
    "Schedule",
    "StorageError",
    "Task",
    "TaskClient",
    "TaskContext",
    "TaskDefinition",
    "TaskScheduled",
    "TaskSendResult",
    "TaskStatusResult",
    "TaskTerminateResult",
    "TaskTriggerResult",
    "TelemetryEvent",
    "Unstructured",
    "UserCodeError",
    "ValidationError",
    "WorkerPool",
    "WorkerPoolClient",
    "WorkerPoolDefinition",
]
