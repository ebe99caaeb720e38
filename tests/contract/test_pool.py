"""Contract: WorkerPool, every point of its issue, on every interpreter."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import attrs
import pytest

from durable_jobs import (
    Backoff,
    Enqueue,
    ErrorInfo,
    JobFailed,
    Jobs,
    JobTerminated,
    PoolContext,
    PoolDeadLetterContext,
    PoolEmptyContext,
    QueueFullError,
    Retry,
    Unstructured,
    ValidationError,
    WorkerPool,
    WorkerPoolDefinition,
)
from durable_jobs.protocol import PRUNE_BATCH, DeleteFinished, shard_index
from tests.contract.conftest import START, Make, types


@attrs.frozen
class Mail:
    to: str
    fail: int = 0  # how many attempts fail before it goes through


Run = tuple[str, int, int]  # event id, shard, attempt


def mailer(
    concurrency: int = 1, **options: Any
) -> tuple[WorkerPoolDefinition[Mail], list[Run], list[PoolContext[Mail]]]:
    runs: list[Run] = []
    contexts: list[PoolContext[Mail]] = []

    def execute(ctx: PoolContext[Mail]) -> None:
        runs.append((ctx.event_id, ctx.instance_index, ctx.attempt))
        contexts.append(ctx)
        if ctx.attempt <= ctx.event.fail:
            raise ConnectionError(f"{ctx.event.to} unreachable")

    options.setdefault(
        "retry", Retry(max_attempts=3, backoff=Backoff.constant("1 minute"), jitter=False)
    )
    pool = WorkerPool.make(event=Mail, concurrency=concurrency, execute=execute, **options)
    return pool, runs, contexts


def test_enqueue_then_the_alarm_runs_execute_once_with_its_context(make: Make) -> None:
    pool, runs, contexts = mailer()
    sim = make(Jobs(mail=pool))
    client = sim.client().worker_pool(pool)
    result = client.enqueue(id="m1", event=Mail("ada"), partition_key="ada", priority=3)
    assert result.event_id == "m1"
    assert result.instance_index == 0
    assert result.instance_id == "workerPool:mail:0"
    assert (result.position, result.created, result.duplicate) == (0, True, False)
    sim.advance("1 second")
    assert runs == [("m1", 0, 1)]
    ctx = contexts[0]
    assert (ctx.event, ctx.event_id, ctx.attempt, ctx.is_retry) == (Mail("ada"), "m1", 1, False)
    assert (ctx.instance_index, ctx.instance_id, ctx.job_name) == (0, "workerPool:mail:0", "mail")
    assert (ctx.enqueued_at, ctx.priority, ctx.partition_key, ctx.now) == (START, 3, "ada", START)
    status = client.instance_status(0)
    assert status.status == "idle"
    assert (status.pending_count, status.processed_count, status.dead_lettered_count) == (0, 1, 0)
    executed = [e for e in sim.telemetry if e.type == "job.executed"]
    assert [(e.id, e.instance_id) for e in executed] == [("m1", "workerPool:mail:0")]


def test_routing_follows_java_hash32_of_the_partition_key_or_the_id(make: Make) -> None:
    pool, runs, _ = mailer(concurrency=7)
    sim = make(Jobs(mail=pool))
    client = sim.client().worker_pool(pool)
    by_key = client.enqueue(id="a", event=Mail("x"), partition_key="polygenelubricants")
    assert by_key.instance_index == shard_index("polygenelubricants", 7) == 2
    by_id = client.enqueue(id="hello", event=Mail("x"))
    assert by_id.instance_index == 99162322 % 7
    same_key = [
        client.enqueue(id=f"k{i}", event=Mail("x"), partition_key="tenant-9") for i in range(5)
    ]
    assert len({r.instance_index for r in same_key}) == 1
    sim.advance("1 second")
    assert {shard for _, shard, _ in runs} == {2, 99162322 % 7, same_key[0].instance_index}


def test_priority_first_then_fifo_and_the_current_event_is_never_preempted(make: Make) -> None:
    pool, runs, _ = mailer()
    sim = make(Jobs(mail=pool))
    client = sim.client().worker_pool(pool)
    client.enqueue(id="slow", event=Mail("s", fail=1))
    sim.advance("1 second")  # "slow" failed once: it waits for its retry at the head
    positions = [
        client.enqueue(id="low-1", event=Mail("a")).position,
        client.enqueue(id="high-1", event=Mail("b"), priority=10).position,
        client.enqueue(id="low-2", event=Mail("c")).position,
        client.enqueue(id="high-2", event=Mail("d"), priority=10).position,
        client.enqueue(id="mid", event=Mail("e"), priority=5).position,
    ]
    assert positions == [1, 1, 3, 2, 3]
    assert client.enqueue(id="low-1", event=Mail("a")).position == 4  # duplicate: its rank
    sim.advance("2 minutes")
    assert [r[0] for r in runs] == ["slow", "slow", "high-1", "high-2", "mid", "low-1", "low-2"]
    assert runs[1] == ("slow", 0, 2)


def test_duplicates_are_answered_without_writing_until_retention_ends(make: Make) -> None:
    pool, runs, _ = mailer(dedup_retention="1 hour")
    sim = make(Jobs(mail=pool))
    client = sim.client().worker_pool(pool)
    client.enqueue(id="m1", event=Mail("a", fail=1))
    pending = client.enqueue(id="m1", event=Mail("other"))
    assert (pending.duplicate, pending.position, pending.created) == (True, 0, False)
    sim.advance("1 second")
    current = client.enqueue(id="m1", event=Mail("other"))
    assert (current.duplicate, current.position) == (True, 0)
    sim.advance("1 minute")
    finished = client.enqueue(id="m1", event=Mail("other"))
    assert (finished.duplicate, finished.position) == (True, None)
    assert client.instance_status(0).pending_count == 0
    sim.advance("1 hour")
    again = client.enqueue(id="m1", event=Mail("again"))
    assert (again.duplicate, again.position) == (False, 0)
    sim.advance("1 second")
    assert [r[0] for r in runs] == ["m1", "m1", "m1"]
    assert client.status().total_processed == 2


def test_a_duplicate_writes_nothing_not_even_a_shard(make: Make) -> None:
    pool, _, _ = mailer(concurrency=3)
    sim = make(Jobs(mail=pool))
    client = sim.client().worker_pool(pool)
    first = client.enqueue(id="x", event=Mail("a"))
    trace_len = len(getattr(sim, "trace", []))
    again = client.enqueue(id="x", event=Mail("b"))
    assert (again.duplicate, again.created, again.instance_index) == (
        True,
        False,
        first.instance_index,
    )
    assert client.status().total_pending == 1
    assert [s.status for s in client.status().instances].count("not_found") == 2
    if hasattr(sim, "trace"):
        (step,) = sim.trace[trace_len : trace_len + 1]
        assert [type(c).__name__ for c in step.commands] == ["Reply"]


def test_expired_finished_records_are_pruned_a_bounded_batch_at_a_time(make: Make) -> None:
    pool, _, _ = mailer(dedup_retention="10 seconds")
    sim = make(Jobs(mail=pool))
    client = sim.client().worker_pool(pool)
    for i in range(80):
        client.enqueue(id=f"m{i}", event=Mail("a"))
    sim.advance("1 second")
    assert client.instance_status(0).processed_count == 80
    sim.advance("1 minute")
    for i in range(3):
        client.enqueue(id=f"late{i}", event=Mail("b"))
        sim.advance("1 second")
    trace = getattr(sim, "trace", None)
    if trace is not None:  # the memory interpreter shows the commands
        pruned = [
            len(c.records) for t in trace for c in t.commands if isinstance(c, DeleteFinished)
        ]
        assert pruned
        assert max(pruned) <= PRUNE_BATCH
        assert sum(pruned) == 80
    # An expired id is accepted as new again.
    assert client.enqueue(id="m0", event=Mail("a")).duplicate is False


def test_exhaustion_calls_on_dead_letter_records_it_and_moves_on(make: Make) -> None:
    handled: list[tuple[Mail, ErrorInfo, int, str]] = []

    def on_dead_letter(event: Mail, error: ErrorInfo, ctx: PoolDeadLetterContext[Mail]) -> None:
        handled.append((event, error, ctx.attempts, ctx.event_id))
        raise RuntimeError("the alerting service is down too")

    pool, runs, _ = mailer(
        on_dead_letter=on_dead_letter,
        retry=Retry(max_attempts=2, backoff=Backoff.constant("10 seconds"), jitter=False),
    )
    sim = make(Jobs(mail=pool))
    client = sim.client().worker_pool(pool)
    client.enqueue(id="doomed", event=Mail("x", fail=5))
    client.enqueue(id="next", event=Mail("y"))
    sim.advance("30 seconds")
    assert [r[0] for r in runs] == ["doomed", "doomed", "next"]
    assert handled == [
        (Mail("x", fail=5), ErrorInfo("ConnectionError", "x unreachable"), 2, "doomed")
    ]
    (dead,) = client.dead_letters()
    assert (dead.id, dead.payload, dead.attempts) == ("doomed", Mail("x", fail=5), 2)
    assert dead.error == ErrorInfo("ConnectionError", "x unreachable")
    status = client.instance_status(0)
    assert (status.processed_count, status.dead_lettered_count) == (1, 1)
    assert types(sim.telemetry)[:6] == [
        "job.failed",
        "job.failed",
        "job.retryExhausted",
        "job.deadLettered",
        "job.failed",  # on_dead_letter's own failure, recorded
        "job.executed",
    ]
    assert client.status().total_dead_lettered == 1
    hook_failure = [e for e in sim.telemetry if isinstance(e, JobFailed)][-1]
    assert (hook_failure.hook, hook_failure.id) == ("on_dead_letter", "doomed")


def test_on_empty_runs_when_a_processing_step_leaves_no_work(make: Make) -> None:
    empties: list[tuple[int, int]] = []

    def on_empty(ctx: PoolEmptyContext) -> None:
        empties.append((ctx.instance_index, ctx.processed_count))

    pool, _, _ = mailer(on_empty=on_empty)
    sim = make(Jobs(mail=pool))
    client = sim.client().worker_pool(pool)
    client.enqueue(id="a", event=Mail("a"))
    client.enqueue(id="b", event=Mail("b"))
    assert empties == []
    sim.advance("1 second")
    assert empties == [(0, 2)]
    client.enqueue(id="c", event=Mail("c"))
    client.cancel("c")
    sim.advance("1 second")
    assert empties == [(0, 2)]  # cancel and enqueue are not processing steps
    client.enqueue(id="d", event=Mail("d"))
    sim.advance("1 second")
    assert empties == [(0, 2), (0, 3)]


def test_pause_accepts_work_and_resume_honours_the_backoff(make: Make) -> None:
    pool, runs, _ = mailer()
    sim = make(Jobs(mail=pool))
    client = sim.client().worker_pool(pool)
    assert client.pause().paused is True  # before any work: the shard starts paused
    client.enqueue(id="a", event=Mail("a", fail=1))
    sim.advance("10 seconds")
    assert runs == []
    assert client.instance_status(0).status == "paused"
    assert client.status().paused_instances == 1
    assert client.resume().resumed is True
    sim.advance("1 second")
    assert runs == [("a", 0, 1)]
    client.pause(0)
    client.resume(0)
    sim.advance("58 seconds")
    assert len(runs) == 1  # the retry is due one minute after the failure, not at resume
    sim.advance("1 second")
    assert runs == [("a", 0, 1), ("a", 0, 2)]
    with pytest.raises(ValidationError):
        client.pause(1)


def test_cancel_answers_each_of_its_four_reasons(make: Make) -> None:
    pool, runs, _ = mailer(concurrency=3)
    sim = make(Jobs(mail=pool))
    client = sim.client().worker_pool(pool)
    client.enqueue(id="busy", event=Mail("a", fail=1), partition_key="p")
    sim.advance("1 second")
    client.enqueue(id="queued", event=Mail("c"), partition_key="p")
    first = client.cancel("queued")
    assert (first.cancelled, first.reason) == (True, "cancelled")
    assert client.cancel("busy").reason == "already_processing"
    assert client.cancel("nobody").reason == "not_found"
    assert client.cancel("queued").reason == "not_found"  # cancelled ids are not remembered
    sim.advance("2 minutes")
    assert client.cancel("busy").reason == "already_completed"
    assert "queued" not in [r[0] for r in runs]


def test_drain_removes_the_pending_events_and_counts_them(make: Make) -> None:
    pool, runs, _ = mailer(concurrency=2)
    sim = make(Jobs(mail=pool))
    client = sim.client().worker_pool(pool)
    for i in range(5):
        client.enqueue(id=f"m{i}", event=Mail("a"), partition_key="one")
    result = client.drain()
    assert (result.drained, result.events_cleared) == (False, 5)  # one shard never existed
    shard = shard_index("one", 2)
    for i in range(3):
        client.enqueue(id=f"n{i}", event=Mail("a"), partition_key="one")
    only = client.drain(shard)
    assert (only.drained, only.events_cleared) == (True, 3)
    sim.advance("1 second")
    assert runs == []
    assert client.instance_status(shard).status == "idle"


def test_a_full_shard_refuses_the_enqueue_and_writes_nothing(make: Make) -> None:
    pool, _, _ = mailer(max_queue_depth=2)
    sim = make(Jobs(mail=pool))
    client = sim.client().worker_pool(pool)
    client.enqueue(id="a", event=Mail("a"))
    client.enqueue(id="b", event=Mail("b"))
    with pytest.raises(QueueFullError, match="max_queue_depth=2"):
        client.enqueue(id="c", event=Mail("c"))
    assert client.instance_status(0).pending_count == 2
    assert client.enqueue(id="a", event=Mail("a")).duplicate is True  # duplicates still answered
    sim.advance("1 second")
    assert client.enqueue(id="c", event=Mail("c")).duplicate is False


def test_bad_input_is_refused_before_anything_is_written(make: Make) -> None:
    pool, _, _ = mailer(concurrency=2)
    sim = make(Jobs(mail=pool))
    client = sim.client().worker_pool(pool)
    with pytest.raises(ValidationError):
        client.enqueue(id="a", event=Unstructured({"to": 5}))
    with pytest.raises(ValidationError):
        client.enqueue(id="", event=Mail("a"))
    with pytest.raises(ValidationError):
        client.enqueue(id="a", event=Mail("a"), priority="high")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        client.enqueue(id="a", event=Mail("a"), partition_key="")
    with pytest.raises(ValidationError):
        client.instance_status(2)
    assert client.status().total_pending == 0
    assert [s.status for s in client.status().instances] == ["not_found", "not_found"]
    assert sim.telemetry == []


def test_status_sums_every_shard(make: Make) -> None:
    pool, _, _ = mailer(concurrency=3)
    sim = make(Jobs(mail=pool))
    client = sim.client().worker_pool(pool)
    keys = ["p0", "p1", "p2", "p3", "p4", "p5"]
    for i, key in enumerate(keys):
        client.enqueue(id=f"m{i}", event=Mail("a", fail=9 if i == 0 else 0), partition_key=key)
    sim.advance(timedelta(minutes=5))
    status = client.status()
    assert len(status.instances) == 3
    assert status.total_processed == 5
    assert status.total_dead_lettered == 1
    assert status.total_pending == 0
    assert status.active_instances == sum(s.status != "not_found" for s in status.instances)
    assert status.total_processed == sum(s.processed_count for s in status.instances)


def test_terminate_inside_execute_drops_only_that_event(make: Make) -> None:
    seen: list[str] = []

    def execute(ctx: PoolContext[str]) -> None:
        seen.append(ctx.event)
        if ctx.event == "stop":
            ctx.terminate("not wanted")

    pool = WorkerPool.make(event=str, concurrency=1, execute=execute)
    sim = make(Jobs(p=pool))
    client = sim.client().worker_pool(pool)
    for event in ["a", "stop", "b"]:
        client.enqueue(id=event, event=event)
    sim.advance("1 second")
    assert seen == ["a", "stop", "b"]
    terminated = [e for e in sim.telemetry if isinstance(e, JobTerminated)]
    assert [(e.id, e.reason) for e in terminated] == [("stop", "not wanted")]
    status = client.instance_status(0)
    assert (status.processed_count, status.dead_lettered_count) == (2, 0)
    assert client.enqueue(id="stop", event="stop").duplicate is True


def _scenario_batches() -> list[list[Enqueue[Mail]]]:
    """Batches that meet every case: new ids on several shards, priorities, an id twice
    in one batch, ids pending from an earlier batch, the running event, a finished one."""
    return [
        [Enqueue("slow", Mail("s", fail=1)), Enqueue("done", Mail("d"))],
        [
            Enqueue("low-1", Mail("a"), partition_key="p"),
            Enqueue("high-1", Mail("b"), partition_key="p", priority=10),
            Enqueue("low-1", Mail("again"), partition_key="p"),  # this batch's first event
            Enqueue("k1", Mail("k")),
            Enqueue("mid", Mail("e"), partition_key="p", priority=5),
            Enqueue("k2", Mail("k"), partition_key="p", priority=10),
            Enqueue("low-1", Mail("again"), partition_key="p"),  # behind two more now
        ],
        [
            Enqueue("slow", Mail("s")),  # running or waiting for its retry
            Enqueue("done", Mail("d")),  # finished
            Enqueue("mid", Mail("e"), partition_key="p"),  # from the batch before
            Enqueue("new", Mail("n"), priority=5),
        ],
    ]


def test_enqueue_many_answers_like_one_enqueue_after_another(make: Make) -> None:
    batched_pool, batched_runs, _ = mailer(concurrency=3)
    single_pool, single_runs, _ = mailer(concurrency=3)
    batched = make(Jobs(mail=batched_pool))
    single = make(Jobs(mail=single_pool))
    batched_client = batched.client().worker_pool(batched_pool)
    single_client = single.client().worker_pool(single_pool)
    answers = []
    for batch in _scenario_batches():
        got = batched_client.enqueue_many(batch)
        answers.extend(got)
        expected = [
            single_client.enqueue(
                id=e.id, event=e.event, partition_key=e.partition_key, priority=e.priority
            )
            for e in batch
        ]
        assert got == expected
        assert batched_client.status() == single_client.status()
        batched.advance("1 second")
        single.advance("1 second")
    low = [(r.duplicate, r.position) for r in answers if r.event_id == "low-1"]
    assert low == [(False, 0), (True, 1), (True, 3)]  # duplicates ranked behind "high" ones
    assert [r.duplicate for r in answers[-4:]] == [True, True, True, False]
    batched.advance("5 minutes")
    single.advance("5 minutes")
    assert batched_runs == single_runs
    assert len({r[0] for r in batched_runs}) == 8
    assert batched_client.status().total_processed == 8


def test_enqueue_many_is_one_unit_a_full_shard_refuses_the_whole_batch(make: Make) -> None:
    pool, runs, _ = mailer(concurrency=2, max_queue_depth=2)
    sim = make(Jobs(mail=pool))
    client = sim.client().worker_pool(pool)
    index = shard_index("x", 2)
    client.enqueue(id="x", event=Mail("x"))
    other = next(f"o{i}" for i in range(100) if shard_index(f"o{i}", 2) != index)
    same = [f"s{i}" for i in range(100) if shard_index(f"s{i}", 2) == index][:2]
    batch = [Enqueue(other, Mail("o")), *(Enqueue(i, Mail("s")) for i in same)]
    with pytest.raises(QueueFullError, match="max_queue_depth=2"):
        client.enqueue_many(batch)
    assert client.status().total_pending == 1  # the other shard's event was not written
    assert client.instance_status(1 - index).status == "not_found"
    assert client.enqueue_many([]) == []
    results = client.enqueue_many(batch[:2])
    assert [(r.duplicate, r.created) for r in results] == [(False, True), (False, False)]
    sim.advance("1 second")
    assert sorted(r[0] for r in runs) == sorted(["x", other, same[0]])


def test_enqueue_many_validates_every_event_before_writing_any(make: Make) -> None:
    pool, _, _ = mailer(concurrency=2)
    sim = make(Jobs(mail=pool))
    client = sim.client().worker_pool(pool)
    bad_batches: list[list[Any]] = [
        [Enqueue("a", Mail("a")), Enqueue("b", {"to": 5})],
        [Enqueue("a", Mail("a")), Enqueue("", Mail("b"))],
        [Enqueue("a", Mail("a")), Enqueue("b", Mail("b"), priority="high")],  # type: ignore[arg-type]
        [Enqueue("a", Mail("a")), Enqueue("b", Mail("b"), partition_key="")],
        [Enqueue("a", Mail("a")), ("b", Mail("b"))],
    ]
    for batch in bad_batches:
        with pytest.raises(ValidationError):
            client.enqueue_many(batch)
    assert [s.status for s in client.status().instances] == ["not_found", "not_found"]
    assert sim.telemetry == []


def test_status_oldest_is_the_first_enqueued_whatever_its_priority(make: Make) -> None:
    pool, _, _ = mailer()
    sim = make(Jobs(mail=pool))
    client = sim.client().worker_pool(pool)
    client.pause()
    for name, priority in [("a", 0), ("b", 5), ("c", 9), ("d", 5), ("e", 0)]:
        client.enqueue(id=name, event=Mail(name), priority=priority)
        sim.advance("1 second")
    assert client.instance_status(0).oldest_enqueued_at == START
    client.cancel("a")
    assert client.instance_status(0).oldest_enqueued_at == START + timedelta(seconds=1)
    client.cancel("b")
    client.cancel("c")
    assert client.instance_status(0).oldest_enqueued_at == START + timedelta(seconds=3)
    client.drain()
    assert client.instance_status(0).oldest_enqueued_at is None
