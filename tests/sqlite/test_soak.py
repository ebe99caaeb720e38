"""Soak: kills, a write lock held past the busy timeout, and wall-clock steps, together.

Two worker processes serve the crash test's jobs (``tests/sqlite/crash_jobs.py``) with a
short lease and a busy timeout shorter than the lock the test takes, while the test
process enqueues more work and, in turn, SIGKILLs a worker (a new one replaces it),
holds ``BEGIN EXCLUSIVE`` for several leases, or steps every worker's wall clock forward
by several leases. The lock and the step land while a long run (a ``HOLD`` event) is in
flight, so the heartbeat is shut out, and a worker judging leases by the wall clock would
start that run again. Afterwards:

* nothing is lost: every pool event ran to its end (or is a dead letter), every debounce
  event was in a flushed batch, every task counted down to zero;
* no instance ever ran twice at once: the runs of each instance (a pool shard, a task, a
  batch, the ticker), from their start to their end (or the SIGKILL of their process),
  never overlap.

By default it makes ``DURABLE_JOBS_SOAK_CYCLES`` = 6 faults (about half a minute);
raise it for a long run.
"""

from __future__ import annotations

import itertools
import os
import random
import signal
import sqlite3
import subprocess
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from durable_jobs.interpreters.sqlite import SqliteInterpreter
from tests.sqlite.crash_jobs import HOLD, HOLD_SECONDS, JOBS, start_worker

CYCLES = int(os.environ.get("DURABLE_JOBS_SOAK_CYCLES", "6"))
LEASE_MS = 600  # (a loaded 2-core machine may pause a heartbeat thread for a while)
BUSY = "100 milliseconds"
LOCK_SECONDS = 1.5  # two and a half leases, fifteen busy timeouts
STEP_MS = 3_000  # five leases
PROCESSES = 2
THREADS = 4
STARTUP = 60.0
SETTLE = 3.0

Line = list[str]


def _lines(path: Path) -> list[Line]:
    if not path.exists():
        return []
    return [line.split() for line in path.read_text().splitlines() if line]


def _wait_for_start(path: Path, event_id: str) -> None:
    deadline = time.monotonic() + STARTUP
    while time.monotonic() < deadline:
        if any(line[:3] == ["start", "pool", event_id] for line in _lines(path)):
            return
        time.sleep(0.02)
    pytest.fail(f"no worker started {event_id} within {STARTUP:g} s")


def _instance(line: Line) -> tuple[str, str]:
    """What must never run twice at once: a pool shard, or the job's own instance."""
    kind, ident = line[1], line[2]
    return ("pool", line[4]) if kind == "pool" else (kind, ident)


def _overlaps(lines: list[Line], killed: dict[str, int]) -> list[str]:
    """Runs of one instance that overlap; a run cut by SIGKILL ends at the kill."""
    open_runs: dict[tuple[str, str, str], tuple[int, tuple[str, str]]] = {}
    spans: dict[tuple[str, str], list[tuple[int, int, str]]] = defaultdict(list)
    for line in sorted(lines, key=lambda line: int(line[-1])):
        pid, at = line[-2], int(line[-1])
        run = (pid, line[1], line[2])
        if line[0] == "start":
            open_runs[run] = (at, _instance(line))
        elif run in open_runs:
            start, instance = open_runs.pop(run)
            spans[instance].append((start, at, f"{line[2]}#{line[3]} by {pid}"))
    for (pid, kind, ident), (start, instance) in open_runs.items():
        end = killed.get(pid)
        assert end is not None, f"{kind} {ident} started by live process {pid} never ended"
        spans[instance].append((start, end, f"{ident} by {pid} (killed)"))
    found = []
    for instance, runs in spans.items():
        runs.sort()
        for (began, end, one), (start, _, other) in itertools.pairwise(runs):
            if start < end:
                found.append(f"{instance}: {other} began at {start} during {one} ({began}-{end})")
    return found


