"""Contexts handed to user functions, in one style for every job type.

Theory of operation: plain attributes to read (``ctx.state`` always reads the live,
buffered value; ``ctx.attempt``, ``ctx.is_retry``, ``ctx.now`` …), buffered methods to
change (``set_state``, ``update_state``, ``schedule``, ``cancel_schedule``), and
``ctx.terminate(reason=None)``. Nothing a context records touches storage: when the user
function returns, the interpreter reads the buffer (``ctx.changes()``) and feeds it to the
core as an outcome, so a failed run leaves no trace in the state.

``terminate`` raises ``TerminateSignal``, a ``BaseException``: it stops the user function
at once even when the function catches ``Exception``, and the interpreter reports it as
``TerminateRequested``. ``update_state`` does nothing while the state is ``None`` (a Task
before its first ``set_state``). ``ctx.finish(returned)`` gives the interpreter the
changes of a run that returned ``returned``: the buffer, except for a Debounce reducer,
whose return value *is* the new state.

The context factories (``continuous_call`` … ``pool_call``) build the context a
``RunUserCode`` payload describes and say how the hook is called (``HookCall``): every
hook takes the context, except ``on_dead_letter(event, error, ctx)``. They call no user
function themselves, with one exception the interpreter is ready for: a Debounce
reducer that starts a batch calls the ``initial_state`` factory (the core decided that,
with ``DebounceReduce.first``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, Literal, NamedTuple, NoReturn, TypeVar, assert_never

import attrs

from durable_jobs._commands import (
    ContinuousExecute,
    DebounceExecute,
    DebounceReduce,
    PoolExecute,
    PoolOnDeadLetter,
    PoolOnEmpty,
    RunUserCode,
    TaskExecute,
    TaskOnError,
    TaskOnEvent,
    TaskOnIdle,
)
from durable_jobs._errors import ErrorInfo
from durable_jobs._keys import InstanceKey
from durable_jobs._queue import QueueItem
from durable_jobs._telemetry import FlushReason
from durable_jobs._time import Instant, from_datetime, parse_duration, to_datetime

if TYPE_CHECKING:
    from durable_jobs._definitions import (
        ContinuousDefinition,
        DebounceDefinition,
        TaskDefinition,
        WorkerPoolDefinition,
    )

__all__ = [
    "ContextChanges",
    "ContinuousContext",
    "DebounceContext",
    "DebounceEventContext",
    "HookCall",
    "PoolContext",
    "PoolDeadLetterContext",
    "PoolEmptyContext",
    "TaskContext",
    "TerminateSignal",
]

S = TypeVar("S")
E = TypeVar("E")


class TerminateSignal(BaseException):
    """Raised by ``ctx.terminate``; a ``BaseException`` so ``except Exception`` lets it by."""

    def __init__(self, reason: str | None) -> None:
        super().__init__(reason)
        self.reason = reason


@attrs.frozen
class ContextChanges:
    """What a user function asked for through its context."""

    state_set: bool = False
    state: Any = None
    schedule: Literal["keep", "set", "cancel"] = "keep"
    schedule_at: Instant | None = None


class _Context(Generic[S]):
    """What every context shares: identity, time, attempt, state buffer, terminate."""

    def __init__(
        self, *, key: InstanceKey, now: Instant, attempt: int = 1, state: S | None = None
    ) -> None:
        self._key = key
        self._now = now
        self._attempt = attempt
        self._state = state
        self._state_set = False

    @property
    def instance_id(self) -> str:
        return self._key.instance_id

    @property
    def id(self) -> str:
        """The user id of the instance."""
        return self._key.id

    @property
    def job_name(self) -> str:
        return self._key.job_name

    @property
    def now(self) -> datetime:
        """The interpreter's clock when the run started (aware, UTC)."""
        return to_datetime(self._now)

    @property
    def attempt(self) -> int:
        """1 on the first try, 2 and up on retries."""
        return self._attempt

    @property
    def is_retry(self) -> bool:
        return self._attempt > 1

    def terminate(self, reason: str | None = None) -> NoReturn:
        """Stop this run at once and purge the instance (state, alarm, counters).

        In a WorkerPool ``execute`` it drops only the current event (a shard holds other
        people's events); in ``on_dead_letter`` and ``on_empty`` it only ends the hook.
        """
        raise TerminateSignal(reason)

    def changes(self) -> ContextChanges:
        """What the run asked for through this context so far."""
        return ContextChanges(state_set=self._state_set, state=self._state)

    def finish(self, returned: Any) -> ContextChanges:
        """The changes of a run that returned ``returned`` (ignored but by a reducer)."""
        return self.changes()


