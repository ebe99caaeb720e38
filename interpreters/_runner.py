"""Running user code: the edge where exceptions become values.

Theory of operation: ``prepare(definition, command, now)`` builds the context a
``RunUserCode`` command names (with the job type's context factory from the core) and
calls the hook. What the hook returns may be a plain
value, an awaitable (``async def``), or a ``returns`` container; ``complete`` turns the
final value, or the exception, into an outcome input for the core:

* a normal return → ``UserCodeSucceeded`` with what the context buffered
  (``ctx.finish``: a Debounce reducer's return value is its new state);
* ``ctx.terminate()`` → ``TerminateRequested`` (it is a ``BaseException``, so user code
  catching ``Exception`` cannot swallow it);
* any ``Exception``, or a ``returns`` ``Failure`` → ``UserCodeFailed`` with an ``ErrorInfo``;
* a state that does not fit the job's state type → ``UserCodeFailed`` of type
  ``durable_jobs.ValidationError`` (the client raises ``ValidationError`` for it);
* with the definition's ``timeout``, a run that takes longer → ``UserCodeFailed`` of
  type ``TimeoutError``: an ``async def`` hook is cancelled, a sync one (run in a thread
  of its own, so that it can be waited for with a limit) is abandoned.

Every interpreter shares this module. ``run_sync`` drives an awaitable to completion on a
private event-loop thread, so it works inside an already running loop (Jupyter).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import inspect
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
from returns.io import IOFailure, IOResult, IOSuccess
from returns.result import Failure, Result, Success
from returns.unsafe import unsafe_perform_io

from durable_jobs import Definition, ErrorInfo, Instant, ValidationError
from durable_jobs.protocol import (
    INVALID_STATE,
    ContextChanges,
    Outcome,
    RunUserCode,
    TerminateRequested,
    TerminateSignal,
    UserCodeFailed,
    UserCodeSucceeded,
    kind_of,
    validate,
)

__all__ = ["HookRun", "prepare", "run_sync"]


class _ReturnedFailure(Exception):
    """A ``returns`` ``Failure`` that carried something other than an exception."""


def _error_info(error: BaseException) -> ErrorInfo:
    if isinstance(error, _ReturnedFailure):
        return ErrorInfo(type="Failure", message=str(error))
    return ErrorInfo.from_exception(error)


@attrs.define
class HookRun:
    """A started hook: its context and what the function returned (maybe awaitable)."""

    definition: Definition
    command: RunUserCode
    context: Any
    result: Any = None
    error: BaseException | None = None

    def complete(self, value: Any = None, error: BaseException | None = None) -> Outcome:
        """The outcome of the hook, given its final value or the exception it raised."""
        run_id = self.command.run_id
        failure = error if error is not None else self.error
        if failure is None:
            try:
                value = _unwrap(value)
            except Exception as unwrapped:
                failure = unwrapped
        if isinstance(failure, TerminateSignal):
            return TerminateRequested(run_id=run_id, reason=failure.reason)
        if failure is not None:
            return UserCodeFailed(run_id=run_id, error=_error_info(failure))
        changes: ContextChanges = self.context.finish(value)
        state = changes.state
        if changes.state_set:
            try:
                state = validate(
                    state, self.definition.state, what=f"state set by {self.command.hook}"
                )
            except ValidationError as invalid:
                return UserCodeFailed(run_id=run_id, error=ErrorInfo(INVALID_STATE, str(invalid)))
        return UserCodeSucceeded(
            run_id=run_id,
            state_set=changes.state_set,
            state=state,
            schedule=changes.schedule,
            schedule_at=changes.schedule_at,
        )


def _unwrap(value: Any) -> Any:
    """The success value of a ``returns`` container; raise for a failure."""
    if value is None:
        return None  # most hooks return nothing: skip the (slow, ABC) checks below
    if isinstance(value, IOResult):
        if isinstance(value, IOFailure):
            _raise(unsafe_perform_io(value.failure()))
        assert isinstance(value, IOSuccess)
        return unsafe_perform_io(value.unwrap())
    if isinstance(value, Result):
        if isinstance(value, Failure):
            _raise(value.failure())
        assert isinstance(value, Success)
        return value.unwrap()
    return value


def _raise(inner: Any) -> None:
    if isinstance(inner, BaseException):
        raise inner
    raise _ReturnedFailure(repr(inner))


def prepare(definition: Definition, command: RunUserCode, now: Instant) -> HookRun:
    """Build the context and call the hook; an awaitable result is left to the caller."""
    try:
        call = kind_of(definition).call(definition, command, now)
    except Exception as error:  # e.g. an initial_state factory that raises
        return HookRun(definition, command, _Empty(), error=error)
    started = HookRun(definition, command, call.context)
    try:
        started.result = call.function(*call.arguments)
    except (Exception, TerminateSignal) as error:
        started.error = error
    return started


@attrs.define
class _Empty:
    def finish(self, returned: Any) -> ContextChanges:
        return ContextChanges()


class _LoopThread:
    """One private event loop on a daemon thread, for driving coroutines from sync code."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

    def run(self, awaitable: Awaitable[Any], timeout: float | None = None) -> Any:
        """Await ``awaitable`` on the loop; with ``timeout``, cancel it when it runs out
        and raise ``_Cancelled``."""
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                threading.Thread(
                    target=loop.run_forever, name="durable-jobs-loop", daemon=True
                ).start()
                self._loop = loop
        # The task runs in a copy of the caller's context, so context variables set
        # around the hook (the interpreters' re-entrancy guard) reach its body.
        loop, context = self._loop, contextvars.copy_context()
        done: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def start() -> None:
            task = loop.create_task(_settled(awaitable, done, timeout), context=context)
            self._tasks.add(task)  # the loop keeps only weak references to tasks
            task.add_done_callback(self._tasks.discard)

        loop.call_soon_threadsafe(start)
        return done.result()


