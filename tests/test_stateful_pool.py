"""Stateful test of the WorkerPool on the memory interpreter against a plain model.

Hypothesis interleaves enqueues (random priorities, partition keys, repeated ids, events
that fail a chosen number of times, some delayed), pause/resume, cancel, drain and clock
advances. The model predicts every client answer, and the user functions check, as they
run:

* order: an event's first attempt starts only when it is the best pending event of its
  shard that is due (highest priority, then first enqueued), never before its due time,
  and only on a shard that is not paused;
* at most one event runs per shard at a time, and a shard does not start a new event
  while its current one waits for a retry;
* no event runs again unless its previous attempt failed;
* counts agree with ``status``;
* no event is lost: at the end every accepted event that was not cancelled or drained has
  been processed or dead-lettered.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import attrs
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from durable_jobs import (
    Backoff,
    ErrorInfo,
    Jobs,
    PoolContext,
    PoolDeadLetterContext,
    Retry,
    WorkerPool,
)
from durable_jobs.interpreters.memory import MemoryInterpreter
from durable_jobs.protocol import shard_index

START = datetime(2026, 4, 1, tzinfo=UTC)
SHARDS = 3
MAX_ATTEMPTS = 3


@attrs.frozen
class Job:
    tag: int
    fail: int  # attempts that fail before one succeeds


@attrs.define
class Pending:
    event_id: str
    priority: int
    seq: int
    job: Job
    due: datetime | None = None  # a delayed event's due time


def in_line(pending: Pending, now: datetime) -> bool:
    """Whether a pending event may run at ``now`` (not delayed, or due)."""
    return pending.due is None or pending.due <= now


@attrs.define
class Shard:
    pending: list[Pending] = attrs.field(factory=list)
    current: Pending | None = None
    finished: set[str] = attrs.field(factory=set)
    paused: bool = False
    processed: int = 0
    dead: int = 0
    exists: bool = False


class PoolMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.shards = [Shard() for _ in range(SHARDS)]
        self.seq = 0
        self.tags = 0
        self.accepted: set[int] = set()
        self.removed: set[int] = set()  # cancelled or drained
        self.done: dict[int, str] = {}  # tag -> "processed" | "dead"
        self.running: set[int] = set()

        def execute(ctx: PoolContext[Job]) -> None:
            shard = self.shards[ctx.instance_index]
            assert ctx.instance_index not in self.running, "two events at once on one shard"
            assert not shard.paused, "a paused shard ran an event"
            job = ctx.event
            if ctx.attempt == 1:
                assert shard.current is None, "a new event overtook one waiting for its retry"
                ready = [p for p in shard.pending if in_line(p, ctx.now)]
                assert ready, "an event ran before it was due"
                best = min(ready, key=lambda p: (-p.priority, p.seq))
                assert best.job == job, "not the best pending event of its shard"
                shard.pending.remove(best)
                shard.current = best
            else:
                assert shard.current is not None
                assert shard.current.job == job
                assert job.fail >= ctx.attempt - 1, "ran again although the last attempt succeeded"
            self.running.add(ctx.instance_index)
            try:
                if ctx.attempt <= job.fail:
                    if ctx.attempt == MAX_ATTEMPTS:
                        self._finish(shard, "dead")
                    raise RuntimeError(f"attempt {ctx.attempt} of {job.tag} fails")
                self._finish(shard, "processed")
            finally:
                self.running.discard(ctx.instance_index)

        def on_dead_letter(job: Job, error: ErrorInfo, ctx: PoolDeadLetterContext[Job]) -> None:
            assert self.done.get(job.tag) == "dead"
            assert ctx.attempts == MAX_ATTEMPTS

        self.pool = WorkerPool.make(
            event=Job,
            concurrency=SHARDS,
            execute=execute,
            on_dead_letter=on_dead_letter,
            retry=Retry(
                max_attempts=MAX_ATTEMPTS, backoff=Backoff.constant("10 seconds"), jitter=False
            ),
            dedup_retention="30 days",
        )
        self.sim = MemoryInterpreter(Jobs(pool=self.pool), start=START, trace=False)
        self.client = self.sim.client().worker_pool(self.pool)

    def _finish(self, shard: Shard, how: str) -> None:
        current = shard.current
        assert current is not None
        assert current.job.tag not in self.done
        self.done[current.job.tag] = how
        shard.finished.add(current.event_id)
        if how == "processed":
            shard.processed += 1
        else:
            shard.dead += 1
        shard.current = None

    @rule(
        event_id=st.sampled_from(["a", "b", "c", "d", "e", "f"]),
        priority=st.integers(0, 2),
        partition_key=st.sampled_from([None, None, "p1", "p2"]),
        fail=st.sampled_from([0, 0, 0, 1, 2, 3]),
        delay=st.sampled_from([None, None, None, 0, 5, 12, 40]),
    )
    def enqueue(
        self,
        event_id: str,
        priority: int,
        partition_key: str | None,
        fail: int,
        delay: int | None,
    ) -> None:
        index = shard_index(partition_key if partition_key is not None else event_id, SHARDS)
        shard = self.shards[index]
        known = {p.event_id for p in shard.pending}
        if shard.current is not None:
            known.add(shard.current.event_id)
        duplicate = event_id in known or event_id in shard.finished
        self.tags += 1
        job = Job(self.tags, fail)
        wait = None if delay is None else timedelta(seconds=delay)
        result = self.client.enqueue(
            id=event_id, event=job, partition_key=partition_key, priority=priority, delay=wait
        )
        now = self.sim.now()
        assert result.instance_index == index
        assert result.duplicate == duplicate
        if duplicate:
            return
        due = None if wait is None or wait <= timedelta(0) else now + wait
        assert result.due_at == due
        running = shard.current is not None
        if due is not None:
            assert result.position is None
        else:
            # Events that fell due are in line once the shard's alarm released them (at
            # their due time, unless the shard is paused or waits for a retry).
            surely = sum(1 for p in shard.pending if p.due is None and p.priority >= priority)
            maybe = sum(1 for p in shard.pending if in_line(p, now) and p.priority >= priority)
            assert result.position is not None
            assert surely + running <= result.position <= maybe + running
        assert result.created == (not shard.exists)
        shard.exists = True
        self.seq += 1
        shard.pending.append(Pending(event_id, priority, self.seq, job, due))
        self.accepted.add(job.tag)

    @rule(index=st.sampled_from([None, 0, 1, 2]), pause=st.booleans())
    def pause_or_resume(self, index: int | None, pause: bool) -> None:
        targets = range(SHARDS) if index is None else [index]
        if pause:
            assert self.client.pause(index).paused
            for i in targets:
                self.shards[i].paused = True
                self.shards[i].exists = True
        else:
            resumed = self.client.resume(index).resumed
            assert resumed == all(self.shards[i].exists for i in targets)
            for i in targets:
                self.shards[i].paused = False

    @rule(event_id=st.sampled_from(["a", "b", "c", "d", "e", "f", "zz"]))
    def cancel(self, event_id: str) -> None:
        reasons = []
        for shard in self.shards:
            if shard.current is not None and shard.current.event_id == event_id:
                reasons.append("already_processing")
            elif any(p.event_id == event_id for p in shard.pending):
                reasons.append("cancelled")
            elif event_id in shard.finished:
                reasons.append("already_completed")
        order = ["cancelled", "already_processing", "already_completed"]
        expected = min(reasons, key=order.index) if reasons else "not_found"
        result = self.client.cancel(event_id)
        assert result.reason == expected
        if expected == "cancelled":
            for shard in self.shards:
                for p in [p for p in shard.pending if p.event_id == event_id]:
                    shard.pending.remove(p)
                    self.removed.add(p.job.tag)

    @rule(index=st.sampled_from([None, 0, 1, 2]))
    def drain(self, index: int | None) -> None:
        targets = range(SHARDS) if index is None else [index]
        expected = sum(len(self.shards[i].pending) for i in targets)
        result = self.client.drain(index)
        assert result.events_cleared == expected
        for i in targets:
            self.removed.update(p.job.tag for p in self.shards[i].pending)
            self.shards[i].pending.clear()

    @rule(seconds=st.integers(0, 25))
    def advance(self, seconds: int) -> None:
        self.sim.advance(timedelta(seconds=seconds))

    @invariant()
    def counts_agree_with_status(self) -> None:
        status = self.client.status()
        now = self.sim.now()
        for i, shard in enumerate(self.shards):
            got = status.instances[i]
            if not shard.exists:
                assert got.status == "not_found"
                continue
            running = shard.current is not None
            # A delayed event counts as delayed until its shard's alarm releases it.
            surely_delayed = sum(1 for p in shard.pending if not in_line(p, now))
            maybe_delayed = sum(1 for p in shard.pending if p.due is not None)
            assert surely_delayed <= got.delayed_count <= maybe_delayed
            assert got.pending_count + got.delayed_count == len(shard.pending) + running
            assert (got.processed_count, got.dead_lettered_count) == (shard.processed, shard.dead)
            current = None if shard.current is None else shard.current.event_id
            assert got.current_event_id == current
            if shard.paused:
                assert got.status == "paused"
            elif running or any(p.due is None for p in shard.pending):
                assert got.status == "processing"
            elif not any(in_line(p, now) for p in shard.pending):
                assert got.status == "idle"
        assert status.total_delayed == sum(s.delayed_count for s in status.instances)
        assert status.total_processed == sum(s.processed for s in self.shards)
        assert status.total_dead_lettered == sum(s.dead for s in self.shards)
        assert len(self.client.dead_letters()) == status.total_dead_lettered

    def teardown(self) -> None:
        self.client.resume()
        for shard in self.shards:
            shard.paused = False
        self.sim.advance("1 hour")
        finished = set(self.done)
        assert finished == self.accepted - self.removed, "an accepted event was lost"
        assert finished.isdisjoint(self.removed)


TestWorkerPool = PoolMachine.TestCase
TestWorkerPool.settings = settings(
    max_examples=max(80, settings().max_examples // 4), stateful_step_count=50, deadline=None
)