class _MutableState(_Context[S]):
    @property
    def state(self) -> S:
        """The live state, including changes made earlier in this run."""
        return self._state  # type: ignore[return-value]

    def set_state(self, state: S) -> None:
        """Replace the state (committed only if the run succeeds)."""
        self._state = state
        self._state_set = True

    def update_state(self, fn: Callable[[S], S]) -> None:
        """Replace the state with ``fn(state)``; does nothing while the state is ``None``."""
        if self._state is not None:
            self.set_state(fn(self._state))


class ContinuousContext(_MutableState[S]):
    """The context of a Continuous ``execute``.

    >>> ctx = ContinuousContext(key=InstanceKey("continuous", "j", "u"), now=Instant(0),
    ...                         state=1, run_count=1)
    >>> ctx.update_state(lambda n: n + 1); ctx.state, ctx.run_count
    (2, 1)
    """

    def __init__(
        self, *, key: InstanceKey, now: Instant, state: S, run_count: int, attempt: int = 1
    ) -> None:
        super().__init__(key=key, now=now, attempt=attempt, state=state)
        self._run_count = run_count

    @property
    def run_count(self) -> int:
        """1-based count of runs, this one included (retries keep the number)."""
        return self._run_count


class DebounceEventContext(_Context[S], Generic[E, S]):
    """The context of a Debounce ``on_event`` reducer, which returns the new state.

    >>> ctx = DebounceEventContext(key=InstanceKey("debounce", "j", "u"), now=Instant(0),
    ...                            event=3, state=None, event_count=1)
    >>> ctx.event, ctx.state, ctx.event_count
    (3, None, 1)
    """

    def __init__(
        self, *, key: InstanceKey, now: Instant, event: E, state: S | None, event_count: int
    ) -> None:
        super().__init__(key=key, now=now, state=state)
        self._event = event
        self._event_count = event_count

    @property
    def event(self) -> E:
        return self._event

    @property
    def state(self) -> S | None:
        """The batch so far: ``initial_state`` (or ``None``) for the first event."""
        return self._state

    @property
    def event_count(self) -> int:
        """The number of events in the batch, this one included."""
        return self._event_count

    def finish(self, returned: Any) -> ContextChanges:
        """A reducer's return value is the new state of the batch."""
        return ContextChanges(state_set=True, state=returned)


class DebounceContext(_Context[S]):
    """The context of a Debounce ``execute``: the batch, read-only.

    >>> ctx = DebounceContext(key=InstanceKey("debounce", "j", "u"), now=Instant(0), state=[1],
    ...                       event_count=1, started_at=Instant(0), flush_reason="manual")
    >>> ctx.flush_reason, ctx.event_count
    ('manual', 1)
    """

    def __init__(
        self,
        *,
        key: InstanceKey,
        now: Instant,
        state: S,
        event_count: int,
        started_at: Instant,
        flush_reason: FlushReason,
        attempt: int = 1,
    ) -> None:
        super().__init__(key=key, now=now, attempt=attempt, state=state)
        self._event_count = event_count
        self._started_at = started_at
        self._flush_reason = flush_reason

    @property
    def state(self) -> S:
        return self._state  # type: ignore[return-value]

    @property
    def event_count(self) -> int:
        return self._event_count

    @property
    def started_at(self) -> datetime:
        """When the first event of this batch arrived."""
        return to_datetime(self._started_at)

    @property
    def flush_reason(self) -> FlushReason:
        """Why this batch flushes; a retry keeps the reason of the first attempt."""
        return self._flush_reason


