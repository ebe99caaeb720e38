"""The client facade, shared by every interpreter.

Theory of operation: a client method validates what the caller gave (the id, and the
event or input, typed or in JSON form, through the converter), builds a request value,
hands it to the interpreter's ``Dispatcher`` and turns the reply into its result value
or an exception. Validation happens here, before the request exists, so bad input is
refused with nothing written. The facade does no IO itself; the dispatcher does.

``client.continuous(ticker)`` with the definition object keeps its type parameters, so
``get_state`` is typed as the job's state; with a name the types are ``Any``.
"""

from __future__ import annotations

from typing import Any, Generic, Protocol, TypeVar, overload

from durable_jobs._definitions import (
    ContinuousDefinition,
    DebounceDefinition,
    Definition,
    Jobs,
    TaskDefinition,
)
from durable_jobs._errors import DurableJobsError, UserCodeError, ValidationError
from durable_jobs._inputs import (
    ContinuousGetState,
    ContinuousStart,
    ContinuousStatus,
    ContinuousTerminate,
    ContinuousTrigger,
    DebounceAdd,
    DebounceClear,
    DebounceFlush,
    DebounceGetState,
    DebounceStatus,
    Request,
    TaskGetState,
    TaskSend,
    TaskStatus,
    TaskTerminate,
    TaskTrigger,
)
from durable_jobs._results import (
    ContinuousStartResult,
    ContinuousStatusResult,
    ContinuousTerminateResult,
    ContinuousTriggerResult,
    DeadLetter,
    DebounceAddResult,
    DebounceClearResult,
    DebounceFlushResult,
    DebounceStatusResult,
    Reply,
    RequestFailed,
    StateResult,
    TaskSendResult,
    TaskStatusResult,
    TaskTerminateResult,
    TaskTriggerResult,
)
from durable_jobs._serialization import validate

__all__ = [
    "INVALID_STATE",
    "Client",
    "ContinuousClient",
    "DebounceClient",
    "Dispatcher",
    "TaskClient",
]

S = TypeVar("S")
E = TypeVar("E")
R = TypeVar("R")

INVALID_STATE = "durable_jobs.ValidationError"
"""The ``ErrorInfo.type`` of a run whose user code produced a state of the wrong type."""


class Dispatcher(Protocol):
    """What an interpreter offers the client facade."""

    @property
    def jobs(self) -> Jobs: ...

    def dispatch(self, definition: Definition, request: Request) -> Reply:
        """Run ``request`` to completion (including user code it starts); its reply."""
        ...

    def dead_letters(self, definition: Definition) -> list[DeadLetter[Any]]:
        """The dead-letter records of ``definition``'s job, oldest first."""
        ...


def _check_id(id: object) -> str:
    if not isinstance(id, str) or not id:
        raise ValidationError(f"id must be a non-empty string, got {id!r}")
    return id


def _expect(reply: Reply, kind: type[R], definition: Definition) -> R:
    if isinstance(reply, RequestFailed):
        if reply.error.type == INVALID_STATE:
            raise ValidationError(reply.error.message)
        raise UserCodeError(definition.name, reply.hook, reply.error)
    if not isinstance(reply, kind):
        raise DurableJobsError(f"unexpected reply {reply!r}; expected {kind.__name__}")
    return reply


class _JobClient(Generic[R]):
    def __init__(self, dispatcher: Dispatcher, definition: Any) -> None:
        self._dispatcher = dispatcher
        self._definition = definition

    def _call(self, request: Request, kind: type[R]) -> R:
        return _expect(self._dispatcher.dispatch(self._definition, request), kind, self._definition)

    def _state(self, request: Request) -> Any:
        return _expect(
            self._dispatcher.dispatch(self._definition, request), StateResult, self._definition
        ).state

    def dead_letters(self) -> list[DeadLetter[Any]]:
        """Dead-letter records of this job, oldest first."""
        return self._dispatcher.dead_letters(self._definition)


class ContinuousClient(_JobClient[Any], Generic[S]):
    """Client actions of one Continuous job."""

    def start(self, *, id: str, input: S | Any) -> ContinuousStartResult:
        """Create the instance with ``input`` as its state (no-op when it exists)."""
        request = ContinuousStart(
            _check_id(id), validate(input, self._definition.state, what="input")
        )
        return self._call(request, ContinuousStartResult)  # type: ignore[no-any-return]

    def trigger(self, id: str) -> ContinuousTriggerResult:
        """Run ``execute`` now, outside the schedule."""
        return self._call(ContinuousTrigger(_check_id(id)), ContinuousTriggerResult)  # type: ignore[no-any-return]

    def terminate(self, id: str, reason: str | None = None) -> ContinuousTerminateResult:
        """Purge the instance; the id can be started again afterwards."""
        request = ContinuousTerminate(_check_id(id), reason)
        return self._call(request, ContinuousTerminateResult)  # type: ignore[no-any-return]

    def status(self, id: str) -> ContinuousStatusResult:
        return self._call(ContinuousStatus(_check_id(id)), ContinuousStatusResult)  # type: ignore[no-any-return]

    def get_state(self, id: str) -> S | None:
        """The instance's state, or ``None`` when there is no instance."""
        return self._state(ContinuousGetState(_check_id(id)))  # type: ignore[no-any-return]

    def dead_letters(self) -> list[DeadLetter[S]]:
        return super().dead_letters()


