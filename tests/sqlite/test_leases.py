"""Leases under faults: one instance never runs in two places at once.

Two workers (two interpreters, each with its own connection and lease owner, as two
processes would have) share one file while a long run is in flight, and a fault hits:

* another connection holds the write lock for longer than the busy timeout: the
  heartbeat cannot renew, and must neither die nor let the other worker start the run
  again; the other worker keeps running too;
* the wall clock steps forward by more than a lease: a step alone never starts a second
  run;
* ids a store could mangle (emoji, ``%`` and ``:``, 1,024 characters, control
  characters) are claimed, renewed and deduplicated like any other.
"""

from __future__ import annotations

import itertools
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from durable_jobs import (
    Backoff,
    Enqueue,
    Instant,
    Jobs,
    PoolContext,
    Retry,
    Task,
    TaskContext,
    WorkerPool,
)
from durable_jobs.interpreters.clock import SystemClock
from durable_jobs.interpreters.sqlite import SqliteInterpreter
from tests.sqlite.support import count_claims

RUN_SECONDS = 3.0
LEASE = "1 second"


class Runs:
    """Every run of ``execute``, as (instance, start, end) on the monotonic clock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.spans: list[tuple[str, float, float]] = []
        self.started = threading.Event()

    def overlapping(self) -> list[tuple[str, float, float]]:
        with self.lock:
            spans = sorted(self.spans, key=lambda span: (span[0], span[1]))
        return [
            later
            for earlier, later in itertools.pairwise(spans)
            if earlier[0] == later[0] and later[1] < earlier[2]
        ]


def _long_task(runs: Runs, seconds: float = RUN_SECONDS) -> Jobs:
    def on_event(ctx: TaskContext[int, int]) -> None:
        ctx.set_state(ctx.event)
        ctx.schedule("0 seconds")

    def execute(ctx: TaskContext[int, int]) -> None:
        start = time.monotonic()
        runs.started.set()
        time.sleep(seconds)
        with runs.lock:
            runs.spans.append((ctx.id, start, time.monotonic()))

    retry = Retry(max_attempts=5, backoff=Backoff.constant("0 seconds"), jitter=False)
    return Jobs(t=Task.make(state=int, event=int, on_event=on_event, execute=execute, retry=retry))


@contextmanager
def _workers(
    *interpreters: SqliteInterpreter, poll: str = "50 ms"
) -> Iterator[list[threading.Thread]]:
    threads = [
        threading.Thread(target=db.run_forever, kwargs={"poll": poll, "workers": 2})
        for db in interpreters
    ]
    for thread in threads:
        thread.start()
    try:
        yield threads
    finally:
        for db in interpreters:
            db.stop()
        for thread in threads:
            thread.join(RUN_SECONDS * 4)
        for db in interpreters:
            db.close()


def _heartbeat_alive(db: SqliteInterpreter) -> bool:
    return db._heartbeat is not None and db._heartbeat.is_alive()


def test_a_write_lock_held_past_the_busy_timeout_neither_kills_the_heartbeat_nor_reruns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    runs = Runs()
    jobs, path = _long_task(runs), tmp_path / "jobs.db"
    owner = SqliteInterpreter(jobs, path, lease=LEASE, busy_timeout="300 milliseconds")
    other = SqliteInterpreter(jobs, path, lease=LEASE, busy_timeout="300 milliseconds")
    with _workers(owner) as threads:
        owner.client().task("t").send(id="x", event=1)
        assert runs.started.wait(10)
        with _workers(other) as more:
            threads += more
            time.sleep(0.5)  # the other worker has seen the run's lease being renewed
            locker = sqlite3.connect(path, isolation_level=None)
            locker.execute("BEGIN EXCLUSIVE")
            time.sleep(2.0)  # two leases, and far past either busy timeout
            locker.execute("COMMIT")
            locker.close()
            deadline = time.monotonic() + RUN_SECONDS + 3
            while time.monotonic() < deadline and not runs.spans:
                time.sleep(0.05)
            time.sleep(1.5)  # a second run, if one were started, would be under way
            assert all(thread.is_alive() for thread in threads)  # both workers still run
            assert _heartbeat_alive(owner)
            assert owner.client().task("t").status("x").status == "idle"
    assert [span[0] for span in runs.spans] == ["x"]  # ran once
    assert "could not renew leases" in caplog.text  # the failed renewals were said


class SteppedClock(SystemClock):
    """The wall clock moved by ``offset`` ms (an NTP step, a VM resumed); its monotonic
    clock does not move."""

    def __init__(self) -> None:
        self.offset = 0

    def now(self) -> Instant:
        return Instant(super().now() + self.offset)


def test_a_forward_step_of_the_wall_clock_never_starts_a_second_run(tmp_path: Path) -> None:
    runs = Runs()
    jobs, path, clock = _long_task(runs), tmp_path / "jobs.db", SteppedClock()
    owner = SqliteInterpreter(jobs, path, clock=clock, lease=LEASE)
    other = SqliteInterpreter(jobs, path, clock=clock, lease=LEASE)
    with _workers(owner, other):
        owner.client().task("t").send(id="x", event=1)
        assert runs.started.wait(10)
        time.sleep(0.3)
        clock.offset += 5_000  # five leases at once, mid-run
        deadline = time.monotonic() + RUN_SECONDS + 3
        while time.monotonic() < deadline and not runs.spans:
            time.sleep(0.05)
        time.sleep(1.5)
    assert [span[0] for span in runs.spans] == ["x"]
    assert runs.overlapping() == []


def _a_run_whose_worker_died(path: Path) -> tuple[Jobs, list[int]]:
    """A one-shard pool whose first attempt kills its worker mid-run (the row is left
    running, leased by a dead owner); the attempts seen so far."""
    attempts: list[int] = []

    def execute(ctx: PoolContext[int]) -> None:
        attempts.append(ctx.attempt)
        if ctx.attempt == 1:
            raise KeyboardInterrupt  # the worker dies mid-run

    retry = Retry(max_attempts=3, backoff=Backoff.constant("0 seconds"), jitter=False)
    jobs = Jobs(pool=WorkerPool.make(event=int, concurrency=1, execute=execute, retry=retry))
    with SqliteInterpreter(jobs, path, synchronous="OFF", lease="300 ms") as first:
        first.client().worker_pool("pool").enqueue(id="e", event=1)
        with pytest.raises(KeyboardInterrupt):
            first.run_due()
    return jobs, attempts


def test_a_dead_workers_run_is_still_recovered_one_lease_after_it_is_seen(
    tmp_path: Path,
) -> None:
    """The other side of judging leases by renewals seen: a run whose worker died is
    recovered (and counted as an interrupted attempt) once no renewal was seen for a
    lease."""
    path = tmp_path / "jobs.db"
    jobs, attempts = _a_run_whose_worker_died(path)
    with SqliteInterpreter(jobs, path, lease="300 ms") as survivor:
        started = time.monotonic()
        while time.monotonic() - started < 5 and attempts != [1, 2]:
            survivor.run_due()
            time.sleep(0.02)
        assert attempts == [1, 2]
        assert time.monotonic() - started >= 0.3  # not before a lease without renewals
        assert survivor.client().worker_pool("pool").status().total_processed == 1


ODD_IDS = ["🚀 launch", "a:b%3Ac", "\x1b[2J\x1b]0;title\x07", "x" * 1024, "é" * 1024]


@pytest.mark.parametrize("odd", ODD_IDS, ids=["emoji", "escapes", "control", "long", "long-utf8"])
def test_odd_ids_are_claimed_renewed_and_run_once(tmp_path: Path, odd: str) -> None:
    runs = Runs()
    jobs, path = _long_task(runs, seconds=2.0), tmp_path / "jobs.db"
    owner = SqliteInterpreter(jobs, path, lease="1 second")  # renewed twice or more
    other = SqliteInterpreter(jobs, path, lease="1 second")
    with _workers(owner, other):
        owner.client().task("t").send(id=odd, event=1)
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline and not runs.spans:
            time.sleep(0.05)
        time.sleep(0.5)
        assert owner.client().task("t").status(odd).status == "idle"
    assert [span[0] for span in runs.spans] == [odd]  # renewed all along: ran once


@pytest.mark.parametrize("odd", ODD_IDS, ids=["emoji", "escapes", "control", "long", "long-utf8"])
def test_odd_event_ids_are_deduplicated_in_batches(tmp_path: Path, odd: str) -> None:
    done: list[str] = []
    pool = WorkerPool.make(
        event=int,
        concurrency=1,
        execute=lambda ctx: done.append(ctx.event_id),
        dedup_retention="1 hour",
    )
    with SqliteInterpreter(Jobs(pool=pool), tmp_path / "jobs.db") as db:
        client = db.client().worker_pool("pool")
        filler = [Enqueue(f"f{i}", i) for i in range(600)]  # more ids than one statement
        sent = client.enqueue_many([Enqueue(odd, 1), *filler, Enqueue(odd, 2)])
        assert [r.duplicate for r in sent] == [False] * 601 + [True]
        again = client.enqueue_many([*filler[:3], Enqueue(odd, 3)])  # still pending
        assert [r.duplicate for r in again] == [True] * 4
        db.run_due()
        assert done.count(odd) == 1
        after = client.enqueue_many([Enqueue(odd, 4), Enqueue("new", 5)])  # finished
        assert [r.duplicate for r in after] == [True, False]
        status = client.status()
        assert (status.total_pending, status.total_processed) == (1, 601)


def test_a_worker_waiting_for_a_dead_workers_lease_to_run_out_sleeps_meanwhile(
    tmp_path: Path,
) -> None:
    """A run whose lease ended long ago on the wall clock, but which this worker sees
    only now, is not recovered for a lease; the worker sleeps until then instead of
    polling in a loop, then recovers it (the interrupted attempt is retried)."""
    path = tmp_path / "jobs.db"
    jobs, attempts = _a_run_whose_worker_died(path)
    with sqlite3.connect(path) as raw:  # it died long ago
        raw.execute("UPDATE instances SET lease_until = 1000 WHERE running = 1")
    worker = SqliteInterpreter(jobs, path, synchronous="OFF", lease="1500 ms")
    claims = count_claims(worker)
    with _workers(worker, poll="5 seconds"):
        time.sleep(1.0)
        assert claims() <= 5  # asleep, not polling, while the lease may still be renewed
        assert attempts == [1]
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and attempts != [1, 2]:
            time.sleep(0.05)
        assert attempts == [1, 2]
