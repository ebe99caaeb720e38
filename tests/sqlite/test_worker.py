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
from typing import Any

import pytest

from durable_jobs import (
    Backoff,
    ConflictError,
    Enqueue,
    Instant,
    Jobs,
    PoolContext,
    Retry,
    Task,
    TaskContext,
    WorkerPool,
)
from durable_jobs.interpreters.clock import ManualClock
from durable_jobs.interpreters.engine import Chain
from durable_jobs.interpreters.memory import MemoryInterpreter
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
        running = db._sql.db.execute("SELECT COUNT(*) FROM instances WHERE running = 1").fetchone()
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
        db._sql.db.set_trace_callback(
            lambda sql: commits.append(sql) if sql.strip().upper() == "COMMIT" else None
        )
        assert db.run_due() == 8  # the 8 shards, each taken up once
        db._sql.db.set_trace_callback(None)
        assert db.client().worker_pool("pool").status().total_processed == 64
    assert seen_running == [True] * 64
    # One commit per round of the 8 shards (plus the last outcomes), not 2 per event.
    assert len(commits) <= 64 // 8 + 2, len(commits)


# ------------------------------------------------- leases, batches and failed writes


def _held_pool() -> tuple[Jobs, threading.Event, threading.Event]:
    """A one-shard pool whose ``execute`` sets ``running`` and waits for ``release``."""
    running, release = threading.Event(), threading.Event()

    def hold(ctx: PoolContext[int]) -> None:
        running.set()
        assert release.wait(10)

    return Jobs(pool=WorkerPool.make(event=int, concurrency=1, execute=hold)), running, release


def test_runs_taken_up_together_by_run_due_can_call_each_other(tmp_path: Path) -> None:
    # Tasks refuse requests while a run is in flight, so run_due runs each on its own
    # (attempt committed just before, outcome just after): a call from one run to the
    # other, forward or backward, is answered at once, as in memory.
    log: list[object] = []
    client: list[Any] = []

    def on_event(ctx: TaskContext[int, int]) -> None:
        ctx.set_state(ctx.event)
        if ctx.event == 0:
            ctx.schedule(timedelta(seconds=1))

    def execute(ctx: TaskContext[int, int]) -> None:
        log.append(ctx.id)
        started = time.monotonic()
        other = "b" if ctx.id == "a" else "a"
        client[0].task("t").send(id=other, event=5)
        log.append(("sent", other, time.monotonic() - started < 0.5))

    jobs = Jobs(t=Task.make(state=int, event=int, on_event=on_event, execute=execute))
    expected = ["a", ("sent", "b", True), "b", ("sent", "a", True)]
    memory = MemoryInterpreter(jobs)
    client.append(memory.client())
    memory.client().task("t").send(id="a", event=0)
    memory.client().task("t").send(id="b", event=0)
    memory.advance("2 seconds")
    assert log == expected
    log.clear()
    clock = ManualClock(memory.now() - timedelta(seconds=2))
    with SqliteInterpreter(jobs, tmp_path / "jobs.db", clock=clock) as db:
        client[0] = db.client()
        db.client().task("t").send(id="a", event=0)
        db.client().task("t").send(id="b", event=0)
        clock.set(Instant(clock.now() + 2000))
        assert db.run_due() == 2
        assert log == expected
        assert [db.client().task("t").get_state(i) for i in "ab"] == [5, 5]
        assert not db.errors


def test_a_run_that_raises_a_base_exception_lets_go_of_what_run_due_took_up(
    tmp_path: Path,
) -> None:
    def die(ctx: PoolContext[int]) -> None:
        raise KeyboardInterrupt

    def die_too(ctx: TaskContext[int, int]) -> None:
        raise KeyboardInterrupt

    jobs = Jobs(
        pool=WorkerPool.make(event=int, concurrency=4, execute=die),
        t=Task.make(
            state=int,
            event=int,
            on_event=lambda ctx: ctx.schedule(ctx.now),
            execute=die_too,
        ),
    )
    with SqliteInterpreter(jobs, tmp_path / "jobs.db", synchronous="OFF") as db:
        db.client().worker_pool("pool").enqueue_many([Enqueue(f"e{i}", i) for i in range(8)])
        with pytest.raises(KeyboardInterrupt):
            db.run_due()  # the first of four shards' runs dies: all four are let go
        assert (db._claimed, db._held, db._busy) == (set(), set(), set())
        db.client().task("t").send(id="x", event=0)
        with pytest.raises(KeyboardInterrupt):
            db.run_due()
        assert (db._claimed, db._held, db._busy) == (set(), set(), set())


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_user_code_calling_enqueue_many_on_its_own_shard_is_refused_at_once(
    tmp_path: Path, kind: str
) -> None:
    # async hooks run on the runner's loop thread: the guard must follow them there.
    answers: list[tuple[str, float]] = []
    client: list[Any] = []

    def call_itself() -> None:
        started = time.monotonic()
        try:
            client[0].worker_pool("pool").enqueue_many([Enqueue("again", 1)])
        except ConflictError as error:
            answers.append((str(error), time.monotonic() - started))

    def execute(ctx: PoolContext[int]) -> None:
        call_itself()

    async def execute_async(ctx: PoolContext[int]) -> None:
        call_itself()

    hook = execute if kind == "sync" else execute_async
    jobs = Jobs(pool=WorkerPool.make(event=int, concurrency=1, execute=hook))
    with SqliteInterpreter(jobs, tmp_path / "jobs.db", synchronous="OFF") as db:
        client.append(db.client())
        db.client().worker_pool("pool").enqueue(id="first", event=0)
        db.run_due()
    ((message, seconds),) = answers
    assert "is running user code and cannot be called from it" in message
    assert seconds < 0.5


