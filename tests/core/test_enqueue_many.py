"""Law: ``enqueue_many`` answers exactly as ``enqueue`` called for each event in turn.

Random batches (repeated ids, priorities, partition keys, a small ``max_queue_depth``)
interleaved with time passing, on two memory interpreters: one takes each batch with
``enqueue_many``, the other one event at a time. The results, the errors, the statuses
and each shard's runs and telemetry must be the same — except that a refused batch
writes nothing, where the one-by-one calls keep the events before the refused one.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from durable_jobs import (
    Enqueue,
    Jobs,
    PoolContext,
    QueueFullError,
    Retry,
    WorkerPool,
    WorkerPoolClient,
)
from durable_jobs.interpreters.memory import MemoryInterpreter

events = st.builds(
    Enqueue,
    id=st.sampled_from(["a", "b", "c", "d", "e", "f"]),
    event=st.integers(0, 3),
    partition_key=st.sampled_from([None, "p"]),
    priority=st.integers(0, 2),
)
steps = st.lists(
    st.one_of(st.lists(events, max_size=6), st.sampled_from(["1 second", "10 minutes"])),
    max_size=8,
)


def _pool(runs: list[tuple[int, str, int]]) -> Any:
    def execute(ctx: PoolContext[int]) -> None:
        runs.append((ctx.instance_index, ctx.event_id, ctx.attempt))
        if ctx.event == 3 and ctx.attempt == 1:
            raise RuntimeError("first attempt of a 3 fails")

    return WorkerPool.make(
        event=int,
        concurrency=2,
        execute=execute,
        max_queue_depth=4,
        dedup_retention="5 minutes",
        retry=Retry(max_attempts=2),
    )


def _one_by_one(client: WorkerPoolClient[int], batch: list[Enqueue[int]]) -> Any:
    answers = []
    for e in batch:
        try:
            answers.append(
                client.enqueue(
                    id=e.id, event=e.event, partition_key=e.partition_key, priority=e.priority
                )
            )
        except QueueFullError:
            return "full", answers
    return answers


@given(steps)
def test_enqueue_many_equals_enqueue_one_after_another(script: list[Any]) -> None:
    many_runs: list[tuple[int, str, int]] = []
    single_runs: list[tuple[int, str, int]] = []
    many_pool, single_pool = _pool(many_runs), _pool(single_runs)
    many = MemoryInterpreter(Jobs(pool=many_pool))
    single = MemoryInterpreter(Jobs(pool=single_pool))
    many_client = many.client().worker_pool(many_pool)
    single_client = single.client().worker_pool(single_pool)
    for step in script:
        if isinstance(step, str):
            many.advance(step)
            single.advance(step)
            continue
        before = many_client.status()
        try:
            got: Any = many_client.enqueue_many(step)
        except QueueFullError:
            got = "full"
        expected = _one_by_one(single_client, step)
        if got == "full":
            assert expected[0] == "full"
            assert many_client.status() == before  # nothing of the batch was written
            # Bring the one-by-one side back in line: send the batch again in one go on
            # the many side, up to the event that was refused.
            accepted = len(expected[1])
            many_client.enqueue_many(step[:accepted])
        else:
            assert got == expected
        assert many_client.status() == single_client.status()
    many.advance("1 hour")
    single.advance("1 hour")
    # Shards are independent: their runs may interleave differently when their alarms
    # tie (a batch sets them shard by shard), but each shard's history is the same.
    for shard in (0, 1):
        assert [r for r in many_runs if r[0] == shard] == [r for r in single_runs if r[0] == shard]
        instance = f"workerPool:pool:{shard}"
        assert [e for e in many.telemetry if e.instance_id == instance] == [
            e for e in single.telemetry if e.instance_id == instance
        ]
    assert len(many_runs) == len(single_runs)
