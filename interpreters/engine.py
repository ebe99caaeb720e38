"""The interpreter engine: one step loop over any store.

Theory of operation. Every interpreter runs jobs the same way: load the instance (and,
for a WorkerPool shard, the queue rows the core asks for), ``decide``, turn the
transition into a ``CommitPlan`` (``plan_of``), commit it, run the user code it asks
for, and feed the outcome back to ``decide``, until a transition asks for no more user
code; its reply answers the request. That loop is written once, here: a ``Chain`` holds
one input in flight, ``Engine._resume`` runs its next step inside a store transaction
and returns the ``RunUserCode`` to run after the commit, and ``Engine._drive`` runs a
chain to its end, one transaction per step. ``Engine`` drives chains for client
requests (``dispatch``, ``dispatch_many``) and for a manual clock (``advance``), and
implements the client's ``Dispatcher`` on top of a ``Store``; a worker may resume many
chains in one transaction instead (the SQLite worker does).

A store provides what only it can: a transaction; ``load``/``version`` of an instance;
``queue_view`` (the rows ``QueueReads`` names); ``commit`` of one plan, all or nothing,
under the plan's ``expected_version`` (a store that holds the write lock while the chain
reads and commits, as memory and SQLite do, has the version checked by the chain; a
remote store checks it itself); ``claim`` of the next due alarm; dead letters.
The engine never matches over commands (``plan_of`` does, once, in the core), and a
plan's queue changes are applied by ``apply_queue_changes`` through a ``QueueRows``
target, so no store writes that ``match`` either.

Shared here, because every interpreter needs them the same way:

* *Working snapshots.* A transition marked ``unsaved`` (a Debounce reducer or a Task
  ``on_event`` running before anything is stored) is kept by the chain; when its
  outcome comes back, the chain first checks that the stored version is still the one
  it started from, and raises ``Restart`` otherwise: another writer changed the
  instance, and the request runs again from the top.
* *Chained alarms.* With ``refire`` > 0, a transition that leaves its own instance's
  alarm due already (a pool with more events) fires it in the same step, and the plans
  merge into one commit (``CommitPlan.then``); at most ``refire`` times per chain, so
  other instances get their turn. Each transition is still all-or-nothing.
* *Requests.* A request from user code to the instance running it is refused
  (``ConflictError``): ``RunGuard`` knows which instances run in this execution context.
  A request whose working snapshot changed under it (``Restart``) runs again, up to
  ``MAX_RESTARTS`` times. A request that meets a run in flight is queued behind it by
  the core (the reply says ``queued``); one that asked to wait (``client(wait=...)``) is
  answered busy by the core, and waits here: asked again every ``BUSY_PAUSE`` until the
  instance is free or its ``wait`` ran out, then ``BusyError`` with what the core says
  the instance is busy with and what the store knows of the run's worker (``_holder``:
  on SQLite its worker and its last heartbeat). The wait follows the caller's budget,
  not a count of tries, so a long run with a live heartbeat is waited for as long as
  the caller allows.
* *Where job code runs* (issue 10). A request never runs ``execute`` (nor ``on_idle``,
  ``on_error`` after ``execute``, ``on_dead_letter``, ``on_empty``): the core records
  the run as due now (``pending``) and the request answers; a worker runs it. Only
  the hooks that compute a request's own answer (a Debounce reducer, a Task
  ``on_event`` and the ``on_error`` that handles it) run in the caller. An ``inline``
  engine (the memory interpreter always; SQLite when asked) is its own worker: after a
  top-level request it runs the due-now work that the request, and the requests its
  hooks made, left owing (``owes_work``), before the call returns.
* *The manual clock.* ``advance``/``advance_to`` fire due alarms one at a time in time
  order, each with the clock set to its own due time.
* *Stale alarms.* An alarm the core ignores (it is not the one the snapshot waits for:
  another worker fired it first, or the stored alarm was edited by hand) leaves the
  store's alarm set to the snapshot's own, so it cannot fire again and again.
* *Outcomes that cannot be committed.* A successful run whose results cannot be
  decided or stored (a value the store refuses, an alarm out of range: any
  ``ValueError``, ``TypeError``, ``ArithmeticError`` or ``RecursionError``; a
  ``StorageError`` about what is already stored is none of these) is committed instead as a failed
  attempt of that run carrying the real error (``_settle``): the job's retry policy
  applies, and no worker dies on a value user code produced.

Per store, and why: the memory store keeps dicts, a heap of alarms and a list of
telemetry (it is the reference model, instant and deterministic). The SQLite store owns
SQL, the file, leases (several processes share one file), and its worker: lease-aware
claims of many instances at once, group commit across instances in savepoints, the
heartbeat and the worker loop, none of which an in-process model needs. A Durable
Objects store will send each plan in one request and let the object check the version.
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import Any, Final, Protocol, assert_never

import attrs
from returns.result import Failure

from durable_jobs import (
    BusyError,
    Client,
    ConflictError,
    DeadLetter,
    Definition,
    DurableJobsError,
    ErrorInfo,
    Instant,
    Jobs,
)
from durable_jobs.interpreters._runner import run_sync
from durable_jobs.interpreters.clock import Clock, ManualClock
from durable_jobs.protocol import (
    AlarmFired,
    ClearQueue,
    CommitPlan,
    DeleteFinished,
    DeleteQueueItem,
    FinishedEvent,
    Input,
    InstanceKey,
    Outcome,
    PoolView,
    PutFinished,
    PutQueueItem,
    QueueChange,
    QueueItem,
    QueueReads,
    QueueView,
    ReleaseQueueItem,
    ReplyValue,
    Request,
    RunUserCode,
    Snapshot,
    TakeQueueItem,
    Transition,
    UserCodeFailed,
    UserCodeSucceeded,
    from_datetime,
    instance_key,
    kind_of,
    owes_work,
    parse_duration,
    plan_of,
    to_datetime,
)

__all__ = [
    "MAX_RESTARTS",
    "UNCOMMITTABLE",
    "Chain",
    "Deferred",
    "Engine",
    "QueueRows",
    "Restart",
    "RunGuard",
    "Store",
    "apply_queue_changes",
]

MAX_INLINE_CHAINS: Final = 1000
"""How many instances' due-now work one top-level request of an inline engine runs."""
INLINE_REFIRE: Final = 100_000
"""How many alarms an inline chain fires by itself (the pending work of one request)."""
RESTART_PAUSE: Final = 0.001
"""Seconds to wait before running a request again after a ``Restart``."""
MAX_RESTARTS: Final = 500
"""How many times a request runs again because its working snapshot changed under it."""
BUSY_PAUSE: Final = 0.01
"""Seconds to wait before asking a busy instance again (for a request that waits)."""
UNCOMMITTABLE: Final = (ValueError, TypeError, ArithmeticError, RecursionError)
"""What a value that cannot be decided or stored raises (see ``Engine._settle``)."""


