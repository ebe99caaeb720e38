"""WorkerPool: the rules of the durable queue. The lifecycle itself is in ``_runtime``.

Theory of operation.

*Shards.* A pool of ``concurrency`` N is N instances (shards), ``workerPool:<name>:<i>``.
Each runs at most one event at a time, so the pool runs at most N at once. The client
routes an event to ``abs(java_hash32(key)) % N`` where the key is the ``partition_key``,
or the event id when there is none, so a re-sent enqueue reaches the shard that can
recognise it. ``java_hash32`` is the original's 32-bit string hash over UTF-16 code
units (Java's ``String.hashCode``), so keys route the same in both implementations.
De-duplication and ordering are per shard: an id re-sent with another partition key can
land elsewhere.

*Storage shape.* Pending events and finished ids are rows the interpreter keeps (see
``_queue``); ``queue_reads`` says which of them an input needs, and ``decide`` changes
them with the queue commands. The snapshot holds only counters, the per-priority counts
used for positions (one pair per distinct priority), and the *current* event.

*Order.* A shard always finishes its current event first: it is never pre-empted, and a
failed event keeps its place while it waits for its retry (strict order within a shard).
Otherwise the next event is the head: highest ``priority`` first, FIFO within one. The
step that takes the head commits ``current = item`` and takes the row in one
transition, before user code runs, and marks the attempt as started; a crash mid-run is
then an interrupted attempt, which counts as failed.

*Idempotent enqueue.* An id that is current, pending, or finished less than
``dedup_retention`` ago is answered ``duplicate=True`` and nothing is written (not even a
new shard). Finished records are pruned as alarms run, at most ``PRUNE_BATCH`` per step,
so the work is bounded.

*Finishing.* Success records the id as finished, counts it processed, and moves on. The
last failed attempt writes the event to the dead-letter store (``job.retryExhausted``,
``job.deadLettered``), records the id as finished, counts it dead-lettered (not
processed), then runs ``on_dead_letter(event, error, ctx)``; that hook's own failure is
recorded as ``job.failed`` and never blocks the shard. When a processing step leaves the
shard with no work, ``on_empty(ctx)`` runs. ``ctx.terminate()`` inside ``execute`` drops
that one event (recorded as finished, neither processed nor dead-lettered, with
``job.terminated``): purging a whole shard from one event's code would lose the others.

*Counters and rows.* The counters can disagree with the rows only through something
outside the core: a pending row deleted by hand, or a store bug. An alarm's head read
is where it shows: counters that promise pending events while the queue holds no
pending row at all would re-arm the alarm at once, for ever (a worker spinning with
nothing logged). The read proves the right values, zero, so the step repairs the
counters to them, leaves no alarm, and reports the repair as a ``workerPool.queueRepaired``
telemetry event (``counted`` is what the counters said). Telemetry, not an error: the
core cannot log and never raises (handlers are total), the event is committed with the
repair in the same transition and reaches whoever watches telemetry on every
interpreter, while a ``StorageError`` would refuse the step and leave a shard whose rows
are fine stuck. The events that were lost cannot be named (their rows are gone); the
ones still stored run as usual. The delayed count is repaired the same way when the
alarm's read of the delayed index proves it too high (no delayed row left after the ones
released). Counters too low (a row inserted by hand) cause no loop: such rows wait until
the next enqueue wakes the shard.

*Delayed and scheduled events.* ``enqueue(..., delay=| at=)`` (Celery's
``countdown``/``eta``, Huey's ``delay``/``eta``) stores the event at once as a *delayed*
row with its ``due_at``, kept apart from the queue in an index by due time; a due time
not after ``now`` means now (the event is queued as usual). Decisions:

- From the moment it is enqueued a delayed event is the shard's like any other: it
  takes a ``seq``, counts against ``max_queue_depth``, is de-duplicated by id (a
  re-sent id is ``duplicate=True``, answered with the stored ``due_at``), ``cancel``
  removes it and ``drain`` removes it too (a drain empties the shard of everything that
  has not started). ``pause`` holds it back like the queue: what falls due while paused
  runs after ``resume``. Its enqueue answer has ``position=None`` (it is not in line).
- It is never processed before it is due. Once due it takes its place by the usual
  rules: priority first, then *original* enqueue order (its ``seq``), as if it had waited
  in the queue all along — with a backlog it runs ahead of the events enqueued after it,
  as a Celery task past its eta runs ahead of the broker's backlog (Huey appends it at
  the tail instead). We take the enqueue order because it does not depend on when a busy
  shard notices the due time, so the order is the same on every interpreter and under
  any load, ``position`` and ``oldest_enqueued_at`` keep meaning what they meant, and a
  steady stream of new events can never hold a due event back.
- Each alarm step first *releases* the delayed events due by ``now`` (at most
  ``DUE_BATCH``, earliest due first; more are released by the steps that follow at
  once), then takes the head of the queue. The snapshot counts them (``delayed``) and
  keeps ``next_due``, the earliest due time or earlier (a cancel does not look for the
  next one; the alarm step's read corrects it). With nothing in line, the alarm is set
  for ``next_due``: the shard sleeps until then, no worker spins. The cost per event is
  one index read and one row update, whatever the queue length.
- ``status`` counts them apart: ``delayed_count`` / ``total_delayed``, not in
  ``pending_count``; a shard holding only delayed events is ``"idle"``. ``on_empty``
  runs only when nothing is left, delayed events included.

*Control.* ``pause`` stops processing (the alarm is removed) and still accepts enqueues;
pausing a shard that does not exist yet creates it paused, so a paused pool stays paused
when its first events arrive. ``resume`` re-arms, honouring a pending backoff. ``cancel``
removes a pending event (``cancelled``), or answers ``already_processing``,
``already_completed`` or ``not_found``. ``drain`` removes every pending event of the
shard and reports how many; the current event, the counters and the finished records
stay. ``max_queue_depth`` caps the pending events of a shard: a full shard refuses the
enqueue (``QueueFullError``) and writes nothing. Enqueue, cancel and the controls are
accepted while an event runs.
"""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

