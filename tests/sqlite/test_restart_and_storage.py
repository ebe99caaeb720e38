"""SQLite: what survives a restart, and what a bad row does."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from durable_jobs import (
    Continuous,
    ContinuousContext,
    Debounce,
    DebounceContext,
    Jobs,
    StorageError,
    Task,
    TaskContext,
    WorkerPool,
)
from durable_jobs.interpreters.clock import ManualClock
from durable_jobs.interpreters.sqlite import SCHEMA, SqliteInterpreter
from tests.sqlite.schema1 import TO_SCHEMA_1

START = datetime(2026, 5, 1, tzinfo=UTC)

runs: list[tuple[str, datetime]] = []


def tick(ctx: ContinuousContext[int]) -> None:
    runs.append(("tick", ctx.now))
    ctx.update_state(lambda n: n + 1)


def flush(ctx: DebounceContext[int]) -> None:
    runs.append(("flush", ctx.now))


def remember(ctx: TaskContext[int, int]) -> None:
    ctx.set_state(ctx.event)
    ctx.schedule("10 minutes")


def remind(ctx: TaskContext[int, int]) -> None:
    runs.append(("remind", ctx.now))


def send(ctx: object) -> None:
    runs.append(("send", START))


JOBS = Jobs(
    tick=Continuous.make(state=int, schedule=Continuous.every("1 minute"), execute=tick),
    batch=Debounce.make(event=int, execute=flush, flush_after="5 minutes"),
    remind=Task.make(state=int, event=int, on_event=remember, execute=remind),
    send=WorkerPool.make(event=int, concurrency=1, execute=send),
)


def test_alarms_due_while_no_worker_ran_fire_on_restart_and_missed_slots_collapse(
    tmp_path: Path,
) -> None:
    runs.clear()
    path = tmp_path / "jobs.db"
    with SqliteInterpreter(JOBS, path, clock=ManualClock(START)) as first:
        client = first.client()
        client.continuous("tick").start(id="t", input=0)
        client.debounce("batch").add(id="b", event=1)
        client.task("remind").send(id="r", event=7)
        first.client().worker_pool("send").pause()
        client.worker_pool("send").enqueue(id="e1", event=1)
        client.worker_pool("send").resume()
    assert runs == []  # start_immediately made a run due; requests leave it to a worker
    # Nobody ran for an hour: the next worker finds everything due.
    later = START + timedelta(hours=1)
    with SqliteInterpreter(JOBS, path, clock=ManualClock(later)) as second:
        assert second.run_due() == 4
        assert second.run_due() == 0
        kinds = sorted(kind for kind, _ in runs)
        assert kinds == ["flush", "remind", "send", "tick"]
        status = second.client().continuous("tick").status("t")
        # The start's run and sixty missed slots ran once, not sixty-one times.
        assert status.run_count == 1
        assert status.next_run_at == later + timedelta(minutes=1)
        assert second.client().continuous("tick").get_state("t") == 1
        assert second.client().task("remind").get_state("r") == 7
        assert second.client().worker_pool("send").status().total_processed == 1


def test_a_corrupt_row_names_its_instance_and_the_others_keep_working(tmp_path: Path) -> None:
    runs.clear()
    path = tmp_path / "jobs.db"
    with SqliteInterpreter(JOBS, path, clock=ManualClock(START)) as db:
        client = db.client()
        for user in ("good", "garbage", "tagged", "future"):
            client.debounce("batch").add(id=user, event=1)
    raw = sqlite3.connect(path)
    raw.execute("UPDATE instances SET snapshot = 'not json' WHERE user_id = 'garbage'")
    raw.execute(
        "UPDATE instances SET snapshot = json_set(snapshot, '$.snapshot.attempts', 'x') "
        "WHERE user_id = 'tagged'"
    )
    raw.execute(
        "UPDATE instances SET snapshot = json_set(snapshot, '$.schema', 99) "
        "WHERE user_id = 'future'"
    )
    raw.commit()
    raw.close()
    with SqliteInterpreter(JOBS, path, clock=ManualClock(START + timedelta(minutes=10))) as db:
        client = db.client()
        with pytest.raises(StorageError, match=r"debounce:batch:garbage.*not JSON"):
            client.debounce("batch").status("garbage")
        with pytest.raises(StorageError, match="debounce:batch:tagged"):
            client.debounce("batch").status("tagged")
        with pytest.raises(StorageError, match=r"debounce:batch:future.*schema 99"):
            client.debounce("batch").status("future")
        db.run_due()
        assert runs == [("flush", START + timedelta(minutes=10))]  # the good one flushed
        assert client.debounce("batch").status("good").status == "not_found"
        assert len(db.errors) == 3
        assert all(isinstance(e, StorageError) for e in db.errors)
        named = sorted(
            user for e in db.errors for user in ("garbage", "tagged", "future") if user in str(e)
        )
        assert named == ["future", "garbage", "tagged"]


def test_a_newer_database_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    SqliteInterpreter(JOBS, path).close()
    raw = sqlite3.connect(path)
    raw.execute("UPDATE schema_info SET value = 7 WHERE name = 'schema'")
    raw.commit()
    raw.close()
    with pytest.raises(StorageError, match="schema 7"):
        SqliteInterpreter(JOBS, path)


def test_a_database_in_a_missing_folder_is_a_storage_error(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="cannot open"):
        SqliteInterpreter(JOBS, tmp_path / "nope" / "jobs.db")


def test_a_schema_1_file_is_migrated_in_place_and_keeps_its_work(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    with SqliteInterpreter(JOBS, path, clock=ManualClock(START)) as db:
        pool = db.client().worker_pool("send")
        pool.enqueue(id="done", event=1)
        db.advance("1 second")  # "done" ran and is remembered for dedup
        pool.pause()
        pool.enqueue(id="old", event=2)
        db.advance("1 second")
        pool.enqueue(id="urgent", event=3, priority=9)
    raw = sqlite3.connect(path)
    raw.executescript(TO_SCHEMA_1)
    raw.close()
    with SqliteInterpreter(JOBS, path, clock=ManualClock(START + timedelta(seconds=2))) as db:
        raw = sqlite3.connect(path)
        tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        schema = raw.execute("SELECT value FROM schema_info WHERE name = 'schema'").fetchone()
        raw.close()
        assert {"queue_items", "finished"}.isdisjoint(tables)
        assert schema == (SCHEMA,)
        pool = db.client().worker_pool("send")
        status = pool.instance_status(0)
        assert (status.pending_count, status.processed_count) == (2, 1)
        # the oldest pending event is "old", though "urgent" is ahead of it in the queue
        assert status.oldest_enqueued_at == START + timedelta(seconds=1)
        assert pool.enqueue(id="done", event=1).duplicate  # the finished record came along
        assert pool.enqueue(id="urgent", event=3).position == 0
        pool.resume()
        db.advance("1 second")
        assert pool.status().total_processed == 3


def test_a_commit_that_fails_is_rolled_back_and_the_next_call_works(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    with SqliteInterpreter(JOBS, path, clock=ManualClock(START), inline=True) as db:
        client = db.client()
        client.continuous("tick").start(id="c", input=0)
        before = client.continuous("tick").get_state("c")
        # A deferred foreign key is checked at COMMIT: a trigger on the telemetry outbox
        # makes the commit of any transition that emits telemetry fail.
        db._sql.db.execute("PRAGMA foreign_keys = ON")
        db._sql.db.executescript(
            "CREATE TABLE parent (id INTEGER PRIMARY KEY);"
            "CREATE TABLE child (parent_id INTEGER REFERENCES parent (id)"
            " DEFERRABLE INITIALLY DEFERRED);"
            "CREATE TRIGGER break_commit AFTER INSERT ON telemetry"
            " BEGIN INSERT INTO child VALUES (42); END;"
        )
        with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
            db.advance("1 minute")  # the run's telemetry trips the trigger at COMMIT
        assert not db._sql.db.in_transaction
        assert client.continuous("tick").get_state("c") == before  # nothing of it was kept
        db._sql.db.execute("DROP TRIGGER break_commit")
        # The connection is usable again; the run whose outcome was lost stays in
        # flight until its lease expires, then counts as interrupted (as after a crash).
        assert client.continuous("tick").start(id="d", input=7).created
        assert client.continuous("tick").get_state("d") == 8


def test_advance_on_a_shared_file_skips_due_rows_of_other_programs_jobs(tmp_path: Path) -> None:
    """Another program's job may share a name with one of ours but not its type; its
    due rows are left to that program, and a manual clock still moves on."""
    path = tmp_path / "jobs.db"
    clock = ManualClock(START)
    theirs = Jobs(x=Task.make(state=int, event=int, on_event=remember, execute=remind))
    with SqliteInterpreter(theirs, path, clock=clock) as other:
        other.client().task("x").send(id="t", event=1)  # due in 10 minutes
    ours = Jobs(x=Continuous.make(state=int, schedule=Continuous.every("1 minute"), execute=tick))
    done = threading.Event()
    with SqliteInterpreter(ours, path, clock=clock) as db:
        db.client().continuous("x").start(id="c", input=0)

        def advance() -> None:
            db.advance("15 minutes")
            done.set()

        worker = threading.Thread(target=advance, daemon=True)
        worker.start()
        worker.join(timeout=30)
        assert done.is_set(), "advance did not come back"
        assert db.client().continuous("x").get_state("c") == 16
    with SqliteInterpreter(theirs, path, clock=clock) as other:
        assert other.client().task("x").status("t").status == "active"  # not run by us
