"""The in-memory queue store of one WorkerPool shard: the core's queue primitive in dicts.

Theory of operation: pending items are kept one per event id in a dict, with an ordered
index of keys ``(-priority, seq, event_id)`` — a list of sorted blocks of bounded size,
so adding, removing, finding the head and ranking an item cost O(log n + n / BLOCK)
instead of O(n). A heap by ``seq`` (with lazy deletion) finds the oldest item for
``oldest_enqueued_at``. Delayed items (with a ``due_at``) share the dict but sit in a
second ordered index of keys ``(due_at, seq, event_id)``, out of the queue's index and
the heap, until they are released. Finished-event records sit in a dict plus a deque in finish
order; expired ones are found from the front of the deque, stale deque entries (records
deleted or replaced since) are dropped as they are met. This module decides nothing:
it stores, indexes and answers what ``QueueReads`` asks.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, insort
from collections import deque
from typing import Any

from durable_jobs import Instant
from durable_jobs.protocol import FinishedEvent, QueueItem, QueueReads, QueueView

__all__ = ["ShardQueue", "SortedKeys"]

Key = tuple[int, int, str]

BLOCK = 512


class SortedKeys:
    """A sorted collection of unique keys with cheap insert, delete, min and rank.

    >>> keys = SortedKeys()
    >>> for k in [(0, 3, "c"), (-1, 2, "b"), (0, 1, "a")]:
    ...     keys.add(k)
    >>> keys.first(), keys.rank((0, 3, "c")), len(keys)
    ((-1, 2, 'b'), 2, 3)
    """

    def __init__(self) -> None:
        self._blocks: list[list[Key]] = []
        self._maxes: list[Key] = []
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def add(self, key: Key) -> None:
        self._size += 1
        if not self._blocks:
            self._blocks.append([key])
            self._maxes.append(key)
            return
        i = min(bisect_left(self._maxes, key), len(self._blocks) - 1)
        block = self._blocks[i]
        insort(block, key)
        self._maxes[i] = block[-1]
        if len(block) > 2 * BLOCK:
            self._blocks[i : i + 1] = [block[:BLOCK], block[BLOCK:]]
            self._maxes[i : i + 1] = [block[BLOCK - 1], block[-1]]

    def remove(self, key: Key) -> None:
        i = bisect_left(self._maxes, key)
        block = self._blocks[i]
        j = bisect_left(block, key)
        if block[j] != key:  # pragma: no cover - callers only remove stored keys
            raise KeyError(key)
        del block[j]
        self._size -= 1
        if block:
            self._maxes[i] = block[-1]
        else:
            del self._blocks[i]
            del self._maxes[i]

    def first(self) -> Key | None:
        return self._blocks[0][0] if self._blocks else None

    def smallest(self, count: int) -> list[Key]:
        """The first ``count`` keys (fewer when there are fewer), in order."""
        found: list[Key] = []
        for block in self._blocks:
            found += block[: count - len(found)]
            if len(found) == count:
                break
        return found

    def rank(self, key: Key) -> int:
        """How many keys sort before ``key``."""
        i = bisect_left(self._maxes, key)
        before = sum(len(block) for block in self._blocks[:i])
        if i == len(self._blocks):
            return before
        return before + bisect_left(self._blocks[i], key)


def _key(item: QueueItem[Any]) -> Key:
    return (-item.priority, item.seq, item.event_id)


def _due_key(item: QueueItem[Any]) -> Key:
    assert item.due_at is not None
    return (item.due_at, item.seq, item.event_id)


class ShardQueue:
    """Pending items and finished records of one shard."""

    def __init__(self) -> None:
        self._items: dict[str, QueueItem[Any]] = {}
        self._order = SortedKeys()
        self._delayed = SortedKeys()
        self._by_seq: list[tuple[int, str]] = []
        self._finished: dict[str, FinishedEvent] = {}
        self._finish_order: deque[FinishedEvent] = deque()

    def __len__(self) -> int:
        return len(self._items)

    # ------------------------------------------------------------------ commands
    def put(self, item: QueueItem[Any]) -> None:
        self._items[item.event_id] = item
        if item.due_at is not None:
            self._delayed.add(_due_key(item))
            return
        self._order.add(_key(item))
        heapq.heappush(self._by_seq, (item.seq, item.event_id))

    def release(self, item: QueueItem[Any]) -> None:
        """The delayed item of ``item.event_id`` becomes ``item``, pending."""
        delayed = self._items.get(item.event_id)
        if delayed is None or delayed.due_at is None:  # pragma: no cover - core releases
            return  # only stored delayed items
        self._delayed.remove(_due_key(delayed))
        del self._items[item.event_id]
        self.put(item)

    def delete(self, event_id: str) -> None:
        item = self._items.pop(event_id, None)
        if item is None:
            return
        if item.due_at is not None:
            self._delayed.remove(_due_key(item))
        else:
            self._order.remove(_key(item))

    def clear(self) -> None:
        self._items.clear()
        self._order = SortedKeys()
        self._delayed = SortedKeys()
        self._by_seq.clear()

    def put_finished(self, record: FinishedEvent) -> None:
        self._finished[record.event_id] = record
        self._finish_order.append(record)

    def delete_finished(self, records: tuple[FinishedEvent, ...]) -> None:
        for record in records:
            if self._finished.get(record.event_id) == record:
                del self._finished[record.event_id]

    # --------------------------------------------------------------------- reads
    def view(self, reads: QueueReads) -> QueueView[Any]:
        head_key = self._order.first() if reads.head else None
        item = finished = None
        ahead = 0
        if reads.event_id is not None:
            item = self._items.get(reads.event_id)
            if item is not None and item.due_at is None:
                ahead = self._order.rank(_key(item))
            finished = self._finished.get(reads.event_id)
        expired: tuple[FinishedEvent, ...] = ()
        if reads.expired_before is not None:
            expired = self._expired(reads.expired_before, reads.limit)
        pending: list[tuple[QueueItem[Any], int]] = []
        records: list[FinishedEvent] = []
        for one in reads.event_ids:
            found = self._items.get(one)
            if found is not None:
                rank = 0 if found.due_at is not None else self._order.rank(_key(found))
                pending.append((found, rank))
            record = self._finished.get(one)
            if record is not None:
                records.append(record)
        due: list[QueueItem[Any]] = []
        next_due = None
        if reads.due_by is not None:
            for due_at, _, event_id in self._delayed.smallest(reads.due_limit + 1):
                if due_at > reads.due_by or len(due) == reads.due_limit:
                    next_due = due_at
                    break
                due.append(self._items[event_id])
        return QueueView(
            due=tuple(due),
            next_due=None if next_due is None else Instant(next_due),
            pending=tuple(pending),
            finished_records=tuple(records),
            head=None if head_key is None else self._items[head_key[2]],
            oldest=self._oldest() if reads.oldest else None,
            item=item,
            ahead=ahead,
            finished=finished,
            expired=expired,
        )

    def _oldest(self) -> QueueItem[Any] | None:
        heap = self._by_seq
        while heap:
            seq, event_id = heap[0]
            item = self._items.get(event_id)
            if item is not None and item.seq == seq and item.due_at is None:
                return item
            heapq.heappop(heap)
        return None

    def _expired(self, before: int, limit: int) -> tuple[FinishedEvent, ...]:
        found: list[FinishedEvent] = []
        order = self._finish_order
        while order and self._finished.get(order[0].event_id) != order[0]:
            order.popleft()  # deleted or replaced since it was queued
        for record in order:
            if len(found) == limit or record.finished_at >= before:
                break
            if self._finished.get(record.event_id) == record:
                found.append(record)
        return tuple(found)