import attrs
from returns.result import Failure, Result, Success

from durable_jobs import _runtime as rt
from durable_jobs._commands import (
    ClearQueue,
    Command,
    DeleteFinished,
    DeleteQueueItem,
    Emit,
    PoolExecute,
    PoolOnDeadLetter,
    PoolOnEmpty,
    PutFinished,
    PutQueueItem,
    ReleaseQueueItem,
    RunUserCode,
    TakeQueueItem,
)
from durable_jobs._definitions import WorkerPoolDefinition
from durable_jobs._errors import Rejection
from durable_jobs._inputs import (
    AlarmFired,
    Input,
    PoolCancel,
    PoolDrain,
    PoolEnqueue,
    PoolEnqueueMany,
    PoolPause,
    PoolResume,
    PoolStatus,
    RunInterrupted,
    TerminateRequested,
    UserCodeFailed,
    UserCodeSucceeded,
)
from durable_jobs._keys import InstanceKey
from durable_jobs._queue import (
    DUE_BATCH,
    PRUNE_BATCH,
    FinishedEvent,
    QueueItem,
    QueueReads,
    QueueView,
)
from durable_jobs._results import (
    PoolCancelResult,
    PoolDrainResult,
    PoolEnqueueManyResult,
    PoolEnqueueResult,
    PoolInstanceStatus,
    PoolPauseResult,
    PoolResumeResult,
)
from durable_jobs._telemetry import PoolQueueRepaired, base_fields
from durable_jobs._time import Instant, to_datetime

__all__ = [
    "DUE_BATCH",
    "PRUNE_BATCH",
    "FinishedEvent",
    "PoolSnapshot",
    "PoolView",
    "QueueItem",
    "QueueReads",
    "QueueView",
    "decide_pool",
    "java_hash32",
    "pool_status",
    "queue_reads",
    "shard_index",
]

E = TypeVar("E")


def java_hash32(text: str) -> int:
    """Java's ``String.hashCode``: ``h = 31 * h + unit`` over UTF-16 code units, as int32.

    >>> java_hash32("hello"), java_hash32("Aa") == java_hash32("BB")
    (99162322, True)
    >>> java_hash32("😀")  # a surrogate pair: two code units
    1772899
    """
    h = 0
    data = text.encode("utf-16-le", "surrogatepass")
    for i in range(0, len(data), 2):
        h = (31 * h + (data[i] | data[i + 1] << 8)) & 0xFFFFFFFF
    return h - 0x1_0000_0000 if h >= 0x8000_0000 else h