class TaskContext(_MutableState[S], Generic[S, E]):
    """The context of every Task hook (``on_event``, ``execute``, ``on_idle``, ``on_error``).

    >>> ctx = TaskContext(key=InstanceKey("task", "j", "u"), now=Instant(0), state=None,
    ...                   event="go", event_count=1, execute_count=0, created_at=Instant(0),
    ...                   scheduled_at=None)
    >>> ctx.schedule("5 minutes"); ctx.scheduled_at
    datetime.datetime(1970, 1, 1, 0, 5, tzinfo=datetime.timezone.utc)
    """

    def __init__(
        self,
        *,
        key: InstanceKey,
        now: Instant,
        state: S | None,
        event_count: int,
        execute_count: int,
        created_at: Instant,
        scheduled_at: Instant | None,
        event: E | None = None,
        attempt: int = 1,
        idle_reason: Literal["onEvent", "execute", "onError"] | None = None,
        error: ErrorInfo | None = None,
        error_source: Literal["onEvent", "execute"] | None = None,
    ) -> None:
        super().__init__(key=key, now=now, attempt=attempt, state=state)
        self._event = event
        self._event_count = event_count
        self._execute_count = execute_count
        self._created_at = created_at
        self._scheduled_at = scheduled_at
        self._schedule: Literal["keep", "set", "cancel"] = "keep"
        self._idle_reason = idle_reason
        self._error = error
        self._error_source = error_source
        self._first = state is None

    @property
    def state(self) -> S | None:  # type: ignore[override]
        """The live state; ``None`` until a handler sets one."""
        return self._state

    @property
    def event(self) -> E:
        """The event being handled (``on_event`` only)."""
        return self._event  # type: ignore[return-value]

    @property
    def is_first_event(self) -> bool:
        return self._first

    @property
    def event_count(self) -> int:
        """Events received so far, the current one included."""
        return self._event_count

    @property
    def execute_count(self) -> int:
        """Executions so far, the current one included."""
        return self._execute_count

    @property
    def created_at(self) -> datetime:
        return to_datetime(self._created_at)

    @property
    def idle_reason(self) -> Literal["onEvent", "execute", "onError"] | None:
        return self._idle_reason

    @property
    def error(self) -> ErrorInfo | None:
        """The failure being handled (``on_error`` only)."""
        return self._error

    @property
    def error_source(self) -> Literal["onEvent", "execute"] | None:
        return self._error_source

    @property
    def scheduled_at(self) -> datetime | None:
        """The pending schedule, including changes made earlier in this run."""
        return None if self._scheduled_at is None else to_datetime(self._scheduled_at)

    def schedule(self, when: timedelta | str | datetime) -> None:
        """Run ``execute`` at ``when``: a duration from now, or an aware ``datetime``."""
        if isinstance(when, datetime):
            at = from_datetime(when)
        else:
            at = Instant(self._now + parse_duration(when, what="ctx.schedule"))
        self._scheduled_at = at
        self._schedule = "set"

    def cancel_schedule(self) -> None:
        """Remove the pending schedule."""
        self._scheduled_at = None
        self._schedule = "cancel"

    def changes(self) -> ContextChanges:
        return ContextChanges(
            state_set=self._state_set,
            state=self._state,
            schedule=self._schedule,
            schedule_at=self._scheduled_at if self._schedule == "set" else None,
        )


class PoolContext(_Context[None], Generic[E]):
    """The context of a WorkerPool ``execute``: one event.

    >>> item = QueueItem("e1", "payload", priority=2, seq=0, enqueued_at=Instant(0))
    >>> ctx = PoolContext(key=InstanceKey("workerPool", "mail", "3"), now=Instant(5), item=item)
    >>> ctx.event, ctx.event_id, ctx.instance_index, ctx.priority, ctx.is_retry
    ('payload', 'e1', 3, 2, False)
    """

    def __init__(
        self, *, key: InstanceKey, now: Instant, item: QueueItem[E], attempt: int = 1
    ) -> None:
        super().__init__(key=key, now=now, attempt=attempt)
        self._item = item

    @property
    def event(self) -> E:
        return self._item.event

    @property
    def event_id(self) -> str:
        return self._item.event_id

    @property
    def instance_index(self) -> int:
        """The shard running this event."""
        return int(self._key.id)

    @property
    def enqueued_at(self) -> datetime:
        return to_datetime(self._item.enqueued_at)

    @property
    def priority(self) -> int:
        return self._item.priority

    @property
    def partition_key(self) -> str | None:
        return self._item.partition_key


class PoolDeadLetterContext(PoolContext[E]):
    """The context of ``on_dead_letter(event, error, ctx)``: ``attempts`` were all used."""

    def __init__(
        self, *, key: InstanceKey, now: Instant, item: QueueItem[E], attempts: int, error: ErrorInfo
    ) -> None:
        super().__init__(key=key, now=now, item=item, attempt=attempts)
        self._error = error

    @property
    def attempts(self) -> int:
        return self._attempt

    @property
    def error(self) -> ErrorInfo:
        return self._error

    @property
    def failed_at(self) -> datetime:
        return self.now


class PoolEmptyContext(_Context[None]):
    """The context of ``on_empty(ctx)``: the shard just ran out of work."""

    def __init__(self, *, key: InstanceKey, now: Instant, processed_count: int) -> None:
        super().__init__(key=key, now=now)
        self._processed = processed_count

    @property
    def instance_index(self) -> int:
        return int(self._key.id)

    @property
    def processed_count(self) -> int:
        return self._processed


# ------------------------------------------------------------------------ factories


class HookCall(NamedTuple):
    """How to call a hook: ``function(*arguments)``, where one argument is ``context``."""

    function: Callable[..., Any]
    arguments: tuple[Any, ...]
    context: _Context[Any]


