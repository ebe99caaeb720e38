"""What an interpreter's author needs: the protocol between the core and interpreters.

Users write jobs with the names of ``durable_jobs``; this module holds the rest of the
core's public surface, for code that *runs* jobs:

* the pure entry point ``decide(definition, snapshot, input_, now)`` and its values:
  inputs (client requests, ``AlarmFired``, outcomes of user code), ``Transition``,
  commands, the hook payloads of ``RunUserCode`` and the snapshots;
* ``plan_of``, which sorts a transition's commands into one ``CommitPlan`` (what to
  write, all or nothing) plus the user code to run and the reply;
* the job-type records (``kind_of``, ``JobKind``: snapshot class, ``decide``, context
  factory, status word) and ``job_status``;
* WorkerPool queue rows and reads (``QueueItem``, ``QueueReads``, ``QueueView``,
  ``PoolView``), routing (``java_hash32``, ``shard_index``);
* serialisation (``Codec``, ``make_converter``, ``validate``), time helpers, the
  client's ``Dispatcher`` protocol, and the bounds every value and id is held to
  (``check_id``, ``MAX_ID_LENGTH``, ``MAX_DEPTH``, ``MAX_INT``, ``MAX_DURATION``).

``durable_jobs.interpreters.engine`` builds the step loop on these; a new interpreter is
a store for that engine (see its header).

>>> from durable_jobs import Debounce, Jobs
>>> from durable_jobs import Instant
>>> from durable_jobs.protocol import DebounceAdd, InstanceKey, decide, plan_of
>>> job = Jobs(batcher=Debounce.make(event=int, execute=print, flush_after="1 minute"))
>>> transition = decide(job["batcher"], None, DebounceAdd("u", 5), Instant(0)).unwrap()
>>> plan, run, reply = plan_of(InstanceKey("debounce", "batcher", "u"), None, transition)
>>> plan.write, plan.alarm_at, reply.event_count
('put', 60000, 1)
"""

from durable_jobs._client import INVALID_STATE, Dispatcher
from durable_jobs._commands import (
    PAYLOAD_CLASSES,
    CancelAlarm,
    ClearQueue,
    Command,
    ContinuousExecute,
    DebounceExecute,
    DebounceReduce,
    DeleteFinished,
    DeleteQueueItem,
    Emit,
    Hook,
    HookPayload,
    IdleReason,
    Persist,
    PoolExecute,
    PoolOnDeadLetter,
    PoolOnEmpty,
    Purge,
    PutFinished,
    PutQueueItem,
    QueueChange,
    RecordDeadLetter,
    ReleaseQueueItem,
    Reply,
    RunUserCode,
    ScheduleAlarm,
    ScheduleRetry,
    TakeQueueItem,
    TaskExecute,
    TaskOnError,
    TaskOnEvent,
    TaskOnIdle,
    TaskView,
)
from durable_jobs._context import ContextChanges, HookCall, TerminateSignal
from durable_jobs._continuous import ContinuousSnapshot
from durable_jobs._debounce import DebounceSnapshot
from durable_jobs._decide import Snapshot, decide
from durable_jobs._definitions import DEFINITION_CLASSES
from durable_jobs._errors import Rejection, RejectionKind
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
    PoolCancel,
    PoolDrain,
    PoolEnqueue,
    PoolEnqueueMany,
    PoolPause,
    PoolResume,
    PoolStatus,
    Request,
    RunInterrupted,
    ScheduleChange,
    TaskGetState,
    TaskSend,
    TaskStatus,
    TaskTerminate,
    TaskTrigger,
    TerminateRequested,
    UserCodeFailed,
    UserCodeSucceeded,
)
from durable_jobs._keys import MAX_ID_LENGTH, InstanceKey, JobType, check_id, instance_key
from durable_jobs._kinds import KINDS, JobKind, job_status, kind_named, kind_of
from durable_jobs._plan import CommitPlan, SnapshotWrite, plan_of
from durable_jobs._pool import PoolSnapshot, PoolView, java_hash32, queue_reads, shard_index
from durable_jobs._queue import (
    DUE_BATCH,
    PRUNE_BATCH,
    FinishedEvent,
    QueueItem,
    QueueReads,
    QueueView,
)
from durable_jobs._results import (
    PoolEnqueueManyResult,
    ReplyValue,
    RequestFailed,
    StateResult,
)
from durable_jobs._retry import ConstantBackoff, ExponentialBackoff, LinearBackoff
from durable_jobs._runtime import (
    MAX_INTERRUPTS,
    MAX_PENDING,
    Attempts,
    InFlight,
    Pending,
    Transition,
    owes_work,
)
from durable_jobs._schedule import Cron, Every
from durable_jobs._serialization import (
    EVENT_VERSION_KEY,
    MAX_DEPTH,
    MAX_INT,
    SCHEMA_VERSION,
    STATE_VERSION_KEY,
    Codec,
    make_converter,
    read_snapshot,
    typed,
    validate,
)
from durable_jobs._task import TaskSnapshot
from durable_jobs._time import MAX_DURATION, from_datetime, parse_duration, to_datetime

