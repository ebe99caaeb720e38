"""The SQLite interpreter: the embedded, durable default.

Theory of operation.

*One transaction per committed transition.* A step opens ``BEGIN IMMEDIATE`` (SQLite's
single writer lock), reads the instance's row (and, for a WorkerPool shard, the queue
rows the core asks for), calls ``decide``, and writes everything the transition says —
snapshot, alarm, queue rows, finished records, dead letters, telemetry outbox — then
commits. User code runs between transactions, never inside one. The interpreter holds no
job semantics: it only carries out commands.

*Group commit.* A worker's writes all happen on one thread: the transitions of every
instance that is ready (claimed, or back from its user code) are made in one
transaction, each in a savepoint so that one unreadable row fails alone, and user code
starts only after that commit. Concurrent runs so share one fsync while each attempt is
still durable before it runs and each outcome before the next attempt of its instance.
A transition that leaves the same instance due at once fires that alarm in the same
transaction (at most ``group_commit`` times, for fairness). The instance row is written
once per step with its alarm, and the transaction's telemetry goes out in one
statement. ``enqueue_many`` writes a whole batch in one transaction.

*Pool storage.* A WorkerPool event is one ``pool_events`` row from its enqueue until its
dedup record expires: pending (in the ``pool_queue`` partial index, in processing
order), taken (the shard's current event), finished (in the ``pool_finished`` partial
index, by finish time). Taking and finishing update that row, so a processed event
writes few pages.

*Optimistic chains.* A request whose first transition starts user code without
persisting (a Debounce reducer, a Task ``on_event``) keeps the working snapshot in memory.
When its outcome comes back, the step checks that the stored ``version`` is still the
one it started from; if another process wrote the instance meanwhile, the whole request
is run again from the top (``ConflictError`` after ``MAX_CONFLICT_RETRIES``). A request
that meets a run in flight elsewhere (the core answers *busy*) waits and retries the same
way, so a web process and a worker can share one file.

*Alarms and leases.* Each instance row keeps its alarm (``alarm_at``, plus a sequence
number so alarms due at the same instant fire in the order they were set, as in the
memory interpreter). While a run is in flight the row is ``running`` with a lease; a row
is claimable when its alarm is due or its lease has expired. Two partial indexes hold
exactly the claimable candidates, so claiming stays flat as finished rows pile up. A
claimed row whose snapshot still shows a run in flight belongs to a worker that died:
the core is told ``RunInterrupted`` and counts that attempt as failed.

*Clocks.* With the default ``SystemClock`` the worker runs due work (``run_due``,
``run_forever``). With a ``ManualClock`` the interpreter offers the memory interpreter's
simulation surface (``advance``, ``advance_to``, ``next_alarm_at``), and the same
scenarios run deterministically; the contract suite runs that way.

*Stored data.* Rows are JSON through the core's ``Codec``, with a schema version. A row
that cannot be read raises ``StorageError`` naming the instance; the database's own
schema version is checked when it is opened (a newer one is refused, an older one is
migrated in the opening transaction by ``MIGRATIONS``).

Decisions where the issue was silent: ``stop()`` is graceful (no new work; runs going
finish and their outcomes commit before ``run_forever`` returns), ``close()`` is not
(a run cut off counts as interrupted when its lease expires); a due row of a job this
registry does not define is left alone (another program sharing the file runs it).
"""

from __future__ import annotations

import json
import logging
import queue
import sqlite3
import threading
import time
import uuid
from collections.abc import Generator, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

import attrs
from returns.result import Failure, Success

from durable_jobs import (
    AlarmFired,
    CancelAlarm,
    ClearQueue,
    Client,
    Codec,
    Command,
    ConflictError,
    DeadLetter,
    Definition,
    DefinitionError,
    DeleteFinished,
    DeleteQueueItem,
    DurableJobsError,
    Emit,
    FinishedEvent,
    Input,
    InstanceKey,
    Instant,
    Jobs,
    Persist,
    PoolView,
    Purge,
    PutFinished,
    PutQueueItem,
    QueueReads,
    QueueView,
    RecordDeadLetter,
    Reply,
    Request,
    RunInterrupted,
    RunUserCode,
    ScheduleAlarm,
    ScheduleRetry,
    StorageError,
    TakeQueueItem,
    TelemetryEvent,
    Transition,
    WorkerPoolDefinition,
    decide,
    parse_duration,
    queue_reads,
    to_datetime,
)
from durable_jobs._results import Reply as ReplyValue
from durable_jobs.interpreters._runner import run_sync
from durable_jobs.interpreters.clock import Clock, ManualClock, SystemClock

__all__ = ["SCHEMA", "SqliteInterpreter"]

SCHEMA: Final = 3
"""The database layout. 1: the first release. 2: no ``queue_age`` index (the oldest
pending event is found by a loose scan of the queue order). 3: a pool event is one row
of ``pool_events`` from enqueue to the end of its dedup retention — ``state`` 0 pending,
1 taken (the shard's current event), 2 finished — with partial indexes for the queue
order and the finish time, instead of a row in ``queue_items`` deleted when taken and a
new row in ``finished``. Taking and finishing an event then update one row and touch
two small indexes, about half the pages written per processed event."""
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
MAX_CONFLICT_RETRIES: Final = 500
GROUP_COMMIT: Final = 64
"""The default of ``group_commit``: at most this many due alarms a worker's chain fires
by itself, in the transaction of the step before, before it lets the instance go back to
the claim queue (fairness between instances). 0 turns group commit off."""
BATCH: Final = 32
"""The default of ``batch``: at most this many instances ``run_due`` advances in one
transaction (``run_forever`` advances up to ``workers``)."""
CHANGE_CHECK: Final = 0.02
"""Seconds between checks of ``PRAGMA data_version`` while the worker sleeps."""

_log = logging.getLogger("durable_jobs")
SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")