async def _settled(
    awaitable: Awaitable[Any], done: concurrent.futures.Future[Any], timeout: float | None
) -> None:
    """Await the hook and hand its result or exception to the waiting thread. Every
    exception is handed over, KeyboardInterrupt and SystemExit too: left on the task,
    asyncio would re-raise them out of the loop and kill the loop thread, and the
    caller (and every later async hook) would wait forever. With ``timeout``, the hook
    is cancelled when it runs out (``_Cancelled``; a ``TimeoutError`` the hook raises
    itself stays its own)."""
    try:
        if timeout is None:
            value = await awaitable
        else:
            try:
                async with asyncio.timeout(timeout) as scope:
                    value = await awaitable
            except TimeoutError:
                if scope.expired():
                    raise _Cancelled from None
                raise
    except asyncio.CancelledError:
        done.cancel()
        raise
    except BaseException as error:
        done.set_exception(error)
    else:
        done.set_result(value)


_LOOP = _LoopThread()


def run_sync(definition: Definition, command: RunUserCode, now: Instant) -> Outcome:
    """Run a hook to completion from synchronous code and return its outcome; with the
    definition's ``timeout``, a run that takes longer is a ``TimeoutError`` failure."""
    limit = definition.timeout
    if limit is None:
        call = prepare(definition, command, now)
    else:
        deadline = time.monotonic() + limit / 1000
        started = _in_thread(lambda: prepare(definition, command, now), limit / 1000)
        if started is None:  # the sync body is still running: abandon it
            return _timed_out(command, limit, "abandoned; what it does meanwhile still happens")
        call = started
    if call.error is not None or not inspect.isawaitable(call.result):
        return call.complete(call.result)
    left = None if limit is None else max(0.0, deadline - time.monotonic())
    try:
        value = _LOOP.run(call.result, timeout=left)
    except _Cancelled:
        assert limit is not None
        return _timed_out(command, limit, "cancelled")
    except (Exception, TerminateSignal) as error:
        return call.complete(error=error)
    return call.complete(value)


class _Cancelled(Exception):
    """An ``async def`` hook ran out of time and was cancelled."""


def _timed_out(command: RunUserCode, limit: int, what: str) -> Outcome:
    message = f"{command.hook} took longer than its timeout ({limit / 1000:g} s); {what}"
    return UserCodeFailed(run_id=command.run_id, error=ErrorInfo("TimeoutError", message))


def _in_thread(body: Callable[[], HookRun], seconds: float) -> HookRun | None:
    """``body()`` in a daemon thread of its own (with the caller's context variables),
    or ``None`` if it has not returned within ``seconds`` (it then runs on, abandoned)."""
    done: concurrent.futures.Future[HookRun] = concurrent.futures.Future()
    context = contextvars.copy_context()

    def run() -> None:
        try:
            done.set_result(context.run(body))
        except BaseException as error:  # handed to the caller, as the hook's own would be
            done.set_exception(error)

    threading.Thread(target=run, name="durable-jobs-hook", daemon=True).start()
    try:
        return done.result(timeout=seconds)
    except concurrent.futures.TimeoutError:
        return None
