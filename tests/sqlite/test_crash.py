"""Crash test: a worker process is killed with SIGKILL at random points, again and again.

Jobs of every type run (``tests/sqlite/crash_jobs.py``) while a worker subprocess is
started and killed ``KILLS`` times (50 by default; ``DURABLE_JOBS_CRASH_KILLS`` raises it
for a soak run). Most kills come after a random time; every ``HOLD_EVERY``-th one comes
right after the worker logged the start of a long run (a ``HOLD`` event), so some kills
land mid-run by construction, however slowly a loaded machine starts the worker. A last
worker then finishes the work and is stopped with SIGTERM. Afterwards:

* no job or event is lost: every pool event was processed (or dead-lettered), every
  debounce event was in a flushed batch, every task counted down to zero;
* every state is consistent: each row loads, no run is left in flight, counts add up;
* duplicate runs happen only for attempts that were in flight at a kill: an event ran
  again only after a run by a worker that was then killed, never after a run of the
  worker that survived, and there are at most ``workers`` such re-runs per kill.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from durable_jobs import JobFailed
from durable_jobs.interpreters.sqlite import SqliteInterpreter
from tests.sqlite.crash_jobs import HOLD, JOBS, start_worker

KILLS = int(os.environ.get("DURABLE_JOBS_CRASH_KILLS", "50"))
WORKERS = 8
POOL_EVENTS = 120
DEBOUNCE_IDS = 6
TASKS = 4
COUNTDOWN = 4
HOLD_EVERY = 5
STARTUP = 60.0
"""Seconds a worker may take to start a held run (a loaded 2-core machine is slow)."""


def _read_log(path: Path) -> list[list[str]]:
    if not path.exists():
        return []
    return [line.split() for line in path.read_text().splitlines() if line]


def _wait_for_start(path: Path, event_id: str, pid: int) -> None:
    """Wait until worker ``pid`` logged the start of pool event ``event_id``."""
    deadline = time.monotonic() + STARTUP
    while time.monotonic() < deadline:
        for line in _read_log(path):
            if line[:3] == ["start", "pool", event_id] and line[-2] == str(pid):
                return
        time.sleep(0.02)
    pytest.fail(f"worker {pid} did not start {event_id} within {STARTUP:g} s")


def test_sigkill_at_random_points_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "jobs.db"
    log_path = tmp_path / "runs.log"
    monkeypatch.setenv("DURABLE_JOBS_TEST_LOG", str(log_path))
    rng = random.Random(20261128)

    client_side = SqliteInterpreter(JOBS, db)
    client = client_side.client()
    pool = client.worker_pool("pool")
    batch = client.debounce("batch")
    added: list[int] = []
    enqueued: list[str] = []

    def more_work(round_: int) -> None:
        for i in range(POOL_EVENTS // 10):
            event_id = f"r{round_}-e{i}"
            pool.enqueue(id=event_id, event=i, priority=i % 3)
            enqueued.append(event_id)
        for i in range(DEBOUNCE_IDS):
            value = len(added)
            batch.add(id=f"b{i}", event=value)
            added.append(value)

    for round_ in range(10):
        more_work(round_)
    for t in range(TASKS):
        client.task("task").send(id=f"t{t}", event=COUNTDOWN)
    client.continuous("tick").start(id="c", input=0)

    killed: set[str] = set()
    for cycle in range(KILLS):
        held = f"hold-{cycle}" if cycle % HOLD_EVERY == 0 else None
        if held is not None:  # first in its shard's queue; its first attempt runs long
            pool.enqueue(id=held, event=HOLD, priority=9)
            enqueued.append(held)
        worker = start_worker(db, workers=WORKERS, lease="300 milliseconds")
        if held is not None:
            _wait_for_start(log_path, held, worker.pid)
        else:
            time.sleep(rng.uniform(0.05, 0.45))
        if cycle % 10 == 5:
            more_work(100 + cycle)
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
        killed.add(str(worker.pid))

    client.continuous("tick").terminate("c")
    survivor = start_worker(db, workers=WORKERS, lease="300 milliseconds")
    started = time.monotonic()
    deadline = started + 120
    try:
        while time.monotonic() < deadline:
            status = pool.status()
            tasks_idle = all(
                client.task("task").status(f"t{t}").status == "idle" for t in range(TASKS)
            )
            batches_done = all(
                batch.status(f"b{i}").status == "not_found" for i in range(DEBOUNCE_IDS)
            )
            # (and give the survivor time to start: SIGTERM before its handlers are in
            # place would kill it like any other process)
            settled = time.monotonic() - started > 3
            if status.total_pending == 0 and tasks_idle and batches_done and settled:
                break
            time.sleep(0.1)
        else:
            pytest.fail("the surviving worker did not finish the work in time")
    finally:
        survivor.send_signal(signal.SIGTERM)
        _, errors = survivor.communicate(timeout=30)
    assert survivor.returncode == 0, errors.decode()
    assert b"Traceback" not in errors, errors.decode()

    lines = _read_log(log_path)
    ends: dict[tuple[str, str], list[list[str]]] = defaultdict(list)
    for line in lines:
        if line[0] == "end":
            ends[(line[1], line[2])].append(line)

    # Nothing lost -------------------------------------------------------------------
    final = pool.status()
    assert final.total_processed + final.total_dead_lettered == len(enqueued)
    dead_ids = {d.id for d in pool.dead_letters()}
    for event_id in enqueued:
        assert event_id in dead_ids or ("pool", event_id) in ends, f"{event_id} never ran"
    flushed_values: Counter[int] = Counter()
    for (kind, _), runs in ends.items():
        if kind == "flush":
            for run in runs:
                flushed_values.update(int(v) for v in run[4].split("-"))
    assert batch.dead_letters() == []
    assert set(added) <= set(flushed_values), "a debounce event was never flushed"
    for t in range(TASKS):
        assert client.task("task").get_state(f"t{t}") == 0

    # Consistent state ---------------------------------------------------------------
    raw = sqlite3.connect(db)
    assert raw.execute("SELECT COUNT(*) FROM instances WHERE running = 1").fetchone() == (0,)
    # Every pool event row is finished: none pending, none left taken by a killed run.
    states = raw.execute("SELECT state, COUNT(*) FROM pool_events GROUP BY state").fetchall()
    assert states == [(2, len(enqueued))], states
    raw.close()
    for index in range(3):
        shard = pool.instance_status(index)
        assert shard.current_event_id is None

    # Duplicates only for attempts in flight at a kill --------------------------------
    # A pool event is its id; a debounce event is its value (an id flushes many batches).
    runs_of: dict[tuple[str, str], list[list[str]]] = defaultdict(list)
    for (kind, ident), runs in ends.items():
        if kind == "pool":
            runs_of[(kind, ident)] = runs
        elif kind == "flush":
            for run in runs:
                for value in run[4].split("-"):
                    runs_of[("value", value)].append(run)
    reruns = 0
    for subject, runs in runs_of.items():
        runs.sort(key=lambda run: int(run[-1]))
        for earlier in runs[:-1]:
            reruns += 1
            assert earlier[-2] in killed, f"{subject} ran again after a run by a live process"
    assert reruns <= KILLS * WORKERS
    # The kills did land mid-run (the held ones by construction): interrupted attempts
    # were recovered as failures.
    interrupted = [
        e
        for e in client_side.telemetry
        if isinstance(e, JobFailed) and e.error.type == "Interrupted"
    ]
    assert interrupted, "no kill landed during a run; the test proved nothing"
    client_side.close()