def shard_index(key: str, concurrency: int) -> int:
    """The shard a routing key goes to: ``abs(java_hash32(key)) % concurrency``.

    >>> shard_index("polygenelubricants", 7)  # hashes to -2**31
    2
    """
    return abs(java_hash32(key)) % concurrency


@attrs.frozen
class PoolSnapshot(Generic[E]):
    key: InstanceKey
    created_at: Instant
    paused: bool = False
    next_seq: int = 0
    queued: int = 0
    priorities: tuple[tuple[int, int], ...] = ()
    """Pending events per priority, highest priority first (one pair per priority)."""
    current: QueueItem[E] | None = None
    delayed: int = 0
    """Delayed events: stored, not yet released into the queue."""
    next_due: Instant | None = None
    """The earliest due time of the delayed events, or earlier (see the header)."""
    processed_count: int = 0
    dead_lettered_count: int = 0
    attempts: rt.Attempts = rt.FRESH
    in_flight: rt.InFlight | None = None
    alarm_at: Instant | None = None
    version: int = 0


@attrs.frozen
class PoolView(Generic[E]):
    """What ``decide`` takes as a shard's snapshot: the stored record and the loaded rows."""

    snapshot: PoolSnapshot[E] | None
    queue: QueueView[E] = attrs.field(factory=QueueView)


def queue_reads(definition: WorkerPoolDefinition[Any], input_: Input, now: Instant) -> QueueReads:
    """The rows an interpreter must load for ``input_``: an alarm needs the head, the
    delayed events due and the expired finished records, a status the oldest item, an
    enqueue or cancel one id's rows.

    >>> from durable_jobs import WorkerPool
    >>> from durable_jobs.protocol import PoolCancel
    >>> pool = WorkerPool.make(event=str, concurrency=1, execute=print)
    >>> queue_reads(pool, PoolCancel(id="0", event_id="e1"), Instant(0)).event_id
    'e1'
    """
    if isinstance(input_, PoolEnqueue | PoolCancel):
        return QueueReads(event_id=input_.event_id)
    if isinstance(input_, PoolEnqueueMany):
        return QueueReads(event_ids=tuple(dict.fromkeys(e.event_id for e in input_.events)))
    if isinstance(input_, AlarmFired):
        return QueueReads(
            head=True, expired_before=Instant(now - definition.dedup_retention), due_by=now
        )
    if isinstance(input_, PoolStatus):
        return QueueReads(oldest=True)
    return QueueReads()


def _count_change(
    priorities: tuple[tuple[int, int], ...], priority: int, delta: int
) -> tuple[tuple[int, int], ...]:
    counts = dict(priorities)
    left = counts.get(priority, 0) + delta
    if left:
        counts[priority] = left
    else:
        counts.pop(priority, None)
    return tuple(sorted(counts.items(), reverse=True))


def _alarm_at(now: Instant) -> Any:
    def alarm(snapshot: PoolSnapshot[Any]) -> Instant | None:
        if snapshot.paused:
            return None
        if snapshot.attempts.retry_at is not None:
            return snapshot.attempts.retry_at
        if snapshot.current is None and snapshot.queued == 0:
            # Nothing in line: wake for the first delayed event, if any.
            return snapshot.next_due if snapshot.delayed else None
        # Work is waiting: run it now, or keep an earlier alarm that has not fired yet.
        earlier = snapshot.alarm_at
        return earlier if earlier is not None and earlier <= now else now

    return alarm


def _live(
    finished: FinishedEvent | None, definition: WorkerPoolDefinition[Any], now: Instant
) -> bool:
    return finished is not None and finished.finished_at >= now - definition.dedup_retention


