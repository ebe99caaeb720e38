"""The SQLite store: one file, one connection, one transaction per step.

Theory of operation: ``SqliteStore`` is the engine's ``Store`` on a SQLite file (WAL,
the ``synchronous`` level the caller chose). ``transaction`` opens ``BEGIN IMMEDIATE``
(SQLite's single-writer lock) under a thread lock; ``commit`` writes one plan: the
instance row once (snapshot, version, alarm and lease in one statement), the queue
rows through ``SqlQueueRows``, the dead letters, and the telemetry into an outbox that
goes out in one ``executemany`` when the transaction commits. ``savepoint`` lets a
worker make several instances' steps in one transaction (group commit) with each one
all-or-nothing on its own.

The row's lease is the store's business, because several processes share one file:
a plan that ``starts_run`` takes the lease for this store's owner, until now + lease;
a plan that writes a snapshot with a run in flight it did not start (an enqueue while
an event runs, from any process) leaves the stored lease alone; other writes clear it.
The worker's claims, the lease renewal of the heartbeat and the real lease given to a
row whose times are not times are SQL kept here too (``claim_due``, ``renew_leases``,
``set_aside``).

*When a lease has run out* (decision, hardening). ``lease_until`` is written from the
owner's wall clock, and a wall clock can step (NTP, a VM resumed): judged by it alone,
a step of 45 s under a 30 s lease would start a second run while the first still runs.
So an observer judges a lease by the renewals it has *seen*: each run's lease token
(owner, ``lease_until``) is remembered with the observer's monotonic time when it was
first seen, and the lease has run out only when that token has not changed for a whole
lease on the monotonic clock *and* ``lease_until`` has passed on the wall clock. A clock
step alone therefore never starts a second run; the price is that a worker that starts
up recovers a dead worker's run one lease after it first sees the row, not at once.
Renewals need the write lock. When this store could not get it, or waited long for it
(more than a tenth of a lease), another connection held it and the owners' heartbeats
were shut out too: no lease runs out while this store's last try failed, and once it
gets the lock again every observation starts afresh from then, so the owners have a
whole lease to renew. A run is not taken from a worker because the file was locked. (An
observer that never tried to write while renewals were shut out cannot tell; should it
take a run over, the owner's heartbeat finds that out and says so in the log.) Claims
only read, so they may offer a run whose lease looks out; the write transaction that
would recover it decides, by these rules, after it got the lock.

Id lists are bound as parameters (``IN (?, ?, …)`` in chunks), never passed through a
JSON function: SQLite's JSON functions end strings at NUL.

Rows are JSON through the core's ``Codec``; a row that cannot be read raises
``StorageError`` naming the instance (a snapshot, a version that is not an integer, a
queued event), or the table and row for records that are not an instance's (a dead
letter, a telemetry event, ``schema_info``).

What the worker may wait for is kept here too. ``next_wake`` is when something this
worker can run may next become claimable: the earliest alarm of a job of this registry,
held back to the end of the row's lease (a row set aside, or running elsewhere), or the
moment a run's lease can run out by the rule above (a whole lease after it was first
seen unrenewed). Rows of other programs' jobs, and rows the worker is handling or
has set aside, do not count, so a row the worker cannot run never makes it wake at once
again and again. ``broken_rows`` finds the rows whose times are not times (an
``alarm_at`` or ``lease_until`` that is text, or beyond what a ``datetime`` shows): the
claims never pick them, so without it such an instance would silently never run.

Decisions: ``telemetry`` returns this registry's events; those of other programs' jobs
in a shared file are theirs (their user types are unknown here) and are skipped. A dead
letter or telemetry row that cannot be read fails the whole read with a
``StorageError`` naming the table and row id, rather than being left out silently.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Collection, Iterator, Sequence
from contextlib import closing, contextmanager
from functools import cached_property
from pathlib import Path
from typing import Any, Final

from durable_jobs import (
    DeadLetter,
    Definition,
    DurableJobsError,
    Instant,
    Jobs,
    StorageError,
    TelemetryEvent,
)
from durable_jobs.interpreters.clock import Clock, monotonic_of
from durable_jobs.interpreters.engine import apply_queue_changes
from durable_jobs.interpreters.sqlite.queue import SqlQueueRows, chunks, load_view
from durable_jobs.interpreters.sqlite.schema import (
    MAX_INSTANT,
    MIN_INSTANT,
    is_instant,
    migrate,
)
from durable_jobs.protocol import Codec, CommitPlan, InstanceKey, QueueReads, QueueView, Snapshot

__all__ = ["SYNCHRONOUS", "Claimed", "SqliteStore"]

SYNCHRONOUS: Final = ("OFF", "NORMAL", "FULL", "EXTRA")

_UPSERT: Final = (
    "INSERT INTO instances (instance_id, job_name, job_type, user_id, snapshot, version,"
    " running, lease_owner, lease_until) VALUES (?,?,?,?,?,?,?,?,?)"
    " ON CONFLICT (instance_id) DO UPDATE SET snapshot = excluded.snapshot,"
    " version = excluded.version, running = excluded.running,"
    " lease_owner = excluded.lease_owner, lease_until = excluded.lease_until"
)
_UPSERT_WITH_ALARM: Final = (
    "INSERT INTO instances (instance_id, job_name, job_type, user_id, snapshot, version,"
    " running, lease_owner, lease_until, alarm_at, alarm_seq) VALUES (?,?,?,?,?,?,?,?,?,?,?)"
    " ON CONFLICT (instance_id) DO UPDATE SET snapshot = excluded.snapshot,"
    " version = excluded.version, running = excluded.running,"
    " lease_owner = excluded.lease_owner, lease_until = excluded.lease_until,"
    " alarm_at = excluded.alarm_at, alarm_seq = excluded.alarm_seq"
)
OPEN_TIMEOUT: Final = 30.0
"""Seconds opening a file waits for another connection's lock, whatever the busy
timeout."""
STALL_FLOOR_MS: Final = 50
"""A wait for the write lock longer than a tenth of a lease (and than this many ms)
means another connection held it, maybe for far longer than this store waited (it sees
only the end of the lock), and may have shut renewals out: observations of leases start
again (module header). Lower is safer; the price of a wait taken for a lock is only a
later recovery of a dead worker's run."""
_DUE: Final = (
    "SELECT instance_id, job_name, job_type, user_id, alarm_at FROM instances "
    "WHERE alarm_at IS NOT NULL AND alarm_at <= ? AND (lease_until IS NULL OR lease_until <= ?) "
    "ORDER BY alarm_at, alarm_seq LIMIT ?"
)
_NEXT_DUE: Final = (
    "SELECT job_type, job_name, user_id, alarm_at FROM instances "
    "WHERE alarm_at IS NOT NULL AND alarm_at <= ? AND job_type || ':' || job_name IN ({}) "
    "ORDER BY alarm_at, alarm_seq LIMIT 1"
)
_RENEW: Final = (
    "UPDATE instances SET lease_until = ? "
    "WHERE running = 1 AND lease_owner = ? AND instance_id IN ({})"
)
_TAKEN: Final = (
    "SELECT instance_id FROM instances "
    "WHERE running = 1 AND lease_owner IS NOT ? AND instance_id IN ({})"
)
"""Of the runs a heartbeat renews, those another owner leases now (``{}``: ``?``s)."""
_RUNNING: Final = (
    "SELECT instance_id, job_name, job_type, user_id, lease_owner, lease_until FROM instances "
    "WHERE running = 1"
)
LeaseToken = tuple[str | None, int | None]
"""What a renewal changes in a running row: its owner and ``lease_until``."""


