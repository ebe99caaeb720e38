"""The SQLite interpreter and its worker: claims, leases, heartbeat, group commit.

Theory of operation. ``SqliteInterpreter`` is the engine (``interpreters.engine``) on a
``SqliteStore``: every step of a request or a due alarm is one transaction, user code
runs between transactions, never inside one, and no job semantics live here. What it
adds is the worker, the part that lets several threads and processes share one file:

*Claims and leases.* A row is claimable when its alarm is due or its run's lease has
expired; two partial indexes hold exactly those rows, so claiming stays flat as
finished rows pile up. Claims only read: the step that fires an alarm re-reads the row
in its own write transaction, and the core ignores an alarm another worker fired first,
so two workers picking the same row cost a no-op, never a double run. While user code
runs, its row holds a lease that a heartbeat renews every lease/3; a claimed row whose
snapshot still shows a run in flight and whose lease is still expired inside the write
transaction belongs to a worker that died: the core is told ``RunInterrupted`` and
counts that attempt as failed.

*Group commit.* A worker's writes all happen on one thread: the transitions of every
instance that is ready (claimed, or back from its user code, waiting up to
``COMMIT_WINDOW`` for runs still going) are made in one transaction, each in a savepoint so that one unreadable row fails alone, and user code
starts only after that commit. Concurrent runs so share one fsync while each attempt is
still durable before it runs and each outcome before the next attempt of its instance.
A transition that leaves the same instance due at once fires that alarm in the same
step (at most ``group_commit`` times, for fairness). Only job types that answer every
request while a run is in flight (``answers_while_running``: WorkerPool) have their
attempts committed ahead in a ``run_due`` batch; the others run one at a time, so no
request is queued (or kept waiting) behind an attempt that only waits for its turn.

*Shared commits for requests* (``_SharedCommits``). The steps that threads of this
process drive themselves (client requests, a manual clock's alarms, a lone chain of
``run_due``) are committed together when they meet: the first thread that finds no
commit under way makes every queued step in a savepoint of one transaction and commits
once; each thread gets its own result or error. Concurrent producers so share their
fsyncs as the worker's transitions do, and no call returns before its step committed.

*Requests from other processes* (issue 10). A request never runs job code here unless
the interpreter was opened with ``inline=True``: it commits the transition that makes
the run due now and returns; a worker (``durable-jobs worker``, ``run_forever``) in this
or another process picks the row up (a call from this process wakes its own worker at
once; another process's worker sees the change through ``PRAGMA data_version`` within
``HOT_CHECK`` for ``HOT_FOR`` after such a commit woke it, else within
``CHANGE_CHECK``). ``inline=True`` makes this interpreter its own worker for what its
requests leave due now, as the memory interpreter is: for scripts, notebooks and the
contract suite on a ``ManualClock``. A request whose working snapshot changed under it
runs again (``Restart``); one that meets a run in flight is queued behind it by the
core, or, from a client that waits, waits (see ``engine``); its ``BusyError`` names the
run's worker (``host/pid/id`` of the lease owner) and when its lease was last renewed.

*Clocks.* With the default ``SystemClock`` the worker runs due work (``run_due``,
``run_forever``). With a ``ManualClock`` the interpreter offers the memory
interpreter's simulation surface (``advance``, ``advance_to``, ``next_alarm_at``), and
the same scenarios run deterministically; the contract suite runs that way.

*Faults* (decision, hardening). No fault of the file stops a worker or runs an instance
twice at once. When a lease has run out is the store's rule (renewals seen, on the
monotonic clock; see ``store``), so a wall-clock step is never taken for a dead worker.
The heartbeat survives every error: a failed renewal is logged and tried again at the
next beat, an error is logged once a whole lease passed without one, and a run another
worker took over meanwhile is logged and no longer renewed (its outcome is ignored by the
core: the run in flight is the other worker's). ``run_forever`` meets a database it
cannot use (locked past ``busy_timeout``, a disk error) with a warning and another try
``RETRY_PAUSE`` later, keeping the outcomes it could not write; a step that fails on a
value (not a conflict) fails for its own instance alone.

*Rows it cannot run.* A row that cannot be read is reported (``errors`` and the
``durable_jobs`` logger, as a ``StorageError`` naming it) and set aside by this process
for one lease period, in memory: nothing is written, so the row shows as unreadable (not
running) and another worker, say the fixed code deployed next, takes it up at once;
this one reports it again at most once a lease while it stays bad. A row whose ``alarm_at`` or ``lease_until`` is not a
time is never claimed, so the worker looks for such rows (``broken_rows``) before each
``run_due`` and before it sleeps, and reports and sets them aside the same way (setting
aside gives a lease that is not a time a real one: when it ends, the row is claimed as
usual, and a run it held counts as interrupted). The worker sleeps until ``next_wake``,
which leaves out rows set aside, rows of other programs' jobs and rows it is handling:
a row it cannot run never makes it wake at once again and again.

Decisions: ``stop()`` is graceful (no new work; runs going
finish and their outcomes commit before ``run_forever`` returns), ``close()`` is not
(a run cut off counts as interrupted when its lease expires); a due row of a job this
registry does not define is left alone (another program sharing the file runs it). A
file holding another program's tables is refused unless ``add_schema=True`` (see
``schema.check_owner``).
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress
from datetime import timedelta
from pathlib import Path
from typing import Final

from durable_jobs import (
    Definition,
    DefinitionError,
    DurableJobsError,
    Instant,
    Jobs,
    StorageError,
    TelemetryEvent,
)
from durable_jobs.interpreters.clock import Clock, SystemClock, monotonic_of
from durable_jobs.interpreters.engine import UNCOMMITTABLE, Chain, Engine, Restart
from durable_jobs.interpreters.sqlite.schema import check_owner
from durable_jobs.interpreters.sqlite.store import SYNCHRONOUS, SqliteStore
from durable_jobs.protocol import (
    AlarmFired,
    Input,
    InstanceKey,
    Outcome,
    RunInterrupted,
    RunUserCode,
    parse_duration,
)

__all__ = ["BATCH", "CHANGE_CHECK", "GROUP_COMMIT", "HOT_CHECK", "HOT_FOR", "SqliteInterpreter"]

GROUP_COMMIT: Final = 64
"""The default of ``group_commit``: at most this many due alarms a worker's chain fires
by itself, in the step before, before it lets the instance go back to the claim queue
(fairness between instances). 0 turns it off."""
BATCH: Final = 32
"""The default of ``batch``: at most this many instances ``run_due`` advances in one
transaction (``run_forever`` advances up to ``workers``)."""
COMMIT_WINDOW: Final = 0.0005
"""Seconds ``run_forever`` waits, when some outcomes are ready and other runs are still
going, for those to come back and share the commit: a group commit window. With short
jobs it turns a commit per outcome into one per batch (section 1b of ``bench_sqlite``:
about +20% jobs a second with a producer in another process); a run's outcome waits at
most this long more."""
RETRY_PAUSE: Final = 0.5
"""Seconds ``run_forever`` waits before writing again after the file was locked."""
CHANGE_CHECK: Final = 0.02
"""Seconds between checks of ``PRAGMA data_version`` while the worker sleeps idle."""
HOT_CHECK: Final = 0.001
"""Seconds between those checks while other processes' commits keep coming (``HOT_FOR``)."""
HOT_FOR: Final = 1.0
"""Seconds after another process's commit woke it during which a sleeping worker checks
every ``HOT_CHECK``: a steady stream from another process is picked up in about a
millisecond, and an idle worker (or one woken only by its own alarms) costs a check
every ``CHANGE_CHECK``."""

