"""The rows of a WorkerPool shard's queue, and how the core reads them.

Theory of operation: pending events are not kept inside a shard's snapshot (it would
grow with the queue). Each is one ``QueueItem`` row that the interpreter stores in an
index ordered by (priority descending, sequence ascending); a *delayed* event (enqueued
with ``delay``/``at``, not yet due) is a ``QueueItem`` with a ``due_at``, kept in a second
index ordered by (due time, sequence) until the core releases it into the queue; each
finished event id is a ``FinishedEvent`` row, kept for idempotent enqueue until it
expires. Before ``decide``
runs on a shard, the interpreter loads only the rows that ``QueueReads`` names into a
``QueueView``; the core changes rows through the queue commands (``PutQueueItem`` …).
This module holds the values only; the rules are in ``_pool``.
"""

from __future__ import annotations

from typing import Final, Generic, Literal, TypeVar

import attrs

from durable_jobs._time import Instant

__all__ = ["DUE_BATCH", "PRUNE_BATCH", "FinishedEvent", "QueueItem", "QueueReads", "QueueView"]

E = TypeVar("E")

PRUNE_BATCH: Final = 32
"""At most this many expired finished-event records are pruned per step."""

DUE_BATCH: Final = 64
"""At most this many delayed events that fell due join the queue per step."""


@attrs.frozen
class QueueItem(Generic[E]):
    """One pending or delayed event of a shard, as stored by the interpreter.

    ``due_at`` is set while the event is delayed (it is then in the delayed index, not
    in the queue); ``None`` once it is in the queue (enqueued at once, or released).
    """

    event_id: str
    event: E
    priority: int
    seq: int
    enqueued_at: Instant
    partition_key: str | None = None
    due_at: Instant | None = None


@attrs.frozen
class FinishedEvent:
    """An event id that finished, remembered for idempotent enqueue until it expires."""

    event_id: str
    finished_at: Instant
    outcome: Literal["completed", "dead_lettered", "terminated"]


@attrs.frozen
class QueueReads:
    """What an interpreter loads into the ``QueueView`` for one input (nothing else)."""

    head: bool = False
    oldest: bool = False
    event_id: str | None = None
    expired_before: Instant | None = None
    limit: int = PRUNE_BATCH
    event_ids: tuple[str, ...] = ()
    """For a ``PoolEnqueueMany``: the ids whose pending item (with its rank) and finished
    record the view must hold."""
    due_by: Instant | None = None
    """Load the delayed events due at or before this time (``QueueView.due``), and the due
    time of the delayed event after them (``QueueView.next_due``)."""
    due_limit: int = DUE_BATCH


@attrs.frozen
class QueueView(Generic[E]):
    """The queue rows ``decide`` may see for one input (loaded per ``QueueReads``).

    ``head`` is the next pending event in processing order, ``oldest`` the pending event
    enqueued first; ``item``, ``ahead`` (pending events ordered before it) and
    ``finished`` are about ``QueueReads.event_id``; ``expired`` are finished records older
    than ``QueueReads.expired_before``, at most ``QueueReads.limit`` of them.
    ``pending`` (each found item with its ``ahead``) and ``finished_records`` answer
    ``QueueReads.event_ids``; ids with neither are simply absent. A found item may be a
    delayed one (its ``due_at`` is set; its ``ahead`` is then 0: it is not in line).
    ``due`` are the delayed events due by ``QueueReads.due_by`` in (``due_at``, ``seq``)
    order, at most ``QueueReads.due_limit``; ``next_due`` is the due time of the first
    delayed event after them, due or not (``None``: there is none).
    """

    head: QueueItem[E] | None = None
    oldest: QueueItem[E] | None = None
    item: QueueItem[E] | None = None
    ahead: int = 0
    finished: FinishedEvent | None = None
    expired: tuple[FinishedEvent, ...] = ()
    pending: tuple[tuple[QueueItem[E], int], ...] = ()
    finished_records: tuple[FinishedEvent, ...] = ()
    due: tuple[QueueItem[E], ...] = ()
    next_due: Instant | None = None