_DDL = """
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


class _Retry(Exception):
    """The stored instance changed under a request chain: run the request again."""


_OLDEST: Final = """
WITH RECURSIVE levels(np) AS (
    SELECT MIN(neg_priority) FROM pool_events WHERE instance_id = ?1 AND state = 0
    UNION ALL
    SELECT (SELECT MIN(neg_priority) FROM pool_events
            WHERE instance_id = ?1 AND state = 0 AND neg_priority > np)
    FROM levels WHERE np IS NOT NULL
)
SELECT item FROM pool_events WHERE rowid IN (
    SELECT (SELECT rowid FROM pool_events WHERE instance_id = ?1 AND state = 0
            AND neg_priority = np ORDER BY seq LIMIT 1)
    FROM levels WHERE np IS NOT NULL
) ORDER BY seq LIMIT 1
"""
"""The pending event enqueued first: the first of each priority level in ``pool_queue``
(found by a loose index scan, so the cost is the number of distinct priorities times
log n, not n), then the lowest ``seq`` among them."""
_HEAD_AND_EXPIRED: Final = (
    "SELECT 0, item FROM (SELECT item FROM pool_events WHERE instance_id = ?1 AND state = 0 "
    "ORDER BY neg_priority, seq LIMIT 1) UNION ALL SELECT 2, record FROM "
    "(SELECT record FROM pool_events WHERE instance_id = ?1 AND state = 2 "
    "AND finished_at < ?2 ORDER BY finished_at LIMIT ?3)"
)
_RANK: Final = (
    "SELECT (SELECT COUNT(*) FROM pool_events WHERE instance_id = ?1 AND state = 0 "
    "AND neg_priority < ?2) + (SELECT COUNT(*) FROM pool_events WHERE instance_id = ?1 "
    "AND state = 0 AND neg_priority = ?2 AND seq < ?3)"
)
"""How many pending events are ahead of one: two index range counts."""
_EVENT_ONE: Final = (
    "SELECT event_id, state, item, neg_priority, seq, record FROM pool_events "
    "WHERE instance_id = ? AND event_id = ?"
)
_EVENT_MANY: Final = (
    "SELECT event_id, state, item, neg_priority, seq, record FROM pool_events "
    "WHERE instance_id = ? AND event_id IN (SELECT value FROM json_each(?))"
)

_RUNNING: ContextVar[frozenset[tuple[int, str]]] = ContextVar(
    "durable_jobs_sqlite_running", default=frozenset()
)
"""(interpreter, instance) pairs whose user code runs in this context: a request from that
code to its own instance is refused (re-entrancy), while other threads' requests wait.
A context variable, not a thread-local: ``async def`` hooks run on the runner's loop
thread in a copy of the caller's context."""

_NO_READS: Final = QueueReads()
_EMPTY_VIEW: Final[QueueView[Any]] = QueueView()


@attrs.define
class _RowChange:
    """An instance row's changes not written yet: the last snapshot persisted, and the
    alarm when a command changed it."""

    snapshot: Any = None
    alarm: Instant | None = None
    alarm_changed: bool = False
    started: bool = False
    """A run started in this step: the writer takes the lease. A write that starts no
    run (an enqueue while an event runs, from any process) leaves the lease alone."""


_UPSERT = (
    "INSERT INTO instances (instance_id, job_name, job_type, user_id, snapshot, version,"
    " running, lease_owner, lease_until) VALUES (?,?,?,?,?,?,?,?,?)"
    " ON CONFLICT (instance_id) DO UPDATE SET snapshot = excluded.snapshot,"
    " version = excluded.version, running = excluded.running,"
    " lease_owner = excluded.lease_owner, lease_until = excluded.lease_until"
)
_UPSERT_WITH_ALARM = (
    "INSERT INTO instances (instance_id, job_name, job_type, user_id, snapshot, version,"
    " running, lease_owner, lease_until, alarm_at, alarm_seq) VALUES (?,?,?,?,?,?,?,?,?,?,?)"
    " ON CONFLICT (instance_id) DO UPDATE SET snapshot = excluded.snapshot,"
    " version = excluded.version, running = excluded.running,"
    " lease_owner = excluded.lease_owner, lease_until = excluded.lease_until,"
    " alarm_at = excluded.alarm_at, alarm_seq = excluded.alarm_seq"
)


@attrs.define
class _Chain:
    """One instance's steps in flight: ``steps`` is resumed in a transaction each time."""

    instance_id: str
    definition: Definition
    steps: Generator[RunUserCode, Input | None, ReplyValue | None]


