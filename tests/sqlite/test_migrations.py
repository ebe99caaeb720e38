"""SQLite: stored states and pool events across a change of their type (issue 10 §5), in
a real file.

What only a file shows: the version in the stored row, rows written before versions
existed, a row rewritten as the new version after a run, rows from newer code or with a
broken migration reported by the worker (the others keep running), and ``inspect``.
"""

from __future__ import annotations

import io
import json
import sqlite3
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
import pytest
from rich.console import Console

from durable_jobs import Jobs, PoolContext, StorageError, Task, TaskContext, WorkerPool
from durable_jobs.interpreters.clock import ManualClock
from durable_jobs.interpreters.inspection import show
from durable_jobs.interpreters.sqlite import SqliteInterpreter
from durable_jobs.interpreters.sqlite.schema import open_read_only, read_database
from durable_jobs.protocol import shard_index

START = datetime(2026, 5, 1, tzinfo=UTC)
LATER = START + timedelta(minutes=10)


@attrs.frozen
class CountV1:
    count: int


@attrs.frozen
class CountV2:
    total: int
    unit: str


def to_v2(data: Any, version: int) -> Any:
    return {"total": data["count"], "unit": "runs"}


ran: list[tuple[str, Any]] = []


def on_event_v1(ctx: TaskContext[CountV1, int]) -> None:
    ctx.set_state(CountV1(ctx.event))
    ctx.schedule(timedelta(minutes=1))


def on_event_v2(ctx: TaskContext[CountV2, int]) -> None:
    ctx.set_state(CountV2(ctx.event, "new"))
    ctx.schedule(timedelta(minutes=1))


def execute_v2(ctx: TaskContext[CountV2, int]) -> None:
    state = ctx.state
    assert state is not None
    ran.append((ctx.id, state))
    ctx.set_state(CountV2(state.total + 1, state.unit))


V1 = Jobs(t=Task.make(state=CountV1, event=int, on_event=on_event_v1, execute=lambda ctx: None))


def v2(migrate: Any = to_v2) -> Jobs:
    job = Task.make(
        state=CountV2,
        state_version=2,
        migrate_state=migrate,
        event=int,
        on_event=on_event_v2,
        execute=execute_v2,
    )
    return Jobs(t=job)


def _sent(path: Path, *ids: str) -> None:
    with SqliteInterpreter(V1, path, clock=ManualClock(START)) as db:
        for id_ in ids:
            db.client().task("t").send(id=id_, event=4)


def _row(path: Path, id_: str) -> dict[str, Any]:
    with closing(sqlite3.connect(path)) as raw:
        (text,) = raw.execute("SELECT snapshot FROM instances WHERE user_id = ?", (id_,)).fetchone()
    record: dict[str, Any] = json.loads(text)
    return record


def test_a_row_from_before_versions_is_version_1_and_is_rewritten_as_2_after_a_run(
    tmp_path: Path,
) -> None:
    path = tmp_path / "jobs.db"
    _sent(path, "u")
    assert _row(path, "u")["state_version"] == 1
    with closing(sqlite3.connect(path)) as raw:  # as every release before wrote it
        raw.execute("UPDATE instances SET snapshot = json_remove(snapshot, '$.state_version')")
        raw.commit()
    assert "state_version" not in _row(path, "u")
    ran.clear()
    with SqliteInterpreter(v2(), path, clock=ManualClock(LATER)) as db:
        assert db.client().task("t").get_state("u") == CountV2(4, "runs")
        db.run_due()
        assert ran == [("u", CountV2(4, "runs"))]
        assert db.errors == []
    row = _row(path, "u")
    assert (row["state_version"], row["snapshot"]["state"]) == (2, {"total": 5, "unit": "runs"})


def test_a_row_from_newer_code_is_refused_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    _sent(path, "u")
    with SqliteInterpreter(v2(), path, clock=ManualClock(START)) as db:
        db.client().task("t").get_state("u")
        db.client().task("t").trigger("u")  # written back by the v2 code
    assert _row(path, "u")["state_version"] == 2
    newer = "task:t:u: stored state version 2 of 't' is newer"
    with (
        SqliteInterpreter(V1, path, clock=ManualClock(LATER)) as db,  # the code rolled back
        pytest.raises(StorageError, match=newer),
    ):
        db.client().task("t").status("u")
    assert _row(path, "u")["state_version"] == 2  # nothing was lost


