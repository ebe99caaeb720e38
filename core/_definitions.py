"""Job definitions and the registry.

Theory of operation: ``Continuous.make``, ``Debounce.make`` and ``Task.make`` check every
option when they are called (a bad duration, cron expression, time zone, count or hook
raises ``DefinitionError`` at definition time, not at the first run) and return frozen,
generic definition values. The user functions they hold are never called by the core;
interpreters call them when ``decide`` asks for it.

``Jobs(name=definition, ...)`` is the registry. The keyword is the job's name (it wins
over any earlier name); registering binds a named copy of each definition, and the
registry also finds a definition by the object the user holds, so
``client.continuous(ticker)`` works with the unnamed object and keeps its types.

``timeout`` (every kind; default none) bounds each run of the job's hooks. It is the
interpreters' shared runner that enforces it (the core reads no clock): a run that takes
longer becomes a failed attempt whose error type is ``TimeoutError``, and the retry
policy applies as to any failure. An ``async def`` hook is cancelled; a sync hook cannot
be stopped from outside, so it is abandoned (it runs in a thread of its own, its result
is ignored, and what it does meanwhile still happens).

State versions: a job with a state (Continuous, Debounce's batch state, Task) declares
``state_version`` (default 1) and, above 1, ``migrate_state(data, version)``: it takes a
stored state in its JSON form as written under ``version`` and returns the JSON form of
``version + 1``. The codec calls it, step by step, on every stored state it reads (see
``_serialization``); ``make`` refuses a version that is not an int >= 1, a version above
1 without a migration, and a migration that version 1 would never call.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, TypeVar, overload

import attrs

from durable_jobs._errors import DefinitionError, ErrorInfo, JobNotFoundError
from durable_jobs._keys import JobType, check_id
from durable_jobs._retry import Backoff, Retry
from durable_jobs._schedule import Cron, Every, Schedule, cron, every
from durable_jobs._time import Duration, DurationLike, parse_duration

if TYPE_CHECKING:
    from durable_jobs._context import (
        ContinuousContext,
        DebounceContext,
        DebounceEventContext,
        PoolContext,
        PoolDeadLetterContext,
        PoolEmptyContext,
        TaskContext,
    )

__all__ = [
    "Continuous",
    "ContinuousDefinition",
    "Debounce",
    "DebounceDefinition",
    "Definition",
    "Jobs",
    "Task",
    "TaskDefinition",
    "WorkerPool",
    "WorkerPoolDefinition",
]

S = TypeVar("S")
E = TypeVar("E")

_UNSET: Any = object()


def _require_callable(value: object, what: str, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not callable(value):
        raise DefinitionError(f"{what} must be a function, got {value!r}")


def _require_type(value: object, what: str) -> None:
    if value is None or isinstance(value, str | int | float | bool):
        raise DefinitionError(f"{what} must be a type (e.g. an attrs class), got {value!r}")


def _require_versioning(
    version: object, migrate: object, job: str, of: Literal["state", "event"] = "state"
) -> None:
    """``<of>_version`` is an int >= 1; above 1 it needs ``migrate_<of>``, and a
    migration with version 1 would never be called (the version was not raised). ``of``
    names the stored value: a job's state, or a WorkerPool's events."""
    option, hook = f"{of}_version", f"migrate_{of}"
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise DefinitionError(f"{job} {option} must be an int >= 1, got {version!r}")
    _require_callable(migrate, f"{job} {hook}", optional=True)
    if version > 1 and migrate is None:
        raise DefinitionError(
            f"{job} {option} {version} needs {hook}: stored {of}s of versions "
            f"1 to {version - 1} could not be read otherwise"
        )
    if version == 1 and migrate is not None:
        raise DefinitionError(
            f"{job} {hook} is never called while {option} is 1: raise "
            f"{option} with each change of the {of} type"
        )


def _require_retry(value: object) -> None:
    if value is not None and not isinstance(value, Retry):
        raise DefinitionError(f"retry must be a Retry(...) value, got {value!r}")


@attrs.frozen(eq=False)
class ContinuousDefinition(Generic[S]):
    """A Continuous job: ``execute`` runs on a schedule, with persistent state."""

    job_type: ClassVar[JobType] = "continuous"
    answers_while_running: ClassVar[bool] = False
    """Whether every request is applied while a run is in flight (else a mutating one
    is queued behind the run, or waits for it: see ``client(wait=...)``)."""
    state: type[S]
    # Versioning of the stored state (see "State versions" in the module header).
    state_version: int = attrs.field(default=1, kw_only=True)
    migrate_state: Callable[[Any, int], Any] | None = attrs.field(default=None, kw_only=True)
    schedule: Schedule
    execute: Callable[[ContinuousContext[S]], Any]
    start_immediately: bool = True
    retry: Retry | None = None
    on_retry_exhausted: Literal["continue", "terminate"] = "continue"
    timeout: Duration | None = None
    name: str = ""


@attrs.frozen(eq=False)
class DebounceDefinition(Generic[E, S]):
    """A Debounce job: events fold into a state, flushed as one batch by ``execute``."""

    job_type: ClassVar[JobType] = "debounce"
    answers_while_running: ClassVar[bool] = False
    """Whether every request is applied while a run is in flight (else a mutating one
    is queued behind the run, or waits for it: see ``client(wait=...)``)."""
    event: type[E]
    state: type[S]
    # Versioning of the stored state (see "State versions" in the module header).
    state_version: int = attrs.field(default=1, kw_only=True)
    migrate_state: Callable[[Any, int], Any] | None = attrs.field(default=None, kw_only=True)
    # Events are stored while they wait behind a flush in flight (``pending``).
    event_version: int = attrs.field(default=1, kw_only=True)
    migrate_event: Callable[[Any, int], Any] | None = attrs.field(default=None, kw_only=True)
    execute: Callable[[DebounceContext[S]], Any]
    flush_after: Duration
    on_event: Callable[[DebounceEventContext[E, S]], Any] | None = None
    initial_state: Any = None
    max_events: int | None = None
    quiet_period: Duration | None = None
    retry: Retry | None = None
    timeout: Duration | None = None
    name: str = ""

    def initial(self) -> S | None:
        """The state the first event of a batch sees.

        A callable ``initial_state`` (a class, a lambda) is a factory, called for each new
        batch; to start from a value that is itself callable, wrap it in a lambda.
        """
        value = self.initial_state
        return value() if callable(value) else value  # type: ignore[no-any-return]


@attrs.frozen(eq=False)
class TaskDefinition(Generic[S, E]):
    """A Task job: an event-driven state machine that schedules its own ``execute``."""

    job_type: ClassVar[JobType] = "task"
    answers_while_running: ClassVar[bool] = False
    """Whether every request is applied while a run is in flight (else a mutating one
    is queued behind the run, or waits for it: see ``client(wait=...)``)."""
    state: type[S]
    # Versioning of the stored state (see "State versions" in the module header).
    state_version: int = attrs.field(default=1, kw_only=True)
    migrate_state: Callable[[Any, int], Any] | None = attrs.field(default=None, kw_only=True)
    event: type[E]
    # Events are stored while they wait behind a run in flight (``pending``).
    event_version: int = attrs.field(default=1, kw_only=True)
    migrate_event: Callable[[Any, int], Any] | None = attrs.field(default=None, kw_only=True)
    on_event: Callable[[TaskContext[S, E]], Any]
    execute: Callable[[TaskContext[S, E]], Any]
    on_idle: Callable[[TaskContext[S, E]], Any] | None = None
    on_error: Callable[[TaskContext[S, E]], Any] | None = None
    retry: Retry | None = None
    timeout: Duration | None = None
    name: str = ""


@attrs.frozen(eq=False)
class WorkerPoolDefinition(Generic[E]):
    """A WorkerPool: a durable queue over ``concurrency`` shards, one event at a time each."""

    job_type: ClassVar[JobType] = "workerPool"
    answers_while_running: ClassVar[bool] = True
    """Every pool request is answered while an event runs (``decide`` never refuses a
    pool request as busy): an interpreter may commit a shard's attempt ahead of running
    it without making callers wait."""
    event: type[E]
    # Versioning of the stored events (queue rows, the current event, dead letters): see
    # "State versions" in the header of ``_serialization``.
    event_version: int = attrs.field(default=1, kw_only=True)
    migrate_event: Callable[[Any, int], Any] | None = attrs.field(default=None, kw_only=True)
    concurrency: int
    execute: Callable[[PoolContext[E]], Any]
    retry: Retry
    on_dead_letter: Callable[[E, ErrorInfo, PoolDeadLetterContext[E]], Any] | None = None
    on_empty: Callable[[PoolEmptyContext], Any] | None = None
    max_queue_depth: int | None = None
    dedup_retention: Duration = attrs.field(default=Duration(86_400_000))
    timeout: Duration | None = None
    name: str = ""

    @property
    def state(self) -> type[E]:
        """A pool keeps no user state; its dead letters hold events."""
        return self.event


Definition = (
    ContinuousDefinition[Any]
    | DebounceDefinition[Any, Any]
    | TaskDefinition[Any, Any]
    | WorkerPoolDefinition[Any]
)
DEFINITION_CLASSES: tuple[type, ...] = (
    ContinuousDefinition,
    DebounceDefinition,
    TaskDefinition,
    WorkerPoolDefinition,
)


class Continuous:
    """Recurring work on a fixed-rate or cron schedule.

    >>> import attrs
    >>> @attrs.frozen
    ... class Counter:
    ...     count: int
    >>> ticker = Continuous.make(
    ...     state=Counter,
    ...     schedule=Continuous.every("30 minutes"),
    ...     execute=lambda ctx: ctx.update_state(lambda s: Counter(s.count + 1)),
    ... )
    >>> ticker.schedule
    Every(interval=1800000)
    """

    every = staticmethod(every)
    cron = staticmethod(cron)

    @staticmethod
    def make(
        *,
        state: type[S],
        state_version: int = 1,
        migrate_state: Callable[[Any, int], Any] | None = None,
        schedule: Schedule,
        execute: Callable[[ContinuousContext[S]], Any],
        start_immediately: bool = True,
        retry: Retry | None = None,
        on_retry_exhausted: Literal["continue", "terminate"] = "continue",
        timeout: DurationLike | None = None,
    ) -> ContinuousDefinition[S]:
        _require_type(state, "Continuous state")
        _require_versioning(state_version, migrate_state, "Continuous")
        if not isinstance(schedule, Every | Cron):
            raise DefinitionError(
                "Continuous schedule must be Continuous.every(...) or Continuous.cron(...), "
                f"got {schedule!r}"
            )
        _require_callable(execute, "Continuous execute")
        if not isinstance(start_immediately, bool):
            raise DefinitionError(f"start_immediately must be a bool, got {start_immediately!r}")
        _require_retry(retry)
        if on_retry_exhausted not in ("continue", "terminate"):
            raise DefinitionError(
                f"on_retry_exhausted must be 'continue' or 'terminate', got {on_retry_exhausted!r}"
            )
        return ContinuousDefinition(
            state=state,
            state_version=state_version,
            migrate_state=migrate_state,
            schedule=schedule,
            execute=execute,
            start_immediately=start_immediately,
            retry=retry,
            on_retry_exhausted=on_retry_exhausted,
            timeout=_timeout(timeout, "Continuous"),
        )


class Debounce:
    """Events folded by a reducer and flushed as one batch.

    >>> batcher = Debounce.make(event=int, execute=lambda ctx: None, flush_after="5 seconds")
    >>> batcher.flush_after, batcher.state
    (5000, <class 'int'>)
    """

    @overload
    @staticmethod
    def make(
        *,
        event: type[E],
        execute: Callable[[DebounceContext[E]], Any],
        flush_after: DurationLike,
        state: None = None,
        state_version: int = 1,
        migrate_state: Callable[[Any, int], Any] | None = None,
        event_version: int = 1,
        migrate_event: Callable[[Any, int], Any] | None = None,
        on_event: Callable[[DebounceEventContext[E, E]], Any] | None = None,
        initial_state: E | Callable[[], E] | None = None,
        max_events: int | None = None,
        quiet_period: DurationLike | None = None,
        retry: Retry | None = None,
        timeout: DurationLike | None = None,
    ) -> DebounceDefinition[E, E]: ...

    @overload
    @staticmethod
    def make(
        *,
        event: type[E],
        execute: Callable[[DebounceContext[S]], Any],
        flush_after: DurationLike,
        state: type[S],
        state_version: int = 1,
        migrate_state: Callable[[Any, int], Any] | None = None,
        event_version: int = 1,
        migrate_event: Callable[[Any, int], Any] | None = None,
        on_event: Callable[[DebounceEventContext[E, S]], Any] | None = None,
        initial_state: S | Callable[[], S] | None = None,
        max_events: int | None = None,
        quiet_period: DurationLike | None = None,
        retry: Retry | None = None,
        timeout: DurationLike | None = None,
    ) -> DebounceDefinition[E, S]: ...

    @staticmethod
    def make(
        *,
        event: type[Any],
        execute: Callable[[Any], Any],
        flush_after: DurationLike,
        state: type[Any] | None = None,
        state_version: int = 1,
        migrate_state: Callable[[Any, int], Any] | None = None,
        event_version: int = 1,
        migrate_event: Callable[[Any, int], Any] | None = None,
        on_event: Callable[[Any], Any] | None = None,
        initial_state: Any = None,
        max_events: int | None = None,
        quiet_period: DurationLike | None = None,
        retry: Retry | None = None,
        timeout: DurationLike | None = None,
    ) -> DebounceDefinition[Any, Any]:
        _require_type(event, "Debounce event")
        _require_versioning(state_version, migrate_state, "Debounce")
        _require_versioning(event_version, migrate_event, "Debounce", "event")
        if state is not None:
            _require_type(state, "Debounce state")
        _require_callable(execute, "Debounce execute")
        _require_callable(on_event, "Debounce on_event", optional=True)
        window = parse_duration(flush_after, what="Debounce flush_after")
        if window <= 0:
            raise DefinitionError("Debounce flush_after must be positive")
        if max_events is not None and (
            isinstance(max_events, bool) or not isinstance(max_events, int) or max_events < 1
        ):
            raise DefinitionError(f"Debounce max_events must be an int >= 1, got {max_events!r}")
        quiet = None
        if quiet_period is not None:
            quiet = parse_duration(quiet_period, what="Debounce quiet_period")
            if quiet <= 0:
                raise DefinitionError("Debounce quiet_period must be positive")
        if state is not None and state is not event and on_event is None:
            raise DefinitionError(
                "Debounce with a state type other than the event type needs an on_event reducer"
            )
        _require_retry(retry)
        return DebounceDefinition(
            event=event,
            state=event if state is None else state,
            state_version=state_version,
            migrate_state=migrate_state,
            event_version=event_version,
            migrate_event=migrate_event,
            execute=execute,
            flush_after=window,
            on_event=on_event,
            initial_state=initial_state,
            max_events=max_events,
            quiet_period=quiet,
            retry=retry,
            timeout=_timeout(timeout, "Debounce"),
        )


class Task:
    """An event-driven state machine that schedules its own alarm.

    >>> reminder = Task.make(state=str, event=str, on_event=lambda ctx: None,
    ...                      execute=lambda ctx: None)
    >>> reminder.on_idle is None
    True
    """

    @staticmethod
    def make(
        *,
        state: type[S],
        state_version: int = 1,
        migrate_state: Callable[[Any, int], Any] | None = None,
        event: type[E],
        event_version: int = 1,
        migrate_event: Callable[[Any, int], Any] | None = None,
        on_event: Callable[[TaskContext[S, E]], Any],
        execute: Callable[[TaskContext[S, E]], Any],
        on_idle: Callable[[TaskContext[S, E]], Any] | None = None,
        on_error: Callable[[TaskContext[S, E]], Any] | None = None,
        retry: Retry | None = None,
        timeout: DurationLike | None = None,
    ) -> TaskDefinition[S, E]:
        _require_type(state, "Task state")
        _require_versioning(state_version, migrate_state, "Task")
        _require_versioning(event_version, migrate_event, "Task", "event")
        _require_type(event, "Task event")
        _require_callable(on_event, "Task on_event")
        _require_callable(execute, "Task execute")
        _require_callable(on_idle, "Task on_idle", optional=True)
        _require_callable(on_error, "Task on_error", optional=True)
        _require_retry(retry)
        return TaskDefinition(
            state=state,
            state_version=state_version,
            migrate_state=migrate_state,
            event=event,
            event_version=event_version,
            migrate_event=migrate_event,
            on_event=on_event,
            execute=execute,
            on_idle=on_idle,
            on_error=on_error,
            retry=retry,
            timeout=_timeout(timeout, "Task"),
        )


def _timeout(value: DurationLike | None, kind: str) -> Duration | None:
    """A hook's time limit: ``None`` (no limit) or a positive duration.

    >>> _timeout("30 seconds", "Task"), _timeout(None, "Task")
    (30000, None)
    """
    if value is None:
        return None
    limit = parse_duration(value, what=f"{kind} timeout")
    if limit <= 0:
        raise DefinitionError(f"{kind} timeout must be positive, got {value!r}")
    return limit


def _positive_int(value: object, what: str, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DefinitionError(f"{what} must be an int >= 1, got {value!r}")


class WorkerPool:
    """A durable queue with a concurrency limit, priorities, partition routing, idempotent
    enqueue, retries and a dead-letter queue.

    >>> pool = WorkerPool.make(event=str, concurrency=4, execute=lambda ctx: None)
    >>> pool.concurrency, pool.retry.max_attempts, pool.dedup_retention
    (4, 3, 86400000)
    """

    @staticmethod
    def make(
        *,
        event: type[E],
        event_version: int = 1,
        migrate_event: Callable[[Any, int], Any] | None = None,
        concurrency: int,
        execute: Callable[[PoolContext[E]], Any],
        retry: Retry | None = None,
        on_dead_letter: Callable[[E, ErrorInfo, PoolDeadLetterContext[E]], Any] | None = None,
        on_empty: Callable[[PoolEmptyContext], Any] | None = None,
        max_queue_depth: int | None = None,
        dedup_retention: DurationLike = "24 hours",
        timeout: DurationLike | None = None,
    ) -> WorkerPoolDefinition[E]:
        _require_type(event, "WorkerPool event")
        _require_versioning(event_version, migrate_event, "WorkerPool", "event")
        _positive_int(concurrency, "WorkerPool concurrency")
        _require_callable(execute, "WorkerPool execute")
        _require_callable(on_dead_letter, "WorkerPool on_dead_letter", optional=True)
        _require_callable(on_empty, "WorkerPool on_empty", optional=True)
        _positive_int(max_queue_depth, "WorkerPool max_queue_depth", optional=True)
        _require_retry(retry)
        return WorkerPoolDefinition(
            event=event,
            event_version=event_version,
            migrate_event=migrate_event,
            concurrency=concurrency,
            execute=execute,
            retry=DEFAULT_POOL_RETRY if retry is None else retry,
            on_dead_letter=on_dead_letter,
            on_empty=on_empty,
            max_queue_depth=max_queue_depth,
            dedup_retention=parse_duration(dedup_retention, what="WorkerPool dedup_retention"),
            timeout=_timeout(timeout, "WorkerPool"),
        )


DEFAULT_POOL_RETRY = Retry(max_attempts=3, backoff=Backoff.exponential(base="1 second"))


D = TypeVar("D", bound=Definition)


class Jobs(Mapping[str, Definition]):
    """The registry: job names (the keyword names) to definitions.

    >>> jobs = Jobs(batcher=Debounce.make(event=int, execute=print, flush_after="1 s"))
    >>> jobs["batcher"].name
    'batcher'
    """

    def __init__(self, **definitions: Definition) -> None:
        self._named: dict[str, Definition] = {}
        # Keyed by id() of the objects the user holds, with the objects themselves kept
        # alive here: an id is unique only while its object lives, so a registry that
        # let a definition be collected could find another object under its id.
        self._by_object: dict[int, tuple[Definition, str]] = {}
        for name, definition in definitions.items():
            check_id(name, "job name", DefinitionError)
            if not isinstance(definition, DEFINITION_CLASSES):
                raise DefinitionError(
                    f"job {name!r} must be made with Continuous/Debounce/Task/WorkerPool.make, "
                    f"got {definition!r}"
                )
            if id(definition) in self._by_object:
                raise DefinitionError(
                    "the same definition is registered twice "
                    f"({self._by_object[id(definition)][1]!r} and {name!r}); "
                    "make a second definition instead"
                )
            named = attrs.evolve(definition, name=name)
            self._named[name] = named
            self._by_object[id(definition)] = (definition, name)
            self._by_object[id(named)] = (named, name)

    def __getitem__(self, name: str) -> Definition:
        return self._named[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._named)

    def __len__(self) -> int:
        return len(self._named)

    def resolve(self, job: str | D, kind: type[D]) -> D:
        """The registered definition of kind ``kind`` named ``job`` (or registered as ``job``)."""
        if isinstance(job, str):
            name: str | None = job
        else:
            held = self._by_object.get(id(job))
            name = held[1] if held is not None and held[0] is job else None
        label = kind.job_type
        if name is None:
            raise JobNotFoundError(f"Job not found: {label}/<unregistered definition>")
        found = self._named.get(name)
        if not isinstance(found, kind):
            raise JobNotFoundError(f"Job not found: {label}/{name}")
        return found