def decide_pool(
    definition: WorkerPoolDefinition[E],
    view: PoolView[E] | None,
    input_: Input,
    now: Instant,
) -> Result[rt.Transition[Any], Rejection]:
    view = view if view is not None else PoolView(None)
    snapshot, queue = view.snapshot, view.queue
    alarm = _alarm_at(now)
    match input_:
        case PoolEnqueue():
            return _enqueue(definition, snapshot, queue, input_, now)

        case PoolEnqueueMany():
            return _enqueue_many(definition, snapshot, queue, input_, now)

        case PoolPause(id=index):
            shard = snapshot or _new_shard(definition, index, now)
            paused = rt.evolve(shard, paused=True)
            return Success(rt.commit(alarm, paused, reply=PoolPauseResult(True)))

        case PoolResume():
            if snapshot is None:
                return Success(rt.keep(None, reply=PoolResumeResult(False)))
            resumed = rt.evolve(snapshot, paused=False)
            return Success(rt.commit(alarm, resumed, reply=PoolResumeResult(True)))

        case PoolCancel(event_id=event_id):
            current = None if snapshot is None else snapshot.current
            if current is not None and current.event_id == event_id:
                return Success(
                    rt.keep(snapshot, reply=PoolCancelResult(False, "already_processing"))
                )
            if snapshot is not None and queue.item is not None:
                item = queue.item
                if item.due_at is not None:
                    left = max(snapshot.delayed - 1, 0)
                    smaller = rt.evolve(
                        snapshot, delayed=left, next_due=snapshot.next_due if left else None
                    )
                else:
                    smaller = rt.evolve(
                        snapshot,
                        queued=snapshot.queued - 1,
                        priorities=_count_change(snapshot.priorities, item.priority, -1),
                    )
                return Success(
                    rt.commit(
                        alarm,
                        smaller,
                        [DeleteQueueItem(event_id)],
                        reply=PoolCancelResult(True, "cancelled"),
                    )
                )
            if _live(queue.finished, definition, now):
                return Success(
                    rt.keep(snapshot, reply=PoolCancelResult(False, "already_completed"))
                )
            return Success(rt.keep(snapshot, reply=PoolCancelResult(False, "not_found")))

        case PoolDrain():
            if snapshot is None:
                return Success(rt.keep(None, reply=PoolDrainResult(False, 0)))
            emptied = rt.evolve(snapshot, queued=0, priorities=(), delayed=0, next_due=None)
            reply = PoolDrainResult(True, snapshot.queued + snapshot.delayed)
            return Success(rt.commit(alarm, emptied, [ClearQueue()], reply=reply))

        case PoolStatus(id=index):
            return Success(rt.keep(snapshot, reply=_status(snapshot, queue, int(index))))

        case AlarmFired(at=at):
            if snapshot is None or not rt.alarm_due(snapshot, at):
                return Success(rt.keep(snapshot))
            return Success(_take_next(definition, snapshot, queue, now))

        case UserCodeSucceeded() | UserCodeFailed() | TerminateRequested() | RunInterrupted():
            return Success(
                rt.after_outcome(
                    snapshot, input_, lambda s, r, o: _after_run(definition, s, r, o, now)
                )
            )

        case _:
            return rt.not_for("workerPool", input_)


def _new_shard(
    definition: WorkerPoolDefinition[Any], index: str, now: Instant
) -> PoolSnapshot[Any]:
    return PoolSnapshot(key=InstanceKey("workerPool", definition.name, index), created_at=now)


@attrs.define
class _Counters:
    """A shard's enqueue counters while one step admits events (local to the step)."""

    next_seq: int
    queued: int
    priorities: dict[int, int]
    current_id: str | None
    delayed: int
    next_due: Instant | None

    @classmethod
    def of(cls, shard: PoolSnapshot[Any]) -> _Counters:
        current = None if shard.current is None else shard.current.event_id
        return cls(
            shard.next_seq,
            shard.queued,
            dict(shard.priorities),
            current,
            shard.delayed,
            shard.next_due,
        )

    def apply(self, shard: PoolSnapshot[Any]) -> PoolSnapshot[Any]:
        counts = tuple(sorted(((p, c) for p, c in self.priorities.items() if c), reverse=True))
        return rt.evolve(
            shard,
            next_seq=self.next_seq,
            queued=self.queued,
            priorities=counts,
            delayed=self.delayed,
            next_due=self.next_due,
        )