class DebounceClient(_JobClient[Any], Generic[E, S]):
    """Client actions of one Debounce job."""

    def add(self, *, id: str, event: E | Any) -> DebounceAddResult:
        """Fold ``event`` into the instance's batch (creating it on the first event)."""
        request = DebounceAdd(_check_id(id), validate(event, self._definition.event, what="event"))
        return self._call(request, DebounceAddResult)  # type: ignore[no-any-return]

    def flush(self, id: str) -> DebounceFlushResult:
        """Run ``execute`` over the batch now."""
        return self._call(DebounceFlush(_check_id(id)), DebounceFlushResult)  # type: ignore[no-any-return]

    def clear(self, id: str) -> DebounceClearResult:
        """Drop the batch without running ``execute``."""
        return self._call(DebounceClear(_check_id(id)), DebounceClearResult)  # type: ignore[no-any-return]

    def status(self, id: str) -> DebounceStatusResult:
        return self._call(DebounceStatus(_check_id(id)), DebounceStatusResult)  # type: ignore[no-any-return]

    def get_state(self, id: str) -> S | None:
        return self._state(DebounceGetState(_check_id(id)))  # type: ignore[no-any-return]

    def dead_letters(self) -> list[DeadLetter[S]]:
        return super().dead_letters()


class TaskClient(_JobClient[Any], Generic[S, E]):
    """Client actions of one Task job."""

    def send(self, *, id: str, event: E | Any) -> TaskSendResult:
        """Deliver ``event`` to ``on_event`` (creating the instance on the first one)."""
        request = TaskSend(_check_id(id), validate(event, self._definition.event, what="event"))
        return self._call(request, TaskSendResult)  # type: ignore[no-any-return]

    def trigger(self, id: str) -> TaskTriggerResult:
        """Run ``execute`` now; the pending schedule stays."""
        return self._call(TaskTrigger(_check_id(id)), TaskTriggerResult)  # type: ignore[no-any-return]

    def terminate(self, id: str) -> TaskTerminateResult:
        return self._call(TaskTerminate(_check_id(id)), TaskTerminateResult)  # type: ignore[no-any-return]

    def status(self, id: str) -> TaskStatusResult:
        return self._call(TaskStatus(_check_id(id)), TaskStatusResult)  # type: ignore[no-any-return]

    def get_state(self, id: str) -> S | None:
        return self._state(TaskGetState(_check_id(id)))  # type: ignore[no-any-return]

    def dead_letters(self) -> list[DeadLetter[S]]:
        return super().dead_letters()


class Client:
    """Entry point to the job clients of one interpreter; from ``interpreter.client()``."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self._dispatcher = dispatcher

    @overload
    def continuous(self, job: ContinuousDefinition[S]) -> ContinuousClient[S]: ...
    @overload
    def continuous(self, job: str) -> ContinuousClient[Any]: ...
    def continuous(self, job: str | ContinuousDefinition[Any]) -> ContinuousClient[Any]:
        definition = self._dispatcher.jobs.resolve(job, ContinuousDefinition)
        return ContinuousClient(self._dispatcher, definition)

    @overload
    def debounce(self, job: DebounceDefinition[E, S]) -> DebounceClient[E, S]: ...
    @overload
    def debounce(self, job: str) -> DebounceClient[Any, Any]: ...
    def debounce(self, job: str | DebounceDefinition[Any, Any]) -> DebounceClient[Any, Any]:
        definition = self._dispatcher.jobs.resolve(job, DebounceDefinition)
        return DebounceClient(self._dispatcher, definition)

    @overload
    def task(self, job: TaskDefinition[S, E]) -> TaskClient[S, E]: ...
    @overload
    def task(self, job: str) -> TaskClient[Any, Any]: ...
    def task(self, job: str | TaskDefinition[Any, Any]) -> TaskClient[Any, Any]:
        definition = self._dispatcher.jobs.resolve(job, TaskDefinition)
        return TaskClient(self._dispatcher, definition)
