"""SQLite: delayed pool events survive restarts, have their own index, and a schema-3
file gains them by migration."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from durable_jobs import Jobs, PoolContext, WorkerPool
from durable_jobs.interpreters.clock import ManualClock
from durable_jobs.interpreters.sqlite import SCHEMA, SqliteInterpreter
from tests.sqlite.schema1 import TO_SCHEMA_1

START = datetime(2026, 5, 1, tzinfo=UTC)

ran: list[tuple[str, datetime]] = []


def send(ctx: PoolContext[int]) -> None:
    ran.append((ctx.event_id, ctx.now))


JOBS = Jobs(send=WorkerPool.make(event=int, concurrency=1, execute=send))

TO_SCHEMA_3 = """
DROP INDEX pool_delayed;
ALTER TABLE pool_events DROP COLUMN due_at;
UPDATE schema_info SET value = 3 WHERE name = 'schema';
"""
"""Turns a file of this version without delayed events into the schema-3 layout."""


def _layout(path: Path) -> list[tuple[str, str]]:
    raw = sqlite3.connect(path)
    try:
        rows = raw.execute(
            "SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name"
        ).fetchall()
    finally:
        raw.close()
    return [(str(name), str(sql)) for name, sql in rows]


def test_delayed_events_survive_a_restart_and_run_when_due(tmp_path: Path) -> None:
    ran.clear()
    path = tmp_path / "jobs.db"
    with SqliteInterpreter(JOBS, path, clock=ManualClock(START)) as first:
        pool = first.client().worker_pool("send")
        pool.enqueue(id="in-1h", event=1, delay="1 hour")
        pool.enqueue(id="in-2h", event=2, at=START + timedelta(hours=2))
        assert first.run_due() == 0
    assert ran == []
    later = START + timedelta(hours=1, minutes=30)
    with SqliteInterpreter(JOBS, path, clock=ManualClock(later)) as second:
        pool = second.client().worker_pool("send")
        status = pool.instance_status(0)
        assert (status.pending_count, status.delayed_count) == (0, 2)
        assert pool.enqueue(id="in-2h", event=2).duplicate  # still remembered as delayed
        assert second.run_due() == 1
        assert ran == [("in-1h", later)]
        assert second.next_alarm_at() == START + timedelta(hours=2)
        second.advance("30 minutes")
        assert [event_id for event_id, _ in ran] == ["in-1h", "in-2h"]
        assert pool.status().total_delayed == 0


def test_the_due_read_walks_the_delayed_index(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    with SqliteInterpreter(JOBS, path, clock=ManualClock(START)):
        pass
    raw = sqlite3.connect(path)
    plan = raw.execute(
        "EXPLAIN QUERY PLAN SELECT item, event_id, due_at, seq FROM pool_events"
        " WHERE instance_id = ?1 AND state = 3 ORDER BY due_at, seq LIMIT ?2",
        ("workerPool:send:0", 65),
    ).fetchall()
    raw.close()
    detail = " ".join(str(row[-1]) for row in plan)
    assert "pool_delayed" in detail
    assert "TEMP B-TREE" not in detail  # no sort: the index gives the order


def test_a_schema_3_file_is_migrated_and_keeps_its_work(tmp_path: Path) -> None:
    ran.clear()
    path = tmp_path / "jobs.db"
    with SqliteInterpreter(JOBS, path, clock=ManualClock(START)) as db:
        pool = db.client().worker_pool("send")
        pool.enqueue(id="done", event=1)
        db.advance("1 second")
        pool.pause()
        pool.enqueue(id="waiting", event=2)
    fresh = tmp_path / "fresh.db"
    with SqliteInterpreter(JOBS, fresh, clock=ManualClock(START)):
        pass
    raw = sqlite3.connect(path)
    raw.executescript(TO_SCHEMA_3)
    raw.close()
    assert "due_at" not in dict(_layout(path))["pool_events"]
    with SqliteInterpreter(JOBS, path, clock=ManualClock(START + timedelta(seconds=2))) as db:
        assert _layout(path) == _layout(fresh)  # migrated and new files are alike
        raw = sqlite3.connect(path)
        schema = raw.execute("SELECT value FROM schema_info WHERE name = 'schema'").fetchone()
        raw.close()
        assert schema == (SCHEMA,)
        pool = db.client().worker_pool("send")
        assert pool.enqueue(id="done", event=1).duplicate
        pool.enqueue(id="later", event=3, delay="1 minute")
        pool.resume()
        db.advance("1 second")
        assert [event_id for event_id, _ in ran] == ["done", "waiting"]
        db.advance("1 minute")
        assert [event_id for event_id, _ in ran] == ["done", "waiting", "later"]


def test_a_schema_1_file_reaches_the_same_layout_as_a_new_one(tmp_path: Path) -> None:
    path, fresh = tmp_path / "old.db", tmp_path / "fresh.db"
    for target in (path, fresh):
        with SqliteInterpreter(JOBS, target, clock=ManualClock(START)):
            pass
    raw = sqlite3.connect(path)
    raw.executescript(TO_SCHEMA_1)
    raw.close()
    with SqliteInterpreter(JOBS, path, clock=ManualClock(START)) as db:
        db.client().worker_pool("send").enqueue(id="later", event=1, delay="1 minute")
    assert _layout(path) == _layout(fresh)
