"""Contract: where job code runs, and what a busy instance answers (issue 10 §1 to §3).

A run is held in flight by a hook that waits on a ``threading.Event``: thread A makes the
request whose run it is (the memory interpreter and SQLite ``inline=True`` run due-now
work in the caller), and the test, as thread B, calls the same instance meanwhile. Every
request gets its true answer: queued behind the run (the default), or applied after it
(a client that waits), or ``BusyError`` naming the run when the wait runs out.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from durable_jobs import (
    BusyError,
    Continuous,
    ContinuousContext,
    Debounce,
    DebounceContext,
    DebounceEventContext,
    JobFailed,
    Jobs,
    QueueFullError,
    Task,
    TaskClient,
    TaskContext,
)
from tests.contract.conftest import START, Harness, Make, types

WAIT = 10.0  # seconds a test waits for a thread before it fails


class Gate:
    """Holds a hook until the test opens it; says when the hook is inside."""

    def __init__(self) -> None:
        self.inside = threading.Event()
        self.open = threading.Event()

    def hold(self) -> None:
        self.inside.set()
        assert self.open.wait(WAIT), "the test never opened the gate"


@contextmanager
def in_flight(gate: Gate, call: Callable[[], Any]) -> Iterator[list[Any]]:
    """Run ``call`` in thread A until its run is inside the gate; on exit open the gate
    and wait for A. Yields the list that gets A's answer (or exception)."""
    answer: list[Any] = []

    def run() -> None:
        try:
            answer.append(call())
        except Exception as error:  # the test looks at it
            answer.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert gate.inside.wait(WAIT), "the run never started"
    try:
        yield answer
    finally:
        gate.open.set()
        thread.join(WAIT)
        assert not thread.is_alive(), "the request whose run it was never returned"


Log = list[tuple[str, Any]]


def task_job(gate: Gate) -> tuple[Jobs, Log]:
    log: Log = []

    def on_event(ctx: TaskContext[int, int]) -> None:
        if ctx.event < 0:
            raise ValueError(f"refused {ctx.event}")
        log.append(("on_event", ctx.event))
        ctx.set_state(ctx.event)

    def execute(ctx: TaskContext[int, int]) -> None:
        log.append(("execute", ctx.state))
        if ctx.state == 7:
            gate.hold()

    def on_idle(ctx: TaskContext[int, int]) -> None:
        log.append(("on_idle", ctx.idle_reason))

    job = Task.make(state=int, event=int, on_event=on_event, execute=execute, on_idle=on_idle)
    return Jobs(flow=job), log


def busy_task(make: Make) -> tuple[Harness, TaskClient[Any, Any], Gate, Log]:
    """Task ``flow`` instance ``t`` (state 7) on a new interpreter: a ``trigger`` of it
    runs an ``execute`` that waits at the returned gate."""
    gate = Gate()
    jobs, log = task_job(gate)
    sim = make(jobs)
    client = sim.client().task("flow")
    client.send(id="t", event=7)
    return sim, client, gate, log


def test_a_request_meeting_a_run_is_queued_and_applied_in_order_after_it(make: Make) -> None:
    _sim, client, gate, log = busy_task(make)
    with in_flight(gate, lambda: client.trigger("t")) as answer:
        first = client.send(id="t", event=1)
        again = client.trigger("t")
        second = client.send(id="t", event=2)
        assert (first.queued, first.scheduled_at, first.created) == (True, None, False)
        assert (again.triggered, again.queued) == (True, True)
        assert second.queued is True
        assert ("on_event", 1) not in log  # nothing of them ran while the run was in flight
    assert answer[0].triggered is True
    assert answer[0].queued is False
    # After the run: the caller's requests in their order, each on the state before it.
    assert log[2:] == [
        ("execute", 7),
        ("on_idle", "execute"),
        ("on_event", 1),
        ("on_idle", "onEvent"),
        ("execute", 1),
        ("on_idle", "execute"),
        ("on_event", 2),
        ("on_idle", "onEvent"),
    ]
    assert client.get_state("t") == 2
    assert client.status("t").event_count == 3


