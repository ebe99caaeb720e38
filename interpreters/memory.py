"""The memory interpreter: dicts, a heap of alarms and a virtual clock.

Theory of operation: ``MemoryStore`` holds each instance's snapshot in a dict, its alarm
in a heap, the queue rows of each WorkerPool shard (``ShardQueue``), the telemetry and
the dead letters; the engine (``durable_jobs.interpreters.engine``) runs every step on
it. The clock is a ``ManualClock`` that moves only when asked (``advance``,
``advance_to``), so the interpreter is deterministic and instant: the reference model
for the other interpreters and the engine of simulations, property-based tests and
notebooks. ``advance`` fires every alarm that falls due, in time order, each with the
clock set to its own due time, including alarms that those runs schedule inside the
window; alarms due at the same instant fire in the order they were last set.

Decisions:

* A request from user code to the instance that is running it (re-entrancy) is refused
  with ``ConflictError``; other instances can be called freely from user code.
* ``advance`` may not be called from user code (it raises ``RuntimeError``).
* User code sees the clock frozen at the step's time; runs take no virtual time, so
  ``duration_ms`` is 0.
* ``trace`` keeps every step as ``TraceEntry(time, instance_id, input, commands)``; pass
  ``trace=False`` for long simulations.
"""

from __future__ import annotations

import heapq
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any, Final

import attrs

from durable_jobs import DeadLetter, Definition, Instant, Jobs, TelemetryEvent
from durable_jobs.interpreters._queue import ShardQueue
from durable_jobs.interpreters.clock import ManualClock
from durable_jobs.interpreters.engine import Engine, apply_queue_changes
from durable_jobs.protocol import (
    Command,
    CommitPlan,
    FinishedEvent,
    Input,
    InstanceKey,
    QueueItem,
    QueueReads,
    QueueView,
    Snapshot,
    Transition,
)

__all__ = ["DEFAULT_START", "MemoryInterpreter", "MemoryStore", "TraceEntry"]

DEFAULT_START: Final = datetime(2026, 1, 1, tzinfo=UTC)
_NO_QUEUE: Final = ShardQueue()


@attrs.frozen
class TraceEntry:
    """One decided transition: when, which instance, what came in, what went out."""

    time: datetime
    instance_id: str
    input: Input
    commands: tuple[Command, ...]