def test_kills_a_held_write_lock_and_clock_steps_lose_nothing_and_run_nothing_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "jobs.db"
    log_path, offset_path = tmp_path / "runs.log", tmp_path / "offset"
    said = tmp_path / "workers.err"  # every worker's standard error (the log)
    offset_path.write_text("0")
    monkeypatch.setenv("DURABLE_JOBS_TEST_LOG", str(log_path))
    monkeypatch.setenv("DURABLE_JOBS_CLOCK_OFFSET", str(offset_path))
    rng = random.Random(20261129)

    client_side = SqliteInterpreter(JOBS, db)
    client = client_side.client()
    pool, batch = client.worker_pool("pool"), client.debounce("batch")
    enqueued: list[str] = []
    added: list[int] = []

    def more_work(round_: int) -> None:
        for i in range(6):
            event_id = f"r{round_}-e{i}"
            pool.enqueue(id=event_id, event=i, priority=i % 3)
            enqueued.append(event_id)
        for i in range(3):
            value = len(added)
            batch.add(id=f"b{i}", event=value)
            added.append(value)

    spawned: dict[int, float] = {}

    def spawn() -> subprocess.Popen[bytes]:
        lease = f"{LEASE_MS} milliseconds"
        process = start_worker(db, workers=THREADS, lease=lease, busy_timeout=BUSY, stderr=said)
        spawned[process.pid] = time.monotonic()
        return process

    for round_ in range(3):
        more_work(round_)
    for t in range(3):
        client.task("task").send(id=f"t{t}", event=4)
    client.continuous("tick").start(id="c", input=0)

    workers = [spawn() for _ in range(PROCESSES)]
    killed: dict[str, int] = {}
    offset = 0
    faults = ["lock", "step", "kill"]
    faults_at: list[tuple[str, int]] = []
    try:
        for cycle in range(CYCLES):
            fault = faults[cycle % len(faults)]
            more_work(10 + cycle)
            faults_at.append((fault, time.time_ns()))
            if fault == "kill":
                time.sleep(rng.uniform(0.1, 0.5))
                victim = workers.pop(rng.randrange(len(workers)))
                victim.send_signal(signal.SIGKILL)
                victim.wait(timeout=10)
                killed[str(victim.pid)] = time.time_ns()
                workers.append(spawn())
                continue
            held = f"hold-{cycle}"  # a long run in flight while the fault lands
            pool.enqueue(id=held, event=HOLD, priority=9)
            enqueued.append(held)
            _wait_for_start(log_path, held)
            time.sleep(0.3)
            if fault == "lock":
                locker = sqlite3.connect(db, isolation_level=None)
                locker.execute("BEGIN EXCLUSIVE")
                time.sleep(LOCK_SECONDS)
                locker.execute("COMMIT")
                locker.close()
                faults_at.append(("unlocked", time.time_ns()))
            else:
                offset += STEP_MS
                offset_path.write_text(str(offset))
            time.sleep(HOLD_SECONDS - 1)

        client.continuous("tick").terminate("c")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            tasks_idle = all(client.task("task").status(f"t{t}").status == "idle" for t in range(3))
            batches_done = all(batch.status(f"b{i}").status == "not_found" for i in range(3))
            if pool.status().total_pending == 0 and tasks_idle and batches_done:
                break
            time.sleep(0.1)
        else:
            pytest.fail("the workers did not finish the work in time")
    finally:
        for process in workers:
            # (SIGTERM before a new worker put its handlers in place would kill it as any
            # process: give each a few seconds to start)
            time.sleep(max(0.0, spawned[process.pid] + SETTLE - time.monotonic()))
            process.send_signal(signal.SIGTERM)
        for process in workers:
            process.wait(timeout=30)
    errors = said.read_text()
    assert [process.returncode for process in workers] == [0] * len(workers), errors
    assert "Traceback" not in errors, errors

    lines = _lines(log_path)
    # Nothing lost ---------------------------------------------------------------------
    ended = {(line[1], line[2]) for line in lines if line[0] == "end"}
    dead = {letter.id for letter in pool.dead_letters()}
    status = pool.status()
    assert status.total_processed + status.total_dead_lettered == len(enqueued)
    assert [e for e in enqueued if ("pool", e) not in ended and e not in dead] == []
    flushed: Counter[int] = Counter()
    for line in lines:
        if line[0] == "end" and line[1] == "flush":
            flushed.update(int(value) for value in line[4].split("-"))
    assert set(added) <= set(flushed), "a debounce event was never flushed"
    assert [client.task("task").get_state(f"t{t}") for t in range(3)] == [0, 0, 0]
    # Never twice at once ---------------------------------------------------------------
    assert _overlaps(lines, killed) == [], (faults_at, errors[-3000:])
    # The faults were felt: the lock shut the heartbeat out, the step moved the clock.
    if CYCLES >= 2:
        assert "could not renew leases" in errors, errors
        assert offset > 0
    client_side.close()
