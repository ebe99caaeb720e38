"""Instance identity.

Theory of operation: an instance is one job name plus one user id (for a pool, one shard).
Its string ``instance_id`` is built so that no two different pairs share one: each part is
escaped (``%`` → ``%25``, ``:`` → ``%3A``) before the parts are joined with ``:``. The
original joined the raw parts, so ``("a:b", "c")`` and ``("a", "b:c")`` collided
(pitfall p-14).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

import attrs

__all__ = ["InstanceKey", "JobType", "instance_key"]

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
