"""Instance identity.

Theory of operation: an instance is one job name plus one user id (for a pool, one shard).
Its string ``instance_id`` is built so that no two different pairs share one: each part is
escaped (``%`` → ``%25``, ``:`` → ``%3A``) before the parts are joined with ``:``. The
original joined the raw parts, so ``("a:b", "c")`` and ``("a", "b:c")`` collided
(pitfall p-14).

Decision (hardening): every id the library stores (instance ids, pool event ids, partition
keys, job names) passes ``check_id`` before anything is decided: a non-empty string of at
most ``MAX_ID_LENGTH`` characters, with no NUL and no lone surrogate. A store keeps ids
in columns and lists (SQLite's text functions end a string at NUL; UTF-8, which every
store and the wire speak, cannot hold a lone surrogate), so such an id would be stored
differently from how it is compared; refusing it in the core makes every interpreter
answer the same ``ValidationError``. Any other character (emoji, control characters) is
kept exactly; what prints ids escapes them.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Final, Literal

import attrs

from durable_jobs._errors import DurableJobsError, ValidationError

__all__ = ["MAX_ID_LENGTH", "InstanceKey", "JobType", "check_id", "instance_key"]

MAX_ID_LENGTH: Final = 1024
"""The longest id, event id, partition key or job name accepted, in characters."""

JobType = Literal["continuous", "debounce", "task", "workerPool"]


def _escape(part: str) -> str:
    if "%" not in part and ":" not in part:
        return part  # the common case: nothing to escape
    return part.replace("%", "%25").replace(":", "%3A")


@attrs.frozen
class InstanceKey:
    """The identity of one instance: job type, job name and user id.

    >>> InstanceKey("debounce", "a:b", "c").instance_id
    'debounce:a%3Ab:c'
    >>> InstanceKey("debounce", "a", "b:c").instance_id
    'debounce:a:b%3Ac'
    """

    job_type: JobType
    job_name: str
    id: str
    instance_id: str = attrs.field(init=False, eq=False, repr=False)

    @instance_id.default
    def _instance_id(self) -> str:
        return f"{self.job_type}:{_escape(self.job_name)}:{_escape(self.id)}"


@lru_cache(maxsize=8192)
def instance_key(job_type: JobType, job_name: str, id: str) -> InstanceKey:
    """``InstanceKey(job_type, job_name, id)``, shared while it is used often: keys are
    frozen, and an interpreter builds one for every request (escaping included).

    >>> instance_key("task", "t", "u") is instance_key("task", "t", "u")
    True
    """
    return InstanceKey(job_type, job_name, id)


def check_id(
    value: object, what: str = "id", error: type[DurableJobsError] = ValidationError
) -> str:
    """``value`` if it is an id every store can hold (see the module header), else
    ``error`` (a ``ValidationError`` unless told otherwise) saying why.

    >>> check_id("user-42 🚀")
    'user-42 🚀'
    >>> check_id("x\\x00y")
    Traceback (most recent call last):
    ...
    durable_jobs._errors.ValidationError: id must not contain NUL (\\x00), got 'x\\x00y'
    """
    if not isinstance(value, str) or not value:
        raise error(f"{what} must be a non-empty string, got {value!r}")
    if len(value) > MAX_ID_LENGTH:
        raise error(f"{what} is {len(value)} characters long; the most is {MAX_ID_LENGTH}")
    if "\x00" in value:
        raise error(f"{what} must not contain NUL (\\x00), got {value!r}")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise error(
                f"{what} must be valid Unicode text (it holds a lone surrogate), got {value!r}"
            ) from None
    return value
