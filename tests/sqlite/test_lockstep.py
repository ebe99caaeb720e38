"""Lockstep: one random scenario through SQLite and memory, on manual clocks.

Hypothesis drives every client action of every job type and clock advances through both
interpreters at once. Every answer must be identical (a result, or the same exception),
and so must the states, the dead letters and the whole sequence of telemetry events.
User functions are pure functions of their context, so both sides run the same code.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from durable_jobs import (
    Backoff,
    Client,
    Continuous,
    ContinuousContext,
    Debounce,
    DebounceContext,
    DebounceEventContext,
    Enqueue,
    ErrorInfo,
    Jobs,
    PoolContext,
    PoolDeadLetterContext,
    Retry,
    Task,
    TaskContext,
    WorkerPool,
)
from durable_jobs.interpreters.clock import ManualClock
from durable_jobs.interpreters.memory import MemoryInterpreter
from durable_jobs.interpreters.sqlite import SqliteInterpreter

START = datetime(2026, 7, 1, tzinfo=UTC)
IDS = st.sampled_from(["a", "b", "c:d"])
RETRY = Retry(max_attempts=2, backoff=Backoff.constant("10 seconds"))


def tick(ctx: ContinuousContext[int]) -> None:
    if ctx.state % 5 == 3 and ctx.attempt == 1:
        raise RuntimeError("three")
    ctx.update_state(lambda n: n + 1)


def fold(ctx: DebounceEventContext[int, tuple[int, ...]]) -> tuple[int, ...]:
    if ctx.event == 99:
        raise ValueError("99 is refused")
    return (*(ctx.state or ()), ctx.event)


def flush(ctx: DebounceContext[tuple[int, ...]]) -> None:
    if sum(ctx.state) % 7 == 0:
        raise RuntimeError("multiple of seven")


def on_event(ctx: TaskContext[int, int]) -> None:
    if ctx.event < 0:
        raise ValueError("negative")
    ctx.set_state((ctx.state or 0) + ctx.event)
    if ctx.event > 0:
        ctx.schedule(timedelta(seconds=ctx.event))
    else:
        ctx.cancel_schedule()


def execute(ctx: TaskContext[int, int]) -> None:
    if ctx.state == 13:
        raise RuntimeError("unlucky")
    ctx.update_state(lambda n: n - 1)
    if ctx.state:
        ctx.schedule("15 seconds")


def idle(ctx: TaskContext[int, int]) -> None:
    ctx.update_state(lambda n: n * 2)


def send(ctx: PoolContext[int]) -> None:
    if ctx.event % 4 == 3 or (ctx.event % 4 == 1 and ctx.attempt == 1):
        raise ConnectionError(f"event {ctx.event}")


def give_up(event: int, error: ErrorInfo, ctx: PoolDeadLetterContext[int]) -> None:
    if event == 7:
        raise RuntimeError("cannot even give up")


JOBS = Jobs(
    cont=Continuous.make(
        state=int, schedule=Continuous.every("20 seconds"), execute=tick, retry=RETRY
    ),
    deb=Debounce.make(
        event=int,
        state=tuple[int, ...],
        on_event=fold,
        execute=flush,
        flush_after="30 seconds",
        max_events=4,
        quiet_period="10 seconds",
        retry=RETRY,
    ),
    task=Task.make(
        state=int, event=int, on_event=on_event, execute=execute, on_idle=idle, retry=RETRY
    ),
    pool=WorkerPool.make(
        event=int,
        concurrency=2,
        execute=send,
        on_dead_letter=give_up,
        retry=RETRY,
        max_queue_depth=5,
        dedup_retention="60 seconds",
    ),
)


def outcome(call: Callable[[Client], Any], client: Client) -> Any:
    try:
        return ("ok", call(client))
    except Exception as error:
        return ("error", type(error).__name__, str(error))


class Lockstep(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.folder = tempfile.TemporaryDirectory()
        self.memory = MemoryInterpreter(JOBS, start=START)
        self.sqlite = SqliteInterpreter(
            JOBS, Path(self.folder.name) / "jobs.db", clock=ManualClock(START), inline=True
        )
        self.clients = (self.memory.client(), self.sqlite.client())

    def both(self, call: Callable[[Client], Any]) -> None:
        left, right = (outcome(call, client) for client in self.clients)
        assert left == right

    @rule(id_=IDS, value=st.integers(0, 9))
    def continuous_start(self, id_: str, value: int) -> None:
        self.both(lambda c: c.continuous("cont").start(id=id_, input=value))

    @rule(id_=IDS, action=st.sampled_from(["trigger", "terminate", "status", "get_state"]))
    def continuous_other(self, id_: str, action: str) -> None:
        self.both(lambda c: getattr(c.continuous("cont"), action)(id_))

    @rule(id_=IDS, value=st.sampled_from([1, 2, 3, 5, 7, 99]))
    def debounce_add(self, id_: str, value: int) -> None:
        self.both(lambda c: c.debounce("deb").add(id=id_, event=value))

    @rule(id_=IDS, action=st.sampled_from(["flush", "clear", "status", "get_state"]))
    def debounce_other(self, id_: str, action: str) -> None:
        self.both(lambda c: getattr(c.debounce("deb"), action)(id_))

    @rule(id_=IDS, value=st.integers(-1, 20))
    def task_send(self, id_: str, value: int) -> None:
        self.both(lambda c: c.task("task").send(id=id_, event=value))

    @rule(id_=IDS, action=st.sampled_from(["trigger", "terminate", "status", "get_state"]))
    def task_other(self, id_: str, action: str) -> None:
        self.both(lambda c: getattr(c.task("task"), action)(id_))

    @rule(
        event_id=st.sampled_from(["e1", "e2", "e3", "e4", "e5"]),
        value=st.integers(0, 8),
        key=st.sampled_from([None, "k1", "k2"]),
        priority=st.integers(0, 2),
    )
    def pool_enqueue(self, event_id: str, value: int, key: str | None, priority: int) -> None:
        self.both(
            lambda c: c.worker_pool("pool").enqueue(
                id=event_id, event=value, partition_key=key, priority=priority
            )
        )

    @rule(
        batch=st.lists(
            st.builds(
                Enqueue,
                id=st.sampled_from(["e1", "e2", "e3", "e4", "e5"]),
                event=st.integers(0, 8),
                partition_key=st.sampled_from([None, "k1", "k2"]),
                priority=st.integers(0, 2),
            ),
            max_size=5,
        )
    )
    def pool_enqueue_many(self, batch: list[Enqueue[int]]) -> None:
        self.both(lambda c: c.worker_pool("pool").enqueue_many(batch))

    @rule(
        action=st.sampled_from(["pause", "resume", "drain"]),
        index=st.sampled_from([None, 0, 1]),
    )
    def pool_control(self, action: str, index: int | None) -> None:
        self.both(lambda c: getattr(c.worker_pool("pool"), action)(index))

    @rule(event_id=st.sampled_from(["e1", "e2", "e3", "e4", "e5"]))
    def pool_cancel(self, event_id: str) -> None:
        self.both(lambda c: c.worker_pool("pool").cancel(event_id))

    @rule(seconds=st.integers(0, 40))
    def advance(self, seconds: int) -> None:
        self.memory.advance(timedelta(seconds=seconds))
        self.sqlite.advance(timedelta(seconds=seconds))
        assert self.memory.now() == self.sqlite.now()
        assert self.memory.next_alarm_at() == self.sqlite.next_alarm_at()

    @invariant()
    def same_history(self) -> None:
        assert self.memory.telemetry == self.sqlite.telemetry
        for name in ("cont", "deb", "task", "pool"):
            definition = JOBS[name]
            assert self.memory.dead_letters(definition) == self.sqlite.dead_letters(definition)
        self.both(lambda c: c.worker_pool("pool").status())

    def teardown(self) -> None:
        self.sqlite.close()
        self.folder.cleanup()


TestLockstep = Lockstep.TestCase
TestLockstep.settings = settings(
    max_examples=max(40, settings().max_examples // 4), stateful_step_count=40, deadline=None
)