_log = logging.getLogger("durable_jobs")


def _as_error(chain: Chain, error: Exception) -> DurableJobsError:
    if isinstance(error, DurableJobsError):
        return error
    _log.error("a step of %s failed", chain.key.instance_id, exc_info=error)
    return DurableJobsError(f"{chain.key.instance_id}: its step failed: {error!r}")


Ready = tuple[Chain, Outcome | None]
"""A chain to resume: with the outcome of its last run, or ``None`` to start it."""


class _SharedCommits:
    """Steps of chains driven by concurrent threads of one process, committed together.

    A thread that wants a step made queues it; the first one finding no commit under way
    leads: it takes every queued step, makes each in a savepoint of one transaction (a
    step that fails is undone alone and its error goes back to its thread), commits once,
    and hands each thread its result. Threads that queued meanwhile wait, then one of
    them leads the next commit. So eight request threads calling ``enqueue`` share one
    fsync instead of paying eight, and no call returns before its step is committed."""

    def __init__(self, interpreter: SqliteInterpreter) -> None:
        self._interpreter = interpreter
        self._turn = threading.Condition(threading.Lock())
        self._queued: list[tuple[Chain, Outcome | None, Future[RunUserCode | None]]] = []
        self._leading = False

    def step(self, chain: Chain, outcome: Outcome | None) -> RunUserCode | None:
        mine: Future[RunUserCode | None] = Future()
        with self._turn:
            self._queued.append((chain, outcome, mine))
            while self._leading and not mine.done():
                self._turn.wait()
            if mine.done():
                return mine.result()
            self._leading = True
            batch, self._queued = self._queued, []
        try:
            self._commit(batch)
        finally:
            with self._turn:
                self._leading = False
                self._turn.notify_all()
        return mine.result()

    def _commit(
        self, batch: list[tuple[Chain, Outcome | None, Future[RunUserCode | None]]]
    ) -> None:
        steps = [(chain, outcome) for chain, outcome, _ in batch]
        try:
            made = self._interpreter._settle_together(steps, (Exception,))
        except BaseException as error:  # nothing was committed: every step failed
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        try:  # each thread gets its step's run, or the error it failed with alone
            for (_, _, future), run in zip(batch, made, strict=True):
                if isinstance(run, Exception):
                    future.set_exception(run)
                else:
                    future.set_result(run)
        finally:  # (interrupted while handing results out: no thread may wait for ever)
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(DurableJobsError("the shared commit was interrupted"))


