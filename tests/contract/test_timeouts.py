"""Contract: a job's ``timeout`` bounds each run of its hooks, on every interpreter.

A run that takes longer is a failed attempt with a ``TimeoutError``: the retry policy
applies, and an exhausted sequence leaves a dead letter holding that error. An
``async def`` hook is cancelled; a sync hook is abandoned (its result is ignored).
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from durable_jobs import (
    Backoff,
    Continuous,
    ContinuousContext,
    DefinitionError,
    Jobs,
    PoolContext,
    Retry,
    Task,
    TaskContext,
    WorkerPool,
)
from tests.contract.conftest import Make

TWICE = Retry(max_attempts=2, backoff=Backoff.constant("1 second"), jitter=False)


def test_a_sync_run_past_its_timeout_fails_the_attempt_and_is_abandoned(make: Make) -> None:
    release = threading.Event()
    finished: list[int] = []

    def execute(ctx: ContinuousContext[int]) -> None:
        release.wait(5)  # hangs until the test lets it go
        finished.append(ctx.attempt)
        ctx.set_state(99)

    job = Continuous.make(
        state=int,
        schedule=Continuous.every("1 hour"),
        execute=execute,
        retry=TWICE,
        timeout="200 milliseconds",
    )
    harness = make(Jobs(tick=job))
    client = harness.client().continuous("tick")
    started = time.monotonic()
    client.start(id="c", input=0)  # attempt 1 runs now and times out
    harness.advance("1 second")  # attempt 2, the same
    assert time.monotonic() - started < 3  # nobody waited for the hung runs
    [letter] = client.dead_letters()
    assert letter.attempts == 2
    assert letter.error.type == "TimeoutError"
    assert "execute took longer than its timeout (0.2 s); abandoned" in letter.error.message
    assert finished == []  # both runs still hang, abandoned
    release.set()
    deadline = time.monotonic() + 5
    while len(finished) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sorted(finished) == [1, 2]  # they ran on to their end (what they did happened) ...
    assert client.get_state("c") == 0  # ... but their set_state(99) counts for nothing


def test_an_async_run_past_its_timeout_is_cancelled(make: Make) -> None:
    cancelled: list[str] = []

    async def execute(ctx: TaskContext[int, int]) -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(ctx.id)
            raise

    def on_event(ctx: TaskContext[int, int]) -> None:
        ctx.set_state(ctx.event)
        ctx.schedule("0 seconds")

    job = Task.make(
        state=int, event=int, on_event=on_event, execute=execute, retry=TWICE, timeout="100 ms"
    )
    harness = make(Jobs(task=job))
    task = harness.client().task("task")
    task.send(id="t", event=1)
    harness.advance("2 seconds")
    assert cancelled == ["t", "t"]
    [letter] = task.dead_letters()
    assert (letter.error.type, letter.attempts) == ("TimeoutError", 2)
    assert "cancelled" in letter.error.message


def test_a_run_within_its_timeout_is_untouched_and_its_own_timeout_error_stays_its_own(
    make: Make,
) -> None:
    def execute(ctx: PoolContext[int]) -> None:
        if ctx.event == 1:
            raise TimeoutError("the mail server did not answer")

    pool = WorkerPool.make(
        event=int, concurrency=1, execute=execute, retry=Retry(max_attempts=1), timeout="5 s"
    )
    harness = make(Jobs(pool=pool))
    client = harness.client().worker_pool("pool")
    client.enqueue(id="ok", event=0)
    client.enqueue(id="bad", event=1)
    harness.advance("1 second")
    assert client.status().total_processed == 1
    [letter] = client.dead_letters()
    assert (letter.error.type, letter.error.message) == (
        "TimeoutError",
        "the mail server did not answer",
    )


@pytest.mark.parametrize("bad", ["0 seconds", "1000000 weeks", 5])
def test_a_timeout_is_a_positive_duration(bad: object) -> None:
    with pytest.raises(DefinitionError, match="timeout"):
        Task.make(
            state=int,
            event=int,
            on_event=lambda ctx: None,
            execute=lambda ctx: None,
            timeout=bad,  # type: ignore[arg-type]
        )