def continuous_call(
    definition: ContinuousDefinition[S], command: RunUserCode, now: Instant
) -> HookCall:
    """The call of a Continuous hook.

    >>> from durable_jobs import Continuous
    >>> job = Continuous.make(state=int, schedule=Continuous.every("1 minute"), execute=print)
    >>> run = RunUserCode(InstanceKey("continuous", "j", "u"), 1, 1, ContinuousExecute(5, 1))
    >>> continuous_call(job, run, Instant(0)).context.state
    5
    """
    payload = command.payload
    assert isinstance(payload, ContinuousExecute)
    context = ContinuousContext(
        key=command.key,
        now=now,
        state=payload.state,
        run_count=payload.run_count,
        attempt=command.attempt,
    )
    return HookCall(definition.execute, (context,), context)


def debounce_call(
    definition: DebounceDefinition[Any, S], command: RunUserCode, now: Instant
) -> HookCall:
    """The call of a Debounce hook; a reducer that starts a batch sees ``initial_state``.

    >>> from durable_jobs import Debounce
    >>> job = Debounce.make(event=int, state=list[int], initial_state=list, execute=print,
    ...                     on_event=lambda c: [*c.state, c.event], flush_after="1 s")
    >>> run = RunUserCode(InstanceKey("debounce", "j", "u"), 1, 1, DebounceReduce(3, None, 1, True))
    >>> debounce_call(job, run, Instant(0)).context.state
    []
    """
    payload = command.payload
    key = command.key
    if isinstance(payload, DebounceReduce):
        assert definition.on_event is not None
        state = definition.initial() if payload.first else payload.state
        reducing = DebounceEventContext(
            key=key, now=now, event=payload.event, state=state, event_count=payload.event_count
        )
        return HookCall(definition.on_event, (reducing,), reducing)
    assert isinstance(payload, DebounceExecute)
    flushing = DebounceContext(
        key=key,
        now=now,
        state=payload.state,
        event_count=payload.event_count,
        started_at=payload.started_at,
        flush_reason=payload.flush_reason,
        attempt=command.attempt,
    )
    return HookCall(definition.execute, (flushing,), flushing)


def task_call(definition: TaskDefinition[S, E], command: RunUserCode, now: Instant) -> HookCall:
    """The call of a Task hook (``on_event``, ``execute``, ``on_idle`` or ``on_error``)."""
    payload = command.payload
    event: Any = None
    idle_reason: Literal["onEvent", "execute", "onError"] | None = None
    error: ErrorInfo | None = None
    source: Literal["onEvent", "execute"] | None = None
    match payload:
        case TaskOnEvent():
            function, event = definition.on_event, payload.event
        case TaskExecute():
            function = definition.execute
        case TaskOnIdle():
            assert definition.on_idle is not None
            function, idle_reason = definition.on_idle, payload.reason
        case TaskOnError():
            assert definition.on_error is not None
            function, error, source = definition.on_error, payload.error, payload.source
        case _:
            raise TypeError(f"not a Task hook: {payload!r}")
    view = payload.task
    context: TaskContext[S, E] = TaskContext(
        key=command.key,
        now=now,
        state=view.state,
        event=event,
        event_count=view.event_count,
        execute_count=view.execute_count,
        created_at=view.created_at,
        scheduled_at=view.scheduled_at,
        attempt=command.attempt,
        idle_reason=idle_reason,
        error=error,
        error_source=source,
    )
    return HookCall(function, (context,), context)


def pool_call(definition: WorkerPoolDefinition[E], command: RunUserCode, now: Instant) -> HookCall:
    """The call of a WorkerPool hook; ``on_dead_letter`` takes ``(event, error, ctx)``."""
    payload = command.payload
    key = command.key
    match payload:
        case PoolExecute(item=item):
            running: PoolContext[E] = PoolContext(
                key=key, now=now, item=item, attempt=command.attempt
            )
            return HookCall(definition.execute, (running,), running)
        case PoolOnDeadLetter(item=item, error=error):
            assert definition.on_dead_letter is not None
            dead: PoolDeadLetterContext[E] = PoolDeadLetterContext(
                key=key, now=now, item=item, attempts=command.attempt, error=error
            )
            return HookCall(definition.on_dead_letter, (item.event, error, dead), dead)
        case PoolOnEmpty(processed_count=count):
            assert definition.on_empty is not None
            empty = PoolEmptyContext(key=key, now=now, processed_count=count)
            return HookCall(definition.on_empty, (empty,), empty)
        case (
            ContinuousExecute()
            | DebounceReduce()
            | DebounceExecute()
            | TaskOnEvent()
            | TaskExecute()
            | TaskOnIdle()
            | TaskOnError()
        ):
            raise TypeError(f"not a WorkerPool hook: {payload!r}")
        case _:
            assert_never(payload)