_UPCOMING_ALARMS: Final = (
    "SELECT instance_id, job_type, job_name, alarm_at, lease_until FROM instances "
    "WHERE alarm_at IS NOT NULL AND alarm_at BETWEEN ? AND ? ORDER BY alarm_at, alarm_seq"
)
_UPCOMING_LEASES: Final = (
    "SELECT instance_id, job_type, job_name, lease_until FROM instances "
    "WHERE running = 1 AND lease_until BETWEEN ? AND ? ORDER BY lease_until"
)
_BROKEN: Final = (
    "SELECT instance_id, job_type, job_name, alarm_at, running, lease_until FROM instances "
    "WHERE alarm_at IS NOT NULL AND (alarm_at > ?1 OR alarm_at < ?2) "
    "UNION SELECT instance_id, job_type, job_name, alarm_at, running, lease_until "
    "FROM instances WHERE alarm_at IS NOT NULL AND alarm_at <= ?3 AND lease_until > ?1 "
    "UNION SELECT instance_id, job_type, job_name, alarm_at, running, lease_until "
    "FROM instances WHERE running = 1 AND (lease_until IS NULL OR lease_until > ?1)"
)
"""Rows the claims can never pick: an alarm that is not a time (text sorts after every
number, so ``> MAX_INSTANT`` finds it on the alarm index), a due row whose lease is not
a time, a run without a lease. Each part is a range of a partial index."""

