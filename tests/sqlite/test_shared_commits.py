"""Concurrent requests of one process share commits, and each still gets its own answer.

Eight threads call ``enqueue`` once per event, as a web server's request threads would.
Their steps are made in savepoints of shared transactions, so there are fewer commits
than calls; every call returns only after its own step is committed, a call that is
refused (a full queue) fails alone, and nothing is lost or doubled.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from durable_jobs import Jobs, PoolEnqueueResult, QueueFullError, WorkerPool
from durable_jobs.interpreters.sqlite import SqliteInterpreter

THREADS = 8
EACH = 60


def _in_threads(call: object, parts: list[range]) -> list[object]:
    results: list[object] = []
    lock = threading.Lock()

    def run(part: range) -> None:
        for i in part:
            try:
                value: object = call(i)  # type: ignore[operator]
            except QueueFullError as error:
                value = error
            with lock:
                results.append(value)

    threads = [threading.Thread(target=run, args=(part,)) for part in parts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_eight_request_threads_share_commits_and_lose_nothing(tmp_path: Path) -> None:
    pool = WorkerPool.make(event=int, concurrency=4, execute=lambda ctx: None)
    with SqliteInterpreter(Jobs(pool=pool), tmp_path / "jobs.db") as db:
        commits: list[str] = []
        db._sql.db.set_trace_callback(lambda sql: commits.append(sql) if sql == "COMMIT" else None)
        client = db.client().worker_pool(pool)
        parts = [range(t, THREADS * EACH, THREADS) for t in range(THREADS)]
        results = _in_threads(lambda i: client.enqueue(id=f"e{i}", event=i), parts)
        db._sql.db.set_trace_callback(None)
        assert len(results) == THREADS * EACH
        assert all(isinstance(r, PoolEnqueueResult) and not r.duplicate for r in results)
        assert sorted(r.event_id for r in results) == sorted(  # type: ignore[attr-defined]
            f"e{i}" for i in range(THREADS * EACH)
        )
        assert len(commits) < THREADS * EACH  # shared: fewer commits than calls
        assert client.status().total_pending == THREADS * EACH
        again = _in_threads(lambda i: client.enqueue(id=f"e{i}", event=i), parts)
        assert all(isinstance(r, PoolEnqueueResult) and r.duplicate for r in again)


def test_a_refused_call_fails_alone_in_a_shared_commit(tmp_path: Path) -> None:
    pool = WorkerPool.make(event=int, concurrency=1, execute=lambda ctx: None, max_queue_depth=50)
    with SqliteInterpreter(Jobs(pool=pool), tmp_path / "jobs.db") as db:
        client = db.client().worker_pool(pool)
        parts = [range(t, 200, THREADS) for t in range(THREADS)]
        results = _in_threads(lambda i: client.enqueue(id=f"e{i}", event=i), parts)
        accepted = [r for r in results if isinstance(r, PoolEnqueueResult)]
        refused = [r for r in results if isinstance(r, QueueFullError)]
        assert (len(accepted), len(refused)) == (50, 150)
        assert client.status().total_pending == 50  # exactly the answers given
        with sqlite3.connect(tmp_path / "jobs.db") as raw:
            (rows,) = raw.execute("SELECT COUNT(*) FROM pool_events").fetchone()
        assert rows == 50