def test_a_broken_migration_is_reported_for_its_rows_and_the_others_run(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    _sent(path, "old")

    def broken(data: Any, version: int) -> Any:
        raise ValueError("no unit known")

    with SqliteInterpreter(v2(broken), path, clock=ManualClock(START)) as db:
        db.client().task("t").send(id="new", event=7)  # a v2 instance: nothing to migrate
    ran.clear()
    with SqliteInterpreter(v2(broken), path, clock=ManualClock(LATER)) as db:
        db.run_due()
        assert ran == [("new", CountV2(7, "new"))]
        assert len(db.errors) == 1
        message = str(db.errors[0])
        assert "task:t:old" in message
        assert "failed from state version 1 to 2 (ValueError: no unit known)" in message
    ran.clear()
    with SqliteInterpreter(v2(), path, clock=ManualClock(LATER)) as db:  # the fix deployed
        db.run_due()
        assert ran == [("old", CountV2(4, "runs"))]


def test_inspect_shows_a_v1_row_as_stored_and_with_the_registry_migrated(
    tmp_path: Path,
) -> None:
    path = tmp_path / "jobs.db"
    _sent(path, "u")

    def shown(jobs: Jobs | None) -> str:
        screen = io.StringIO()
        with closing(open_read_only(path)) as connection:
            show(read_database(connection, path, 50), jobs, Console(file=screen, width=300))
        return screen.getvalue()

    assert "active" in shown(None)
    with_jobs = shown(v2())
    assert "CountV2(total=4, unit='runs')" in with_jobs
    assert "unreadable" not in with_jobs


# ----------------------------------------------------------------- WorkerPool events


@attrs.frozen
class MailV1:
    email: str


@attrs.frozen
class MailV2:
    to: str


def mail_to_v2(data: Any, version: int) -> Any:
    return {"to": data["email"]}


def pool(event: type, **options: Any) -> Jobs:
    def send(ctx: PoolContext[Any]) -> None:
        ran.append((ctx.event_id, ctx.event))

    return Jobs(mail=WorkerPool.make(event=event, concurrency=2, execute=send, **options))


POOL_V1 = pool(MailV1)


def pool_v2(migrate: Any = mail_to_v2) -> Jobs:
    return pool(MailV2, event_version=2, migrate_event=migrate)


def _items(path: Path) -> dict[str, dict[str, Any]]:
    with closing(sqlite3.connect(path)) as raw:
        rows = raw.execute("SELECT event_id, item FROM pool_events WHERE item IS NOT NULL")
        return {event_id: json.loads(text) for event_id, text in rows.fetchall()}


def test_pool_rows_record_the_event_version_above_1_only_and_a_rollback_is_refused(
    tmp_path: Path,
) -> None:
    path = tmp_path / "jobs.db"
    with SqliteInterpreter(POOL_V1, path, clock=ManualClock(START)) as db:
        db.client().worker_pool("mail").pause()
        client = db.client().worker_pool("mail")
        shard = client.enqueue(id="old", event=MailV1("a@x"), delay="1 minute").instance_id
    assert "event_version" not in _items(path)["old"]  # as every earlier release reads it
    with SqliteInterpreter(pool_v2(), path, clock=ManualClock(START)) as db:
        client = db.client().worker_pool("mail")
        client.enqueue(id="new", event=MailV2("b@x"), partition_key="old")  # the same shard
        assert client.status().total_delayed == 1
    items = _items(path)
    assert (items["new"]["event_version"], items["new"]["event"]) == (2, {"to": "b@x"})
    assert items["old"]["event"] == {"email": "a@x"}  # only read so far: left as stored
    with SqliteInterpreter(POOL_V1, path, clock=ManualClock(START)) as db:  # rolled back
        db.client().worker_pool("mail").enqueue(id="x", event=MailV1("c@x"))
        with pytest.raises(
            StorageError,
            match=rf"instance {shard}, event 'new': stored event version 2 of 'mail' is newer "
            "than its definition's event_version 1",
        ):
            db.client().worker_pool("mail").cancel("new")
    ran.clear()
    with SqliteInterpreter(pool_v2(), path, clock=ManualClock(LATER)) as db:
        db.client().worker_pool("mail").resume()
        db.run_due()
        assert db.errors == []
    assert sorted(ran) == [("new", MailV2("b@x")), ("old", MailV2("a@x")), ("x", MailV2("c@x"))]


def test_a_broken_event_migration_is_reported_for_its_shard_and_the_others_run(
    tmp_path: Path,
) -> None:
    path = tmp_path / "jobs.db"
    with SqliteInterpreter(POOL_V1, path, clock=ManualClock(START)) as db:
        client = db.client().worker_pool("mail")
        client.pause()
        old = client.enqueue(id="old", event=MailV1("a@x"))

    def broken(data: Any, version: int) -> Any:
        raise ValueError("no address book")

    with SqliteInterpreter(pool_v2(broken), path, clock=ManualClock(START)) as db:
        client = db.client().worker_pool("mail")
        other = 1 - old.instance_index
        key = next(k for k in map(str, range(100)) if shard_index(k, 2) == other)
        client.enqueue(id="new", event=MailV2("b@x"), partition_key=key)
    ran.clear()
    with SqliteInterpreter(pool_v2(broken), path, clock=ManualClock(LATER)) as db:
        client = db.client().worker_pool("mail")
        client.resume(other)
        client.resume(old.instance_index)  # answered from the snapshot: no event read
        db.run_due()
        assert ran == [("new", MailV2("b@x"))]
        [error] = db.errors
        assert f"instance {old.instance_id}, event 'old': migrate_event of 'mail' failed" in str(
            error
        )
    ran.clear()
    with SqliteInterpreter(pool_v2(), path, clock=ManualClock(LATER)) as db:  # the fix
        db.run_due()
        assert ran == [("old", MailV2("a@x"))]