def test_a_client_that_waits_applies_its_request_after_the_run(make: Make) -> None:
    sim, client, gate, log = busy_task(make)
    waiting = sim.client(wait="10 seconds").task("flow")
    with in_flight(gate, lambda: client.trigger("t")):
        timer = threading.Timer(0.2, gate.open.set)
        timer.start()
        started = time.monotonic()
        result = waiting.send(id="t", event=3)
        waited = time.monotonic() - started
        timer.join()
    assert waited >= 0.15  # it waited for the run instead of failing
    assert (result.queued, result.created) == (False, False)
    assert log.index(("execute", 7)) < log.index(("on_event", 3))
    assert waiting.get_state("t") == 3


def test_a_wait_that_runs_out_says_what_the_instance_is_busy_with(make: Make) -> None:
    sim, client, gate, log = busy_task(make)
    impatient = sim.client(wait="50 ms")
    with in_flight(gate, lambda: client.trigger("t")):
        with pytest.raises(BusyError, match=r"task:flow:t is busy with a run of execute") as info:
            impatient.task("flow").send(id="t", event=5)
        assert f"(attempt 1) since {START.isoformat()}" in str(info.value)
        assert "waited" in str(info.value)
    assert ("on_event", 5) not in log  # nothing of the refused request was applied
    assert client.get_state("t") == 7


def test_trigger_and_terminate_race_and_both_get_their_true_answer(make: Make) -> None:
    """Issue 10 §3: A's trigger while B terminates during its run."""
    gate = Gate()
    runs: list[int] = []

    def execute(ctx: ContinuousContext[int]) -> None:
        runs.append(ctx.run_count)
        gate.hold()
        ctx.set_state(ctx.state + 1)

    job = Continuous.make(
        state=int, schedule=Continuous.every("1 hour"), execute=execute, start_immediately=False
    )
    sim = make(Jobs(tick=job))
    client = sim.client().continuous("tick")
    client.start(id="a", input=0)
    with in_flight(gate, lambda: client.trigger("a")) as answer:
        stopped = client.terminate("a", reason="shutting down")
        assert (stopped.terminated, stopped.reason) == (True, "shutting down")
    assert not isinstance(answer[0], Exception), answer[0]
    assert (answer[0].triggered, answer[0].queued) == (True, False)
    assert runs == [1]
    assert client.status("a").status == "not_found"  # the run's outcome found nothing
    assert types(sim.telemetry).count("job.executed") == 0


def test_clear_during_a_flush_never_reports_the_events_the_flush_took(make: Make) -> None:
    gate = Gate()
    flushed: list[tuple[int, ...]] = []

    def fold(ctx: DebounceEventContext[int, tuple[int, ...]]) -> tuple[int, ...]:
        return (*(ctx.state or ()), ctx.event)

    def execute(ctx: DebounceContext[tuple[int, ...]]) -> None:
        if ctx.state == (1,):
            gate.hold()
        flushed.append(ctx.state or ())

    job = Debounce.make(
        event=int, state=tuple[int, ...], on_event=fold, execute=execute, flush_after="1 hour"
    )
    sim = make(Jobs(batch=job))
    client = sim.client().debounce("batch")
    client.add(id="u", event=1)
    with in_flight(gate, lambda: client.flush("u")) as answer:
        cleared = client.clear("u")
        late = client.add(id="u", event=2)
        assert (cleared.cleared, cleared.discarded_events, cleared.queued) == (True, 0, True)
        assert (late.queued, late.event_count) == (True, 0)
    assert (answer[0].flushing, answer[0].event_count) == (True, 1)
    assert flushed == [(1,)]  # the flush ran; the clear came after it and found nothing
    status = client.status("u")  # the add queued after the clear starts the next batch
    assert (status.status, status.event_count) == ("debouncing", 1)
    assert client.get_state("u") == (2,)


def test_a_queued_event_its_handler_refuses_is_recorded_and_the_next_one_applies(
    make: Make,
) -> None:
    sim, client, gate, log = busy_task(make)
    with in_flight(gate, lambda: client.trigger("t")):
        assert client.send(id="t", event=-1).queued
        assert client.send(id="t", event=4).queued
    failed = [e for e in sim.telemetry if isinstance(e, JobFailed)]
    assert [(e.hook, e.error.message) for e in failed] == [("on_event", "refused -1")]
    assert client.get_state("t") == 4
    assert ("on_event", 4) in log
    assert client.status("t").event_count == 2  # the refused one was not accepted