def _admit(
    definition: WorkerPoolDefinition[Any],
    shard: PoolSnapshot[Any],
    counters: _Counters,
    queue: QueueView[Any],
    request: PoolEnqueue,
    now: Instant,
    created: bool,
) -> Result[tuple[PoolEnqueueResult, QueueItem[Any] | None], Rejection]:
    """The enqueue rule for one event: its answer, and the item to put (``None`` for a
    duplicate). A new event updates ``counters``."""
    running = 0 if counters.current_id is None else 1

    def answer(
        position: int | None, duplicate: bool, due_at: Instant | None = None
    ) -> PoolEnqueueResult:
        return PoolEnqueueResult(
            event_id=request.event_id,
            instance_id=shard.key.instance_id,
            instance_index=int(request.id),
            position=position,
            created=created and not duplicate,
            duplicate=duplicate,
            due_at=None if due_at is None else to_datetime(due_at),
        )

    if counters.current_id == request.event_id:
        return Success((answer(0, True), None))
    if queue.item is not None:
        if queue.item.due_at is not None:
            return Success((answer(None, True, queue.item.due_at), None))
        return Success((answer(running + queue.ahead, True), None))
    if _live(queue.finished, definition, now):
        return Success((answer(None, True), None))
    depth = definition.max_queue_depth
    held = counters.queued + counters.delayed
    if depth is not None and held >= depth:
        return Failure(
            Rejection(
                "queue_full",
                f"{shard.key.instance_id} holds {counters.queued} pending events"
                + (f" and {counters.delayed} delayed" if counters.delayed else "")
                + f" (max_queue_depth={depth})",
            )
        )
    priority = request.priority
    due = _due_at(request, now)
    item = QueueItem(
        event_id=request.event_id,
        event=request.event,
        priority=priority,
        seq=counters.next_seq,
        enqueued_at=now,
        partition_key=request.partition_key,
        due_at=due,
    )
    counters.next_seq += 1
    if due is not None:
        counters.delayed += 1
        earliest = counters.next_due
        counters.next_due = due if earliest is None or due < earliest else earliest
        return Success((answer(None, False, due), item))
    ahead = sum(count for p, count in counters.priorities.items() if p >= priority)
    counters.queued += 1
    counters.priorities[priority] = counters.priorities.get(priority, 0) + 1
    return Success((answer(running + ahead, False), item))


def _due_at(request: PoolEnqueue, now: Instant) -> Instant | None:
    """When the event falls due; ``None`` when it is due now (no delay, or none left)."""
    if request.at is not None:
        due = request.at
    elif request.delay is not None:
        due = Instant(now + request.delay)
    else:
        return None
    return due if due > now else None


def _enqueue(
    definition: WorkerPoolDefinition[Any],
    snapshot: PoolSnapshot[Any] | None,
    queue: QueueView[Any],
    request: PoolEnqueue,
    now: Instant,
) -> Result[rt.Transition[Any], Rejection]:
    shard = snapshot or _new_shard(definition, request.id, now)
    counters = _Counters.of(shard)
    admitted = _admit(definition, shard, counters, queue, request, now, snapshot is None)
    if isinstance(admitted, Failure):
        return admitted
    reply, item = admitted.unwrap()
    if item is None:
        return Success(rt.keep(snapshot, reply=reply))
    grown = counters.apply(shard)
    return Success(rt.commit(_alarm_at(now), grown, [PutQueueItem(item)], reply=reply))


def _enqueue_many(
    definition: WorkerPoolDefinition[Any],
    snapshot: PoolSnapshot[Any] | None,
    queue: QueueView[Any],
    request: PoolEnqueueMany,
    now: Instant,
) -> Result[rt.Transition[Any], Rejection]:
    """``_admit`` for each event in turn, against what the batch has put so far: the
    answers are those of one ``PoolEnqueue`` after another; one rejection rejects all.

    An event found pending is ``ahead`` of its base rank plus every event this batch put
    after it with a higher priority (a batch event has a higher ``seq`` than anything
    stored, so an equal priority queues behind).
    """
    strays = sorted({one.id for one in request.events} - {request.id})
    if strays:
        return Failure(Rejection("invalid", f"events for shards {strays} sent to {request.id}"))
    shard = snapshot or _new_shard(definition, request.id, now)
    counters = _Counters.of(shard)
    running = 0 if counters.current_id is None else 1
    known: dict[str, tuple[QueueItem[Any], int, int]] = {
        item.event_id: (item, ahead, 0) for item, ahead in queue.pending
    }
    finished = {record.event_id: record for record in queue.finished_records}
    put: list[QueueItem[Any]] = []
    replies: list[PoolEnqueueResult] = []
    for one in request.events:
        found = known.get(one.event_id)
        if found is not None:
            pending, base, since = found
            later = sum(
                1
                for other in put[since:]
                if other.due_at is None and other.priority > pending.priority
            )
            view: QueueView[Any] = QueueView(item=pending, ahead=base + later)
        else:
            view = QueueView(finished=finished.get(one.event_id))
        created = snapshot is None and not put
        admitted = _admit(definition, shard, counters, view, one, now, created)
        if isinstance(admitted, Failure):
            return admitted
        reply, item = admitted.unwrap()
        replies.append(reply)
        if item is not None:
            put.append(item)
            known[one.event_id] = (item, (reply.position or 0) - running, len(put))
    reply_value = PoolEnqueueManyResult(tuple(replies))
    if not put:
        return Success(rt.keep(snapshot, reply=reply_value))
    puts = [PutQueueItem(item) for item in put]
    return Success(rt.commit(_alarm_at(now), counters.apply(shard), puts, reply=reply_value))


