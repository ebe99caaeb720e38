"""Errors: exceptions at the client surface, values inside the core.

Theory of operation: inside the core nothing raises on purpose. A request that cannot be
applied becomes a ``Rejection`` value (the ``Failure`` side of ``decide``), and a failure
of user code arrives as an ``ErrorInfo`` value, never as a live exception. The client
facade turns rejections into the exceptions below, all subclasses of
``DurableJobsError``, so callers can catch the family at once.
"""

from __future__ import annotations

from typing import Literal

import attrs

__all__ = [
    "BusyError",
    "ConflictError",
    "DefinitionError",
    "DurableJobsError",
    "ErrorInfo",
    "JobNotFoundError",
    "QueueFullError",
    "Rejection",
    "RejectionKind",
    "StorageError",
    "UserCodeError",
    "ValidationError",
]


class DurableJobsError(Exception):
    """Base class of every error this library raises on purpose."""


class DefinitionError(DurableJobsError, ValueError):
    """A job definition (or a duration, cron expression, time zone) is invalid."""


class JobNotFoundError(DurableJobsError, LookupError):
    """No job of that kind is registered under that name."""


class ValidationError(DurableJobsError, ValueError):
    """An input, event or state does not fit its declared type; nothing was written."""


class QueueFullError(DurableJobsError):
    """A worker pool shard is at ``max_queue_depth``, or an instance already holds the
    most requests that may wait behind its run (``MAX_PENDING``); nothing was written."""


class ConflictError(DurableJobsError):
    """The instance is busy or changed concurrently; retrying the call is safe."""


class BusyError(ConflictError):
    """A request that asked to wait for a busy instance (``client(wait=...)``) waited as
    long as it was allowed: a run was still in flight (or requests were still queued for
    a worker). The message says which run, since when and on which worker; nothing of
    the request was written."""


class StorageError(DurableJobsError):
    """Stored data could not be read or written."""


@attrs.frozen
class ErrorInfo:
    """A failure of user code as a plain value: the exception type's name and message.

    >>> ErrorInfo.from_exception(KeyError("missing"))
    ErrorInfo(type='KeyError', message="'missing'")
    """

    type: str
    message: str

    @classmethod
    def from_exception(cls, error: BaseException) -> ErrorInfo:
        return cls(type=type(error).__name__, message=str(error))


class UserCodeError(DurableJobsError):
    """User code run for a request failed and nothing handled it; state is unchanged."""

    def __init__(self, job_name: str, hook: str, error: ErrorInfo) -> None:
        super().__init__(f"{hook} of job {job_name!r} failed: {error.type}: {error.message}")
        self.job_name = job_name
        self.hook = hook
        self.error = error


RejectionKind = Literal["busy", "invalid", "wrong_job_type", "queue_full"]


@attrs.frozen
class Rejection:
    """Why ``decide`` refused an input; nothing is written for a rejected input."""

    kind: RejectionKind
    message: str

    def error(self) -> DurableJobsError:
        """The exception a client raises for this rejection.

        >>> Rejection("busy", "a is busy").error()
        BusyError('a is busy')
        """
        if self.kind == "busy":
            return BusyError(self.message)
        if self.kind == "queue_full":
            return QueueFullError(self.message)
        if self.kind == "invalid":
            return ValidationError(self.message)
        return JobNotFoundError(self.message)