def _seconds(value: float) -> str:
    """A wait for a message: ``"50 ms"`` below a second, ``"2.5 s"`` above.

    >>> _seconds(0.0504), _seconds(2.46)
    ('50 ms', '2.5 s')
    """
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.1f} s"


_log = logging.getLogger("durable_jobs")


class _Owing(list[tuple[InstanceKey, Definition]]):
    """The instances a top-level request of an inline engine left owing due-now work,
    each listed once until its work runs; ``open`` until that request returns (a copied
    context, such as a hook abandoned on its timeout, can outlive it)."""

    open = True


class Restart(Exception):
    """The stored instance changed under a chain's working snapshot: run it again."""


class Store(Protocol):
    """What an interpreter's storage provides to the engine (see the module header)."""

    def transaction(self) -> AbstractContextManager[Any]:
        """Everything done inside commits together, or not at all."""
        ...

    def load(self, definition: Definition, instance_id: str) -> tuple[Snapshot | None, int | None]:
        """The stored snapshot and its version; ``(None, None)`` for no instance."""
        ...

    def version(self, instance_id: str) -> int | None:
        """The stored version, without decoding the snapshot."""
        ...

    def queue_view(
        self, definition: Definition, instance_id: str, reads: QueueReads
    ) -> QueueView[Any]:
        """The queue rows of a WorkerPool shard that ``reads`` names."""
        ...

    def commit(self, definition: Definition, plan: CommitPlan[Any]) -> None:
        """Apply ``plan`` in the open transaction (its version is checked by the chain)."""
        ...

    def claim(self, until: Instant) -> tuple[InstanceKey, Instant] | None:
        """The instance whose alarm is due first, at or before ``until``, and that time."""
        ...

    def next_alarm(self) -> Instant | None:
        """When the earliest alarm is due."""
        ...

    def dead_letters(self, definition: Definition) -> list[DeadLetter[Any]]:
        """The dead-letter records of ``definition``'s job, oldest first."""
        ...