class MemoryStore:
    """Instances, alarms, queue rows, telemetry and dead letters in plain containers.

    >>> from durable_jobs import Debounce, Instant, Jobs
    >>> from durable_jobs.protocol import DebounceAdd, InstanceKey, decide, plan_of
    >>> job = Jobs(b=Debounce.make(event=int, execute=print, flush_after="1 s"))["b"]
    >>> key = InstanceKey("debounce", "b", "u")
    >>> plan, _, _ = plan_of(key, None, decide(job, None, DebounceAdd("u", 1), Instant(0)).unwrap())
    >>> store = MemoryStore()
    >>> store.commit(job, plan)
    >>> store.load(job, key.instance_id)[1], store.next_alarm()
    (1, 1000)
    """

    def __init__(self) -> None:
        self.snapshots: dict[str, Snapshot] = {}
        self.telemetry: list[TelemetryEvent] = []
        self.dead: list[DeadLetter[Any]] = []
        self._alarms: dict[str, tuple[Instant, int]] = {}  # the alarm and when it was set
        self._heap: list[tuple[Instant, int, str]] = []
        self._seq = 0
        self._queues: dict[str, ShardQueue] = {}
        self._lock = threading.RLock()

    # ------------------------------------------------------------------- Store
    def transaction(self) -> AbstractContextManager[Any]:
        # Steps are never half-written here (a step fails before it commits), so a
        # transaction only has to keep steps of other threads out: a lock does that.
        return self._lock

    def load(self, definition: Definition, instance_id: str) -> tuple[Snapshot | None, int | None]:
        snapshot = self.snapshots.get(instance_id)
        return snapshot, None if snapshot is None else snapshot.version

    def version(self, instance_id: str) -> int | None:
        snapshot = self.snapshots.get(instance_id)
        return None if snapshot is None else snapshot.version

    def queue_view(
        self, definition: Definition, instance_id: str, reads: QueueReads
    ) -> QueueView[Any]:
        return self._queues.get(instance_id, _NO_QUEUE).view(reads)

    def commit(self, definition: Definition, plan: CommitPlan[Any]) -> None:
        instance_id = plan.key.instance_id
        snapshot = plan.snapshot
        if snapshot is not None:  # written ("put"): a delete carries none
            self.snapshots[instance_id] = snapshot
        elif plan.write == "delete":
            self.snapshots.pop(instance_id, None)
            self._alarms.pop(instance_id, None)
        if plan.alarm_changed:
            if plan.alarm_at is None:
                self._alarms.pop(instance_id, None)
            else:
                self._seq += 1
                self._alarms[instance_id] = (plan.alarm_at, self._seq)
                heapq.heappush(self._heap, (plan.alarm_at, self._seq, instance_id))
        if plan.queue:
            apply_queue_changes(self, instance_id, plan.queue)
        if plan.telemetry:
            self.telemetry.extend(plan.telemetry)
        if plan.dead_letters:
            self.dead.extend(plan.dead_letters)

    def claim(self, until: Instant) -> tuple[InstanceKey, Instant] | None:
        """Take the earliest alarm due at or before ``until`` (it is fired now)."""
        self._drop_stale()
        if not self._heap or self._heap[0][0] > until:
            return None
        at, _, instance_id = heapq.heappop(self._heap)
        del self._alarms[instance_id]
        return self.snapshots[instance_id].key, at

    def next_alarm(self) -> Instant | None:
        self._drop_stale()
        return self._heap[0][0] if self._heap else None

    def dead_letters(self, definition: Definition) -> list[DeadLetter[Any]]:
        return [d for d in self.dead if d.job_name == definition.name]

    # --------------------------------------------------------------- QueueRows
    def put_items(self, instance_id: str, items: Sequence[QueueItem[Any]]) -> None:
        queue = self._queue(instance_id)
        for item in items:
            queue.put(item)

    def delete_item(self, instance_id: str, event_id: str) -> None:
        self._queue(instance_id).delete(event_id)

    def take_item(self, instance_id: str, event_id: str) -> None:
        self._queue(instance_id).delete(event_id)  # the snapshot holds it as current

    def release_item(self, instance_id: str, item: QueueItem[Any]) -> None:
        self._queue(instance_id).release(item)

    def clear_queue(self, instance_id: str) -> None:
        self._queue(instance_id).clear()

    def put_finished(self, instance_id: str, record: FinishedEvent) -> None:
        self._queue(instance_id).put_finished(record)

    def delete_finished(self, instance_id: str, records: tuple[FinishedEvent, ...]) -> None:
        self._queue(instance_id).delete_finished(records)

    def _queue(self, instance_id: str) -> ShardQueue:
        queue = self._queues.get(instance_id)
        if queue is None:
            queue = self._queues[instance_id] = ShardQueue()
        return queue

    def _drop_stale(self) -> None:
        heap = self._heap
        # An entry is live only if it is the latest setting of its instance's alarm: alarms
        # due at the same instant fire in the order they were last set.
        while heap and self._alarms.get(heap[0][2]) != (heap[0][0], heap[0][1]):
            heapq.heappop(heap)


class MemoryInterpreter(Engine):
    """Runs jobs in memory on a virtual clock.

    >>> from durable_jobs import Debounce, Jobs
    >>> seen = []
    >>> batcher = Debounce.make(event=int, flush_after="1 minute",
    ...                         execute=lambda ctx: seen.append(ctx.state))
    >>> sim = MemoryInterpreter(Jobs(batcher=batcher))
    >>> sim.client().debounce(batcher).add(id="u", event=3).event_count
    1
    >>> sim.advance("2 minutes"); seen
    [3]
    """

    def __init__(self, jobs: Jobs, start: datetime | None = None, *, trace: bool = True) -> None:
        store = MemoryStore()
        super().__init__(jobs, store, ManualClock(start or DEFAULT_START), inline=True)
        self._memory = store
        self._observes = trace  # the trace is all _observe does
        self.trace: list[TraceEntry] = []
        """Every step (when ``trace=True``): transitions, and queries that wrote nothing."""

    @property
    def telemetry(self) -> list[TelemetryEvent]:
        """Every telemetry event, in the order it was committed (a list you may clear or
        replace)."""
        return self._memory.telemetry

    @telemetry.setter
    def telemetry(self, events: list[TelemetryEvent]) -> None:
        self._memory.telemetry = events

    def instances(self) -> Iterator[Snapshot]:
        """The stored snapshots (for exploration)."""
        return iter(list(self._memory.snapshots.values()))

    def _observe(self, key: InstanceKey, input_: Input, transition: Transition[Any]) -> None:
        self.trace.append(TraceEntry(self.now(), key.instance_id, input_, transition.commands))
