"""durable-jobs: durable Continuous, Debounce and Task jobs on a pure core.

The core (this package) holds every job semantic as pure functions: ``decide`` takes a
snapshot, an input and the time, and returns the next snapshot plus command values.
Interpreters in ``durable_jobs.interpreters`` carry the commands out: in memory with a
virtual clock, and (later) on SQLite and Cloudflare Durable Objects.

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
    Dispatcher,
    TaskClient,
)
from durable_jobs._commands import (
    CancelAlarm,
    Command,
    Emit,
    Hook,
    Persist,
    Purge,
    RecordDeadLetter,
    Reply,
    RunUserCode,
    ScheduleAlarm,
    ScheduleRetry,
)
from durable_jobs._context import (
    ContextChanges,
    ContinuousContext,
    DebounceContext,
    DebounceEventContext,
    TaskContext,
    TerminateSignal,
)
from durable_jobs._continuous import ContinuousSnapshot
from durable_jobs._debounce import DebounceSnapshot
from durable_jobs._decide import Snapshot, decide
from durable_jobs._definitions import (
    Continuous,
    ContinuousDefinition,
    Debounce,
    DebounceDefinition,
    Definition,
    Jobs,
    Task,
    TaskDefinition,
)
from durable_jobs._errors import (
    ConflictError,
    DefinitionError,
    DurableJobsError,
    ErrorInfo,
    JobNotFoundError,
    QueueFullError,
    Rejection,
    StorageError,
    UserCodeError,
    ValidationError,
)
from durable_jobs._inputs import (
    AlarmFired,
    ContinuousGetState,
    ContinuousStart,
    ContinuousStatus,
    ContinuousTerminate,
    ContinuousTrigger,
    DebounceAdd,
    DebounceClear,
    DebounceFlush,
    DebounceGetState,
    DebounceStatus,
    Input,
    Outcome,
    Request,
    RunInterrupted,
    TaskGetState,
    TaskSend,
    TaskStatus,
    TaskTerminate,
    TaskTrigger,
    TerminateRequested,
    UserCodeFailed,
    UserCodeSucceeded,
)
from durable_jobs._keys import InstanceKey, JobType
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
    RequestFailed,
    StateResult,
    TaskSendResult,
    TaskStatusResult,
    TaskTerminateResult,
    TaskTriggerResult,
)
from durable_jobs._retry import (
    Backoff,
    BackoffPolicy,
    ConstantBackoff,
    ExponentialBackoff,
    LinearBackoff,
    Retry,
)
from durable_jobs._runtime import Attempts, InFlight, Transition
from durable_jobs._schedule import Cron, Every, Schedule
from durable_jobs._serialization import Codec, make_converter, validate
from durable_jobs._task import TaskSnapshot
from durable_jobs._telemetry import (
    DebounceFlushed,
    DebounceStarted,
    JobDeadLettered,
    JobExecuted,
    JobFailed,
    JobRetryExhausted,
    JobStarted,
    JobTerminated,
    TaskScheduled,
    TelemetryEvent,
)
from durable_jobs._time import Duration, Instant, from_datetime, parse_duration, to_datetime

__all__ = [
    "AlarmFired",
    "Attempts",
    "Backoff",
    "BackoffPolicy",
    "CancelAlarm",
    "Client",
    "Codec",
    "Command",
    "ConflictError",
    "ConstantBackoff",
    "ContextChanges",
    "Continuous",
    "ContinuousClient",
    "ContinuousContext",
    "ContinuousDefinition",
    "ContinuousGetState",
    "ContinuousSnapshot",
    "ContinuousStart",
    "ContinuousStartResult",
    "ContinuousStatus",
    "ContinuousStatusResult",
    "ContinuousTerminate",
    "ContinuousTerminateResult",
    "ContinuousTrigger",
    "ContinuousTriggerResult",
    "Cron",
    "DeadLetter",
    "Debounce",
    "DebounceAdd",
    "DebounceAddResult",
    "DebounceClear",
    "DebounceClearResult",
    "DebounceClient",
    "DebounceContext",
    "DebounceDefinition",
    "DebounceEventContext",
    "DebounceFlush",
    "DebounceFlushResult",
    "DebounceFlushed",
    "DebounceGetState",
    "DebounceSnapshot",
    "DebounceStarted",
    "DebounceStatus",
    "DebounceStatusResult",
    "Definition",
    "DefinitionError",
    "Dispatcher",
    "DurableJobsError",
    "Duration",
    "Emit",
    "ErrorInfo",
    "Every",
    "ExponentialBackoff",
    "Hook",
    "InFlight",
    "Input",
    "InstanceKey",
    "Instant",
    "JobDeadLettered",
    "JobExecuted",
    "JobFailed",
    "JobNotFoundError",
    "JobRetryExhausted",
    "JobStarted",
    "JobTerminated",
    "JobType",
    "Jobs",
    "LinearBackoff",
    "Outcome",
    "Persist",
    "Purge",
    "QueueFullError",
    "RecordDeadLetter",
    "Rejection",
    "Reply",
    "Request",
    "RequestFailed",
    "Retry",
    "RunInterrupted",
    "RunUserCode",
    "Schedule",
    "ScheduleAlarm",
    "ScheduleRetry",
    "Snapshot",
    "StateResult",
    "StorageError",
    "Task",
    "TaskClient",
    "TaskContext",
    "TaskDefinition",
    "TaskGetState",
    "TaskScheduled",
    "TaskSend",
    "TaskSendResult",
    "TaskSnapshot",
    "TaskStatus",
    "TaskStatusResult",
    "TaskTerminate",
    "TaskTerminateResult",
    "TaskTrigger",
    "TaskTriggerResult",
    "TelemetryEvent",
    "TerminateRequested",
    "TerminateSignal",
    "Transition",
    "UserCodeError",
    "UserCodeFailed",
    "UserCodeSucceeded",
    "ValidationError",
    "decide",
    "from_datetime",
    "make_converter",
    "parse_duration",
    "to_datetime",
    "validate",
]