def test_another_thread_can_enqueue_to_a_shard_while_its_event_runs(tmp_path: Path) -> None:
    jobs, running, release = _held_pool()
    with SqliteInterpreter(jobs, tmp_path / "jobs.db", synchronous="OFF") as db:
        pool = db.client().worker_pool("pool")
        pool.enqueue(id="first", event=0)
        thread = threading.Thread(target=db.run_forever, kwargs={"workers": 1})
        thread.start()
        try:
            assert running.wait(5)
            started = time.monotonic()
            assert pool.enqueue(id="second", event=1).position == 1
            assert pool.enqueue_many([Enqueue("third", 2)])[0].position == 2
            assert time.monotonic() - started < 1.0  # answered, not made to wait for the run
        finally:
            release.set()
            db.stop()
            thread.join(10)


def test_an_enqueue_from_another_process_leaves_the_running_events_lease_alone(
    tmp_path: Path,
) -> None:
    jobs, running, release = _held_pool()
    path = tmp_path / "jobs.db"
    worker = SqliteInterpreter(jobs, path, synchronous="OFF")
    other = SqliteInterpreter(jobs, path, synchronous="OFF")  # another lease owner
    thread = threading.Thread(target=worker.run_forever, kwargs={"workers": 1})
    try:
        other.client().worker_pool("pool").enqueue(id="first", event=0)
        thread.start()
        assert running.wait(5)

        def lease() -> tuple[str, int]:
            row = other._sql.db.execute("SELECT lease_owner, lease_until FROM instances").fetchone()
            return str(row[0]), int(row[1])

        before = lease()
        other.client().worker_pool("pool").enqueue(id="second", event=1)
        other.client().worker_pool("pool").enqueue_many([Enqueue("third", 2)])
        assert lease()[0] == before[0] == worker._owner  # the worker still holds it
    finally:
        release.set()
        worker.stop()
        thread.join(10)
        worker.close()
        other.close()


def test_two_workers_recovering_the_same_expired_run_start_one_attempt(tmp_path: Path) -> None:
    attempts: list[int] = []

    def execute(ctx: PoolContext[int]) -> None:
        attempts.append(ctx.attempt)
        if ctx.attempt == 1:
            raise KeyboardInterrupt  # the worker dies mid-run (not an error of the job)

    retry = Retry(max_attempts=5, backoff=Backoff.constant("0 seconds"))
    jobs = Jobs(pool=WorkerPool.make(event=int, concurrency=1, execute=execute, retry=retry))
    path, clock = tmp_path / "jobs.db", ManualClock()
    first, second, third = (
        SqliteInterpreter(jobs, path, clock=clock, lease="10 seconds") for _ in range(3)
    )
    try:
        first.client().worker_pool("pool").enqueue(id="e", event=1)
        with pytest.raises(KeyboardInterrupt):
            first.run_due()
        assert second._claim(5) == third._claim(5) == []  # each sees the lease, held
        clock.set(Instant(clock.now() + 11_000))  # no renewal seen for a whole lease
        # Both read the expired run as claimable before either writes.
        second_claims, third_claims = second._claim(5), third._claim(5)
        assert len(second_claims) == len(third_claims) == 1
        second_runs = second._advance([(c, None) for c in second_claims])
        third_runs = third._advance([(c, None) for c in third_claims])
        assert (len(second_runs), len(third_runs)) == (1, 0)  # the second lease is fresh
    finally:
        for db in (first, second, third):
            db.close()