class QueueRows(Protocol):
    """A store's queue primitive for WorkerPool shards (rows as in ``QueueItem``)."""

    def put_items(self, instance_id: str, items: Sequence[QueueItem[Any]]) -> None: ...
    def delete_item(self, instance_id: str, event_id: str) -> None: ...
    def take_item(self, instance_id: str, event_id: str) -> None: ...
    def release_item(self, instance_id: str, item: QueueItem[Any]) -> None: ...
    def clear_queue(self, instance_id: str) -> None: ...
    def put_finished(self, instance_id: str, record: FinishedEvent) -> None: ...
    def delete_finished(self, instance_id: str, records: tuple[FinishedEvent, ...]) -> None: ...


def apply_queue_changes(rows: QueueRows, instance_id: str, changes: Iterable[QueueChange]) -> None:
    """Carry out a plan's queue changes, in order, on ``rows`` (consecutive puts go
    together: an ``enqueue_many`` writes its events in one batch).

    >>> from durable_jobs import Instant, WorkerPool
    >>> from durable_jobs.interpreters.memory import MemoryStore
    >>> from durable_jobs.protocol import PutQueueItem
    >>> mail = WorkerPool.make(event=str, concurrency=1, execute=print)
    >>> store, shard = MemoryStore(), "workerPool:mail:0"
    >>> item = QueueItem("e1", "hello", priority=0, seq=0, enqueued_at=Instant(0))
    >>> apply_queue_changes(store, shard, [PutQueueItem(item)])
    >>> store.queue_view(mail, shard, QueueReads(head=True)).head.event_id
    'e1'
    """
    puts: list[QueueItem[Any]] = []
    for change in changes:
        if puts and not isinstance(change, PutQueueItem):
            rows.put_items(instance_id, puts)
            puts = []
        match change:
            case PutQueueItem(item=item):
                puts.append(item)
            case DeleteQueueItem(event_id=event_id):
                rows.delete_item(instance_id, event_id)
            case TakeQueueItem(event_id=event_id):
                rows.take_item(instance_id, event_id)
            case ReleaseQueueItem(item=item):
                rows.release_item(instance_id, item)
            case ClearQueue():
                rows.clear_queue(instance_id)
            case PutFinished(record=record):
                rows.put_finished(instance_id, record)
            case DeleteFinished(records=records):
                rows.delete_finished(instance_id, records)
            case _:
                assert_never(change)
    if puts:
        rows.put_items(instance_id, puts)


class RunGuard:
    """Which instances run user code in the current execution context (a context
    variable, so it follows ``async def`` hooks onto the runner's loop thread)."""

    def __init__(self) -> None:
        # A tuple, not a set: entering is on every run, while a lookup happens only for
        # a request made from user code, over the few runs nested in this context.
        self._running: contextvars.ContextVar[tuple[tuple[int, str], ...]] = contextvars.ContextVar(
            "durable_jobs_running", default=()
        )

    def enter(
        self, owner: object, instance_id: str
    ) -> contextvars.Token[tuple[tuple[int, str], ...]]:
        return self._running.set((*self._running.get(), (id(owner), instance_id)))

    def leave(self, token: contextvars.Token[tuple[tuple[int, str], ...]]) -> None:
        self._running.reset(token)

    def refuse_one(self, owner: object, key: InstanceKey) -> None:
        """``ConflictError`` if user code of ``key`` runs here (a request to its own
        instance from user code)."""
        here = self._running.get()
        if here and (id(owner), key.instance_id) in here:
            raise ConflictError(
                f"{key.instance_id} is running user code and cannot be called from it"
            )

    def refuse(self, owner: object, keys: Iterable[InstanceKey]) -> None:
        """``ConflictError`` if user code of one of ``keys`` runs here (re-entrancy)."""
        for key in keys:
            self.refuse_one(owner, key)

    def active(self, owner: object) -> bool:
        """Whether user code of ``owner`` runs in this context."""
        return any(ident == id(owner) for ident, _ in self._running.get())


GUARD: Final = RunGuard()