Claimed = tuple[InstanceKey, Instant | None, bool]
"""A claimable row: its key, its due alarm, and whether its run's lease expired."""


class SqliteStore:
    """The engine's ``Store`` on one SQLite file (see the module header)."""

    def __init__(
        self,
        jobs: Jobs,
        path: str | Path,
        clock: Clock,
        *,
        synchronous: str,
        owner: str,
        lease_ms: int,
        busy_ms: int = 30_000,
    ) -> None:
        self._clock = clock
        self._monotonic = monotonic_of(clock)
        self._owner = owner
        self._lease_ms = lease_ms
        self.codecs = {name: Codec(definition) for name, definition in jobs.items()}
        # "type:name" of every job this store can run (a file may hold other programs')
        self._kinds = sorted(f"{d.job_type}:{name}" for name, d in jobs.items())
        self._next_due = _NEXT_DUE.format(",".join("?" * len(self._kinds)))
        # Leases of other runs as seen here: token, and the monotonic time it was first
        # seen; and when the write lock was last found held for long (module header).
        self._seen: dict[str, tuple[LeaseToken, int]] = {}
        self._blocked = False  # the last try to take the write lock failed
        self._writable_since: int | None = None  # when it was taken after a long wait
        self._stall_ms = max(lease_ms / 10, STALL_FLOOR_MS)
        self.lock = threading.RLock()
        self._closed = False
        self._outbox: list[tuple[str, str]] = []  # telemetry rows of the open transaction
        try:
            # Opening waits for another connection's lock at least OPEN_TIMEOUT: a worker
            # started while the file is busy should start, not exit.
            opening = max(busy_ms / 1000, OPEN_TIMEOUT)
            self.db = sqlite3.connect(
                str(path), isolation_level=None, timeout=opening, check_same_thread=False
            )
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute(f"PRAGMA synchronous={synchronous.upper()}")
            with self.transaction():
                migrate(self.db)
            self.db.execute(f"PRAGMA busy_timeout = {int(busy_ms)}")
        except sqlite3.Error as error:
            raise StorageError(f"cannot open the database {str(path)!r}: {error}") from None

    # ------------------------------------------------------------- transactions
    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        with self.lock:
            if not self._closed:
                self._closed = True
                self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self.lock:
            if self._closed:
                raise DurableJobsError("the interpreter is closed")
            asked = time.monotonic()
            try:
                self.db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError:
                self._blocked = True  # someone holds the write lock: renewals are shut out
                raise
            if self._blocked or (time.monotonic() - asked) * 1000 > self._stall_ms:
                # The lock was held long by another connection, and is free now: the
                # owners' heartbeats get a whole lease from here (module header).
                self._blocked = False
                self._writable_since = self._monotonic()
            self._outbox.clear()
            try:
                yield
                self._before_commit()
            except BaseException:
                self._outbox.clear()
                self.db.execute("ROLLBACK")
                raise
            else:
                try:
                    self.db.execute("COMMIT")
                except BaseException:
                    # A failed COMMIT can leave the transaction open: end it, so the
                    # next step does not meet "cannot start a transaction within one".
                    if self.db.in_transaction:
                        self.db.execute("ROLLBACK")
                    raise

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """A part of the open transaction that fails alone: on an exception its writes
        and its telemetry are undone."""
        self.db.execute("SAVEPOINT chain")
        mark = len(self._outbox)
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK TO chain")
            self.db.execute("RELEASE chain")
            del self._outbox[mark:]
            raise
        self.db.execute("RELEASE chain")

    def _before_commit(self) -> None:
        """Write what the transaction buffered: the telemetry outbox."""
        if self._outbox:
            self.db.executemany(
                "INSERT INTO telemetry (job_name, event) VALUES (?, ?)", self._outbox
            )
            self._outbox.clear()

    # -------------------------------------------------------------------- Store
    def load(self, definition: Definition, instance_id: str) -> tuple[Snapshot | None, int | None]:
        row = self.db.execute(
            "SELECT snapshot, version FROM instances WHERE instance_id = ?", (instance_id,)
        ).fetchone()
        if row is None:
            return None, None
        version = _version(instance_id, row[1])
        codec = self.codecs[definition.name]
        return codec.decode_snapshot(row[0], instance=instance_id), version

    def version(self, instance_id: str) -> int | None:
        row = self.db.execute(
            "SELECT version FROM instances WHERE instance_id = ?", (instance_id,)
        ).fetchone()
        return None if row is None else _version(instance_id, row[0])

    def queue_view(
        self, definition: Definition, instance_id: str, reads: QueueReads
    ) -> QueueView[Any]:
        return load_view(self.db, self.codecs[definition.name], instance_id, reads)

    def commit(self, definition: Definition, plan: CommitPlan[Any]) -> None:
        codec = self.codecs[definition.name]
        instance_id = plan.key.instance_id
        if plan.queue:
            apply_queue_changes(SqlQueueRows(self.db, codec), instance_id, plan.queue)
        for record in plan.dead_letters:
            self.db.execute(
                "INSERT INTO dead_letters (job_name, record) VALUES (?, ?)",
                (definition.name, json.dumps(codec.encode_dead_letter(record))),
            )
        for event in plan.telemetry:
            self._outbox.append((definition.name, json.dumps(codec.encode_event(event))))
        if plan.write == "delete":
            self.db.execute("DELETE FROM instances WHERE instance_id = ?", (instance_id,))
            return
        self._write_row(definition, codec, plan)

    def _write_row(self, definition: Definition, codec: Codec, plan: CommitPlan[Any]) -> None:
        """The instance row's changes in one statement."""
        db, instance_id = self.db, plan.key.instance_id
        alarm_values: tuple[Any, ...] = ()
        if plan.alarm_changed:
            seq = None if plan.alarm_at is None else self._next_alarm_seq(plan.alarm_at)
            alarm_values = (plan.alarm_at, seq)
        snapshot = plan.snapshot if plan.write == "put" else None
        if snapshot is not None and snapshot.in_flight is not None and not plan.starts_run:
            # The run in flight is someone else's (or an earlier step's): keep its lease.
            text = codec.encode_snapshot(snapshot)
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
                codec.encode_snapshot(snapshot),
                snapshot.version,
                int(running),
                self._owner if running else None,
                self._clock.now() + self._lease_ms if running else None,
            )
            if alarm_values:
                db.execute(_UPSERT_WITH_ALARM, values + alarm_values)
            else:
                db.execute(_UPSERT, values)
        elif alarm_values:  # (an alarm set to what it is keeps its place among equals)
            db.execute(
                "UPDATE instances SET alarm_at = ?, alarm_seq = ? "
                "WHERE instance_id = ? AND alarm_at IS NOT ?",
                (*alarm_values, instance_id, alarm_values[0]),
            )

    def _next_alarm_seq(self, at: Instant) -> int:
        """The sequence number of an alarm set now for ``at``: one more than any alarm
        already set for that instant, so alarms due at the same instant fire in the
        order they were set, whichever process set them (the write lock orders the
        setting). One read on the alarm index; nothing else is written for it."""
        row = self.db.execute(
            "SELECT MAX(alarm_seq) FROM instances WHERE alarm_at = ?", (at,)
        ).fetchone()
        top = row[0] if row is not None and isinstance(row[0], int) else 0
        return top + 1

    def claim(self, until: Instant) -> tuple[InstanceKey, Instant] | None:
        """The earliest alarm due at or before ``until`` of a job this store knows (by
        type and name: a row of another program's job is never handed out)."""
        with self.lock:
            row = self.db.execute(self._next_due, (until, *self._kinds)).fetchone()
        if row is None:
            return None
        return InstanceKey(row[0], row[1], row[2]), Instant(row[3])

    def next_alarm(self) -> Instant | None:
        """The earliest alarm of a job this store runs (an alarm that is not a time is
        left to ``broken_rows``)."""
        with (
            self.lock,
            closing(self.db.execute(_UPCOMING_ALARMS, (MIN_INSTANT, MAX_INSTANT))) as rows,
        ):
            for _, job_type, job_name, at, _ in rows:
                if (job_type, job_name) in self.runnable and type(at) is int:
                    return Instant(at)
        return None

    def next_wake(self, now: Instant, skip: Collection[str]) -> Instant | None:
        """When a row this worker could claim may next be due (see the module header):
        ``None`` when none can. Rows in ``skip`` (handled by this process) do not count."""
        best: int | None = None
        runnable = self.runnable
        with self.lock:
            with closing(self.db.execute(_UPCOMING_ALARMS, (MIN_INSTANT, MAX_INSTANT))) as rows:
                for instance_id, job_type, job_name, at, lease in rows:
                    if best is not None and at >= best:
                        break  # every later row is due later still
                    if (job_type, job_name) not in runnable or instance_id in skip:
                        continue
                    if type(at) is not int or (lease is not None and not is_instant(lease)):
                        continue  # not a time: ``broken_rows`` reports it
                    when = at if lease is None or lease <= now else max(at, lease)
                    best = when if best is None else min(best, when)
            mono = self._monotonic()
            with closing(self.db.execute(_UPCOMING_LEASES, (MIN_INSTANT, MAX_INSTANT))) as rows:
                for instance_id, job_type, job_name, lease in rows:
                    if (job_type, job_name) not in runnable or instance_id in skip:
                        continue
                    # A lease runs out a whole lease after it was first seen unrenewed
                    # (see ``_ran_out``), and not before its end on the wall clock.
                    seen = self._seen.get(instance_id)
                    first = mono if seen is None else seen[1]
                    if self._writable_since is not None:
                        first = max(first, self._writable_since)
                    when = max(lease, now + first + self._lease_ms - mono)
                    best = when if best is None else min(best, when)
        return None if best is None else Instant(best)

    def broken_rows(self, now: Instant) -> list[tuple[str, str]]:
        """The rows of this registry's jobs that the claims can never pick because a time
        in them is not a time, each with what is wrong; rows set aside (leased until a
        time still to come) are left out until their lease ends."""
        with self.lock:
            rows = self.db.execute(_BROKEN, (MAX_INSTANT, MIN_INSTANT, now)).fetchall()
        found: list[tuple[str, str]] = []
        for instance_id, job_type, job_name, at, running, lease in rows:
            if (job_type, job_name) not in self.runnable:
                continue  # another program's row: its own workers report it
            if is_instant(lease) and lease > now:
                continue  # set aside (or leased) for now
            if at is not None and not is_instant(at):
                problem = f"stored alarm_at {at!r} is not a time"
            elif lease is not None:
                problem = f"stored lease_until {lease!r} is not a time"
            elif running == 1:
                problem = "a run is in flight without a lease"
            else:  # pragma: no cover - the query selects no other row
                continue
            found.append((instance_id, f"instance {instance_id}: {problem}"))
        return found

    @cached_property
    def runnable(self) -> frozenset[tuple[str, str]]:
        """``(job_type, job_name)`` of every job of this store's registry."""
        return frozenset((c.definition.job_type, name) for name, c in self.codecs.items())

    def dead_letters(self, definition: Definition) -> list[DeadLetter[Any]]:
        codec = self.codecs[definition.name]
        with self.lock:
            rows = self.db.execute(
                "SELECT id, record FROM dead_letters WHERE job_name = ? ORDER BY id",
                (definition.name,),
            ).fetchall()
        return [
            _read_row("dead_letters", row_id, definition.name, text, codec.decode_dead_letter)
            for row_id, text in rows
        ]

    # ------------------------------------------------------------------ others
    def telemetry(self) -> list[TelemetryEvent]:
        """Every telemetry event of this registry's jobs in the outbox, in commit order."""
        with self.lock:
            rows = self.db.execute(
                "SELECT id, job_name, event FROM telemetry ORDER BY id"
            ).fetchall()
        codecs = self.codecs
        return [
            _read_row("telemetry", row_id, name, text, codecs[name].decode_event)
            for row_id, name, text in rows
            if name in codecs
        ]

    def data_version(self) -> int:
        """SQLite's ``data_version``: it changes when another connection commits."""
        with self.lock:
            if self._closed:
                return -1
            return int(self.db.execute("PRAGMA data_version").fetchone()[0])

    def claim_due(self, now: Instant, most: int, skip: Collection[str]) -> list[Claimed]:
        """Up to ``most`` claimable rows not in ``skip``: due alarms (earliest first),
        then runs whose lease ran out (see the module header). Only a read (see the
        worker)."""
        with self.lock:
            if self._closed:
                raise DurableJobsError("the interpreter is closed")
            due = self.db.execute(_DUE, (now, now, most + len(skip))).fetchall()
            running = self.db.execute(_RUNNING).fetchall()
            claimed: list[Claimed] = []
            claimed.extend(
                (InstanceKey(job_type, job_name, user_id), Instant(at), False)
                for instance_id, job_name, job_type, user_id, at in due
                if instance_id not in skip
            )
            del claimed[most:]
            seen, self._seen = self._seen, {}
            mono = self._monotonic()
            for instance_id, job_name, job_type, user_id, owner, until in running:
                token: LeaseToken = (owner, until)
                earlier = seen.get(instance_id)
                first = earlier[1] if earlier is not None and earlier[0] == token else mono
                self._seen[instance_id] = (token, first)  # rows not running are forgotten
                if (
                    len(claimed) < most
                    and instance_id not in skip
                    and self._ran_out(token, first, now, mono)
                ):
                    claimed.append((InstanceKey(job_type, job_name, user_id), None, True))
        return claimed

    def _ran_out(self, token: LeaseToken, first: int, now: Instant, mono: int) -> bool:
        """Whether a lease with ``token``, unchanged since ``first`` (monotonic), has run
        out: a whole lease with no renewal seen, and ``lease_until`` passed."""
        until = token[1]
        if until is not None and until > now:
            return False
        since = first if self._writable_since is None else max(first, self._writable_since)
        return mono - since >= self._lease_ms

    def lease_expired(self, instance_id: str) -> bool:
        """Whether the row's run holds a lease that has run out (in the open transaction):
        its lease is the one a claim saw run out, still unrenewed."""
        row = self.db.execute(
            "SELECT running, lease_owner, lease_until FROM instances WHERE instance_id = ?",
            (instance_id,),
        ).fetchone()
        if row is None or row[0] != 1:
            return False
        seen = self._seen.get(instance_id)
        token: LeaseToken = (row[1], row[2])
        if seen is None or seen[0] != token:
            return False  # renewed (or taken) since it was seen
        return self._ran_out(token, seen[1], self._clock.now(), self._monotonic())

    def renew_leases(self, instance_ids: Sequence[str]) -> list[str]:
        """Extend the leases this owner holds on ``instance_ids``; the ids whose run is
        now leased by another owner (taken over: the lease had run out)."""
        until = self._clock.now() + self._lease_ms
        taken: list[str] = []
        with self.transaction():
            for part, marks in chunks(instance_ids):
                self.db.execute(_RENEW.format(marks), (until, self._owner, *part))
                rows = self.db.execute(_TAKEN.format(marks), (self._owner, *part))
                taken.extend(instance_id for (instance_id,) in rows)
        return taken

    def holder(self, instance_id: str) -> tuple[str | None, int | None] | None:
        """The lease owner and ``lease_until`` of the row's run in flight (``None``
        when no run is in flight), read outside any write."""
        with self.lock:
            row = self.db.execute(
                "SELECT running, lease_owner, lease_until FROM instances WHERE instance_id = ?",
                (instance_id,),
            ).fetchone()
        if row is None or row[0] != 1:
            return None
        until = row[2] if isinstance(row[2], int) else None
        return (row[1] if isinstance(row[1], str) else None), until

    def set_aside(self, instance_id: str) -> None:
        """Give a row whose ``alarm_at`` or ``lease_until`` is not a time a real lease
        (until now + lease), so that it can be claimed again when that lease ends.
        (Unreadable rows are set aside in the worker's memory and nothing is written.)"""
        with self.transaction():
            self.db.execute(
                "UPDATE instances SET lease_owner = ?, lease_until = ? WHERE instance_id = ?",
                (self._owner, self._clock.now() + self._lease_ms, instance_id),
            )


def _version(instance_id: str, value: object) -> int:
    """A stored ``version``; ``StorageError`` naming the instance when it is no integer."""
    if type(value) is not int:
        raise StorageError(f"instance {instance_id}: stored version {value!r} is not an integer")
    return value


def _read_row(table: str, row_id: int, job_name: str, text: object, decode: Any) -> Any:
    """``decode`` a JSON row of ``table``; ``StorageError`` naming the table, the row id
    and the job when the row is not JSON or not what ``decode`` reads."""
    try:
        return decode(json.loads(text))  # type: ignore[arg-type]
    except (ValueError, TypeError, StorageError) as error:
        raise StorageError(f"{table} row {row_id} of {job_name!r}: {error}") from None
