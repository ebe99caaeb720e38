"""The SQLite database layout, its migrations, and the read-only view ``inspect`` takes.

Theory of operation: one file holds five tables. ``instances`` has one row per instance:
its snapshot (JSON through the core's ``Codec``), version, alarm (with a sequence
number, so alarms due at the same instant fire in the order they were set) and, while
user code runs, a lease. ``pool_events`` has one row per WorkerPool event from its
enqueue until its dedup record expires (``state`` 0 pending, 1 taken, 2 finished, 3
delayed: waiting for its ``due_at``), with partial indexes for the queue order, the finish
time and the due time. ``dead_letters`` and
``telemetry`` are append-only; ``schema_info`` holds the layout number and the alarm
sequence counter.

``migrate`` runs in the transaction that opens a file: ``DDL`` creates what is missing
in the layout ``DDL_SCHEMA``, then ``MIGRATIONS`` bring the file from its layout (a new
file: ``DDL_SCHEMA``) to ``SCHEMA``, whole or not at all; a newer one is refused. New and
old files reach the current layout by the same statements, so they cannot differ (and a
column added by a migration is never in the ``DDL``, where an old file's table would
lack it when the ``DDL``'s indexes are built). ``read_database`` is what ``durable-jobs inspect`` shows; it only
reads, and reads files of older layouts as they are (it never migrates).

Decisions:

* Another program's database is not ours to change. ``check_owner`` runs before a
  writer opens a file (before WAL is switched on): a missing or empty file, or one that
  holds this library's tables, opens as before; a SQLite file holding only other
  tables is refused with a ``StorageError`` that says how to opt in
  (``add_schema=True``, ``durable-jobs worker --add-schema``), as ``inspect`` refuses it.
* A value in ``schema_info`` that is not an integer is a ``StorageError`` naming the
  table and the entry, never a bare ``ValueError``.
* Times in the ``instances`` table are epoch milliseconds a ``datetime`` can show
  (``MIN_INSTANT`` to ``MAX_INSTANT``). The read-only view keeps each column as stored,
  so ``inspect`` shows a value that is not one as unreadable instead of failing.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, TypeGuard

import attrs

from durable_jobs import StorageError

__all__ = [
    "DDL_SCHEMA",
    "DELAYED",
    "FINISHED",
    "MAX_INSTANT",
    "MIGRATIONS",
    "MIN_INSTANT",
    "PENDING",
    "SCHEMA",
    "TAKEN",
    "DatabaseView",
    "StoredDeadLetter",
    "StoredInstance",
    "StoredShard",
    "check_owner",
    "is_instant",
    "migrate",
    "open_read_only",
    "read_database",
]

SCHEMA: Final = 4
"""The database layout. 1: the first release. 2: no ``queue_age`` index (the oldest
pending event is found by a loose scan of the queue order). 3: a pool event is one row
of ``pool_events`` from enqueue to the end of its dedup retention, instead of a row in
``queue_items`` deleted when taken and a new row in ``finished``: taking and finishing
an event update one row, about half the pages written per processed event. 4: delayed
events (``enqueue(delay=| at=)``): ``pool_events.due_at`` and the ``pool_delayed`` index
of the rows in state 3."""
DDL_SCHEMA: Final = 3
"""The layout ``DDL`` creates; the ``MIGRATIONS`` after it bring every file to ``SCHEMA``."""
PENDING, TAKEN, FINISHED, DELAYED = 0, 1, 2, 3
"""``pool_events.state``."""
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MS: Final = timedelta(milliseconds=1)
MIN_INSTANT: Final = (datetime.min.replace(tzinfo=UTC) - _EPOCH) // _MS
MAX_INSTANT: Final = (datetime.max.replace(tzinfo=UTC) - _EPOCH) // _MS
"""The times (epoch milliseconds) an ``alarm_at`` or ``lease_until`` may hold: those a
``datetime`` can show, years 1 to 9999. In SQLite's order every text or blob value sorts
after every number, so ``> MAX_INSTANT`` on an index also finds those."""


def is_instant(value: object) -> TypeGuard[int]:
    """Whether a stored value is a time ``instances`` may hold.

    >>> is_instant(1_767_225_600_000), is_instant("soon"), is_instant(2**62), is_instant(True)
    (True, False, False, False)
    """
    return type(value) is int and MIN_INSTANT <= value <= MAX_INSTANT


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
    4: (
        "ALTER TABLE pool_events ADD COLUMN due_at INTEGER",
        "CREATE INDEX IF NOT EXISTS pool_delayed"
        " ON pool_events (instance_id, due_at, seq) WHERE state = 3",
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


def check_owner(path: str | Path, *, add_schema: bool) -> None:
    """Refuse another program's SQLite file unless ``add_schema`` (see the header).

    A path that is not an existing file is left to the caller (a new file, a folder or
    ``:memory:``), and so is a file SQLite cannot read: opening it says why.
    """
    target = Path(path)
    if add_schema or not target.is_file() or target.stat().st_size == 0:
        return
    try:
        with closing(sqlite3.connect(f"{target.resolve().as_uri()}?mode=ro", uri=True)) as db:
            tables = {
                name
                for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
                if not name.startswith("sqlite_")
            }
    except sqlite3.Error:
        return
    if not tables or {"schema_info", "instances"} <= tables:
        return
    raise StorageError(
        f"{str(path)!r} is not a durable-jobs database (it holds other tables: "
        f"{', '.join(sorted(tables)[:5])}); to add the durable-jobs tables to it, pass "
        "add_schema=True (durable-jobs worker --add-schema)"
    )


def schema_number(db: sqlite3.Connection, name: str) -> int | None:
    """The integer ``schema_info`` holds under ``name`` (``None`` when there is no
    entry); ``StorageError`` naming the table when it is something else."""
    row = db.execute("SELECT value FROM schema_info WHERE name = ?", (name,)).fetchone()
    if row is None:
        return None
    if type(row[0]) is not int:
        raise StorageError(f"schema_info: {name} {row[0]!r} is not an integer")
    value: int = row[0]
    return value


def migrate(db: sqlite3.Connection) -> None:
    """Create or update the layout (inside the caller's transaction)."""
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    stored = DDL_SCHEMA  # a new file: what the DDL creates, then the later migrations
    if "schema_info" in tables:
        stored = schema_number(db, "schema") or 0
        schema_number(db, "alarm_seq")  # checked now, not at the first alarm
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
    """One row of ``instances`` as stored: its snapshot as JSON text, and the version
    and times as SQLite holds them (a damaged row may hold text there; see
    ``is_instant``)."""

    instance_id: str
    job_name: str
    job_type: str
    id: str
    snapshot_text: str
    version: object
    alarm_at: object
    running: bool
    lease_until: object


@attrs.frozen
class StoredShard:
    """A worker pool shard's stored row, how many pending events its queue holds, and how
    many delayed ones wait for their time."""

    job_name: str
    instance: StoredInstance
    queued_rows: int
    delayed_rows: int = 0


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
    delayed_count: int = 0


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
    " AND q.state = 3), (SELECT COUNT(*) FROM pool_events q"
    " WHERE q.instance_id = i.instance_id AND q.state = 0) FROM instances i"
    " WHERE i.job_type = 'workerPool' ORDER BY job_name, length(user_id), user_id LIMIT ?"
)
"""Each shard's row with its delayed and its pending events (delayed rows, state 3,
exist from schema 4 on; an older file has none)."""
_QUEUED_PER_SHARD_V1: Final = (
    "SELECT instance_id, job_name, job_type, user_id, snapshot, version, alarm_at, running,"
    " lease_until, 0, (SELECT COUNT(*) FROM queue_items q WHERE q.instance_id = i.instance_id)"
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
        str(instance_id),
        str(job_name),
        str(job_type),
        str(user_id),
        str(text),
        version,
        alarm_at,
        running == 1,
        lease,
    )


def _query(db: sqlite3.Connection, path: Path, limit: int) -> DatabaseView:
    def count(sql: str) -> int:
        return int(db.execute(sql).fetchone()[0])

    try:
        schema = schema_number(db, "schema") or 0
    except StorageError as error:
        raise NotADatabase(f"cannot read {str(path)!r}: {error}") from None
    if schema > SCHEMA:
        raise NotADatabase(
            f"{str(path)!r} has schema {schema}, newer than this library understands ({SCHEMA})"
        )
    # Schema 3 keeps pending events in pool_events (state 0); older files are read as
    # they are.
    legacy = schema < 3
    instances = [_instance(row) for row in db.execute(_INSTANCES, (limit,))]
    shards = [
        StoredShard(row[1], _instance(row[:-2]), int(row[-1]), int(row[-2]))
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
        delayed_count=0 if legacy else count("SELECT COUNT(*) FROM pool_events WHERE state = 3"),
    )