def pool_status(snapshot: PoolSnapshot[Any]) -> Literal["paused", "processing", "idle"]:
    """``"paused"``; else ``"processing"`` while an event runs or waits; else ``"idle"``."""
    if snapshot.paused:
        return "paused"
    return "processing" if snapshot.current is not None or snapshot.queued > 0 else "idle"


def _status(
    snapshot: PoolSnapshot[Any] | None, queue: QueueView[Any], index: int
) -> PoolInstanceStatus:
    if snapshot is None:
        return PoolInstanceStatus("not_found", index)
    current = snapshot.current
    times = [i.enqueued_at for i in (current, queue.oldest) if i is not None]
    return PoolInstanceStatus(
        pool_status(snapshot),
        index,
        pending_count=snapshot.queued + (1 if current is not None else 0),
        delayed_count=snapshot.delayed,
        processed_count=snapshot.processed_count,
        dead_lettered_count=snapshot.dead_lettered_count,
        current_event_id=None if current is None else current.event_id,
        oldest_enqueued_at=to_datetime(min(times)) if times else None,
    )


def _run(snapshot: PoolSnapshot[Any]) -> RunUserCode:
    """Run the current event."""
    assert snapshot.current is not None
    return rt.run_command(snapshot, PoolExecute(snapshot.current))


def _take_next(
    definition: WorkerPoolDefinition[Any],
    snapshot: PoolSnapshot[Any],
    queue: QueueView[Any],
    now: Instant,
) -> rt.Transition[Any]:
    """An alarm: prune expired records, release the delayed events that fell due, then
    run the current event or take the head."""
    effects: list[Command] = []
    if queue.expired:
        effects.append(DeleteFinished(queue.expired))
    alarm = _alarm_at(now)
    shard = snapshot
    head = queue.head
    repaired, counted = False, 0
    if head is None and (shard.queued or shard.priorities):
        # No pending row at all: the counters are wrong (see the header).
        repaired, counted = True, shard.queued
        shard = rt.evolve(shard, queued=0, priorities=())
    if queue.due or shard.delayed:
        shard, head, lost = _release(shard, queue, head, effects)
        repaired, counted = repaired or lost > 0, counted + lost
    if repaired:
        effects.append(Emit(PoolQueueRepaired(**base_fields(shard.key, now), counted=counted)))
    changes: dict[str, Any] = {}
    if shard.current is None:
        if head is None or shard.paused:
            return rt.commit(alarm, shard, effects)
        effects.append(TakeQueueItem(head.event_id))
        changes = {
            "current": head,
            "queued": shard.queued - 1,
            "priorities": _count_change(shard.priorities, head.priority, -1),
        }
    attempt = rt.pending_attempt(shard)
    return rt.commit_start(
        shard, effects, _run, hook="execute", origin="alarm", now=now, attempt=attempt, **changes
    )


