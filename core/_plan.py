"""Commit plans: what one transition (or one chained step) writes, as one value.

Theory of operation: a ``Transition`` lists commands in order. Most of them belong to
one atomic commit: the snapshot (``Persist``/``Purge``), the alarm, the queue rows, the
dead letters and the telemetry. ``plan_of`` sorts a transition's commands, with the one
exhaustive ``match`` over ``Command`` in the library, into a ``CommitPlan`` (what to
write, under which expected version) plus the two commands that are not written: the
``RunUserCode`` to run after the commit and the ``Reply`` to answer with. Interpreters
commit plans; none of them matches over commands itself.

A plan is a plain value the codec turns into JSON and back (``Codec.encode_plan``), so an
interpreter whose storage lives elsewhere (a Durable Object) can send exactly one plan
per request and have it applied there, all or nothing, if the stored version is still
``expected_version``. ``then`` merges the plan of a later transition of the same
instance into one plan (a worker that fires an alarm due at once in the same commit).
"""

from __future__ import annotations

from typing import Any, Generic, Literal, NamedTuple, TypeVar, assert_never

from durable_jobs._commands import (
    CancelAlarm,
    ClearQueue,
    DeleteFinished,
    DeleteQueueItem,
    Emit,
    Persist,
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
)
from durable_jobs._keys import InstanceKey
from durable_jobs._results import DeadLetter, ReplyValue
from durable_jobs._runtime import Transition
from durable_jobs._telemetry import TelemetryEvent
from durable_jobs._time import Instant

__all__ = ["CommitPlan", "SnapshotWrite", "plan_of"]

SnapshotT = TypeVar("SnapshotT")

SnapshotWrite = Literal["keep", "put", "delete"]
"""What a plan does to the instance's stored record: nothing, store ``snapshot``, or
delete the instance (its record and its alarm)."""


class CommitPlan(NamedTuple, Generic[SnapshotT]):
    """Everything one step writes for one instance, applied all or nothing.

    ``expected_version`` is the stored version the step was decided against (``None``:
    no stored instance); a store must refuse the plan if the instance changed since.
    ``alarm_changed`` with ``alarm_at`` sets (or, with ``None``, removes) the alarm.
    ``starts_run`` says that user code runs after this commit: the writer holds the run
    (a lease, in a store shared by several workers). ``queue`` changes apply in order.
    (A frozen named tuple rather than an attrs class: one is built per transition, and
    a tuple is built in a third of the time.)

    >>> from durable_jobs import Debounce, Jobs
    >>> from durable_jobs.protocol import DebounceAdd, decide
    >>> job = Jobs(b=Debounce.make(event=int, execute=print, flush_after="1 s"))["b"]
    >>> transition = decide(job, None, DebounceAdd("u", 1), Instant(0)).unwrap()
    >>> plan, run, reply = plan_of(InstanceKey("debounce", "b", "u"), None, transition)
    >>> plan.write, plan.alarm_at, run, reply.event_count
    ('put', 1000, None, 1)
    """

    key: InstanceKey
    expected_version: int | None
    write: SnapshotWrite = "keep"
    snapshot: SnapshotT | None = None
    alarm_changed: bool = False
    alarm_at: Instant | None = None
    starts_run: bool = False
    queue: tuple[QueueChange, ...] = ()
    telemetry: tuple[TelemetryEvent, ...] = ()
    dead_letters: tuple[DeadLetter[Any], ...] = ()

    def then(self, later: CommitPlan[SnapshotT]) -> CommitPlan[SnapshotT]:
        """One plan doing this one, then ``later`` (the next step of the same instance)."""
        write, snapshot = self.write, self.snapshot
        alarm_changed, alarm_at = self.alarm_changed, self.alarm_at
        if later.write != "keep":
            write, snapshot = later.write, later.snapshot
            if later.write == "delete":
                alarm_changed, alarm_at = False, None  # deleting removes the alarm
            elif self.write == "delete" and not later.alarm_changed:
                alarm_changed, alarm_at = True, None  # a new record after a delete
        if later.alarm_changed:
            alarm_changed, alarm_at = True, later.alarm_at
        return CommitPlan(
            key=self.key,
            expected_version=self.expected_version,
            write=write,
            snapshot=snapshot,
            alarm_changed=alarm_changed,
            alarm_at=alarm_at,
            starts_run=later.starts_run,
            queue=self.queue + later.queue,
            telemetry=self.telemetry + later.telemetry,
            dead_letters=self.dead_letters + later.dead_letters,
        )


def plan_of(
    key: InstanceKey, expected_version: int | None, transition: Transition[SnapshotT]
) -> tuple[CommitPlan[SnapshotT] | None, RunUserCode | None, ReplyValue | None]:
    """The commit plan of ``transition`` (``None`` when it writes nothing), the user code
    to run after the commit, and the reply."""
    write: SnapshotWrite = "keep"
    snapshot: Any = None
    alarm_changed = False
    alarm_at: Instant | None = None
    queue: tuple[QueueChange, ...] = ()
    telemetry: tuple[TelemetryEvent, ...] = ()
    dead: tuple[DeadLetter[Any], ...] = ()
    run: RunUserCode | None = None
    reply: ReplyValue | None = None
    for command in transition.commands:
        match command:  # the cases in the order they are most often met
            case Persist():
                write, snapshot = "put", command.snapshot
            case ScheduleAlarm() | ScheduleRetry():
                alarm_changed, alarm_at = True, command.at
            case Reply():
                reply = command.value
            case Emit():
                telemetry += (command.event,)
            case RunUserCode():
                run = command
            case CancelAlarm():
                alarm_changed, alarm_at = True, None
            case (
                PutQueueItem()
                | TakeQueueItem()
                | PutFinished()
                | DeleteFinished()
                | DeleteQueueItem()
                | ClearQueue()
                | ReleaseQueueItem()
            ):
                queue += (command,)
            case Purge():
                write, snapshot, alarm_changed, alarm_at = "delete", None, False, None
            case RecordDeadLetter():
                dead += (command.record,)
            case _:
                assert_never(command)
    if write == "keep" and not (alarm_changed or queue or telemetry or dead):
        return None, run, reply
    plan: CommitPlan[SnapshotT] = CommitPlan(
        key,
        expected_version,
        write,
        snapshot,
        alarm_changed,
        alarm_at,
        run is not None,
        queue,
        telemetry,
        dead,
    )
    return plan, run, reply
