"""The memory interpreter's own promises: clock, trace, re-entrancy, running loops."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from durable_jobs import (
    ConflictError,
    Continuous,
    ContinuousContext,
    Debounce,
    DebounceContext,
    DebounceEventContext,
    Enqueue,
    Jobs,
    PoolQueueRepaired,
    QueueFullError,
    Task,
    TaskContext,
    WorkerPool,
)
from durable_jobs.interpreters.memory import DEFAULT_START, MemoryInterpreter
from durable_jobs.protocol import (
    AlarmFired,
    ContinuousStart,
    Persist,
    RunUserCode,
    ScheduleAlarm,
    from_datetime,
    shard_index,
)

START = datetime(2026, 6, 1, tzinfo=UTC)


def test_the_clock_starts_where_asked_and_never_goes_back() -> None:
    sim = MemoryInterpreter(Jobs(), start=START)
    assert sim.now() == START
    assert MemoryInterpreter(Jobs()).now() == DEFAULT_START
    sim.advance(timedelta(seconds=90))
    assert sim.now() == START + timedelta(seconds=90)
    with pytest.raises(ValueError, match="back"):
        sim.advance_to(START)
    assert sim.next_alarm_at() is None


def test_the_trace_shows_inputs_and_commands() -> None:
    job = Continuous.make(state=int, schedule=Continuous.every("1 minute"), execute=lambda c: None)
    sim = MemoryInterpreter(Jobs(job=job), start=START)
    sim.client().continuous(job).start(id="u", input=0)
    start, fired, done = sim.trace  # the request, then its run as the worker's
    assert start.instance_id == "continuous:job:u"
    assert start.time == START
    assert isinstance(start.input, ContinuousStart)
    assert [type(c) for c in start.commands if isinstance(c, Persist | RunUserCode)] == [Persist]
    assert fired.input == AlarmFired(from_datetime(START))
    assert [type(c) for c in fired.commands if isinstance(c, Persist | RunUserCode)] == [
        Persist,
        RunUserCode,
    ]
    assert any(isinstance(c, ScheduleAlarm) for c in done.commands)
    quiet = MemoryInterpreter(Jobs(job=job), trace=False)
    quiet.client().continuous(job).start(id="u", input=0)
    assert quiet.trace == []
    assert len(quiet.telemetry) == 2


def test_user_code_may_call_other_instances_but_not_its_own() -> None:
    outcomes: list[str] = []
    holder: dict[str, MemoryInterpreter] = {}

    def forward(ctx: DebounceContext[int]) -> None:
        client = holder["sim"].client().debounce("sink")
        client.add(id=ctx.id, event=ctx.state)
        try:
            holder["sim"].client().debounce("source").flush(ctx.id)
        except ConflictError:
            outcomes.append("conflict")
        try:
            holder["sim"].advance("1 second")
        except RuntimeError:
            outcomes.append("no advance")

    jobs = Jobs(
        source=Debounce.make(event=int, execute=forward, flush_after="1 minute"),
        sink=Debounce.make(event=int, execute=lambda c: None, flush_after="1 hour"),
    )
    sim = holder["sim"] = MemoryInterpreter(jobs, start=START)
    sim.client().debounce("source").add(id="u", event=7)
    sim.advance("1 minute")
    assert outcomes == ["conflict", "no advance"]
    assert sim.client().debounce("sink").get_state("u") == 7


def test_async_user_code_runs_inside_a_running_event_loop() -> None:
    async def execute(ctx: ContinuousContext[int]) -> None:
        await asyncio.sleep(0.001)
        ctx.update_state(lambda n: n + 1)

    job = Continuous.make(state=int, schedule=Continuous.every("1 minute"), execute=execute)

    async def notebook_cell() -> int | None:
        # Jupyter runs cells inside a loop; the synchronous client must still work there.
        sim = MemoryInterpreter(Jobs(job=job), start=START)
        sim.client().continuous(job).start(id="u", input=0)
        sim.advance("3 minutes")
        return sim.client().continuous(job).get_state("u")

    assert asyncio.run(notebook_cell()) == 4


def test_an_async_hook_raising_keyboard_interrupt_reaches_the_caller_and_the_loop_lives() -> None:
    # Left on the task, KeyboardInterrupt would be re-raised out of the private loop,
    # killing its thread: the caller (and every later async hook) would wait forever.
    async def execute(ctx: TaskContext[int, int]) -> None:
        if ctx.id == "dies":
            raise KeyboardInterrupt
        ctx.set_state(42)

    task = Task.make(
        state=int, event=int, on_event=lambda ctx: ctx.schedule(ctx.now), execute=execute
    )
    sim = MemoryInterpreter(Jobs(task=task))
    outcome: list[str] = []

    def scenario() -> None:
        sim.client().task(task).send(id="dies", event=1)
        try:
            sim.advance("1 second")
        except KeyboardInterrupt:
            outcome.append("interrupted")
        sim.client().task(task).send(id="lives", event=2)
        sim.advance("2 seconds")
        outcome.append(str(sim.client().task(task).get_state("lives")))

    thread = threading.Thread(target=scenario, daemon=True)
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), "an async hook hung"
    assert outcome == ["interrupted", "42"]


def test_a_request_from_another_thread_during_a_reducer_is_not_lost() -> None:
    """A reducer runs before anything is stored; another thread's add to the same
    batch meanwhile is written first, and the first request then runs again on it."""
    started = threading.Event()

    def fold(ctx: DebounceEventContext[int, int]) -> int:
        if ctx.event == 1 and not started.is_set():
            started.set()
            time.sleep(0.2)  # a slow reducer, while the other thread adds
        return (ctx.state or 0) + ctx.event

    job = Debounce.make(event=int, state=int, on_event=fold, execute=print, flush_after="1 hour")
    sim = MemoryInterpreter(Jobs(b=job))
    answers: list[int] = []
    first = threading.Thread(
        target=lambda: answers.append(sim.client().debounce(job).add(id="u", event=1).event_count)
    )
    first.start()
    started.wait()
    answers.append(sim.client().debounce(job).add(id="u", event=10).event_count)
    first.join()
    assert sorted(answers) == [1, 2]
    assert sim.client().debounce(job).get_state("u") == 11


def test_telemetry_can_be_cleared_or_replaced() -> None:
    job = Continuous.make(state=int, schedule=Continuous.every("1 minute"), execute=print)
    sim = MemoryInterpreter(Jobs(j=job))
    sim.client().continuous(job).start(id="a", input=0)
    sim.telemetry.clear()
    sim.advance("1 minute")
    assert [event.type for event in sim.telemetry] == ["job.executed"]
    sim.telemetry = []
    sim.advance("1 minute")
    assert [event.type for event in sim.telemetry] == ["job.executed"]


def test_a_rejected_batch_leaves_no_trace() -> None:
    mail = WorkerPool.make(event=str, concurrency=2, execute=print, max_queue_depth=1)
    sim = MemoryInterpreter(Jobs(mail=mail))
    by_shard: dict[int, list[str]] = {0: [], 1: []}
    for n in itertools.count():
        by_shard[shard_index(f"e{n}", 2)].append(f"e{n}")
        if by_shard[0] and len(by_shard[1]) >= 2:
            break
    batch = [Enqueue(by_shard[0][0], "x"), *(Enqueue(i, "y") for i in by_shard[1][:2])]
    with pytest.raises(QueueFullError):
        sim.client().worker_pool(mail).enqueue_many(batch)
    assert sim.trace == []
    assert list(sim.instances()) == []


def test_a_pool_whose_counters_promise_a_deleted_row_repairs_them_instead_of_spinning() -> None:
    """A pending row lost behind the counters' back (deleted by hand) once left the
    shard "processing" a phantom event for ever, unreported (and on SQLite re-armed its
    alarm in a loop). The counters are repaired to what the rows hold, and reported."""
    ran: list[str] = []
    pool = WorkerPool.make(event=int, concurrency=1, execute=lambda ctx: ran.append(ctx.event_id))
    sim = MemoryInterpreter(Jobs(p=pool), start=START)
    client = sim.client().worker_pool(pool)
    client.pause()
    for name in ("a", "b", "c"):
        client.enqueue(id=name, event=1)
    sim._memory.delete_item("workerPool:p:0", "b")
    client.resume()
    done = threading.Event()

    def advance() -> None:
        sim.advance("1 minute")
        done.set()

    threading.Thread(target=advance, daemon=True).start()
    assert done.wait(10), "advance did not come back"
    assert ran == ["a", "c"]  # the events still there all ran
    status = client.status()
    assert (status.total_pending, status.total_processed) == (0, 2)
    repaired = [e for e in sim.telemetry if isinstance(e, PoolQueueRepaired)]
    assert [(e.instance_id, e.counted) for e in repaired] == [("workerPool:p:0", 1)]
    assert sim.next_alarm_at() is None