def test_a_flood_of_requests_to_a_busy_instance_is_bounded(
    make: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("durable_jobs._runtime.MAX_PENDING", 3)
    _sim, client, gate, log = busy_task(make)
    with in_flight(gate, lambda: client.trigger("t")):
        for event in (1, 2, 3):
            assert client.send(id="t", event=event).queued
        with pytest.raises(QueueFullError, match="3 requests queued"):
            client.send(id="t", event=4)
    assert [event for hook, event in log if hook == "on_event"] == [7, 1, 2, 3]


def test_requests_return_before_the_run_and_the_worker_runs_it(make: Make) -> None:
    """The memory interpreter is its own worker: the run a request made due is done
    when the call returns, yet the request's own transition only recorded it."""
    seen: list[str] = []

    def execute(ctx: ContinuousContext[int]) -> None:
        seen.append("execute")

    job = Continuous.make(
        state=int, schedule=Continuous.every("1 hour"), execute=execute, start_immediately=True
    )
    sim: Harness = make(Jobs(tick=job))
    client = sim.client().continuous("tick")
    assert client.start(id="a", input=0).created
    assert seen == ["execute"]
    assert client.status("a").run_count == 1
    assert types(sim.telemetry) == ["job.started", "job.executed"]


def test_status_counts_only_an_execute_as_the_next_run(make: Make) -> None:
    """An ``on_idle`` owed to a worker, or a ``send`` queued behind a run, is not an
    ``execute``: a Task's ``next_run_at`` shows the schedule (or a trigger), not them."""
    _sim, client, gate, _log = busy_task(make)
    with in_flight(gate, lambda: client.trigger("t")):
        assert client.send(id="t", event=1).queued
        status = client.status("t")
        assert (status.status, status.next_run_at) == ("idle", None)
        assert client.trigger("t").queued
        assert client.status("t").next_run_at == START  # a trigger is an execute


def test_a_run_that_terminates_keeps_the_events_queued_behind_it(make: Make) -> None:
    """Sends and adds answered ``queued=True`` came after the run: a ``ctx.terminate()``
    in that run purges the instance, and they are applied to the fresh one."""
    gate = Gate()
    seen: list[int] = []

    def on_event(ctx: TaskContext[int, int]) -> None:
        seen.append(ctx.event)
        ctx.set_state(ctx.event)

    def execute(ctx: TaskContext[int, int]) -> None:
        gate.hold()
        ctx.terminate("done")

    def fold(ctx: DebounceEventContext[int, tuple[int, ...]]) -> tuple[int, ...]:
        return (*(ctx.state or ()), ctx.event)

    def flush(ctx: DebounceContext[tuple[int, ...]]) -> None:
        gate.hold()
        ctx.terminate("enough")

    jobs = Jobs(
        flow=Task.make(state=int, event=int, on_event=on_event, execute=execute),
        batch=Debounce.make(
            event=int, state=tuple[int, ...], on_event=fold, execute=flush, flush_after="1 h"
        ),
    )
    sim = make(jobs)
    task = sim.client().task("flow")
    task.send(id="t", event=1)
    with in_flight(gate, lambda: task.trigger("t")):
        assert task.send(id="t", event=2).queued
    assert seen == [1, 2]
    assert task.get_state("t") == 2  # a fresh task, made by the queued send
    assert task.status("t").event_count == 1
    gate.open.clear()
    gate.inside.clear()
    batch = sim.client().debounce("batch")
    batch.add(id="b", event=1)
    with in_flight(gate, lambda: batch.flush("b")):
        assert batch.add(id="b", event=2).queued
    assert batch.get_state("b") == (2,)
    assert types(sim.telemetry).count("job.terminated") == 2


def test_a_queued_add_the_reducer_refuses_leaves_no_empty_batch(make: Make) -> None:
    gate = Gate()

    def fold(ctx: DebounceEventContext[int, tuple[int, ...]]) -> tuple[int, ...]:
        if ctx.event < 0:
            raise ValueError("negative")
        return (*(ctx.state or ()), ctx.event)

    def flush(ctx: DebounceContext[tuple[int, ...]]) -> None:
        gate.hold()

    job = Debounce.make(
        event=int, state=tuple[int, ...], on_event=fold, execute=flush, flush_after="1 h"
    )
    sim = make(Jobs(batch=job))
    batch = sim.client().debounce("batch")
    batch.add(id="b", event=1)
    with in_flight(gate, lambda: batch.flush("b")):
        assert batch.add(id="b", event=-1).queued
    assert batch.status("b").status == "not_found"
    assert sim.next_alarm_at() is None


def test_a_waiting_client_in_a_hook_runs_the_work_it_waits_for(make: Make) -> None:
    """On an interpreter that is its own worker, a client that waits, called from a
    hook, does not wait for work only this call would run: it runs it."""
    log: list[str] = []
    holder: dict[str, Harness] = {}

    def on_event(ctx: TaskContext[int, int]) -> None:
        log.append(f"on_event {ctx.id} {ctx.event}")
        if ctx.id == "a":
            other = holder["sim"].client(wait="5 seconds").task("flow")
            assert other.trigger("b").queued is False
            assert other.send(id="b", event=9).queued is False

    def execute(ctx: TaskContext[int, int]) -> None:
        log.append(f"execute {ctx.id}")

    job = Task.make(state=int, event=int, on_event=on_event, execute=execute)
    sim = make(Jobs(flow=job))
    holder["sim"] = sim
    client = sim.client().task("flow")
    client.send(id="b", event=1)
    started = time.monotonic()
    client.send(id="a", event=1)
    assert time.monotonic() - started < 2  # it did not wait out its 5 seconds
    assert log == ["on_event b 1", "on_event a 1", "execute b", "on_event b 9"]


def test_work_that_keeps_making_work_due_cannot_keep_a_call_from_returning(
    make: Make, caplog: pytest.LogCaptureFixture
) -> None:
    holder: dict[str, Harness] = {}
    runs: list[str] = []

    def execute(ctx: TaskContext[int, int]) -> None:
        runs.append(ctx.id)
        if len(runs) < 5000:  # (so that a regression fails instead of hanging)
            holder["sim"].client().task("flow").trigger("y" if ctx.id == "x" else "x")

    job = Task.make(state=int, event=int, on_event=lambda ctx: None, execute=execute)
    sim = make(Jobs(flow=job))
    holder["sim"] = sim
    client = sim.client().task("flow")
    client.send(id="x", event=0)
    client.send(id="y", event=0)
    with caplog.at_level("WARNING", logger="durable_jobs"):
        assert client.trigger("x").triggered
    assert 500 <= len(runs) <= 2000  # bounded, and the rest stays due
    assert "left for advance or a worker" in caplog.text
    assert sim.next_alarm_at() == START


def test_a_request_from_a_hook_that_outlived_its_call_still_gets_its_work_run(
    make: Make,
) -> None:
    """A sync hook abandoned on its timeout goes on in its thread; a request it makes
    after its own call returned is top-level, so the work it makes due runs (it is not
    left on the finished call's list)."""
    holder: dict[str, Harness] = {}
    ran: list[str] = []
    done = threading.Event()

    def slow(ctx: TaskContext[int, int]) -> None:
        time.sleep(0.3)
        holder["sim"].client().task("flow").trigger("b")
        done.set()

    def execute(ctx: TaskContext[int, int]) -> None:
        ran.append(ctx.id)

    jobs = Jobs(
        slow=Task.make(
            state=int, event=int, on_event=lambda ctx: None, execute=slow, timeout="100 ms"
        ),
        flow=Task.make(state=int, event=int, on_event=lambda ctx: None, execute=execute),
    )
    sim = make(jobs)
    holder["sim"] = sim
    sim.client().task("flow").send(id="b", event=0)
    sim.client().task("slow").send(id="a", event=0)
    assert sim.client().task("slow").trigger("a").triggered  # its execute times out
    assert done.wait(WAIT)
    for _ in range(200):
        if ran:
            break
        time.sleep(0.01)
    assert ran == ["b"]


def test_one_instance_with_much_owed_work_counts_once_toward_the_inline_bound(
    make: Make,
) -> None:
    """1,100 sends from a hook leave one instance owing work 1,100 times: it is one
    instance's work, so the trigger made after them still runs before the call returns."""
    holder: dict[str, Harness] = {}
    ran: list[str] = []

    def fan_out(ctx: TaskContext[int, int]) -> None:
        flow = holder["sim"].client().task("flow")
        for n in range(1100):
            flow.send(id="b", event=n)
        flow.trigger("c")

    def execute(ctx: TaskContext[int, int]) -> None:
        ran.append(ctx.id)

    jobs = Jobs(
        fan=Task.make(state=int, event=int, on_event=lambda ctx: None, execute=fan_out),
        flow=Task.make(
            state=int,
            event=int,
            on_event=lambda ctx: ctx.set_state(ctx.event),
            execute=execute,
            on_idle=lambda ctx: None,
        ),
    )
    sim = make(jobs)
    holder["sim"] = sim
    sim.client().task("flow").send(id="c", event=0)
    sim.client().task("fan").send(id="a", event=0)
    sim.client().task("fan").trigger("a")
    assert ran == ["c"]
    assert sim.client().task("flow").get_state("b") == 1099


def test_a_terminate_keeps_a_trigger_queued_between_two_sends(make: Make) -> None:
    gate = Gate()
    log: list[str] = []

    def on_event(ctx: TaskContext[int, int]) -> None:
        log.append(f"on_event {ctx.event}")
        ctx.set_state(ctx.event)

    def execute(ctx: TaskContext[int, int]) -> None:
        log.append(f"execute {ctx.state}")
        if ctx.state == 7:
            gate.hold()
            ctx.terminate("done")

    sim = make(Jobs(flow=Task.make(state=int, event=int, on_event=on_event, execute=execute)))
    task = sim.client().task("flow")
    task.send(id="t", event=7)
    with in_flight(gate, lambda: task.trigger("t")):
        assert task.send(id="t", event=1).queued
        assert task.trigger("t").queued
        assert task.send(id="t", event=2).queued
    assert log == ["on_event 7", "execute 7", "on_event 1", "execute 1", "on_event 2"]
    assert task.status("t").execute_count == 1


def test_a_fresh_task_whose_only_queued_send_is_refused_is_not_left_empty(make: Make) -> None:
    gate = Gate()

    def on_event(ctx: TaskContext[int, int]) -> None:
        if ctx.event < 0:
            raise ValueError("refused")
        ctx.set_state(ctx.event)

    def execute(ctx: TaskContext[int, int]) -> None:
        gate.hold()
        ctx.terminate("done")

    sim = make(Jobs(flow=Task.make(state=int, event=int, on_event=on_event, execute=execute)))
    task = sim.client().task("flow")
    task.send(id="t", event=7)
    with in_flight(gate, lambda: task.trigger("t")):
        assert task.send(id="t", event=-1).queued
    assert task.status("t").status == "not_found"


def test_a_waiting_client_in_a_hook_runs_owed_work_as_a_worker_would(make: Make) -> None:
    """The work it runs sees the asking hook's run as in flight (queued behind it), not
    as a re-entrant call refused with ``ConflictError``."""
    holder: dict[str, Harness] = {}

    def a_execute(ctx: TaskContext[int, int]) -> None:
        waiting = holder["sim"].client(wait="5 seconds").task("flow")
        holder["sim"].client().task("flow").trigger("b")
        waiting.send(id="b", event=1)

    def b_execute(ctx: TaskContext[int, int]) -> None:
        assert holder["sim"].client().task("flow").send(id="a", event=99).queued
        holder["sim"].client().task("flow").trigger("c")  # work of its own hooks runs too

    def execute(ctx: TaskContext[int, int]) -> None:
        if ctx.id == "c":
            ctx.set_state(42)
            return
        (a_execute if ctx.id == "a" else b_execute)(ctx)

    job = Task.make(
        state=int, event=int, on_event=lambda ctx: ctx.set_state(ctx.event), execute=execute
    )
    sim = make(Jobs(flow=job))
    holder["sim"] = sim
    client = sim.client().task("flow")
    for id_ in "abc":
        client.send(id=id_, event=0)
    client.trigger("a")
    assert not [e for e in sim.telemetry if isinstance(e, JobFailed)]
    assert client.get_state("a") == 99
    assert client.get_state("b") == 1
    assert client.get_state("c") == 42


def test_a_call_can_wait_on_its_own(make: Make) -> None:
    """A call's ``wait=`` overrides its client's: one call waits while others queue."""
    sim, client, gate, log = busy_task(make)
    with in_flight(gate, lambda: client.trigger("t")):
        with pytest.raises(BusyError, match="busy with a run of execute"):
            client.send(id="t", event=5, wait="30 ms")
        with pytest.raises(BusyError):
            client.trigger("t", wait="0 s")
        assert client.send(id="t", event=6).queued  # the client's default: queue
        timer = threading.Timer(0.1, gate.open.set)
        timer.start()
        result = sim.client(wait="10 ms").task("flow").send(id="t", event=8, wait="10 s")
        timer.join()
    assert result.queued is False  # it waited, past the client's 10 ms, and applied
    assert [event for hook, event in log if hook == "on_event"][-2:] == [6, 8]
    assert ("on_event", 5) not in log