def test_a_failed_write_lets_the_batch_go_and_the_run_is_recovered(tmp_path: Path) -> None:
    path, clock = tmp_path / "jobs.db", ManualClock()
    holder: list[sqlite3.Connection] = []
    runs: list[int] = []

    def execute(ctx: PoolContext[int]) -> None:
        runs.append(ctx.attempt)
        if len(runs) == 1:  # another connection holds the write lock past the timeout
            other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            other.execute("BEGIN IMMEDIATE")
            holder.append(other)

    retry = Retry(max_attempts=3, backoff=Backoff.constant("0 seconds"))
    jobs = Jobs(pool=WorkerPool.make(event=int, concurrency=1, execute=execute, retry=retry))
    with SqliteInterpreter(jobs, path, clock=clock, lease="10 seconds") as db:
        db._sql.db.execute("PRAGMA busy_timeout = 100")
        db.client().worker_pool("pool").enqueue(id="e", event=1)
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            db.run_due()
        holder[0].execute("ROLLBACK")
        holder[0].close()
        assert (db._claimed, db._held) == (set(), set())  # nothing left taken up
        clock.set(Instant(clock.now() + 11_000))  # the run's lease expires: but the file
        db.run_due()  # was locked, so its owner gets a whole lease from the unlock first
        assert runs == [1]
        clock.set(Instant(clock.now() + 11_000))
        db.run_due()
        assert runs == [1, 2]  # the interrupted attempt counted, the event retried
        assert db.client().worker_pool("pool").status().total_processed == 1


def test_advance_works_from_a_thread_that_runs_no_user_code(tmp_path: Path) -> None:
    jobs, running, release = _held_pool()
    clock = ManualClock()
    with SqliteInterpreter(jobs, tmp_path / "jobs.db", clock=clock) as db:
        db.client().worker_pool("pool").enqueue(id="e", event=1)
        worker = threading.Thread(target=db.run_due)
        worker.start()
        try:
            assert running.wait(5)
            db.advance("1 second")  # another thread's hook is running: not this one's
        finally:
            release.set()
            worker.join(10)
        assert db.client().worker_pool("pool").status().total_processed == 1


def test_an_unreadable_row_is_set_aside_in_memory_and_fixed_code_takes_it_up_at_once(
    tmp_path: Path,
) -> None:
    """A worker whose state class no longer fits a stored row reports it and skips it
    for a lease, writing nothing: the row is not shown as running, and the fixed code,
    deployed next, runs it at once instead of waiting for a lease to run out."""
    ran: list[str] = []

    def execute(ctx: TaskContext[Any, int]) -> None:
        ran.append(ctx.id)

    def task(state: Any) -> Jobs:
        return Jobs(t=Task.make(state=state, event=int, on_event=on_event, execute=execute))

    path, clock = tmp_path / "jobs.db", ManualClock()
    with SqliteInterpreter(task(int), path, clock=clock, lease="10 minutes") as setup:
        setup.client().task("t").send(id="a", event=0)  # due at once, state 0
    with SqliteInterpreter(task(str), path, clock=clock, lease="10 minutes") as old:
        assert old.run_due() == 1
        assert [type(e).__name__ for e in old.errors] == ["StorageError"]
        assert old.run_due() == 0  # skipped for a lease: not claimed again
        raw = old._sql.db.execute("SELECT running, lease_owner, lease_until FROM instances")
        assert raw.fetchone() == (0, None, None)  # nothing written
    with SqliteInterpreter(task(int), path, clock=clock, lease="10 minutes") as fixed:
        assert fixed.run_due() == 1  # at once, on the same clock
        assert ran == ["a"]
        assert fixed.errors == []


def test_a_row_whose_lease_was_renewed_since_the_claim_is_not_read_nor_set_aside(
    tmp_path: Path,
) -> None:
    """Claims only read. When the owner renews a lease between another worker's claim
    and its write, that worker leaves the row alone, even a row it cannot read (setting
    it aside would take the lease from the owner, whose run would then run twice)."""
    clock = ManualClock()
    task = Task.make(state=int, event=int, on_event=on_event, execute=lambda ctx: None)
    with SqliteInterpreter(Jobs(t=task), tmp_path / "jobs.db", clock=clock, lease="10 s") as db:
        db.client().task("t").send(id="x", event=1)
        raw = db._sql.db
        raw.execute(
            "UPDATE instances SET running = 1, lease_owner = 'A', lease_until = ?, "
            "alarm_at = NULL, snapshot = '{'",
            (clock.now() - 1,),
        )
        claim = db._claim

        def claim_then_renew(most: int) -> list[Chain]:
            chains = claim(most)
            raw.execute(
                "UPDATE instances SET lease_until = ? WHERE lease_owner = 'A'",
                (clock.now() + 3_600_000,),
            )
            return chains

        db._claim = claim_then_renew  # type: ignore[method-assign]
        db.run_due()
        assert db.errors == []
        owner, until = raw.execute("SELECT lease_owner, lease_until FROM instances").fetchone()
        assert (owner, until) == ("A", clock.now() + 3_600_000)