class Chain:
    """One input and the user code it starts, in flight: what the chain knows between
    its steps. ``Engine._resume`` runs its next step; ``reply`` is set when it ends.

    ``first``, when given, picks the first input inside the first step's transaction,
    before anything is read (``None``: nothing to do), for a chain whose work depends on
    what is stored then (a worker recovering an interrupted run). ``refire`` bounds the
    alarms the chain fires by itself (see the module header).
    """

    # What a chain learns as it goes; class-level defaults, so that starting one (once
    # per request) sets only what it is given.
    refired = 0
    known: tuple[int, Any] | None = None  # (version, snapshot) the chain stored last
    working: Any = None  # the snapshot a run started from, when it was not written
    unsaved = False
    expected: int | None = None  # the stored version ``working`` came from
    reply: ReplyValue | None = None
    owes = False  # a step left the instance owing due-now work (inline engines)

    def __init__(
        self,
        key: InstanceKey,
        definition: Definition,
        input_: Input | None,
        *,
        refire: int = 0,
        first: Callable[[], Input | None] | None = None,
    ) -> None:
        self.key = key
        self.definition = definition
        self.input = input_
        self.refire = refire
        self.first = first


@attrs.define
class Deferred:
    """The plans (and decided transitions) of a batch of requests, kept until every
    request of the batch is decided."""

    plans: list[CommitPlan[Any]] = attrs.Factory(list)
    seen: list[tuple[InstanceKey, Input, Transition[Any]]] = attrs.Factory(list)