__all__ = [
    "DEFINITION_CLASSES",
    "DUE_BATCH",
    "EVENT_VERSION_KEY",
    "INVALID_STATE",
    "KINDS",
    "MAX_DEPTH",
    "MAX_DURATION",
    "MAX_ID_LENGTH",
    "MAX_INT",
    "MAX_INTERRUPTS",
    "MAX_PENDING",
    "PAYLOAD_CLASSES",
    "PRUNE_BATCH",
    "SCHEMA_VERSION",
    "STATE_VERSION_KEY",
    "AlarmFired",
    "Attempts",
    "CancelAlarm",
    "ClearQueue",
    "Codec",
    "Command",
    "CommitPlan",
    "ConstantBackoff",
    "ContextChanges",
    "ContinuousExecute",
    "ContinuousGetState",
    "ContinuousSnapshot",
    "ContinuousStart",
    "ContinuousStatus",
    "ContinuousTerminate",
    "ContinuousTrigger",
    "Cron",
    "DebounceAdd",
    "DebounceClear",
    "DebounceExecute",
    "DebounceFlush",
    "DebounceGetState",
    "DebounceReduce",
    "DebounceSnapshot",
    "DebounceStatus",
    "DeleteFinished",
    "DeleteQueueItem",
    "Dispatcher",
    "Emit",
    "Every",
    "ExponentialBackoff",
    "FinishedEvent",
    "Hook",
    "HookCall",
    "HookPayload",
    "IdleReason",
    "InFlight",
    "Input",
    "InstanceKey",
    "JobKind",
    "JobType",
    "LinearBackoff",
    "Outcome",
    "Pending",
    "Persist",
    "PoolCancel",
    "PoolDrain",
    "PoolEnqueue",
    "PoolEnqueueMany",
    "PoolEnqueueManyResult",
    "PoolExecute",
    "PoolOnDeadLetter",
    "PoolOnEmpty",
    "PoolPause",
    "PoolResume",
    "PoolSnapshot",
    "PoolStatus",
    "PoolView",
    "Purge",
    "PutFinished",
    "PutQueueItem",
    "QueueChange",
    "QueueItem",
    "QueueReads",
    "QueueView",
    "RecordDeadLetter",
    "Rejection",
    "RejectionKind",
    "ReleaseQueueItem",
    "Reply",
    "ReplyValue",
    "Request",
    "RequestFailed",
    "RunInterrupted",
    "RunUserCode",
    "ScheduleAlarm",
    "ScheduleChange",
    "ScheduleRetry",
    "Snapshot",
    "SnapshotWrite",
    "StateResult",
    "TakeQueueItem",
    "TaskExecute",
    "TaskGetState",
    "TaskOnError",
    "TaskOnEvent",
    "TaskOnIdle",
    "TaskSend",
    "TaskSnapshot",
    "TaskStatus",
    "TaskTerminate",
    "TaskTrigger",
    "TaskView",
    "TerminateRequested",
    "TerminateSignal",
    "Transition",
    "UserCodeFailed",
    "UserCodeSucceeded",
    "check_id",
    "decide",
    "from_datetime",
    "instance_key",
    "java_hash32",
    "job_status",
    "kind_named",
    "kind_of",
    "make_converter",
    "owes_work",
    "parse_duration",
    "plan_of",
    "queue_reads",
    "read_snapshot",
    "shard_index",
    "to_datetime",
    "typed",
    "validate",
]
