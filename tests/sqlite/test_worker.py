"""The SQLite worker loop on the real clock: wake-ups, other connections, concurrency."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

from durable_jobs import Enqueue, Jobs, PoolContext, Task, TaskContext, WorkerPool
from durable_jobs.interpreters.sqlite import SqliteInterpreter

ran: dict[str, float] = {}


def on_event(ctx: TaskContext[int, int]) -> None:
    ctx.set_state(ctx.event)
    ctx.schedule(timedelta(milliseconds=ctx.event))


def execute(ctx: TaskContext[int, int]) -> None:
    ran[ctx.id] = time.time()


async def slow(ctx: PoolContext[int]) -> None:
    ran[f"start-{ctx.event_id}"] = time.time()
    await asyncio.sleep(0.3)
    ran[f"end-{ctx.event_id}"] = time.time()


def quick(ctx: PoolContext[int]) -> None:
    ran[ctx.event_id] = time.time()


JOBS = Jobs(
    remind=Task.make(state=int, event=int, on_event=on_event, execute=execute),
    slow=WorkerPool.make(event=int, concurrency=3, execute=slow),
    quick=WorkerPool.make(event=int, concurrency=1, execute=quick),
)


@contextmanager
def worker(path: Path) -> Iterator[SqliteInterpreter]:
    db = SqliteInterpreter(JOBS, path, synchronous="NORMAL")
    thread = threading.Thread(target=db.run_forever, kwargs={"poll": "5 seconds"})
    thread.start()
    try:
        yield db
    finally:
        db.stop()
        thread.join(timeout=10)
        db.close()
    assert not thread.is_alive()


def _wait_for(key: str, seconds: float = 5.0) -> float:
    deadline = time.time() + seconds
    while key not in ran and time.time() < deadline:
        time.sleep(0.005)
    return ran[key]


def test_an_earlier_alarm_set_in_process_wakes_the_sleeping_worker(tmp_path: Path) -> None:
    ran.clear()
    with worker(tmp_path / "jobs.db") as db:
        time.sleep(0.2)  # the worker is asleep (nothing due, poll 5 s)
        sent = time.time()
        db.client().task("remind").send(id="soon", event=150)
        fired = _wait_for("soon")
    assert 0.14 <= fired - sent < 0.4


def test_a_change_from_another_connection_is_seen_without_waiting_for_the_poll(
    tmp_path: Path,
) -> None:
    ran.clear()
    path = tmp_path / "jobs.db"
    with worker(path):
        time.sleep(0.2)
        with SqliteInterpreter(JOBS, path) as other:  # stands in for another process
            sent = time.time()
            other.client().worker_pool("quick").enqueue(id="x", event=1)
        done = _wait_for("x")
    assert done - sent < 1.0  # the poll is 5 s; PRAGMA data_version notices at once


def test_async_user_code_of_different_shards_runs_concurrently(tmp_path: Path) -> None:
    ran.clear()
    with worker(tmp_path / "jobs.db") as db:
        pool = db.client().worker_pool("slow")
        keys = ["a", "b", "c", "d", "e", "f"]
        shards = {pool.enqueue(id=k, event=1).instance_index: k for k in keys}
        assert len(shards) >= 2
        for key in shards.values():
            _wait_for(f"end-{key}")
    spans = sorted((ran[f"start-{k}"], ran[f"end-{k}"]) for k in shards.values())
    overlapping = any(b_start < a_end for (_, a_end), (b_start, _) in itertools.pairwise(spans))
    assert overlapping, "events of different shards ran one after another"


def long_run(ctx: PoolContext[int]) -> None:
    ran[f"start-{ctx.attempt}"] = time.time()
    time.sleep(1.2)
    ran[f"end-{ctx.attempt}"] = time.time()


LONG = Jobs(long=WorkerPool.make(event=int, concurrency=1, execute=long_run))


def test_a_run_longer_than_its_lease_is_not_taken_for_a_dead_one(tmp_path: Path) -> None:
    ran.clear()
    path = tmp_path / "jobs.db"
    db = SqliteInterpreter(LONG, path, synchronous="NORMAL", lease="300 milliseconds")
    thread = threading.Thread(target=db.run_forever, kwargs={"poll": "50 milliseconds"})
    thread.start()
    try:
        with SqliteInterpreter(LONG, path, lease="300 milliseconds") as other:
            other.client().worker_pool("long").enqueue(id="slow", event=1)
            # A second worker on the same file keeps looking for expired leases meanwhile.
            deadline = time.time() + 5
            while "end-1" not in ran and time.time() < deadline:
                other.run_due()
                time.sleep(0.05)
            status = other.client().worker_pool("long").status()
    finally:
        db.stop()
        thread.join(timeout=10)
        db.close()
    assert "end-1" in ran
    assert "start-2" not in ran, "the run was started again while it was still running"
    assert status.total_processed == 1


def again(ctx: TaskContext[int, int]) -> None:
    ctx.update_state(lambda n: n + 1)
    ctx.schedule(timedelta(0))  # always due again at once


def once(ctx: TaskContext[int, int]) -> None:
    ctx.set_state(0)
    ctx.schedule(timedelta(0))


BUSY = Jobs(
    busy=Task.make(state=int, event=int, on_event=once, execute=again),
    other=WorkerPool.make(event=int, concurrency=1, execute=quick),
)


def test_an_instance_that_is_always_due_does_not_starve_the_others(tmp_path: Path) -> None:
    ran.clear()
    with SqliteInterpreter(BUSY, tmp_path / "jobs.db", synchronous="OFF") as db:
        db.client().task("busy").send(id="spin", event=0)
        db.client().worker_pool("other").enqueue(id="waiting", event=1)
        ran_steps = db.run_due(limit=5)
        assert ran_steps == 5  # run_due returns: the spinning task does not hold it
        assert "waiting" in ran
        assert (db.client().task("busy").get_state("spin") or 0) <= 5 * 65


def test_stop_lets_the_runs_going_commit_their_outcomes_and_takes_up_nothing_new(
    tmp_path: Path,
) -> None:
    started = threading.Semaphore(0)
    release = threading.Event()

    def hold(ctx: PoolContext[int]) -> None:
        started.release()
        assert release.wait(10)

    jobs = Jobs(held=WorkerPool.make(event=int, concurrency=2, execute=hold))
    path = tmp_path / "jobs.db"
    with SqliteInterpreter(jobs, path, synchronous="NORMAL") as db:
        pool = db.client().worker_pool("held")
        for i in range(40):  # both shards get events
            pool.enqueue(id=f"e{i}", event=i)
        thread = threading.Thread(target=db.run_forever, kwargs={"workers": 2})
        thread.start()
        assert started.acquire(timeout=5)
        assert started.acquire(timeout=5)  # one run going on each shard
        db.stop()
        release.set()
        thread.join(timeout=10)
        assert not thread.is_alive()
    with SqliteInterpreter(jobs, path) as db:
        status = db.client().worker_pool("held").status()
        assert (status.total_processed, status.total_pending) == (2, 38)
        assert [s.current_event_id for s in status.instances] == [None, None]
        running = db._db.execute("SELECT COUNT(*) FROM instances WHERE running = 1").fetchone()
        assert running == (0,)


def test_group_commit_shares_commits_and_each_attempt_is_stored_before_it_runs(
    tmp_path: Path,
) -> None:
    path = tmp_path / "jobs.db"
    seen_running: list[bool] = []

    def check(ctx: PoolContext[int]) -> None:
        # Another connection must already see this attempt committed as running.
        other = sqlite3.connect(path)
        try:
            row = other.execute(
                "SELECT running FROM instances WHERE instance_id = ?", (ctx.instance_id,)
            ).fetchone()
        finally:
            other.close()
        seen_running.append(row == (1,))

    jobs = Jobs(pool=WorkerPool.make(event=int, concurrency=8, execute=check))
    with SqliteInterpreter(jobs, path, synchronous="NORMAL") as db:
        db.client().worker_pool("pool").enqueue_many([Enqueue(f"e{i}", i) for i in range(64)])
        commits: list[str] = []
        db._db.set_trace_callback(
            lambda sql: commits.append(sql) if sql.strip().upper() == "COMMIT" else None
        )
        assert db.run_due() == 8  # the 8 shards, each taken up once
        db._db.set_trace_callback(None)
        assert db.client().worker_pool("pool").status().total_processed == 64
    assert seen_running == [True] * 64
    # One commit per round of the 8 shards (plus the last outcomes), not 2 per event.
    assert len(commits) <= 64 // 8 + 2, len(commits)
