"""SQLite: a bad row is reported (``StorageError`` naming it), never fatal, never a spin.

Each test writes the bad data by hand into a real file, as a crash, a bug or a person
with the ``sqlite3`` shell would, then checks that the worker names the row, keeps
running the others, and goes idle instead of waking again and again.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from durable_jobs import (
    Jobs,
    PoolContext,
    PoolQueueRepaired,
    StorageError,
    Task,
    TaskContext,
    WorkerPool,
)
from durable_jobs.interpreters.clock import ManualClock
from durable_jobs.interpreters.sqlite import SqliteInterpreter
from tests.sqlite.support import count_claims

START = datetime(2026, 5, 1, tzinfo=UTC)
LATER = START + timedelta(minutes=10)

ran: list[str] = []


def remember(ctx: TaskContext[int, int]) -> None:
    ctx.set_state(ctx.event)
    ctx.schedule(timedelta(milliseconds=ctx.event))


def execute(ctx: TaskContext[int, int]) -> None:
    ran.append(ctx.id)


def send(ctx: PoolContext[int]) -> None:
    ran.append(ctx.event_id)


JOBS = Jobs(
    t=Task.make(state=int, event=int, on_event=remember, execute=execute),
    p=WorkerPool.make(event=int, concurrency=2, execute=send),
)


def _raw(path: Path, *statements: tuple[str, tuple[Any, ...]]) -> None:
    with closing(sqlite3.connect(path)) as raw:
        for sql, values in statements:
            raw.execute(sql, values)
        raw.commit()


def _two_tasks(path: Path) -> None:
    """Tasks ``good`` and ``bad``, each due one minute after START."""
    with SqliteInterpreter(JOBS, path, clock=ManualClock(START)) as db:
        for name in ("good", "bad"):
            db.client().task("t").send(id=name, event=60_000)


def _names_bad(errors: list[Any]) -> bool:
    return (
        len(errors) == 1 and isinstance(errors[0], StorageError) and "task:t:bad" in str(errors[0])
    )


# ------------------------------------------------------------------ one bad row each

BAD_INSTANCE_COLUMNS = {
    "version not an integer": ("version", "abc"),
    "alarm_at not a time": ("alarm_at", "soon"),
    "alarm_at out of range": ("alarm_at", 2**62),
    "lease_until not a time": ("lease_until", "x"),
    "lease_until out of range": ("lease_until", 2**62),
}


@pytest.mark.parametrize(
    ("column", "value"), BAD_INSTANCE_COLUMNS.values(), ids=list(BAD_INSTANCE_COLUMNS)
)
def test_a_bad_instance_column_is_reported_once_and_the_others_run(
    tmp_path: Path, column: str, value: object
) -> None:
    ran.clear()
    path = tmp_path / "jobs.db"
    _two_tasks(path)
    update = f"UPDATE instances SET {column} = ? WHERE user_id = 'bad'"  # noqa: S608 - a test's own column names
    _raw(path, (update, (value,)))
    with SqliteInterpreter(JOBS, path, clock=ManualClock(LATER)) as db:
        db.run_due()
        assert ran == ["good"]
        assert _names_bad(db.errors), db.errors
        db.next_alarm_at()  # answers, whatever the bad row holds
        db.run_due()  # set aside: not reported again within its lease
        assert _names_bad(db.errors), db.errors


def test_a_non_integer_version_is_a_storage_error_for_a_client_too(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    _two_tasks(path)
    _raw(path, ("UPDATE instances SET version = 'abc' WHERE user_id = 'bad'", ()))
    with SqliteInterpreter(JOBS, path, clock=ManualClock(START)) as db:
        with pytest.raises(StorageError, match=r"task:t:bad.*version"):
            db.client().task("t").status("bad")
        with pytest.raises(StorageError, match=r"task:t:bad.*version"):
            db.client().task("t").send(id="bad", event=1)
        assert db.client().task("t").status("good").status == "active"


@pytest.mark.parametrize("item", ["{", '{"event_id": 3}', None], ids=["not JSON", "wrong", "null"])
def test_a_corrupt_queued_event_names_its_shard_and_the_other_shards_run(
    tmp_path: Path, item: str | None
) -> None:
    ran.clear()
    path = tmp_path / "jobs.db"
    with SqliteInterpreter(JOBS, path, clock=ManualClock(START)) as db:
        pool = db.client().worker_pool("p")
        pool.pause()
        shards = {name: pool.enqueue(id=name, event=1).instance_id for name in ("a", "b", "e")}
        assert len(set(shards.values())) == 2
        pool.resume()
    broken = shards["e"]
    healthy = sorted(name for name, shard in shards.items() if shard != broken)
    _raw(path, ("UPDATE pool_events SET item = ? WHERE instance_id = ?", (item, broken)))
    with SqliteInterpreter(JOBS, path, clock=ManualClock(START)) as db:
        db.run_due()
        assert sorted(ran) == healthy
        assert len(db.errors) == 1
        assert isinstance(db.errors[0], StorageError)
        assert broken in str(db.errors[0])


def test_garbage_dead_letter_and_telemetry_rows_are_storage_errors_naming_the_table(
    tmp_path: Path,
) -> None:
    path = tmp_path / "jobs.db"
    _two_tasks(path)
    with SqliteInterpreter(JOBS, path, clock=ManualClock(START)) as db:
        assert db.client().task("t").dead_letters() == []
        assert len(db.telemetry) == 4
    _raw(
        path,
        ("INSERT INTO telemetry (job_name, event) VALUES ('theirs', '{}')", ()),
    )
    with SqliteInterpreter(JOBS, path, clock=ManualClock(START)) as db:
        # another program's events in a shared file are its own business
        assert len(db.telemetry) == 4
    _raw(
        path,
        ("INSERT INTO dead_letters (job_name, record) VALUES ('t', 'garbage')", ()),
        ("INSERT INTO telemetry (job_name, event) VALUES ('t', '[1')", ()),
    )
    with SqliteInterpreter(JOBS, path, clock=ManualClock(START)) as db:
        with pytest.raises(StorageError, match=r"dead_letters row \d+ of 't'"):
            db.client().task("t").dead_letters()
        with pytest.raises(StorageError, match=r"telemetry row \d+ of 't'"):
            _ = db.telemetry


@pytest.mark.parametrize("name", ["schema", "alarm_seq"])
def test_garbage_in_schema_info_is_a_storage_error_naming_the_table(
    tmp_path: Path, name: str
) -> None:
    path = tmp_path / "jobs.db"
    _two_tasks(path)
    _raw(path, ("UPDATE schema_info SET value = 'abc' WHERE name = ?", (name,)))
    with (
        pytest.raises(StorageError, match=f"schema_info: {name} 'abc' is not"),
        SqliteInterpreter(JOBS, path, clock=ManualClock(START)) as db,
    ):
        db.client().task("t").send(id="new", event=1)  # a write takes an alarm number


# ------------------------------------------------------------------- the worker idles


@contextmanager
def _worker(path: Path, jobs: Jobs = JOBS) -> Iterator[tuple[SqliteInterpreter, Callable[[], int]]]:
    """A real-clock worker thread, and a count of the claims it made so far."""
    db = SqliteInterpreter(jobs, path, synchronous="OFF")
    claims = count_claims(db)
    thread = threading.Thread(target=db.run_forever, kwargs={"poll": "1 second"}, daemon=True)
    thread.start()
    try:
        yield db, claims
    finally:
        db.stop()
        thread.join(timeout=10)
        db.close()
    assert not thread.is_alive()


def _idle_claims(count: Callable[[], int], seconds: float = 1.0) -> int:
    before = count()
    time.sleep(seconds)
    return count() - before


def _wait_until(check: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not check() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert check()


IDLE_CLAIMS = 5
"""At most this many claims a second by a worker with nothing it can run (the poll is
one second; a spinning worker makes thousands)."""


def test_a_row_set_aside_does_not_wake_the_worker_again_and_again(tmp_path: Path) -> None:
    ran.clear()
    path = tmp_path / "jobs.db"
    with SqliteInterpreter(JOBS, path) as setup:
        setup.client().task("t").send(id="bad", event=0)  # due at once
    _raw(path, ("UPDATE instances SET snapshot = '{' WHERE user_id = 'bad'", ()))
    with _worker(path) as (db, claims):
        _wait_until(lambda: len(db.errors) == 1)
        db.client().task("t").send(id="good", event=300)  # the healthy one still runs
        _wait_until(lambda: ran == ["good"])
        assert _idle_claims(claims) <= IDLE_CLAIMS
        assert _names_bad(db.errors), db.errors


def test_a_due_row_of_another_programs_job_does_not_keep_the_worker_awake(
    tmp_path: Path,
) -> None:
    path = tmp_path / "jobs.db"
    theirs = Jobs(x=Task.make(state=int, event=int, on_event=remember, execute=execute))
    with SqliteInterpreter(theirs, path) as other:
        other.client().task("x").send(id="theirs", event=0)  # due at once; theirs to run
    with _worker(path) as (db, claims):
        time.sleep(0.2)
        assert _idle_claims(claims) <= IDLE_CLAIMS
        assert db.errors == []
    with SqliteInterpreter(theirs, path) as other:
        assert other.client().task("x").status("theirs").status == "active"  # left alone


def test_a_shard_whose_counters_promise_a_deleted_row_is_repaired_and_the_worker_idles(
    tmp_path: Path,
) -> None:
    ran.clear()
    path = tmp_path / "jobs.db"
    one = Jobs(p=WorkerPool.make(event=int, concurrency=1, execute=send))
    with SqliteInterpreter(one, path) as setup:
        pool = setup.client().worker_pool("p")
        pool.pause()
        for name in ("a", "b", "c"):
            pool.enqueue(id=name, event=1)
    _raw(path, ("DELETE FROM pool_events WHERE event_id = 'b'", ()))  # by hand
    with _worker(path, one) as (db, claims):
        db.client().worker_pool("p").resume()
        _wait_until(lambda: ran == ["a", "c"])
        time.sleep(0.1)
        assert _idle_claims(claims) <= IDLE_CLAIMS
        status = db.client().worker_pool("p").status()
        assert (status.total_pending, status.total_processed) == (0, 2)
        repaired = [e for e in db.telemetry if isinstance(e, PoolQueueRepaired)]
        assert [(e.instance_id, e.counted) for e in repaired] == [("workerPool:p:0", 1)]


def test_an_alarm_column_its_snapshot_does_not_hold_is_set_right_not_fired_forever(
    tmp_path: Path,
) -> None:
    """An ``alarm_at`` edited by hand to a due time the snapshot does not wait for: the
    core ignores that alarm, and the engine sets the column back to the snapshot's own,
    so the worker does not fire it again and again; the task runs at its real time."""
    ran.clear()
    path = tmp_path / "jobs.db"
    with SqliteInterpreter(JOBS, path) as setup:
        setup.client().task("t").send(id="later", event=6_000)  # due in 6 s
    _raw(path, ("UPDATE instances SET alarm_at = 1000 WHERE user_id = 'later'", ()))
    with _worker(path) as (db, claims):
        time.sleep(0.2)
        assert _idle_claims(claims, 0.5) <= IDLE_CLAIMS
        assert ran == []  # not run early either
        _wait_until(lambda: ran == ["later"], seconds=15)
        assert db.errors == []


# ------------------------------------------------------- another program's database


def _foreign(path: Path) -> bytes:
    with closing(sqlite3.connect(path)) as raw:
        raw.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
        raw.execute("INSERT INTO invoices (total) VALUES (9.5)")
        raw.commit()
    return path.read_bytes()


def _journal_mode(path: Path) -> str:
    with closing(sqlite3.connect(path)) as raw:
        mode: str = raw.execute("PRAGMA journal_mode").fetchone()[0]
    return mode


def test_another_programs_database_is_refused_unless_the_schema_is_asked_for(
    tmp_path: Path,
) -> None:
    path = tmp_path / "theirs.db"
    before = _foreign(path)
    with pytest.raises(StorageError, match=r"not a durable-jobs database.*add_schema=True"):
        SqliteInterpreter(JOBS, path)
    assert path.read_bytes() == before
    assert _journal_mode(path) == "delete"  # not switched to WAL
    with SqliteInterpreter(JOBS, path, add_schema=True) as db:
        db.client().task("t").send(id="x", event=1)
    with SqliteInterpreter(JOBS, path) as db:  # now it holds the schema: no flag needed
        assert db.client().task("t").status("x").status == "active"
    with closing(sqlite3.connect(path)) as raw:
        assert raw.execute("SELECT total FROM invoices").fetchall() == [(9.5,)]


def test_new_and_empty_files_need_no_flag(tmp_path: Path) -> None:
    (tmp_path / "empty.db").touch()
    for name in ("new.db", "empty.db"):
        with SqliteInterpreter(JOBS, tmp_path / name) as db:
            db.client().task("t").send(id="x", event=1)
        assert _journal_mode(tmp_path / name) == "wal"