def _release(
    shard: PoolSnapshot[Any],
    queue: QueueView[Any],
    head: QueueItem[Any] | None,
    effects: list[Command],
) -> tuple[PoolSnapshot[Any], QueueItem[Any] | None, int]:
    """Release ``queue.due`` into the queue: the shard after it, the head of the queue
    among the pending and the released events, and how many delayed events the counter
    promised that the read proved missing (counters repaired to the rows, as for the
    queue)."""
    priorities = dict(shard.priorities)
    for item in queue.due:
        released = attrs.evolve(item, due_at=None)
        effects.append(ReleaseQueueItem(released))
        priorities[item.priority] = priorities.get(item.priority, 0) + 1
        if head is None or (-item.priority, item.seq) < (-head.priority, head.seq):
            head = released
    left = max(shard.delayed - len(queue.due), 0)
    lost = 0
    if queue.next_due is None:
        lost, left = left, 0  # no delayed row after these: the counter said more
    counts = tuple(sorted(((p, c) for p, c in priorities.items() if c), reverse=True))
    after = rt.evolve(
        shard,
        queued=shard.queued + len(queue.due),
        priorities=counts,
        delayed=left,
        next_due=queue.next_due if left else None,
    )
    return after, head, lost


def _move_on(
    definition: WorkerPoolDefinition[Any],
    shard: PoolSnapshot[Any],
    effects: list[Command],
    now: Instant,
    **changes: Any,
) -> rt.Transition[Any]:
    """After an event is finished: next event, or ``on_empty`` when the shard is empty."""
    done = rt.settled(shard, current=None, **changes)
    if done.queued == 0 and done.delayed == 0 and definition.on_empty is not None:
        emptying = rt.begin_run(done, hook="on_empty", origin="alarm", now=now)
        command = rt.run_command(emptying, PoolOnEmpty(emptying.processed_count))
        return rt.commit(_alarm_at(now), emptying, effects, run=command)
    return rt.commit(_alarm_at(now), done, effects)


def _after_run(
    definition: WorkerPoolDefinition[Any],
    snapshot: PoolSnapshot[Any],
    run: rt.InFlight,
    outcome: UserCodeSucceeded | UserCodeFailed | TerminateRequested,
    now: Instant,
) -> rt.Transition[Any]:
    key = snapshot.key
    alarm = _alarm_at(now)
    if run.hook != "execute":
        # on_dead_letter or on_empty: recorded like any hook; either way the shard goes on.
        # A terminate there has nothing to drop: the event is already dead-lettered.
        about = None if snapshot.current is None else snapshot.current.event_id
        effects: list[Command] = []
        if isinstance(outcome, UserCodeFailed):
            effects = rt.failure_effects(
                key, run, outcome.error, None, snapshot.processed_count, now, subject=about
            )
        elif isinstance(outcome, UserCodeSucceeded):
            effects = rt.success_effects(key, run, outcome, snapshot.processed_count, now, about)
        done = rt.evolve(snapshot, in_flight=None)
        if run.hook == "on_dead_letter":
            return _move_on(definition, done, effects, now)
        return rt.commit(alarm, done, effects)

    item = snapshot.current
    assert item is not None
    subject = item.event_id
    if isinstance(outcome, UserCodeSucceeded):
        effects = rt.success_effects(key, run, outcome, snapshot.processed_count + 1, now, subject)
        effects.append(PutFinished(FinishedEvent(subject, now, "completed")))
        count = snapshot.processed_count + 1
        return _move_on(definition, snapshot, effects, now, processed_count=count)

    if isinstance(outcome, TerminateRequested):
        effects = rt.terminated_effects(key, outcome.reason, snapshot.processed_count, now, subject)
        effects.append(PutFinished(FinishedEvent(subject, now, "terminated")))
        return _move_on(definition, snapshot, effects, now)

    decision = rt.decide_failure(definition.retry, key, snapshot.attempts, run.attempt, now)
    effects = rt.failure_effects(
        key, run, outcome.error, decision, snapshot.processed_count, now, item.event, subject
    )
    if isinstance(decision, rt.RetryAt):
        return rt.commit(alarm, rt.with_retry(snapshot, decision), effects)
    effects.append(PutFinished(FinishedEvent(subject, now, "dead_lettered")))
    dead = rt.evolve(snapshot, dead_lettered_count=snapshot.dead_lettered_count + 1)
    if definition.on_dead_letter is not None:
        handling = rt.begin_run(
            rt.settled(dead),
            hook="on_dead_letter",
            origin="alarm",
            now=now,
            attempt=decision.attempts,
        )
        assert handling.current is not None
        command = rt.run_command(handling, PoolOnDeadLetter(handling.current, outcome.error))
        return rt.commit(alarm, handling, effects, run=command)
    return _move_on(definition, dead, effects, now)