class SqliteInterpreter:
    """Runs jobs durably in one SQLite file.

    >>> import tempfile, os
    >>> from durable_jobs import Debounce, Jobs
    >>> from durable_jobs.interpreters.clock import ManualClock
    >>> seen = []
    >>> batcher = Debounce.make(event=int, flush_after="1 minute",
    ...                         execute=lambda ctx: seen.append(ctx.state))
    >>> path = os.path.join(tempfile.mkdtemp(), "jobs.db")
    >>> db = SqliteInterpreter(Jobs(batcher=batcher), path, clock=ManualClock())
    >>> db.client().debounce(batcher).add(id="u", event=3).event_count
    1
    >>> db.advance("2 minutes"); seen
    [3]
    >>> db.close()
    """

    def __init__(
        self,
        jobs: Jobs,
        path: str | Path = "jobs.db",
        clock: Clock | None = None,
        synchronous: str = "FULL",
        *,
        lease: timedelta | str = "30 seconds",
        group_commit: int = GROUP_COMMIT,
        batch: int = BATCH,
    ) -> None:
        if not isinstance(jobs, Jobs):
            raise TypeError(f"expected a Jobs registry, got {jobs!r}")
        if synchronous.upper() not in SYNCHRONOUS:
            raise DefinitionError(f"synchronous must be one of {SYNCHRONOUS}, got {synchronous!r}")
        self._jobs = jobs
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._lease_ms = parse_duration(lease, what="lease")
        if isinstance(group_commit, bool) or not isinstance(group_commit, int) or group_commit < 0:
            raise DefinitionError(f"group_commit must be an int >= 0, got {group_commit!r}")
        self._group_commit = group_commit
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise DefinitionError(f"batch must be an int >= 1, got {batch!r}")
        self._batch = batch
        self._owner = uuid.uuid4().hex
        self._codecs = {name: Codec(definition) for name, definition in jobs.items()}
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._busy: set[str] = set()
        self._closed = False
        self._stopping = False
        self._heartbeat: threading.Thread | None = None
        self._claimed: set[str] = set()  # picked by this process's worker, not yet done
        self._held: set[str] = set()  # a worker's runs committed as started, not yet back
        self._foreign: set[str] = set()  # due rows of jobs this registry does not hold
        self._outbox: list[tuple[str, str]] = []  # telemetry rows of the open transaction
        self._seq: int | None = None  # the alarm sequence within the open transaction
        self._seq_read: int | None = None
        self.errors: list[DurableJobsError] = []
        """Errors met while running due work (each also logged)."""
        try:
            self._db = sqlite3.connect(
                str(path), isolation_level=None, timeout=30.0, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={synchronous.upper()}")
            self._migrate()
        except sqlite3.Error as error:
            raise StorageError(f"cannot open the database {str(path)!r}: {error}") from None

    # ---------------------------------------------------------------- lifecycle
    def _migrate(self) -> None:
        with self._transaction():
            tables = {
                row[0]
                for row in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
            stored = SCHEMA  # a new file starts at the current layout
            if "schema_info" in tables:
                row = self._db.execute(
                    "SELECT value FROM schema_info WHERE name = 'schema'"
                ).fetchone()
                stored = int(row[0]) if row else 0
                if stored > SCHEMA:
                    raise StorageError(
                        f"the database has schema {stored}, newer than this library ({SCHEMA})"
                    )
            for statement in _DDL.split(";"):
                if statement.strip():
                    self._db.execute(statement)
            for version in range(stored + 1, SCHEMA + 1):
                for statement in MIGRATIONS.get(version, ()):
                    self._db.execute(statement)
            self._db.execute(
                "INSERT INTO schema_info (name, value) VALUES ('schema', ?) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (SCHEMA,),
            )
            self._db.execute(
                "INSERT OR IGNORE INTO schema_info (name, value) VALUES ('alarm_seq', 0)"
            )

    def close(self) -> None:
        """Stop accepting work and close the database."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._wake.set()
                self._db.close()

    def closed(self) -> bool:
        return self._closed

    def stop(self) -> None:
        """Ask ``run_forever`` to return once its running steps finish (signal-safe)."""
        self._stopping = True
        self._wake.set()

    def _running(self) -> bool:
        return not self._closed and not self._stopping

    def __enter__(self) -> SqliteInterpreter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        with self._lock:
            if self._closed:
                raise DurableJobsError("the interpreter is closed")
            self._db.execute("BEGIN IMMEDIATE")
            self._seq = self._seq_read = None
            self._outbox.clear()
            try:
                yield
                self._before_commit()
            except BaseException:
                self._outbox.clear()
                self._db.execute("ROLLBACK")
                raise
            else:
                try:
                    self._db.execute("COMMIT")
                except BaseException:
                    # A failed COMMIT can leave the transaction open: end it, so the
                    # next step does not meet "cannot start a transaction within one".
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    raise

    def _before_commit(self) -> None:
        """Write what the transaction buffered: the telemetry outbox, the alarm counter."""
        if self._outbox:
            self._db.executemany(
                "INSERT INTO telemetry (job_name, event) VALUES (?, ?)", self._outbox
            )
            self._outbox.clear()
        if self._seq is not None and self._seq != self._seq_read:
            self._db.execute(
                "UPDATE schema_info SET value = ? WHERE name = 'alarm_seq'", (self._seq,)
            )

    # ------------------------------------------------------------- public surface
    @property
    def jobs(self) -> Jobs:
        return self._jobs

    def client(self) -> Client:
        """A client whose calls run against this database."""
        return Client(self)

    def now(self) -> datetime:
        return to_datetime(self._clock.now())

    @property
    def telemetry(self) -> list[TelemetryEvent]:
        """Every telemetry event in the outbox, in commit order."""
        with self._lock:
            rows = self._db.execute("SELECT job_name, event FROM telemetry ORDER BY id").fetchall()
        return [self._codecs[name].decode_event(json.loads(text)) for name, text in rows]

    def next_alarm_at(self) -> datetime | None:
        """When the earliest pending alarm is due, or ``None``."""
        with self._lock:
            row = self._db.execute(
                "SELECT MIN(alarm_at) FROM instances WHERE alarm_at IS NOT NULL"
            ).fetchone()
        return None if row[0] is None else to_datetime(Instant(row[0]))

    def advance(self, duration: timedelta | str) -> None:
        """Manual clock only: move forward, firing due alarms in time order."""
        target = Instant(self._clock.now() + parse_duration(duration, what="advance"))
        self.advance_to(to_datetime(target))

    def advance_to(self, when: datetime) -> None:
        clock = self._clock
        if not isinstance(clock, ManualClock):
            raise TypeError("advance needs a ManualClock; a real clock moves by itself")
        target = Instant(int((when - to_datetime(Instant(0))) / timedelta(milliseconds=1)))
        if target < clock.now():
            raise ValueError(f"cannot move the clock back from {self.now()} to {when}")
        if any(owner == id(self) for owner, _ in _RUNNING.get()):
            raise RuntimeError("advance cannot be called from user code")
        while True:
            due = self._next_due(target)
            if due is None:
                break
            instance_id, at = due
            clock.set(Instant(max(clock.now(), at)))
            self._fire(instance_id, at)  # one alarm at a time, as in memory
        clock.set(target)

    def run_due(self, limit: int = 1000) -> int:
        """Run what is due now, then return how many instances were taken up.

        Due means an alarm at or before now, or a run whose lease expired (its worker
        died: the attempt is reported interrupted). Up to ``batch`` WorkerPool shards are
        taken at once: their transitions share one transaction (one commit), then their
        user code runs one after another in this thread, then their outcomes (and the
        next attempts they start) share the next commit. Pools answer every request while
        an event runs, so a shard whose attempt waits for its turn blocks no caller; the
        other job types refuse requests as busy while running, so each of their
        instances runs on its own, one transaction per step. An instance whose stored
        row cannot be read is
        reported (``errors``, and the ``durable_jobs`` logger) and skipped; the others
        keep running. If a write fails (the database locked past its timeout), the
        error propagates and the batch is let go: runs already committed as started
        count as interrupted once their leases expire.
        """
        taken = 0
        ready: list[tuple[_Chain, Input | None]] = []
        try:
            while True:
                room = min(self._batch - len(ready), limit - taken)
                fresh = self._claim(room) if room > 0 else []
                taken += len(fresh)
                alone: list[_Chain] = []
                for chain in fresh:
                    if chain.definition.answers_while_running:
                        ready.append((chain, None))
                    else:
                        alone.append(chain)
                self._drive_alone(alone)
                if not ready:
                    if fresh:
                        continue
                    return taken
                runs = self._advance(ready)
                ready = []
                for index, (chain, run) in enumerate(runs):
                    try:
                        ready.append((chain, self._run(chain, run)))
                    except BaseException:
                        for left, _ in runs[index:]:
                            self._abandon(left)
                        raise
        except BaseException:
            for chain, _ in ready:
                self._abandon(chain)
            raise

    def run_forever(self, poll: timedelta | str = "1 second", workers: int = 8) -> None:
        """Run due work until ``stop`` or ``close`` is called (from a signal handler or a
        thread).

        Up to ``workers`` instances run at once (sync user code in threads, ``async def``
        on an event loop). One thread does every write: the transitions of all instances
        that are ready share one transaction, so concurrent runs share their commits
        (group commit). Between claims the worker sleeps until the next alarm; a call
        from this process wakes it at once, and a change made by another process is seen
        within ``CHANGE_CHECK`` through ``PRAGMA data_version`` (``poll`` bounds the sleep
        in any case).
        """
        poll_s = parse_duration(poll, what="poll") / 1000
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise DefinitionError(f"workers must be an int >= 1, got {workers!r}")
        # An outcome, or None when running the hook itself broke (not the user's code:
        # run_sync turns what user code raises into an outcome); that chain is dropped
        # and its lease left to expire, which counts the attempt interrupted.
        outcomes: queue.SimpleQueue[tuple[_Chain, Input | None]] = queue.SimpleQueue()
        active: dict[str, _Chain] = {}  # chains taken up and not finished
        ready: list[tuple[_Chain, Input | None]] = []

        def run_one(chain: _Chain, run: RunUserCode) -> None:
            outcome: Input | None = None
            try:
                outcome = self._run(chain, run)
            except BaseException:
                _log.exception("running a hook of %s broke", chain.instance_id)
            finally:
                outcomes.put((chain, outcome))
                self._wake.set()

        def collect(chain: _Chain, outcome: Input | None) -> None:
            if outcome is not None:
                ready.append((chain, outcome))
            else:
                active.pop(chain.instance_id, None)
                self._abandon(chain)

        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="durable-jobs") as pool:
            try:
                while not self.closed():
                    while True:
                        try:
                            collect(*outcomes.get_nowait())
                        except queue.Empty:
                            break
                    taking = self._running()
                    if taking and len(active) < workers:
                        fresh = self._claim(workers - len(active))
                        active.update((chain.instance_id, chain) for chain in fresh)
                        ready.extend((chain, None) for chain in fresh)
                    if ready:
                        runs = self._advance(ready)
                        going = {chain.instance_id for chain, _ in runs}
                        for chain, _ in ready:
                            if chain.instance_id not in going:
                                active.pop(chain.instance_id, None)
                        ready = []
                        for chain, run in runs:
                            pool.submit(run_one, chain, run)
                        continue
                    if not taking and not active:
                        return  # stopped, and every run's outcome is committed
                    if len(active) >= workers or not taking:
                        # Every slot is busy (or no more are taken up): only an outcome
                        # can bring work, so wait for one without polling the database.
                        with suppress(queue.Empty):
                            collect(*outcomes.get(timeout=poll_s))
                        continue
                    upcoming = self.next_alarm_at()
                    wait = poll_s
                    if upcoming is not None:
                        wait = min(poll_s, max(0.0, (upcoming - self.now()).total_seconds()))
                    self._sleep(wait)
            except (DurableJobsError, sqlite3.Error):
                if self.closed():
                    return  # closed while claiming or writing
                raise
            finally:
                # Closed, or a write failed: the chains still taken up are let go; their
                # runs' leases expire and the attempts count as interrupted.
                for chain in active.values():
                    self._abandon(chain)

    def _run(self, chain: _Chain, run: RunUserCode) -> Input:
        """Run one hook of ``chain`` (its attempt is committed already); its outcome."""
        instance_id = chain.instance_id
        self._busy.add(instance_id)
        token = _RUNNING.set(_RUNNING.get() | {(id(self), instance_id)})
        self._start_heartbeat()
        try:
            return run_sync(chain.definition, run, self._clock.now())
        finally:
            _RUNNING.reset(token)
            self._busy.discard(instance_id)

    def _drive_alone(self, chains: list[_Chain]) -> None:
        """Run each chain to its end on its own, one transaction per step: its attempt
        is committed only when it is about to run, and its outcome before anything else
        runs. For jobs that refuse requests as busy while a run is in flight (Continuous,
        Debounce, Task), so a run of a ``run_due`` batch never finds another instance
        busy with an attempt that is only waiting for its turn."""
        for index, chain in enumerate(chains):
            try:
                try:
                    self._drive(chain)
                except DurableJobsError as error:
                    self._let_go(chain)
                    self._report(chain.instance_id, error)  # may write (set aside) too
            except BaseException:
                for left in chains[index:]:  # this one and those not driven yet
                    self._abandon(left)
                raise
            finally:
                self._let_go(chain)

    def _abandon(self, chain: _Chain) -> None:
        """Give a chain up (its run's lease expires: the attempt counts as interrupted)."""
        chain.steps.close()
        self._let_go(chain)

    def _sleep(self, seconds: float) -> None:
        """Wait up to ``seconds``: less if woken in-process or another process wrote."""
        deadline = time.monotonic() + seconds
        seen = self._data_version()
        while self._running():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            if self._wake.wait(min(left, CHANGE_CHECK)):
                self._wake.clear()
                return
            if self._data_version() != seen:
                return

    def _data_version(self) -> int:
        with self._lock:
            if self._closed:
                return -1
            return int(self._db.execute("PRAGMA data_version").fetchone()[0])

    def _advance(
        self, ready: list[tuple[_Chain, Input | None]]
    ) -> list[tuple[_Chain, RunUserCode]]:
        """Resume every ready chain in one transaction (group commit); the runs to start.

        Each chain runs in its own savepoint: a chain that fails (an unreadable row) is
        rolled back alone and reported; the others commit. Nothing returned runs before
        the commit, so every attempt is durable before its user code starts.
        """
        runs: list[tuple[_Chain, RunUserCode]] = []
        failed: list[tuple[_Chain, DurableJobsError]] = []
        try:
            self._advance_in(ready, runs, failed)
        except BaseException:
            for chain, _ in ready:  # the transaction did not commit: nothing of it holds
                self._abandon(chain)
            raise
        for chain, problem in failed:
            self._report(chain.instance_id, problem)
        return runs

    def _advance_in(
        self,
        ready: list[tuple[_Chain, Input | None]],
        runs: list[tuple[_Chain, RunUserCode]],
        failed: list[tuple[_Chain, DurableJobsError]],
    ) -> None:
        db = self._db
        with self._transaction():
            for chain, outcome in ready:
                db.execute("SAVEPOINT chain")
                mark = len(self._outbox)
                try:
                    run = chain.steps.send(outcome)
                except StopIteration:
                    db.execute("RELEASE chain")
                    self._let_go(chain)
                    continue
                except (DurableJobsError, _Retry) as error:
                    db.execute("ROLLBACK TO chain")
                    db.execute("RELEASE chain")
                    del self._outbox[mark:]  # its telemetry goes with its writes
                    self._let_go(chain)
                    if isinstance(error, DurableJobsError):
                        failed.append((chain, error))
                    continue
                db.execute("RELEASE chain")
                self._held.add(chain.instance_id)
                runs.append((chain, run))

    def _let_go(self, chain: _Chain) -> None:
        self._held.discard(chain.instance_id)
        self._claimed.discard(chain.instance_id)

    def _report(self, instance_id: str, error: DurableJobsError) -> None:
        if isinstance(error, StorageError):
            self.errors.append(error)
            _log.error("skipping %s for now: %s", instance_id, error)
            self._set_aside(instance_id)
        elif not self.closed():
            self.errors.append(error)
            _log.error("%s failed: %s", instance_id, error)

    # --------------------------------------------------------- Dispatcher protocol
    def dispatch(self, definition: Definition, request: Request) -> ReplyValue:
        key = InstanceKey(definition.job_type, definition.name, request.id)
        self._not_reentrant([key])
        for _ in range(MAX_CONFLICT_RETRIES):
            try:
                reply = self._chain(definition, key.instance_id, request)
            except _Retry:
                time.sleep(0.001)
                continue
            except ConflictError:
                time.sleep(0.01)  # a run is in flight elsewhere: wait for it
                continue
            if reply is None:  # pragma: no cover - every request chain ends in a reply
                raise DurableJobsError(f"no reply to {request!r}")
            self._wake.set()
            return reply
        raise ConflictError(f"{key.instance_id} kept changing; gave up after retries")

    def dispatch_many(
        self, definition: Definition, requests: Sequence[Request]
    ) -> list[ReplyValue]:
        """All ``requests`` in one transaction (one commit): a rejection writes none."""
        keys = [InstanceKey(definition.job_type, definition.name, r.id) for r in requests]
        if len({key.instance_id for key in keys}) != len(keys):
            raise ValueError("dispatch_many takes one request per instance")
        self._not_reentrant(keys)
        for _ in range(MAX_CONFLICT_RETRIES):
            try:
                replies = self._many(definition, keys, requests)
            except ConflictError:
                time.sleep(0.01)  # a run is in flight elsewhere: wait for it
                continue
            self._wake.set()
            return replies
        raise ConflictError(f"{keys[0].instance_id} kept changing; gave up after retries")

    def _not_reentrant(self, keys: Sequence[InstanceKey]) -> None:
        """A request from user code to the instance this thread is running is refused (as
        in memory); other threads' requests to a running instance wait for it."""
        here = _RUNNING.get()
        for key in keys:
            if (id(self), key.instance_id) in here:
                raise ConflictError(
                    f"{key.instance_id} is running user code and cannot be called from it"
                )

    def _many(
        self, definition: Definition, keys: list[InstanceKey], requests: Sequence[Request]
    ) -> list[ReplyValue]:
        replies: list[ReplyValue] = []
        with self._transaction():
            for key, request in zip(keys, requests, strict=True):
                snapshot, _ = self._load(definition, key.instance_id)
                now = self._clock.now()
                row = _RowChange()
                _, run, reply = self._decide_apply(
                    definition, key.instance_id, snapshot, request, now, row
                )
                self._write_row(definition, key.instance_id, row)
                if run is not None:
                    raise ValueError(f"{request!r} starts user code; use dispatch")
                if reply is None:  # pragma: no cover - every request ends in a reply
                    raise DurableJobsError(f"no reply to {request!r}")
                replies.append(reply)
        return replies

    def dead_letters(self, definition: Definition) -> list[DeadLetter[Any]]:
        codec = self._codecs[definition.name]
        with self._lock:
            rows = self._db.execute(
                "SELECT record FROM dead_letters WHERE job_name = ? ORDER BY id",
                (definition.name,),
            ).fetchall()
        return [codec.decode_dead_letter(json.loads(text)) for (text,) in rows]

    # ----------------------------------------------------------------------- engine
    def _fire(self, instance_id: str, at: Instant) -> None:
        """Fire one alarm and run the chain it starts (``advance``: one at a time)."""
        with self._lock:
            row = self._db.execute(
                "SELECT job_name FROM instances WHERE instance_id = ?", (instance_id,)
            ).fetchone()
        if row is not None and row[0] in self._jobs:
            self._chain(self._jobs[row[0]], instance_id, AlarmFired(at))

    def _chain(self, definition: Definition, instance_id: str, input_: Input) -> ReplyValue | None:
        """Run ``input_`` and the user code it starts, one transaction per step."""
        return self._drive(
            _Chain(instance_id, definition, self._steps(definition, instance_id, input_))
        )

    def _drive(self, chain: _Chain) -> ReplyValue | None:
        """Resume ``chain`` one transaction per step, running each hook in between; the
        reply it ends with."""
        outcome: Input | None = None
        while True:
            with self._transaction():
                try:
                    run = chain.steps.send(outcome)
                except StopIteration as stop:
                    reply: ReplyValue | None = stop.value
                    return reply
            outcome = self._run(chain, run)

    def _steps(
        self, definition: Definition, instance_id: str, input_: Input, *, worker: bool = False
    ) -> Generator[RunUserCode, Input | None, ReplyValue | None]:
        """The steps of one input: every resumption runs inside a transaction its driver
        opened; it yields each hook to run (after the driver commits) and is sent the
        outcome back in the next transaction; it returns the reply.

        For a worker (``worker=True``), when a transition leaves the instance's alarm due
        already (a pool with more events, a zero-delay schedule), the alarm is fired in the
        same transaction — at most ``group_commit`` times per chain, so other instances
        get their turn; each transition is still all-or-nothing, and the attempt a run
        belongs to is committed before it runs.
        """
        working: Any = None
        carried = False  # the last transition ran user code without persisting
        expected: int | None = None  # the stored version that run started from
        known: tuple[int, Any] | None = None  # (version, snapshot) this chain last wrote
        refired = 0  # alarms fired by this chain itself: bounded, so others get a turn
        row = _RowChange()
        while True:
            # A resumption starts a transaction: check what is stored. Chained alarms in
            # the same transaction follow on from the transition before, whose row
            # changes are only buffered so far.
            version = self._version(instance_id)
            if carried:
                if version != expected:
                    raise _Retry  # someone wrote the instance meanwhile: start over
                snapshot = working
            elif known is not None and known[0] == version:
                snapshot = known[1]  # what this chain wrote: no need to decode it
            else:
                snapshot, version = self._load(definition, instance_id)
            while True:
                now = self._clock.now()
                transition, run, reply = self._decide_apply(
                    definition, instance_id, snapshot, input_, now, row
                )
                after = transition.snapshot
                persisted = any(isinstance(c, Persist | Purge) for c in transition.commands)
                if persisted:
                    known = None if after is None else (after.version, after)
                if run is not None or not worker or after is None:
                    break
                due = after.alarm_at
                if due is None or due > now or refired >= self._group_commit or self._stopping:
                    break
                refired += 1
                input_ = AlarmFired(due)
                snapshot = after
                if persisted:
                    version = after.version
            self._write_row(definition, instance_id, row)
            if run is None:
                return reply
            working = after
            carried, expected = not persisted, version
            outcome = yield run
            assert outcome is not None, "a chain is resumed with the outcome of its run"
            input_ = outcome

    def _worker_steps(
        self, definition: Definition, instance_id: str, at: Instant, recovering: bool
    ) -> Generator[RunUserCode, Input | None, ReplyValue | None]:
        """A claimed instance's chain: its due alarm, or the interrupted run of a dead
        worker (a row whose lease expired while its snapshot shows a run in flight)."""
        if not recovering:
            return (yield from self._steps(definition, instance_id, AlarmFired(at), worker=True))
        # Claims only read: another worker may have recovered this row since (and started
        # a new attempt under a fresh lease). Only a lease still expired is recovered.
        lease = self._db.execute(
            "SELECT running, lease_until FROM instances WHERE instance_id = ?", (instance_id,)
        ).fetchone()
        if lease is None or lease[0] != 1 or lease[1] is None or lease[1] > self._clock.now():
            return None
        snapshot, _ = self._load(definition, instance_id)
        if snapshot is None or snapshot.in_flight is None:
            return None
        interrupted = RunInterrupted(run_id=snapshot.in_flight.run_id)
        return (yield from self._steps(definition, instance_id, interrupted, worker=True))

    def _decide_apply(
        self,
        definition: Definition,
        instance_id: str,
        snapshot: Any,
        input_: Input,
        now: Instant,
        row: _RowChange,
    ) -> tuple[Transition, RunUserCode | None, ReplyValue | None]:
        """Inside a transaction: ``decide`` (with the queue rows a pool shard needs) and
        carry out the commands; a rejection raises its error."""
        argument: Any = snapshot
        if isinstance(definition, WorkerPoolDefinition):
            reads = queue_reads(definition, input_, now)
            argument = PoolView(snapshot, self._view(definition, instance_id, reads))
        result = decide(definition, argument, input_, now)
        if isinstance(result, Failure):
            raise result.failure().error()
        assert isinstance(result, Success)
        transition: Transition = result.unwrap()
        run, reply = self._apply(definition, instance_id, transition.commands, row)
        return transition, run, reply

    def _version(self, instance_id: str) -> int | None:
        row = self._db.execute(
            "SELECT version FROM instances WHERE instance_id = ?", (instance_id,)
        ).fetchone()
        return None if row is None else int(row[0])

    def _start_heartbeat(self) -> None:
        """Renew the leases of this process's running instances while user code runs.

        Without it a run longer than the lease would look like a dead worker's: claimed
        again (by another process, or this one) and run a second time at once.
        """
        with self._lock:
            if self._heartbeat is not None:
                return
            self._heartbeat = threading.Thread(
                target=self._renew_leases, name="durable-jobs-leases", daemon=True
            )
            self._heartbeat.start()

    def _renew_leases(self) -> None:
        period = max(self._lease_ms / 3000, 0.01)
        while not self.closed():
            time.sleep(period)
            running = list(self._busy | self._held)
            if not running:
                continue
            try:
                with self._transaction():
                    self._db.execute(
                        "UPDATE instances SET lease_until = ? WHERE running = 1 AND "
                        "lease_owner = ? AND instance_id IN (SELECT value FROM json_each(?))",
                        (self._clock.now() + self._lease_ms, self._owner, json.dumps(running)),
                    )
            except (DurableJobsError, sqlite3.Error):
                if self.closed():
                    return  # closed between the check and the write
                raise

    def _load(self, definition: Definition, instance_id: str) -> tuple[Any, int | None]:
        row = self._db.execute(
            "SELECT snapshot, version FROM instances WHERE instance_id = ?", (instance_id,)
        ).fetchone()
        if row is None:
            return None, None
        codec = self._codecs[definition.name]
        return codec.decode_snapshot(row[0], instance=instance_id), int(row[1])

    def _view(self, definition: Definition, instance_id: str, reads: QueueReads) -> QueueView[Any]:
        if reads == _NO_READS:
            return _EMPTY_VIEW  # an outcome, a pause: nothing to load
        codec = self._codecs[definition.name]
        item_type = codec.item_type

        def item_of(text: str | None) -> Any:
            return None if text is None else codec.converter.structure(json.loads(text), item_type)

        def finished_of(text: str) -> FinishedEvent:
            record: FinishedEvent = codec.converter.structure(json.loads(text), FinishedEvent)
            return record

        db = self._db
        head = oldest = None
        expired: tuple[FinishedEvent, ...] = ()
        if reads.head and reads.expired_before is not None:
            # A fired alarm needs both: one statement (the hot path of every pool event).
            rows = db.execute(_HEAD_AND_EXPIRED, (instance_id, reads.expired_before, reads.limit))
            found: list[FinishedEvent] = []
            for kind, text in rows.fetchall():
                if kind == PENDING:
                    head = (text,)
                else:
                    found.append(finished_of(text))
            expired = tuple(sorted(found, key=lambda record: record.finished_at))
            reads = attrs.evolve(reads, head=False, expired_before=None)
        if reads.head:
            head = db.execute(
                "SELECT item FROM pool_events WHERE instance_id = ? AND state = 0 "
                "ORDER BY neg_priority, seq LIMIT 1",
                (instance_id,),
            ).fetchone()
        if reads.oldest:
            oldest = db.execute(_OLDEST, (instance_id,)).fetchone()
        if reads.expired_before is not None:
            rows = db.execute(
                "SELECT record FROM pool_events WHERE instance_id = ? AND state = 2 "
                "AND finished_at < ? ORDER BY finished_at LIMIT ?",
                (instance_id, reads.expired_before, reads.limit),
            )
            expired = tuple(finished_of(text) for (text,) in rows.fetchall())
        ids = reads.event_ids if reads.event_id is None else (reads.event_id,)
        pending: dict[str, tuple[Any, int]] = {}
        records: dict[str, FinishedEvent] = {}
        if ids:
            if len(ids) == 1:
                rows = db.execute(_EVENT_ONE, (instance_id, ids[0]))
            else:
                rows = db.execute(_EVENT_MANY, (instance_id, json.dumps(ids)))
            for event_id, state, text, neg_priority, seq, record in rows.fetchall():
                if state == PENDING:
                    rank = db.execute(_RANK, (instance_id, neg_priority, seq)).fetchone()[0]
                    pending[event_id] = (item_of(text), rank)
                elif state == FINISHED:
                    records[event_id] = finished_of(record)
        if reads.event_id is not None:
            item, ahead = pending.get(reads.event_id, (None, 0))
            return QueueView(
                head=item_of(head[0] if head else None),
                oldest=item_of(oldest[0] if oldest else None),
                item=item,
                ahead=ahead,
                finished=records.get(reads.event_id),
                expired=expired,
            )
        return QueueView(
            pending=tuple(pending.values()),
            finished_records=tuple(records.values()),
            head=item_of(head[0] if head else None),
            oldest=item_of(oldest[0] if oldest else None),
            expired=expired,
        )

    def _apply(
        self,
        definition: Definition,
        instance_id: str,
        commands: tuple[Command, ...],
        row: _RowChange,
    ) -> tuple[RunUserCode | None, ReplyValue | None]:
        """Carry out ``commands``; the instance row's changes go to ``row`` (written once
        by ``_write_row``, however many transitions a step chains), telemetry to the
        transaction's outbox, everything else at once."""
        codec = self._codecs[definition.name]
        db = self._db
        run: RunUserCode | None = None
        reply: ReplyValue | None = None
        for command in commands:
            match command:
                case Persist(snapshot=snapshot):
                    row.snapshot = snapshot
                case ScheduleAlarm(at=at) | ScheduleRetry(at=at):
                    row.alarm = at
                    row.alarm_changed = True
                case CancelAlarm():
                    row.alarm = None
                    row.alarm_changed = True
                case Purge():
                    row.snapshot, row.alarm_changed = None, False
                    db.execute("DELETE FROM instances WHERE instance_id = ?", (instance_id,))
                case Emit(event=event):
                    self._outbox.append((definition.name, json.dumps(codec.encode_event(event))))
                case RecordDeadLetter(record=record):
                    db.execute(
                        "INSERT INTO dead_letters (job_name, record) VALUES (?, ?)",
                        (definition.name, json.dumps(codec.encode_dead_letter(record))),
                    )
                case PutQueueItem(item=item):
                    # Replaces only an expired finished row of the same id (the core
                    # never queues an id that is pending, running or still remembered).
                    db.execute(
                        "INSERT OR REPLACE INTO pool_events (instance_id, event_id, state,"
                        " neg_priority, seq, item) VALUES (?, ?, 0, ?, ?, ?)",
                        (
                            instance_id,
                            item.event_id,
                            -item.priority,
                            item.seq,
                            json.dumps(codec.converter.unstructure(item, codec.item_type)),
                        ),
                    )
                case DeleteQueueItem(event_id=event_id):
                    db.execute(
                        "DELETE FROM pool_events WHERE instance_id = ? AND event_id = ?"
                        " AND state = 0",
                        (instance_id, event_id),
                    )
                case TakeQueueItem(event_id=event_id):
                    db.execute(
                        "UPDATE pool_events SET state = 1 WHERE instance_id = ? AND event_id = ?"
                        " AND state = 0",
                        (instance_id, event_id),
                    )
                case ClearQueue():
                    db.execute(
                        "DELETE FROM pool_events WHERE instance_id = ? AND state = 0",
                        (instance_id,),
                    )
                case PutFinished(record=record):
                    db.execute(
                        "INSERT INTO pool_events (instance_id, event_id, state, finished_at, record)"
                        " VALUES (?, ?, 2, ?, ?) ON CONFLICT (instance_id, event_id) DO UPDATE"
                        " SET state = 2, finished_at = excluded.finished_at,"
                        " record = excluded.record, neg_priority = NULL, seq = NULL, item = NULL",
                        (
                            instance_id,
                            record.event_id,
                            record.finished_at,
                            json.dumps(codec.converter.unstructure(record)),
                        ),
                    )
                case DeleteFinished(records=records):
                    db.executemany(
                        "DELETE FROM pool_events WHERE instance_id = ? AND event_id = ?"
                        " AND state = 2 AND finished_at = ?",
                        [(instance_id, r.event_id, r.finished_at) for r in records],
                    )
                case RunUserCode():
                    run = command
                    row.started = True
                case Reply(value=value):
                    reply = value
        return run, reply

    def _write_row(self, definition: Definition, instance_id: str, row: _RowChange) -> None:
        """Write the instance row's buffered changes in one statement, then clear them."""
        db = self._db
        alarm_values: tuple[Any, ...] = ()
        if row.alarm_changed:
            seq = None if row.alarm is None else self._next_alarm_seq()
            alarm_values = (row.alarm, seq)
        snapshot = row.snapshot
        if snapshot is not None and snapshot.in_flight is not None and not row.started:
            # The run in flight is someone else's (or an earlier step's): keep its lease.
            text = self._codecs[definition.name].encode_snapshot(snapshot)
            if alarm_values:
                db.execute(
                    "UPDATE instances SET snapshot = ?, version = ?, alarm_at = ?,"
                    " alarm_seq = ? WHERE instance_id = ?",
                    (text, snapshot.version, *alarm_values, instance_id),
                )
            else:
                db.execute(
                    "UPDATE instances SET snapshot = ?, version = ? WHERE instance_id = ?",
                    (text, snapshot.version, instance_id),
                )
        elif snapshot is not None:
            running = snapshot.in_flight is not None
            values = (
                instance_id,
                definition.name,
                definition.job_type,
                snapshot.key.id,
                self._codecs[definition.name].encode_snapshot(snapshot),
                snapshot.version,
                int(running),
                self._owner if running else None,
                self._clock.now() + self._lease_ms if running else None,
            )
            if alarm_values:
                db.execute(_UPSERT_WITH_ALARM, values + alarm_values)
            else:
                db.execute(_UPSERT, values)
        elif alarm_values:
            db.execute(
                "UPDATE instances SET alarm_at = ?, alarm_seq = ? WHERE instance_id = ?",
                (*alarm_values, instance_id),
            )
        row.snapshot, row.alarm, row.alarm_changed, row.started = None, None, False, False

    def _next_alarm_seq(self) -> int:
        """The next alarm sequence number: read once per transaction, stored at commit."""
        if self._seq is None:
            self._seq = int(
                self._db.execute(
                    "SELECT value FROM schema_info WHERE name = 'alarm_seq'"
                ).fetchone()[0]
            )
            self._seq_read = self._seq
        self._seq += 1
        return self._seq

    def _next_due(self, target: Instant) -> tuple[str, Instant] | None:
        with self._lock:
            row = self._db.execute(
                "SELECT instance_id, alarm_at FROM instances WHERE alarm_at IS NOT NULL "
                "AND alarm_at <= ? ORDER BY alarm_at, alarm_seq LIMIT 1",
                (target,),
            ).fetchone()
        return None if row is None else (row[0], Instant(row[1]))

    def _claim(self, most: int) -> list[_Chain]:
        """Up to ``most`` claimable instances, as chains: due alarms (earliest first), then
        expired runs (their worker died).

        Only a read: the step that fires an alarm re-reads the row in its own write
        transaction, and the core ignores an alarm another worker fired first, so two
        workers picking the same row cost a no-op, never a double run. Rows this process
        is already handling are skipped.
        """
        now = self._clock.now()
        with self._lock:
            if self._closed:
                raise DurableJobsError("the interpreter is closed")
            mine = json.dumps(sorted(self._busy | self._claimed | self._foreign))
            rows = self._db.execute(
                "SELECT * FROM (SELECT instance_id, job_name, alarm_at, 0 FROM instances "
                "WHERE alarm_at IS NOT NULL AND alarm_at <= ? "
                "AND (lease_until IS NULL OR lease_until <= ?) "
                "AND instance_id NOT IN (SELECT value FROM json_each(?)) "
                "ORDER BY alarm_at, alarm_seq LIMIT ?) "
                "UNION ALL SELECT * FROM (SELECT instance_id, job_name, alarm_at, 1 FROM instances "
                "WHERE running = 1 AND lease_until <= ? "
                "AND instance_id NOT IN (SELECT value FROM json_each(?)) LIMIT ?)",
                (now, now, mine, most, now, mine, most),
            ).fetchall()
            chains: list[_Chain] = []
            for instance_id, job_name, at, recovering in rows:
                if len(chains) == most or instance_id in self._claimed:
                    continue
                definition = self._jobs.get(job_name)
                if definition is None:
                    self._foreign.add(instance_id)  # another program's job: leave it be
                    continue
                self._claimed.add(instance_id)
                steps = self._worker_steps(
                    definition, instance_id, Instant(now if at is None else at), bool(recovering)
                )
                chains.append(_Chain(instance_id, definition, steps))
        return chains

    def _set_aside(self, instance_id: str) -> None:
        """Lease a row that cannot be run (unreadable) so it is not picked again at once."""
        with self._transaction():
            self._db.execute(
                "UPDATE instances SET lease_owner = ?, lease_until = ? WHERE instance_id = ?",
                (self._owner, self._clock.now() + self._lease_ms, instance_id),
            )
