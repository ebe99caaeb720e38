"""Several worker processes share one SQLite file.

Three workers (one runner thread each, so each can hold one instance at a time) run the jobs of ``crash_jobs`` against one database. Every run records its
start and end (process id and nanosecond clock); no two runs of one instance may overlap,
and all work completes, with more than one process taking part.
"""

from __future__ import annotations

import itertools
import signal
import time
from collections import defaultdict
from pathlib import Path

import pytest

from durable_jobs.interpreters.sqlite import SqliteInterpreter
from tests.sqlite.crash_jobs import JOBS, start_worker

PROCESSES = 3
POOL_EVENTS = 300
TASKS = 6


def test_workers_sharing_a_file_never_overlap_runs_of_one_instance(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "jobs.db"
    log_path = tmp_path / "runs.log"
    monkeypatch.setenv("DURABLE_JOBS_TEST_LOG", str(log_path))
    with SqliteInterpreter(JOBS, db) as client_side:
        client = client_side.client()
        pool = client.worker_pool("pool")
        client.worker_pool("pool").pause()  # let every worker start before work is visible
        for i in range(POOL_EVENTS):
            pool.enqueue(id=f"e{i}", event=i)
        for t in range(TASKS):
            client.task("task").send(id=f"t{t}", event=5)
        for i in range(60):
            client.debounce("batch").add(id=f"b{i % 4}", event=i)
        workers = [start_worker(db, workers=1) for _ in range(PROCESSES)]
        time.sleep(1.0)
        pool.resume()
        deadline = time.monotonic() + 60
        try:
            while time.monotonic() < deadline:
                busy_tasks = [
                    t for t in range(TASKS) if client.task("task").status(f"t{t}").status != "idle"
                ]
                if pool.status().total_processed == POOL_EVENTS and not busy_tasks:
                    break
                time.sleep(0.1)
            else:
                pytest.fail("the workers did not finish in time")
        finally:
            for worker in workers:
                worker.send_signal(signal.SIGTERM)
            outcomes = [worker.communicate(timeout=30) for worker in workers]
        for worker, (_, errors) in zip(workers, outcomes, strict=True):
            assert worker.returncode == 0, errors.decode()
        assert all(client.task("task").get_state(f"t{t}") == 0 for t in range(TASKS))

    runs: dict[str, list[tuple[int, int, str]]] = defaultdict(list)
    open_runs: dict[tuple[str, str], int] = {}
    for words in (line.split() for line in log_path.read_text().splitlines()):
        what, kind, ident, pid, ns = words[0], words[1], words[2], words[-2], int(words[-1])
        instance = f"pool:{words[4]}" if kind == "pool" else f"{kind}:{ident}"
        if what == "start":
            open_runs[(instance, pid)] = ns
        else:
            runs[instance].append((open_runs.pop((instance, pid)), ns, pid))
    assert not open_runs, "a run started and never ended"
    for instance, spans in runs.items():
        spans.sort()
        for (_, end, pid_a), (start, _, pid_b) in itertools.pairwise(spans):
            assert end <= start, f"{instance}: runs of {pid_a} and {pid_b} overlapped"
    pool_pids = {
        pid for instance, spans in runs.items() if instance.startswith("pool") for *_, pid in spans
    }
    assert len(pool_pids) >= 2, "only one process did the work; the test proved nothing"
