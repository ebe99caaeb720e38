"""The SQLite database layout, its migrations, and the read-only view ``inspect`` takes.

Theory of operation: one file holds five tables. ``instances`` has one row per instance:
its snapshot (JSON through the core's ``Codec``), version, alarm (with a sequence
number, so alarms due at the same instant fire in the order they were set) and, while
user code runs, a lease. ``pool_events`` has one row per WorkerPool event from its
enqueue until its dedup record expires (``state`` 0 pending, 1 taken, 2 finished), with
partial indexes for the queue order and the finish time. ``dead_letters`` and
``telemetry`` are append-only; ``schema_info`` holds the layout number and the alarm
sequence counter.

``migrate`` runs in the transaction that opens a file: a new file gets the current
layout, an older one is brought up to date by ``MIGRATIONS`` (whole or not at all), a
newer one is refused. ``read_database`` is what ``durable-jobs inspect`` shows; it only
reads, and reads files of older layouts as they are (it never migrates).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, Final

import attrs

from durable_jobs import StorageError

__all__ = [
    "FINISHED",
    "MIGRATIONS",
    "PENDING",
    "SCHEMA",
    "TAKEN",
    "DatabaseView",
    "StoredDeadLetter",
    "StoredInstance",
    "StoredShard",
    "migrate",
    "open_read_only",
    "read_database",
]

SCHEMA: Final = 3
"""The database layout. 1: the first release. 2: no ``queue_age`` index (the oldest
pending event is found by a loose scan of the queue order). 3: a pool event is one row
of ``pool_events`` from enqueue to the end of its dedup retention, instead of a row in
``queue_items`` deleted when taken and a new row in ``finished``: taking and finishing
an event update one row, about half the pages written per processed event."""
PENDING, TAKEN, FINISHED = 0, 1, 2
"""``pool_events.state``."""
MIGRATIONS: Final[dict[int, tuple[str, ...]]] = {
    2: ("DROP INDEX IF EXISTS queue_age",),
    3: (
        "INSERT INTO pool_events (instance_id, event_id, state, neg_priority, seq, item)"
        " SELECT instance_id, event_id, 0, neg_priority, seq, item FROM queue_items",
        # An id pending again after its finished record expired keeps the pending row
        # (the expired record only waited to be pruned).
        "INSERT OR IGNORE INTO pool_events (instance_id, event_id, state, finished_at, record)"
        " SELECT instance_id, event_id, 2, finished_at, record FROM finished",
        "DROP TABLE queue_items",
        "DROP TABLE finished",
    ),
}
"""The statements that bring a database at schema ``n - 1`` to ``n``: run in order, in
the transaction that opens the file, so a file is migrated whole or not at all."""

DDL: Final = """
CREATE TABLE IF NOT EXISTS schema_info (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS instances (
    instance_id TEXT PRIMARY KEY,
    job_name TEXT NOT NULL,
    job_type TEXT NOT NULL,
    user_id TEXT NOT NULL,
    snapshot TEXT NOT NULL,
    version INTEGER NOT NULL,
    alarm_at INTEGER,
    alarm_seq INTEGER,
    running INTEGER NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_until INTEGER
);
CREATE INDEX IF NOT EXISTS instances_alarm
    ON instances (alarm_at, alarm_seq) WHERE alarm_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS instances_running
    ON instances (lease_until) WHERE running = 1;
CREATE TABLE IF NOT EXISTS pool_events (
    instance_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    state INTEGER NOT NULL,
    neg_priority INTEGER,
    seq INTEGER,
    item TEXT,
    finished_at INTEGER,
    record TEXT,
    UNIQUE (instance_id, event_id)
);
CREATE INDEX IF NOT EXISTS pool_queue
    ON pool_events (instance_id, neg_priority, seq, state) WHERE state = 0;
CREATE INDEX IF NOT EXISTS pool_finished
    ON pool_events (instance_id, finished_at) WHERE state = 2;
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_name TEXT NOT NULL,
    record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS telemetry (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_name TEXT NOT NULL,
    event TEXT NOT NULL
);
"""


def migrate(db: sqlite3.Connection) -> None:
    """Create or update the layout (inside the caller's transaction)."""
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    stored = SCHEMA  # a new file starts at the current layout
    if "schema_info" in tables:
        row = db.execute("SELECT value FROM schema_info WHERE name = 'schema'").fetchone()
        stored = int(row[0]) if row else 0
        if stored > SCHEMA:
            raise StorageError(
                f"the database has schema {stored}, newer than this library ({SCHEMA})"
            )
    for statement in DDL.split(";"):
        if statement.strip():
            db.execute(statement)
    for version in range(stored + 1, SCHEMA + 1):
        for statement in MIGRATIONS.get(version, ()):
            db.execute(statement)
    db.execute(
        "INSERT INTO schema_info (name, value) VALUES ('schema', ?) "
        "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        (SCHEMA,),
    )
    db.execute("INSERT OR IGNORE INTO schema_info (name, value) VALUES ('alarm_seq', 0)")


# ------------------------------------------------------------------ read-only view


class NotADatabase(StorageError):
    """A file ``inspect`` cannot read as a durable-jobs database (one-line message)."""


@attrs.frozen
class StoredInstance:
    """One row of ``instances``, its snapshot as stored (JSON text)."""

    instance_id: str
    job_name: str
    job_type: str
    id: str
    snapshot_text: str
    version: int
    alarm_at: int | None
    running: bool
    lease_until: int | None


@attrs.frozen
class StoredShard:
    """A worker pool shard's stored row and how many pending events its queue holds."""

    job_name: str
    instance: StoredInstance
    queued_rows: int


@attrs.frozen
class StoredDeadLetter:
    job_name: str
    record_text: str


@attrs.frozen
class DatabaseView:
    """What ``inspect`` read, with the full counts next to the limited rows."""

    path: Path
    schema: int
    instances: list[StoredInstance]
    instance_count: int
    shards: list[StoredShard]
    shard_count: int
    dead_letters: list[StoredDeadLetter]
    dead_letter_count: int
    queued_count: int
    telemetry_count: int


def open_read_only(path: Path) -> sqlite3.Connection:
    """Open ``path`` read-only; ``NotADatabase`` if it is not a durable-jobs database."""
    if not path.exists():
        raise NotADatabase(f"no database at {str(path)!r}")
    if path.is_dir():
        raise NotADatabase(f"{str(path)!r} is a folder, not a database file")
    uri = f"{path.resolve().as_uri()}?mode=ro"
    try:
        connection = sqlite3.connect(uri, uri=True)
    except sqlite3.Error as error:
        raise NotADatabase(f"cannot read {str(path)!r}: {error}") from None
    try:
        tables = {
            row[0]
            for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
    except sqlite3.Error as error:
        connection.close()
        raise NotADatabase(f"cannot read {str(path)!r}: {error}") from None
    needed = {"schema_info", "instances", "dead_letters", "telemetry"}
    if not needed <= tables or not tables & {"pool_events", "queue_items"}:
        connection.close()
        raise NotADatabase(f"{str(path)!r} is not a durable-jobs database")
    return connection


_INSTANCES: Final = (
    "SELECT instance_id, job_name, job_type, user_id, snapshot, version, alarm_at, running,"
    " lease_until FROM instances ORDER BY job_name, length(user_id), user_id LIMIT ?"
)
_QUEUED_PER_SHARD: Final = (
    "SELECT instance_id, job_name, job_type, user_id, snapshot, version, alarm_at, running,"
    " lease_until, (SELECT COUNT(*) FROM pool_events q WHERE q.instance_id = i.instance_id"
    " AND q.state = 0) FROM instances i WHERE i.job_type = 'workerPool'"
    " ORDER BY job_name, length(user_id), user_id LIMIT ?"
)
_QUEUED_PER_SHARD_V1: Final = (
    "SELECT instance_id, job_name, job_type, user_id, snapshot, version, alarm_at, running,"
    " lease_until, (SELECT COUNT(*) FROM queue_items q WHERE q.instance_id = i.instance_id)"
    " FROM instances i WHERE i.job_type = 'workerPool'"
    " ORDER BY job_name, length(user_id), user_id LIMIT ?"
)
"""Schema 1 and 2 kept pending events in ``queue_items``."""


def read_database(connection: sqlite3.Connection, path: Path, limit: int) -> DatabaseView:
    """Read what ``inspect`` shows: at most ``limit`` rows per table, and the counts."""
    try:
        return _query(connection, path, limit)
    except sqlite3.Error as error:
        raise NotADatabase(f"cannot read {str(path)!r}: {error}") from None


def _instance(row: tuple[Any, ...]) -> StoredInstance:
    instance_id, job_name, job_type, user_id, text, version, alarm_at, running, lease = row
    return StoredInstance(
        instance_id, job_name, job_type, user_id, text, int(version), alarm_at, bool(running), lease
    )


def _query(db: sqlite3.Connection, path: Path, limit: int) -> DatabaseView:
    def count(sql: str) -> int:
        return int(db.execute(sql).fetchone()[0])

    row = db.execute("SELECT value FROM schema_info WHERE name = 'schema'").fetchone()
    schema = int(row[0]) if row else 0
    if schema > SCHEMA:
        raise NotADatabase(
            f"{str(path)!r} has schema {schema}, newer than this library understands ({SCHEMA})"
        )
    # Schema 3 keeps pending events in pool_events (state 0); older files are read as
    # they are.
    legacy = schema < 3
    instances = [_instance(row) for row in db.execute(_INSTANCES, (limit,))]
    shards = [
        StoredShard(row[1], _instance(row[:-1]), int(row[-1]))
        for row in db.execute(_QUEUED_PER_SHARD_V1 if legacy else _QUEUED_PER_SHARD, (limit,))
    ]
    dead = [
        StoredDeadLetter(job_name, text)
        for job_name, text in reversed(
            db.execute(
                "SELECT job_name, record FROM dead_letters ORDER BY id DESC LIMIT ?", (limit,)
            ).fetchall()
        )
    ]
    return DatabaseView(
        path=path,
        schema=schema,
        instances=instances,
        instance_count=count("SELECT COUNT(*) FROM instances"),
        shards=shards,
        shard_count=count("SELECT COUNT(*) FROM instances WHERE job_type = 'workerPool'"),
        dead_letters=dead,
        dead_letter_count=count("SELECT COUNT(*) FROM dead_letters"),
        queued_count=count(
            "SELECT COUNT(*) FROM queue_items"
            if legacy
            else "SELECT COUNT(*) FROM pool_events WHERE state = 0"
        ),
        telemetry_count=count("SELECT COUNT(*) FROM telemetry"),
    )
