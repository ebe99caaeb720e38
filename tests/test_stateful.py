"""Stateful tests: each job type on the memory interpreter against a plain Python model.

Hypothesis interleaves client calls and clock advances at random; after every step the
interpreter's answers (status, state, runs, flushes, dead letters) must equal what a
model written in a few lines of obvious Python predicts.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta

import attrs
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from durable_jobs import (
    Continuous,
    ContinuousContext,
    Debounce,
    DebounceContext,
    DebounceEventContext,
    Jobs,
    Task,
    TaskContext,
)
from durable_jobs.interpreters.memory import MemoryInterpreter

START = datetime(2026, 2, 1, tzinfo=UTC)
IDS = st.sampled_from(["a", "b", "c"])
SECONDS = st.integers(0, 150)


def at(seconds: int) -> datetime:
    return START + timedelta(seconds=seconds)


# --------------------------------------------------------------------------- Debounce

POISON = 13
WINDOW = 60
MAX_EVENTS = 5


@attrs.define
class Batch:
    events: list[int]
    started: int


class DebounceMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.flushed: dict[str, list[tuple[str, tuple[int, ...]]]] = defaultdict(list)

        def reduce(ctx: DebounceEventContext[int, tuple[int, ...]]) -> tuple[int, ...]:
            return (*(ctx.state or ()), ctx.event)

        def execute(ctx: DebounceContext[tuple[int, ...]]) -> None:
            if POISON in ctx.state:
                raise ValueError("poison")
            self.flushed[ctx.id].append((ctx.flush_reason, ctx.state))

        self.job = Debounce.make(
            event=int,
            state=tuple[int, ...],
            on_event=reduce,
            execute=execute,
            flush_after=timedelta(seconds=WINDOW),
            max_events=MAX_EVENTS,
        )
        self.sim = MemoryInterpreter(Jobs(batch=self.job), start=START, trace=False)
        self.client = self.sim.client().debounce(self.job)
        self.now = 0
        self.batches: dict[str, Batch] = {}
        self.expected: dict[str, list[tuple[str, tuple[int, ...]]]] = defaultdict(list)
        self.dead: list[tuple[int, ...]] = []
        self.added = 0
        self.cleared = 0

    def _flush(self, id_: str, reason: str) -> None:
        batch = self.batches.pop(id_)
        if POISON in batch.events:
            self.dead.append(tuple(batch.events))
        else:
            self.expected[id_].append((reason, tuple(batch.events)))

    @rule(id_=IDS, value=st.integers(0, 15))
    def add(self, id_: str, value: int) -> None:
        result = self.client.add(id=id_, event=value)
        self.added += 1
        batch = self.batches.setdefault(id_, Batch([], self.now))
        assert result.created == (batch.events == [])
        batch.events.append(value)
        assert result.event_count == len(batch.events)
        if len(batch.events) >= MAX_EVENTS:
            self._flush(id_, "maxEvents")
            assert result.will_flush_at == at(self.now)  # due now; run before add returned
        else:
            assert result.will_flush_at == at(batch.started + WINDOW)

    @rule(seconds=SECONDS)
    def advance(self, seconds: int) -> None:
        self.now += seconds
        self.sim.advance(timedelta(seconds=seconds))
        due = sorted(
            (b.started + WINDOW, id_)
            for id_, b in self.batches.items()
            if b.started + WINDOW <= self.now
        )
        for _, id_ in due:
            self._flush(id_, "flushAfter")

    @rule(id_=IDS)
    def flush(self, id_: str) -> None:
        result = self.client.flush(id_)
        if id_ in self.batches:
            count = len(self.batches[id_].events)
            self._flush(id_, "manual")  # (a poisoned batch fails: the invariants check)
            assert (result.flushing, result.event_count) == (True, count)
        else:
            assert (result.flushing, result.reason) == (False, "empty")

    @rule(id_=IDS)
    def clear(self, id_: str) -> None:
        result = self.client.clear(id_)
        batch = self.batches.pop(id_, None)
        expected = 0 if batch is None else len(batch.events)
        self.cleared += expected
        assert (result.cleared, result.discarded_events) == (batch is not None, expected)

    @invariant()
    def matches_the_model(self) -> None:
        for id_ in ("a", "b", "c"):
            status = self.client.status(id_)
            batch = self.batches.get(id_)
            if batch is None:
                assert status.status == "not_found"
            else:
                assert status.event_count == len(batch.events)
                assert status.will_flush_at == at(batch.started + WINDOW)
                assert self.client.get_state(id_) == tuple(batch.events)
        assert dict(self.flushed) == {k: v for k, v in self.expected.items() if v}
        # Alarms due at the same instant may fire in either order: compare as multisets.
        assert sorted(d.payload for d in self.client.dead_letters()) == sorted(self.dead)

    @invariant()
    def no_event_is_lost(self) -> None:
        in_batches = sum(len(b.events) for b in self.batches.values())
        flushed = sum(len(events) for runs in self.flushed.values() for _, events in runs)
        dead = sum(len(d) for d in self.dead)
        assert in_batches + flushed + dead + self.cleared == self.added


# ------------------------------------------------------------------------- Continuous

PERIOD = 100


@attrs.define
class Ticker:
    state: int
    run_count: int
    next_slot: int


class ContinuousMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.failing: set[str] = set()

        def execute(ctx: ContinuousContext[int]) -> None:
            ctx.update_state(lambda n: n + 1)
            if ctx.id in self.failing:
                raise RuntimeError("down")

        self.job = Continuous.make(
            state=int, schedule=Continuous.every(timedelta(seconds=PERIOD)), execute=execute
        )
        self.sim = MemoryInterpreter(Jobs(tick=self.job), start=START, trace=False)
        self.client = self.sim.client().continuous(self.job)
        self.now = 0
        self.model: dict[str, Ticker] = {}
        self.dead = 0

    def _run(self, id_: str) -> None:
        ticker = self.model[id_]
        ticker.run_count += 1
        if id_ in self.failing:
            self.dead += 1
        else:
            ticker.state += 1

    @rule(id_=IDS, value=st.integers(0, 10))
    def start(self, id_: str, value: int) -> None:
        result = self.client.start(id=id_, input=value)
        assert result.created == (id_ not in self.model)
        if result.created:
            self.model[id_] = Ticker(value, 0, self.now + PERIOD)
            self._run(id_)

    @rule(id_=IDS)
    def trigger(self, id_: str) -> None:
        assert self.client.trigger(id_).triggered == (id_ in self.model)
        if id_ in self.model:
            self._run(id_)

    @rule(id_=IDS)
    def terminate(self, id_: str) -> None:
        assert self.client.terminate(id_).terminated == (id_ in self.model)
        self.model.pop(id_, None)

    @rule(id_=IDS, down=st.booleans())
    def set_failing(self, id_: str, down: bool) -> None:
        if down:
            self.failing.add(id_)
        else:
            self.failing.discard(id_)

    @rule(seconds=SECONDS)
    def advance(self, seconds: int) -> None:
        self.now += seconds
        self.sim.advance(timedelta(seconds=seconds))
        for id_, ticker in self.model.items():
            while ticker.next_slot <= self.now:
                self._run(id_)
                ticker.next_slot += PERIOD

    @invariant()
    def matches_the_model(self) -> None:
        for id_ in ("a", "b", "c"):
            status = self.client.status(id_)
            ticker = self.model.get(id_)
            if ticker is None:
                assert status.status == "not_found"
                assert self.client.get_state(id_) is None
            else:
                assert status.run_count == ticker.run_count
                assert status.next_run_at == at(ticker.next_slot)
                assert self.client.get_state(id_) == ticker.state
        assert len(self.client.dead_letters()) == self.dead


# ------------------------------------------------------------------------------- Task


@attrs.define
class Flow:
    state: int = 0
    scheduled: int | None = None
    events: int = 0
    executes: int = 0


class TaskMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.log: list[tuple[str, str, int]] = []

        def on_event(ctx: TaskContext[int, int]) -> None:
            ctx.set_state((ctx.state or 0) + 1)
            if ctx.event > 0:
                ctx.schedule(timedelta(seconds=ctx.event))
            else:
                ctx.cancel_schedule()

        def execute(ctx: TaskContext[int, int]) -> None:
            self.log.append(("execute", ctx.id, int((ctx.now - START).total_seconds())))

        def on_idle(ctx: TaskContext[int, int]) -> None:
            self.log.append(("idle", ctx.id, int((ctx.now - START).total_seconds())))

        self.job = Task.make(
            state=int, event=int, on_event=on_event, execute=execute, on_idle=on_idle
        )
        self.sim = MemoryInterpreter(Jobs(flow=self.job), start=START, trace=False)
        self.client = self.sim.client().task(self.job)
        self.now = 0
        self.model: dict[str, Flow] = {}
        self.expected: list[tuple[str, str, int]] = []

    def _execute(self, id_: str, when: int) -> None:
        flow = self.model[id_]
        flow.executes += 1
        self.expected.append(("execute", id_, when))
        if flow.scheduled is None:
            self.expected.append(("idle", id_, when))

    @rule(id_=IDS, delay=st.integers(0, 200))
    def send(self, id_: str, delay: int) -> None:
        result = self.client.send(id=id_, event=delay)
        assert result.created == (id_ not in self.model)
        flow = self.model.setdefault(id_, Flow())
        flow.state += 1
        flow.events += 1
        flow.scheduled = self.now + delay if delay > 0 else None
        if flow.scheduled is None:
            self.expected.append(("idle", id_, self.now))
        assert result.scheduled_at == (None if flow.scheduled is None else at(flow.scheduled))

    @rule(id_=IDS)
    def trigger(self, id_: str) -> None:
        assert self.client.trigger(id_).triggered == (id_ in self.model)
        if id_ in self.model:
            self._execute(id_, self.now)

    @rule(id_=IDS)
    def terminate(self, id_: str) -> None:
        assert self.client.terminate(id_).terminated == (id_ in self.model)
        self.model.pop(id_, None)

    @rule(seconds=SECONDS)
    def advance(self, seconds: int) -> None:
        target = self.now + seconds
        self.sim.advance(timedelta(seconds=seconds))
        due = sorted(
            (flow.scheduled, id_)
            for id_, flow in self.model.items()
            if flow.scheduled is not None and flow.scheduled <= target
        )
        for when, id_ in due:
            self.model[id_].scheduled = None
            self._execute(id_, when)
        self.now = target

    @invariant()
    def matches_the_model(self) -> None:
        for id_ in ("a", "b", "c"):
            status = self.client.status(id_)
            flow = self.model.get(id_)
            if flow is None:
                assert status.status == "not_found"
                continue
            assert status.status == ("active" if flow.scheduled is not None else "idle")
            assert status.scheduled_at == (None if flow.scheduled is None else at(flow.scheduled))
            assert (status.event_count, status.execute_count) == (flow.events, flow.executes)
            assert self.client.get_state(id_) == flow.state
        assert sorted(self.log) == sorted(self.expected)


# 60 random programs of up to 40 steps per machine by default; the soak profile
# (HYPOTHESIS_PROFILE=soak) raises the count.
STATEFUL = settings(
    max_examples=max(60, settings().max_examples // 4),
    stateful_step_count=40,
    deadline=None,
)
TestDebounce = DebounceMachine.TestCase
TestDebounce.settings = STATEFUL
TestContinuous = ContinuousMachine.TestCase
TestContinuous.settings = STATEFUL
TestTask = TaskMachine.TestCase
TestTask.settings = STATEFUL
