"""Requests on SQLite never run job code (issue 10 §1): they commit the run as due now
and return; a worker runs it. ``inline=True`` asks for the memory interpreter's way."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from durable_jobs import (
    Continuous,
    ContinuousContext,
    Debounce,
    DebounceContext,
    Jobs,
    Task,
    TaskContext,
)
from durable_jobs.interpreters.clock import ManualClock
from durable_jobs.interpreters.sqlite import SqliteInterpreter

Ran = list[tuple[str, str]]  # (hook, thread name)


def registry(ran: Ran) -> Jobs:
    def record(hook: str) -> Callable[[Any], None]:
        def hook_fn(ctx: Any) -> None:
            ran.append((hook, threading.current_thread().name))

        return hook_fn

    def on_event(ctx: TaskContext[int, int]) -> None:
        ran.append(("on_event", threading.current_thread().name))
        ctx.set_state(ctx.event)

    def tick(ctx: ContinuousContext[int]) -> None:
        record("continuous.execute")(ctx)

    def flush(ctx: DebounceContext[int]) -> None:
        record("debounce.execute")(ctx)

    return Jobs(
        tick=Continuous.make(state=int, schedule=Continuous.every("1 hour"), execute=tick),
        batch=Debounce.make(event=int, execute=flush, flush_after="1 hour", max_events=2),
        flow=Task.make(
            state=int,
            event=int,
            on_event=on_event,
            execute=record("task.execute"),
            on_idle=record("task.on_idle"),
        ),
    )


def make_requests(db: SqliteInterpreter) -> None:
    client = db.client()
    assert client.continuous("tick").start(id="a", input=0).created  # start_immediately
    assert client.continuous("tick").trigger("a").triggered
    client.debounce("batch").add(id="b", event=1)
    assert client.debounce("batch").add(id="b", event=2).event_count == 2  # max_events
    client.debounce("batch").add(id="c", event=1)
    assert client.debounce("batch").flush("c").flushing
    assert client.task("flow").send(id="t", event=5).created  # on_idle afterwards
    assert client.task("flow").trigger("t").triggered


WORKER_HOOKS = ["continuous.execute", "debounce.execute", "task.execute", "task.on_idle"]


def test_requests_leave_job_code_to_a_worker(tmp_path: Path) -> None:
    ran: Ran = []
    with SqliteInterpreter(registry(ran), tmp_path / "jobs.db") as db:
        make_requests(db)
        assert [hook for hook, _ in ran] == ["on_event"]  # the caller's own answer only
        assert db.client().continuous("tick").status("a").run_count == 0
        db.run_due()  # a worker (here, this thread) runs what the requests made due
    hooks = sorted(hook for hook, _ in ran)
    assert hooks == sorted(
        ["on_event", "continuous.execute", "continuous.execute"]
        + ["debounce.execute"] * 2
        + ["task.on_idle", "task.execute", "task.on_idle"]
    )


def test_a_worker_thread_of_the_process_picks_requests_up(tmp_path: Path) -> None:
    ran: Ran = []
    done = threading.Event()
    with SqliteInterpreter(registry(ran), tmp_path / "jobs.db") as db:
        worker = threading.Thread(target=db.run_forever, name="worker", daemon=True)
        worker.start()
        try:
            make_requests(db)
            caller = threading.current_thread().name

            def all_ran() -> bool:
                return len(ran) >= 8

            for _ in range(500):
                if all_ran():
                    done.set()
                    break
                threading.Event().wait(0.01)
        finally:
            db.stop()
            worker.join(10)
    assert done.is_set(), ran
    assert {thread for hook, thread in ran if hook in WORKER_HOOKS}.isdisjoint({caller})
    assert [thread for hook, thread in ran if hook == "on_event"] == [caller]


def test_inline_runs_what_a_request_made_due_before_it_returns(tmp_path: Path) -> None:
    ran: Ran = []
    with SqliteInterpreter(registry(ran), tmp_path / "jobs.db", inline=True) as db:
        make_requests(db)
        assert db.run_due() == 0  # nothing was left for a worker
    caller = threading.current_thread().name
    assert len(ran) == 8
    assert {thread for _, thread in ran} == {caller}


def test_a_burst_of_events_gets_one_on_idle_after_the_last(tmp_path: Path) -> None:
    """On SQLite without a worker, each ``send`` leaves ``on_idle`` owed to a worker;
    the next ``send`` still runs its ``on_event`` in the caller (an owed ``on_idle``
    does not make the task busy) and replaces it: one ``on_idle`` once the task is idle
    after the last event, with the state as it is then."""
    idled: list[int | None] = []

    def on_event(ctx: TaskContext[int, int]) -> None:
        ctx.set_state(ctx.event)

    def on_idle(ctx: TaskContext[int, int]) -> None:
        idled.append(ctx.state)

    job = Task.make(state=int, event=int, on_event=on_event, execute=print, on_idle=on_idle)
    with SqliteInterpreter(Jobs(flow=job), tmp_path / "jobs.db") as db:
        client = db.client().task("flow")
        answers = [client.send(id="t", event=n) for n in (1, 2, 3)]
        assert [a.queued for a in answers] == [False, False, False]
        assert client.get_state("t") == 3
        assert idled == []
        assert db.run_due() == 1
    assert idled == [3]


def test_events_queued_behind_runs_are_each_handled_once_under_steady_sends(
    tmp_path: Path,
) -> None:
    """A producer keeps sending while a worker applies the sends queued behind runs:
    each event's ``on_event`` runs once and every event is accepted (a queued send's
    handler is a committed run, so new requests queue behind it instead of making the
    worker start it again)."""
    runs: Counter[int] = Counter()

    def on_event(ctx: TaskContext[int, int]) -> None:
        runs[ctx.event] += 1
        time.sleep(0.004)
        ctx.set_state(ctx.event)

    def execute(ctx: TaskContext[int, int]) -> None:
        time.sleep(0.02)

    jobs = Jobs(t=Task.make(state=int, event=int, on_event=on_event, execute=execute))
    path = tmp_path / "jobs.db"
    with (
        SqliteInterpreter(jobs, path, synchronous="OFF") as worker,
        SqliteInterpreter(jobs, path, synchronous="OFF") as producer,
    ):
        client = producer.client().task("t")
        client.send(id="a", event=0)
        client.trigger("a")  # a run owed: the sends that follow queue behind it
        thread = threading.Thread(target=worker.run_forever, kwargs={"poll": "50 ms"})
        thread.start()
        try:
            sent = 0
            deadline = time.monotonic() + 0.6
            while time.monotonic() < deadline:
                sent += 1
                client.send(id="a", event=sent)
                time.sleep(0.002)
            for _ in range(1000):
                accepted = client.status("a").event_count
                if accepted == sent + 1:
                    break
                time.sleep(0.01)
        finally:
            worker.stop()
            thread.join(10)
    assert accepted == sent + 1
    assert sorted(runs) == list(range(sent + 1))
    assert max(runs.values()) == 1


def test_alarms_for_one_instant_fire_in_the_order_set_whichever_process_set_them(
    tmp_path: Path,
) -> None:
    """Two interpreters on one file stand for two processes: the alarm order among
    equal due times follows the order of setting, not each process's own clock."""
    fired: list[str] = []

    def tick(ctx: ContinuousContext[int]) -> None:
        fired.append(ctx.id)

    jobs = Jobs(
        tick=Continuous.make(
            state=int, schedule=Continuous.every("1 minute"), execute=tick, start_immediately=False
        )
    )
    clock = ManualClock(datetime(2026, 5, 1, tzinfo=UTC))
    path = tmp_path / "jobs.db"
    with (
        SqliteInterpreter(jobs, path, clock=clock) as first,
        SqliteInterpreter(jobs, path, clock=clock) as second,
    ):
        for interpreter, id_ in ((first, "x"), (second, "z"), (first, "y"), (second, "w")):
            interpreter.client().continuous("tick").start(id=id_, input=0)
        first.advance("1 minute")
    assert fired == ["x", "z", "y", "w"]


def test_concurrent_inline_requests_each_run_their_own_due_work(tmp_path: Path) -> None:
    """SQLite with ``inline=True`` shares the commits of concurrent requests; the due
    work each request leaves still runs in its own caller, before it returns."""
    ran: dict[str, str] = {}

    def execute(ctx: TaskContext[int, int]) -> None:
        ran[ctx.id] = threading.current_thread().name

    job = Task.make(state=int, event=int, on_event=lambda ctx: None, execute=execute)
    ids = [f"t{n}" for n in range(8)]
    with SqliteInterpreter(Jobs(flow=job), tmp_path / "jobs.db", inline=True) as db:
        client = db.client().task("flow")
        for id_ in ids:
            client.send(id=id_, event=0)
        start = threading.Barrier(len(ids))
        done_before_return: dict[str, bool] = {}

        def call(id_: str) -> None:
            start.wait()
            client.trigger(id_)
            done_before_return[id_] = id_ in ran

        threads = [threading.Thread(target=call, args=(i,), name=i) for i in ids]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    assert ran == {id_: id_ for id_ in ids}  # each in the thread that triggered it
    assert all(done_before_return.values())