class SqliteInterpreter(Engine):
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

    ``inline=True`` runs the due-now work a request leaves (a ``trigger``, a flush at
    ``max_events``, an ``on_idle``) in the caller before it returns, as the memory
    interpreter does; by default a worker runs it (``run_forever``, ``run_due`` or
    ``durable-jobs worker``), and the request returns as soon as it is committed.
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
        busy_timeout: timedelta | str = "30 seconds",
        add_schema: bool = False,
        inline: bool = False,
    ) -> None:
        if not isinstance(jobs, Jobs):
            raise TypeError(f"expected a Jobs registry, got {jobs!r}")
        if not isinstance(synchronous, str) or synchronous.upper() not in SYNCHRONOUS:
            raise DefinitionError(f"synchronous must be one of {SYNCHRONOUS}, got {synchronous!r}")
        lease_ms = parse_duration(lease, what="lease")
        busy_ms = parse_duration(busy_timeout, what="busy_timeout")
        if isinstance(group_commit, bool) or not isinstance(group_commit, int) or group_commit < 0:
            raise DefinitionError(f"group_commit must be an int >= 0, got {group_commit!r}")
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise DefinitionError(f"batch must be an int >= 1, got {batch!r}")
        chosen: Clock = clock if clock is not None else SystemClock()
        # The lease owner names this worker in errors and in ``inspect``: host, pid and a
        # random part (a restarted process with the same pid is another owner).
        self._owner = f"{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:12]}"
        self._lease_ms = lease_ms
        check_owner(path, add_schema=add_schema)
        self._sql = SqliteStore(
            jobs,
            path,
            chosen,
            synchronous=synchronous,
            owner=self._owner,
            lease_ms=lease_ms,
            busy_ms=busy_ms,
        )
        super().__init__(jobs, self._sql, chosen, inline=inline)
        self._group_commit = group_commit
        self._batch = batch
        self._wake = threading.Event()
        self._heartbeat: threading.Thread | None = None
        self._busy: set[str] = set()  # instances whose user code runs in this process
        self._claimed: set[str] = set()  # picked by this process's worker, not yet done
        self._held: set[str] = set()  # a worker's runs committed as started, not yet back
        self._foreign: set[str] = set()  # due rows of jobs this registry does not hold
        self._shared = _SharedCommits(self)
        self._lost: set[str] = set()  # runs here whose lease another worker took over
        self._aside: dict[str, int] = {}  # unreadable rows skipped until (monotonic ms)
        self._hot_until = 0.0  # checks every HOT_CHECK until then (time.monotonic)
        self._monotonic = monotonic_of(chosen)
        self.errors: list[DurableJobsError] = []
        """Errors met while running due work (each also logged)."""

    # ---------------------------------------------------------------- lifecycle
    def close(self) -> None:
        """Stop accepting work and close the database."""
        self._sql.close()
        self._wake.set()

    def closed(self) -> bool:
        return self._sql.closed

    def stop(self) -> None:
        """Ask ``run_forever`` to return once its running steps finish (signal-safe)."""
        self._stopping = True
        self._wake.set()

    def _running(self) -> bool:
        return not self.closed() and not self._stopping

    def __enter__(self) -> SqliteInterpreter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def telemetry(self) -> list[TelemetryEvent]:
        """Every telemetry event in the outbox, in commit order."""
        return self._sql.telemetry()

    def _requested(self) -> None:
        self._wake.set()  # a worker of this process may have work now

    def _holder(self, key: InstanceKey) -> str:
        try:
            held = self._sql.holder(key.instance_id)
        except sqlite3.Error:
            return ""
        if held is None:
            return "(no run in flight now)"
        owner, until = held
        who = "this process" if owner == self._owner else f"worker {owner}"
        if until is None:
            return f"on {who}"
        left = (until - self._clock.now()) / 1000
        beat = self._lease_ms / 1000 - left  # a renewal sets lease_until to now + lease
        if left < 0:
            return f"on {who}, whose lease ran out {-left:.1f} s ago (a worker will take it over)"
        return f"on {who}, heartbeat {max(beat, 0.0):.1f} s ago"

    # ------------------------------------------------------------------ worker
    def run_due(self, limit: int = 1000) -> int:
        """Run what is due now, then return how many instances were taken up.

        Due means an alarm at or before now, or a run whose lease expired (its worker
        died: the attempt is reported interrupted). Up to ``batch`` WorkerPool shards are
        taken at once: their transitions share one transaction (one commit), then their
        user code runs one after another in this thread, then their outcomes (and the
        next attempts they start) share the next commit. Pools answer every request while
        an event runs, so a shard whose attempt waits for its turn blocks no caller; the
        other job types queue requests behind a run in flight, so each of their
        instances runs on its own, one transaction per step. An instance whose stored
        row cannot be read is reported (``errors``, and the ``durable_jobs`` logger) and
        skipped; the others keep running. If a write fails (the database locked past its
        timeout), the error propagates and the batch is let go: runs already committed
        as started count as interrupted once their leases expire.
        """
        taken = 0
        ready: list[Ready] = []
        self._set_aside_broken()
        try:
            while True:
                room = min(self._batch - len(ready), limit - taken)
                fresh = self._claim(room) if room > 0 else []
                taken += len(fresh)
                alone: list[Chain] = []
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
        within ``HOT_CHECK`` for ``HOT_FOR`` after another process's commit woke it
        (else within ``CHANGE_CHECK``)
        through ``PRAGMA data_version`` (``poll`` bounds the sleep
        in any case).
        """
        poll_s = parse_duration(poll, what="poll") / 1000
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise DefinitionError(f"workers must be an int >= 1, got {workers!r}")
        # An outcome, or None when running the hook itself broke (not the user's code:
        # run_sync turns what user code raises into an outcome); that chain is dropped
        # and its lease left to expire, which counts the attempt interrupted.
        outcomes: queue.SimpleQueue[Ready] = queue.SimpleQueue()
        active: dict[str, Chain] = {}  # chains taken up and not finished
        ready: list[Ready] = []

        def run_one(chain: Chain, run: RunUserCode) -> None:
            outcome: Outcome | None = None
            try:
                outcome = self._run(chain, run)
            except BaseException:
                _log.exception("running a hook of %s broke", chain.key.instance_id)
            finally:
                outcomes.put((chain, outcome))
                self._wake.set()

        def collect(chain: Chain, outcome: Outcome | None) -> None:
            if outcome is not None:
                ready.append((chain, outcome))
            else:
                active.pop(chain.key.instance_id, None)
                self._abandon(chain)

        def step() -> bool:
            """One round: collect outcomes, claim, commit, start runs, or sleep. True
            when the worker is stopped and every outcome is committed."""
            nonlocal ready
            while True:
                try:
                    collect(*outcomes.get_nowait())
                except queue.Empty:
                    break
            if ready and len(ready) < len(active):
                # Runs are still going: give their outcomes COMMIT_WINDOW to join this
                # commit (one fsync for several), rather than a commit each.
                deadline = time.monotonic() + COMMIT_WINDOW
                while len(ready) < len(active):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    try:
                        collect(*outcomes.get(timeout=left))
                    except queue.Empty:
                        break
            taking = self._running()
            if taking and len(active) < workers:
                fresh = self._claim(workers - len(active))
                active.update((chain.key.instance_id, chain) for chain in fresh)
                ready.extend((chain, None) for chain in fresh)
            if ready:
                runs = self._advance(ready)
                going = {chain.key.instance_id for chain, _ in runs}
                for chain, _ in ready:
                    if chain.key.instance_id not in going:
                        active.pop(chain.key.instance_id, None)
                ready = []
                for chain, run in runs:
                    pool.submit(run_one, chain, run)
                return False
            if not taking and not active:
                return True
            if len(active) >= workers or not taking:
                # Every slot is busy (or no more are taken up): only an outcome can
                # bring work, so wait for one without polling the database.
                with suppress(queue.Empty):
                    collect(*outcomes.get(timeout=poll_s))
                return False
            self._sleep(self._wait(poll_s))
            return False

        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="durable-jobs") as pool:
            try:
                while not self.closed():
                    try:
                        if step():
                            return  # stopped, and every run's outcome is committed
                    except sqlite3.OperationalError as error:
                        # The file is locked past the busy timeout (or the disk failed):
                        # nothing of the failed write was kept. The ready chains wait
                        # for the next try; the heartbeat keeps their runs' leases.
                        if self.closed():
                            return
                        _log.warning("could not use the database (%s); trying again", error)
                        self._sleep(min(poll_s, RETRY_PAUSE))
            except (DurableJobsError, sqlite3.Error):
                if self.closed():
                    return  # closed while claiming or writing
                raise
            finally:
                # Closed, or a write failed: the chains still taken up are let go; their
                # runs' leases expire and the attempts count as interrupted.
                for chain in active.values():
                    self._abandon(chain)

    def _run(self, chain: Chain, run: RunUserCode) -> Outcome:
        """Run one hook (its attempt is committed already), renewing its lease meanwhile."""
        instance_id = chain.key.instance_id
        self._busy.add(instance_id)
        self._lost.discard(instance_id)
        self._start_heartbeat()
        try:
            return super()._run(chain, run)
        finally:
            self._busy.discard(instance_id)

    def _step(self, chain: Chain, outcome: Outcome | None) -> RunUserCode | None:
        """A step of a driven chain (a request, a manual-clock alarm, a worker's lone
        chain): committed together with the steps other threads make meanwhile."""
        return self._shared.step(chain, outcome)

    def _drive_alone(self, chains: list[Chain]) -> None:
        """Run each chain to its end on its own, one transaction per step: its attempt
        is committed only when it is about to run, and its outcome before anything else
        runs. For jobs that queue requests behind a run in flight (Continuous,
        Debounce, Task), so a run of a ``run_due`` batch never finds another instance
        busy with an attempt that is only waiting for its turn."""
        for index, chain in enumerate(chains):
            try:
                try:
                    self._drive(chain)
                except Restart:
                    self._let_go(chain)  # changed meanwhile: it is claimed again
                except (DurableJobsError, *UNCOMMITTABLE) as error:
                    self._let_go(chain)
                    self._report(chain.key.instance_id, _as_error(chain, error))
            except BaseException:
                for left in chains[index:]:  # this one and those not driven yet
                    self._abandon(left)
                raise
            finally:
                self._let_go(chain)

    def _abandon(self, chain: Chain) -> None:
        """Give a chain up (its run's lease expires: the attempt counts as interrupted)."""
        self._let_go(chain)

    def _wait(self, poll_s: float) -> float:
        """Seconds to sleep: until a row this worker can claim may be due, at most
        ``poll_s``. Rows that can never be claimed are reported and set aside first."""
        self._set_aside_broken()
        now = self._clock.now()
        upcoming = self._sql.next_wake(now, self._skipped())
        if upcoming is None:
            return poll_s
        return min(poll_s, max(0.0, (upcoming - now) / 1000))

    def _set_aside_broken(self) -> None:
        """Report the rows whose times are not times, and give each a real lease (see the
        header): the claims could never pick them otherwise."""
        for instance_id, problem in self._sql.broken_rows(self._clock.now()):
            self._report(instance_id, StorageError(problem))
            self._sql.set_aside(instance_id)

    def _skipped(self) -> set[str]:
        """Rows this process does not claim now: its own runs and claims, other
        programs' jobs, and unreadable rows set aside for a lease."""
        now = self._monotonic()
        for instance_id, until in list(self._aside.items()):
            if until <= now:
                del self._aside[instance_id]
        return self._busy | self._claimed | self._foreign | self._aside.keys()

    def _sleep(self, seconds: float) -> None:
        """Wait up to ``seconds``: less if woken in-process or another process wrote."""
        deadline = time.monotonic() + seconds
        seen = self._sql.data_version()
        while self._running():
            now = time.monotonic()
            left = deadline - now
            if left <= 0:
                return
            # Another process's commits woke this worker lately (a producer, say): look
            # again soon, so that its next job waits a millisecond, not half of
            # CHANGE_CHECK. (Waking for this worker's own alarms does not count: a job
            # every second does not keep the worker checking a thousand times a second.)
            check = HOT_CHECK if now < self._hot_until else CHANGE_CHECK
            if self._wake.wait(min(left, check)):
                self._wake.clear()
                return
            if self._sql.data_version() != seen:
                self._hot_until = time.monotonic() + HOT_FOR
                return

    def _advance(self, ready: list[Ready]) -> list[tuple[Chain, RunUserCode]]:
        """Resume every ready chain in one transaction (group commit); the runs to start.

        Each chain runs in its own savepoint: a chain that fails (an unreadable row) is
        rolled back alone and reported; the others commit. Nothing returned runs before
        the commit, so every attempt is durable before its user code starts.
        """
        runs: list[tuple[Chain, RunUserCode]] = []
        failed: list[tuple[Chain, DurableJobsError]] = []
        try:
            made = self._settle_together(ready, (Restart, DurableJobsError, *UNCOMMITTABLE))
        except BaseException:
            # The transaction did not commit: no run of it started. Runs that had
            # started before (their outcomes are what failed to commit) stay held.
            for chain, outcome in ready:
                if outcome is None:
                    self._held.discard(chain.key.instance_id)
            raise
        for (chain, _), run in zip(ready, made, strict=True):
            if isinstance(run, Exception) or run is None:
                self._let_go(chain)  # the chain ended, or its step could not be made
                if isinstance(run, Exception) and not isinstance(run, Restart):
                    # This instance's step cannot be made (an unreadable row, or a bug
                    # met by its input): it failed alone; the others committed.
                    failed.append((chain, _as_error(chain, run)))
                continue
            self._held.add(chain.key.instance_id)
            self._lost.discard(chain.key.instance_id)  # a run of its own again
            runs.append((chain, run))
        for chain, problem in failed:
            self._report(chain.key.instance_id, problem)  # writes nothing
        return runs

    def _settle_together(
        self, steps: Sequence[Ready], alone: tuple[type[Exception], ...]
    ) -> list[RunUserCode | Exception | None]:
        """Make every step in a savepoint of one transaction, committed once; per step
        its run (``None``: the chain ended), or the exception of type ``alone`` it failed
        with (that step undone alone). Any other exception, or a failed commit, undoes
        them all and is raised. (The worker's group commit and the shared commits of
        request threads both make their steps so.) A lone step is made in the
        transaction itself: it commits or rolls back alone anyway, and a savepoint
        would add two statements to every lone request and every lone worker step."""
        if len(steps) == 1:
            chain, outcome = steps[0]
            try:
                return [self._settle(chain, outcome, self._sql.transaction)]
            except alone as error:
                return [error]
        made: list[RunUserCode | Exception | None] = []
        with self._sql.transaction():
            for chain, outcome in steps:
                try:
                    made.append(self._settle(chain, outcome, self._sql.savepoint))
                except alone as error:
                    made.append(error)
        return made

    def _let_go(self, chain: Chain) -> None:
        self._held.discard(chain.key.instance_id)
        self._claimed.discard(chain.key.instance_id)

    def _report(self, instance_id: str, error: DurableJobsError) -> None:
        if isinstance(error, StorageError):
            self.errors.append(error)
            _log.error("skipping %s for now: %s", instance_id, error)
            # Set aside in this process only: nothing is written, so another worker (a
            # fixed deployment) takes the row up at once, and this one asks again after
            # a lease.
            self._aside[instance_id] = self._monotonic() + self._lease_ms
        elif not self.closed():
            self.errors.append(error)
            _log.error("%s failed: %s", instance_id, error)

    def _recovery(self, definition: Definition, key: InstanceKey) -> Callable[[], Input | None]:
        """The first input of a claimed row whose run's lease expired: the run was
        interrupted (its worker died), if the lease is still expired now, inside the
        write transaction (claims only read: another worker may have recovered it, and
        then its row is not even read here)."""

        def first() -> Input | None:
            if not self._sql.lease_expired(key.instance_id):
                return None
            snapshot, _ = self._sql.load(definition, key.instance_id)
            if snapshot is None or snapshot.in_flight is None:
                return None
            return RunInterrupted(run_id=snapshot.in_flight.run_id)

        return first

    def _start_heartbeat(self) -> None:
        """Renew the leases of this process's running instances while user code runs.

        Without it a run longer than the lease would look like a dead worker's: claimed
        again (by another process, or this one) and run a second time at once.
        """
        with self._sql.lock:
            if self._heartbeat is not None:
                return
            self._heartbeat = threading.Thread(
                target=self._renew_leases, name="durable-jobs-leases", daemon=True
            )
            self._heartbeat.start()

    def _renew_leases(self) -> None:
        """The heartbeat: renew every lease/3. It survives every error: a failed renewal
        is logged and tried again at the next beat; after a whole lease without one, the
        runs' leases may have run out (said once in the log). A run another worker took
        over (its lease ran out unrenewed) is no longer this worker's: it is logged,
        dropped from the renewals, and its outcome will not count (the core ignores an
        outcome of a run that is not the one in flight)."""
        period = max(self._lease_ms / 3000, 0.01)
        monotonic = time.monotonic
        renewed = monotonic()
        warned = False
        while not self.closed():
            time.sleep(period)
            running = sorted((self._busy | self._held) - self._lost)
            if not running:
                renewed = monotonic()
                continue
            try:
                taken = self._sql.renew_leases(running)
            except Exception as error:
                if self.closed():
                    return  # closed between the check and the write
                late = monotonic() - renewed
                if late * 1000 >= self._lease_ms and not warned:
                    warned = True
                    _log.error(
                        "could not renew the leases of %d running instance(s) for %.1f s "
                        "(%s): they may have run out, and another worker may start them "
                        "again; still trying",
                        len(running),
                        late,
                        error,
                    )
                else:
                    _log.warning("could not renew leases (%s); trying again", error)
                continue
            renewed, warned = monotonic(), False
            still = self._busy | self._held  # (a run that ended meanwhile is not lost)
            for instance_id in taken:
                if instance_id not in still:
                    continue
                self._lost.add(instance_id)
                _log.error(
                    "the run of %s was taken over by another worker after its lease ran "
                    "out; this worker no longer counts it as its own, and its outcome "
                    "will be ignored",
                    instance_id,
                )

    def _claim(self, most: int) -> list[Chain]:
        """Up to ``most`` claimable instances, as chains (see the module header). Rows
        this process is already handling are skipped."""
        now = self._clock.now()
        skip = self._skipped()
        chains: list[Chain] = []
        for key, at, recovering in self._sql.claim_due(now, most, skip):
            instance_id = key.instance_id
            if len(chains) == most or instance_id in self._claimed:
                continue
            definition = self._definitions.get(key.job_name)
            if definition is None:
                self._foreign.add(instance_id)  # another program's job: leave it be
                continue
            self._claimed.add(instance_id)
            refire = self._group_commit
            if recovering:
                first = self._recovery(definition, key)
                chain = Chain(key, definition, None, refire=refire, first=first)
            else:
                alarm = AlarmFired(Instant(now if at is None else at))
                chain = Chain(key, definition, alarm, refire=refire)
            chains.append(chain)
        return chains