class Engine:
    """The step loop and the client ``Dispatcher`` over a ``Store``.

    Subclasses give the store and the clock; ``_run`` (how a hook runs) and
    ``_observe`` (a transition was decided) may be extended.

    >>> from durable_jobs import Jobs, Task
    >>> from durable_jobs.interpreters.clock import ManualClock
    >>> from durable_jobs.interpreters.memory import MemoryStore
    >>> job = Task.make(state=int, event=int, on_event=lambda c: c.set_state(c.event),
    ...                 execute=print)
    >>> engine = Engine(Jobs(t=job), MemoryStore(), ManualClock())
    >>> engine.client().task(job).send(id="a", event=7).created
    True
    >>> engine.client().task(job).get_state("a")
    7
    """

    def __init__(self, jobs: Jobs, store: Store, clock: Clock, *, inline: bool = False) -> None:
        if not isinstance(jobs, Jobs):
            raise TypeError(f"expected a Jobs registry, got {jobs!r}")
        self._jobs = jobs
        self._store = store
        self._clock = clock
        self._now = clock.now
        self._inline = bool(inline)
        # The (key, definition) of instances left owing due-now work by the top-level
        # request of this context (inline engines only; None outside such a request).
        self._owing: contextvars.ContextVar[_Owing | None] = contextvars.ContextVar(
            "durable_jobs_owing", default=None
        )
        self._stopping = False
        self._definitions: dict[str, Definition] = dict(jobs.items())
        self._kinds = {name: kind_of(definition) for name, definition in jobs.items()}
        cls = type(self)
        self._wakes = cls._requested is not Engine._requested
        self._observes = cls._observe is not Engine._observe

    # --------------------------------------------------------------- public surface
    @property
    def jobs(self) -> Jobs:
        return self._jobs

    @property
    def inline(self) -> bool:
        """Whether due-now work a request leaves runs in the caller before it returns."""
        return self._inline

    def client(self, *, wait: timedelta | str | None = None) -> Client:
        """A client whose calls run on this interpreter.

        ``wait``: how a request that meets a busy instance (a run in flight, or requests
        queued for a worker) behaves. ``None`` (the default) queues it behind them,
        durably, and answers at once with ``queued=True``; a duration waits up to that
        long for the instance, applies the request and answers as usual, or raises
        ``BusyError``.
        """
        return Client(self, wait=wait)

    def now(self) -> datetime:
        """The interpreter's clock (aware, UTC)."""
        return to_datetime(self._clock.now())

    def next_alarm_at(self) -> datetime | None:
        """When the earliest pending alarm is due, or ``None``."""
        at = self._store.next_alarm()
        return None if at is None else to_datetime(at)

    def advance(self, duration: timedelta | str) -> None:
        """Move the (manual) clock forward, firing every alarm that falls due on the way."""
        target = Instant(self._clock.now() + parse_duration(duration, what="advance"))
        self.advance_to(to_datetime(target))

    def advance_to(self, when: datetime) -> None:
        """Move the (manual) clock to ``when``, firing alarms due up to then, in time
        order, each with the clock set to its own due time."""
        clock = self._clock
        if not isinstance(clock, ManualClock):
            raise TypeError("advance needs a ManualClock; a real clock moves by itself")
        target = from_datetime(when)
        if target < clock.now():
            raise ValueError(f"cannot move the clock back from {self.now()} to {when}")
        if GUARD.active(self):
            raise RuntimeError("advance cannot be called from user code")
        while True:
            due = self._store.claim(target)
            if due is None:
                break
            key, at = due
            clock.set(max(clock.now(), at))
            definition = self._definitions.get(key.job_name)
            if definition is not None and definition.job_type == key.job_type:
                self._drive(Chain(key, definition, AlarmFired(at)))
        clock.set(target)

    def dead_letters(self, definition: Definition) -> list[DeadLetter[Any]]:
        return self._store.dead_letters(definition)

    # ---------------------------------------------------------- Dispatcher protocol
    def dispatch(self, definition: Definition, request: Request) -> ReplyValue:
        key = instance_key(definition.job_type, definition.name, request.id)
        GUARD.refuse_one(self, key)
        current = self._owing.get()
        if current is not None and current.open:
            top = False  # a request made by a hook of a request in progress
        elif current is not None:
            top = self._inline  # from code that outlived its request (an abandoned hook)
        else:
            top = self._inline and not GUARD.active(self)  # (advance runs its own alarms)
        if not top:
            return self._answer(key, definition, request)
        owing = _Owing()
        token = self._owing.set(owing)
        try:
            reply = self._answer(key, definition, request)
            self._run_owed(owing)
        finally:
            owing.open = False  # copies of this context (a hook left running) see it ended
            self._owing.reset(token)
        if owing:  # added by a hook's thread between the last run and the close
            self._run_owed(owing)
        return reply

    def _answer(self, key: InstanceKey, definition: Definition, request: Request) -> ReplyValue:
        """Run ``request``'s chain until it answers: again after a ``Restart``, and, for a
        request that waits, again while the instance is busy (see the module header)."""
        restarts = 0
        started: float | None = None
        while True:
            try:
                reply = self._drive(Chain(key, definition, request))
            except Restart:
                restarts += 1
                if restarts >= MAX_RESTARTS:
                    raise self._gave_up(key) from None
                time.sleep(RESTART_PAUSE)
            except ConflictError as error:
                if started is None:
                    started = time.monotonic()
                    if self._inline and isinstance(error, BusyError):
                        # Busy with work due now that only this engine runs (it is its
                        # own worker): run it here rather than wait for it, as a worker
                        # would: in a context of its own, outside the hook that may be
                        # asking (so the work it does sees that hook's run in flight, not
                        # a re-entrant call).
                        contextvars.Context().run(self._run_apart, key, definition)
                self._wait_or_give_up(key, request, started, error)
            else:
                if reply is None:  # pragma: no cover - every request chain ends in a reply
                    raise DurableJobsError(f"no reply to {request!r}")
                if self._wakes:
                    self._requested()
                return reply

    def _run_owed(self, owing: list[tuple[InstanceKey, Definition]]) -> None:
        """Run the due-now work of every instance in ``owing`` (an inline engine, after a
        top-level request; steps append to it as they leave more owing).

        Decisions: the request is committed and answered already, so a failure here is
        not the request's: it is logged (the ``durable_jobs`` logger) and the work stays
        due, for the next ``advance`` or a worker. At most ``MAX_INLINE_CHAINS`` chains
        run per call, so user code that keeps making work due (two tasks triggering each
        other) cannot keep one call from returning; what is left stays due likewise."""
        chains = 0
        while owing:
            key, definition = owing.pop(0)
            chains += 1
            if chains > MAX_INLINE_CHAINS:
                _log.warning(
                    "due-now work of %d instance(s) left for advance or a worker: more "
                    "than %d chains in one call (user code that keeps making work due?)",
                    len({k for k, _ in owing}) + 1,
                    MAX_INLINE_CHAINS,
                )
                owing.clear()
                return
            first = self._owed_alarm(key, definition)
            try:
                self._drive(Chain(key, definition, None, refire=INLINE_REFIRE, first=first))
            except Exception:
                _log.exception(
                    "running the due-now work of %s failed; it stays due", key.instance_id
                )

    def _run_apart(self, key: InstanceKey, definition: Definition) -> None:
        """``_run_owed`` for ``key``, in the (fresh) context this is run in: as a top-level
        call of its own, so the work its hooks make due runs too."""
        owing = _Owing([(key, definition)])
        self._owing.set(owing)
        try:
            self._run_owed(owing)
        finally:
            owing.open = False

    def _owed_alarm(self, key: InstanceKey, definition: Definition) -> Callable[[], Input | None]:
        def first() -> Input | None:
            snapshot, _ = self._store.load(definition, key.instance_id)
            if not owes_work(snapshot):
                return None
            at = snapshot.alarm_at  # type: ignore[union-attr]
            return None if at is None or at > self._now() else AlarmFired(at)

        return first

    def dispatch_many(
        self, definition: Definition, requests: Sequence[Request]
    ) -> list[ReplyValue]:
        """Decide every request, then commit them all in one transaction: a rejection
        (or a request that would start user code) leaves nothing written."""
        keys = [instance_key(definition.job_type, definition.name, r.id) for r in requests]
        if len({key.instance_id for key in keys}) != len(keys):
            raise ValueError("dispatch_many takes one request per instance")
        GUARD.refuse(self, keys)
        while True:
            try:
                with self._store.transaction():
                    replies = self._decide_all(definition, keys, requests)
            except ConflictError:
                raise  # (pool requests are never busy: nothing to wait for)
            if self._wakes:
                self._requested()
            return replies

    def _wait_or_give_up(
        self, key: InstanceKey, request: Request, started: float, error: ConflictError
    ) -> None:
        """After a busy answer to ``request`` (first met at ``started``, monotonic): wait
        and ask again, or raise ``BusyError`` once its ``wait`` has run out."""
        wait = getattr(request, "wait", None)
        if wait is None or not isinstance(error, BusyError):
            raise error
        waited = time.monotonic() - started
        if waited * 1000 >= wait:
            holder = self._holder(key)
            where = f" {holder}" if holder else ""
            raise BusyError(
                f"{error}{where}; waited {_seconds(waited)} (the client's wait); the request "
                "was not applied: call again, or use a client without wait to queue it"
            ) from None
        time.sleep(BUSY_PAUSE)

    def _holder(self, key: InstanceKey) -> str:
        """What the store knows of the worker running ``key`` (for a ``BusyError``)."""
        return ""

    @staticmethod
    def _gave_up(key: InstanceKey) -> ConflictError:
        return ConflictError(f"{key.instance_id} kept changing; gave up after retries")

    def _decide_all(
        self, definition: Definition, keys: list[InstanceKey], requests: Sequence[Request]
    ) -> list[ReplyValue]:
        deferred = Deferred()
        replies: list[ReplyValue] = []
        for key, request in zip(keys, requests, strict=True):
            chain = Chain(key, definition, request)
            if self._resume(chain, None, deferred) is not None:
                raise ValueError(f"{request!r} starts user code; use dispatch")
            if chain.reply is None:  # pragma: no cover - every request ends in a reply
                raise DurableJobsError(f"no reply to {request!r}")
            replies.append(chain.reply)
        for plan in deferred.plans:
            self._store.commit(definition, plan)
        for seen in deferred.seen:  # traced only once the batch is written
            self._observe(*seen)
        return replies

    # ------------------------------------------------------------------------ steps
    def _resume(
        self,
        chain: Chain,
        outcome: Outcome | None,
        defer: Deferred | None = None,
    ) -> RunUserCode | None:
        """Run the next step of ``chain`` inside the open transaction: its first input,
        or the ``outcome`` of its last run. The user code to run after the commit, or
        ``None`` when the chain ended (``chain.reply`` answers it). With ``defer``, the
        step's plan (and what it decided) is kept there instead of committed."""
        store, definition, key = self._store, chain.definition, chain.key
        input_: Input | None
        snapshot: Any
        if outcome is None:
            input_ = chain.input if chain.first is None else chain.first()
            if input_ is None:
                return None
            snapshot, version = store.load(definition, key.instance_id)
        else:
            input_ = outcome
            version = store.version(key.instance_id)
            if chain.unsaved:
                if version != chain.expected:
                    raise Restart(f"{key.instance_id} changed while its request ran user code")
                snapshot = chain.working
            elif chain.known is not None and chain.known[0] == version:
                snapshot = chain.known[1]  # what this chain wrote: no need to decode it
            else:
                snapshot, version = store.load(definition, key.instance_id)
        kind = self._kinds[definition.name]
        fired = input_.at if type(input_) is AlarmFired else None
        plan: CommitPlan[Any] | None = None
        written, stored = False, None
        while True:
            now = self._now()
            argument: Any = snapshot
            if kind.reads is not None:  # a pool shard: decide sees the rows it needs
                reads = kind.reads(definition, input_, now)
                rows = store.queue_view(definition, key.instance_id, reads)
                argument = PoolView(snapshot, rows)
            result = kind.decide(definition, argument, input_, now)
            if type(result) is Failure:  # exact: the core builds no subclass (and an ABC
                raise result.failure().error()  # isinstance check is slow on this path)
            transition: Transition[Any] = result.unwrap()
            if self._observes:
                if defer is None:
                    self._observe(key, input_, transition)
                else:
                    defer.seen.append((key, input_, transition))
            step, run, reply = plan_of(key, version, transition)
            after = transition.snapshot
            if self._inline and step is not None and owes_work(after):  # (a query: no step)
                chain.owes = True
            if step is not None:
                plan = step if plan is None else plan.then(step)
                if step.write != "keep":
                    version = None if after is None else after.version
                    written, stored = True, after
            if run is not None or after is None or chain.refired >= chain.refire:
                break
            due = after.alarm_at
            if due is None or due > now or self._stopping:
                break
            chain.refired += 1
            input_, snapshot = AlarmFired(due), after
        if plan is None and fired is not None:
            kept = transition.snapshot
            if kept is not None and kept.alarm_at != fired:
                # The store fired an alarm its snapshot does not hold (a stale or
                # hand-edited alarm): set the store's alarm to the snapshot's, or it
                # would fire again and again, changing nothing.
                plan = CommitPlan(key, version, alarm_changed=True, alarm_at=kept.alarm_at)
        if plan is not None:
            if defer is None:
                store.commit(definition, plan)
            else:
                defer.plans.append(plan)
        if run is None:
            chain.reply = reply
            return None
        if written:  # what this step stored: the next step need not decode it
            chain.known = None if stored is None or version is None else (version, stored)
        chain.unsaved, chain.working, chain.expected = transition.unsaved, after, version
        return run

    def _drive(self, chain: Chain) -> ReplyValue | None:
        """Run ``chain`` to its end: one transaction per step, each hook in between."""
        outcome: Outcome | None = None
        step = self._step
        while True:
            run = step(chain, outcome)
            if chain.owes:  # (set by _resume: an inline engine's work due now)
                chain.owes = False
                owing = self._owing.get()  # this thread's, whichever thread made the step
                entry = (chain.key, chain.definition)
                if owing is not None and owing.open and entry not in owing:
                    owing.append(entry)  # (once: one chain runs all of an instance's work)
            if run is None:
                return chain.reply
            outcome = self._run(chain, run)

    def _step(self, chain: Chain, outcome: Outcome | None) -> RunUserCode | None:
        """One step of a driven chain in a transaction of its own (a store shared by
        threads may let concurrent steps share one; the SQLite interpreter does)."""
        return self._settle(chain, outcome, self._store.transaction)

    def _settle(
        self,
        chain: Chain,
        outcome: Outcome | None,
        scope: Callable[[], AbstractContextManager[None]],
    ) -> RunUserCode | None:
        """``_resume`` inside ``scope`` (a transaction, or a worker's savepoint). A
        successful outcome that cannot be committed is committed as a failed attempt
        of its run with the real error (see the module header)."""
        try:
            with scope():
                return self._resume(chain, outcome)
        except UNCOMMITTABLE as error:
            if not isinstance(outcome, UserCodeSucceeded):
                raise
            failed = UserCodeFailed(run_id=outcome.run_id, error=ErrorInfo.from_exception(error))
        with scope():
            return self._resume(chain, failed)

    def _run(self, chain: Chain, run: RunUserCode) -> Outcome:
        """Run one hook of ``chain`` (its attempt is committed already); its outcome."""
        token = GUARD.enter(self, chain.key.instance_id)
        try:
            return run_sync(chain.definition, run, self._now())
        finally:
            GUARD.leave(token)

    def _observe(self, key: InstanceKey, input_: Input, transition: Transition[Any]) -> None:
        """A transition was decided (the memory interpreter keeps a trace)."""

    def _requested(self) -> None:
        """A client request committed (a worker of this process may have work now)."""
