"""The SQL of WorkerPool queues: loading a ``QueueView`` and changing queue rows.

Theory of operation: a pool event is one ``pool_events`` row (see ``schema``). The
pending ones are in the ``pool_queue`` partial index in processing order
(``neg_priority``, ``seq``), the delayed ones in ``pool_delayed`` by due time, the
finished ones in ``pool_finished`` by finish time. ``load_view`` reads exactly what
``QueueReads`` names (the head, the delayed events due and the next due time, the oldest
pending event, one or more ids with their rank and finished record, the expired
records), each with an index range; ``SqlQueueRows`` is the engine's ``QueueRows`` target. Taking and
finishing an event update its row instead of deleting one row and inserting another.
An event row is turned into text and back by the codec alone (``Codec.encode_item`` /
``decode_item``), which also upgrades rows of an older event version: this module holds
no versioning. A row that cannot be read (not JSON, not the job's event type, of a newer
event version, or a migration that fails) is a ``StorageError`` naming the shard and the
event, like a snapshot that cannot be read.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any, Final

import attrs
import cattrs

from durable_jobs import Instant, StorageError
from durable_jobs.interpreters.sqlite.schema import DELAYED, FINISHED, PENDING
from durable_jobs.protocol import Codec, FinishedEvent, QueueItem, QueueReads, QueueView

__all__ = ["CHUNK", "SqlQueueRows", "chunks", "load_view"]

CHUNK: Final = 500
"""Ids bound per statement (SQLite allows 32,766 parameters; fewer keeps plans cached)."""


def chunks(values: Sequence[str]) -> Iterator[tuple[Sequence[str], str]]:
    """``values`` in slices of at most ``CHUNK``, each with its ``?, ?, …`` placeholders.

    >>> [(list(part), marks) for part, marks in chunks(["a", "b"])]
    [(['a', 'b'], '?,?')]
    """
    for start in range(0, len(values), CHUNK):
        part = values[start : start + CHUNK]
        yield part, ",".join("?" * len(part))


_NO_READS: Final = QueueReads()
_EMPTY_VIEW: Final[QueueView[Any]] = QueueView()

_OLDEST: Final = """
WITH RECURSIVE levels(np) AS (
    SELECT MIN(neg_priority) FROM pool_events WHERE instance_id = ?1 AND state = 0
    UNION ALL
    SELECT (SELECT MIN(neg_priority) FROM pool_events
            WHERE instance_id = ?1 AND state = 0 AND neg_priority > np)
    FROM levels WHERE np IS NOT NULL
)
SELECT item, event_id FROM pool_events WHERE rowid IN (
    SELECT (SELECT rowid FROM pool_events WHERE instance_id = ?1 AND state = 0
            AND neg_priority = np ORDER BY seq LIMIT 1)
    FROM levels WHERE np IS NOT NULL
) ORDER BY seq LIMIT 1
"""
"""The pending event enqueued first: the first of each priority level in ``pool_queue``
(found by a loose index scan, so the cost is the number of distinct priorities times
log n, not n), then the lowest ``seq`` among them."""
_HEAD: Final = (
    "SELECT item, event_id FROM pool_events WHERE instance_id = ? AND state = 0 "
    "ORDER BY neg_priority, seq LIMIT 1"
)
_EXPIRED: Final = (
    "SELECT record, event_id FROM pool_events WHERE instance_id = ? AND state = 2 "
    "AND finished_at < ? ORDER BY finished_at LIMIT ?"
)
_CLEAR: Final = (
    "DELETE FROM pool_events WHERE instance_id = ? AND state = 0",
    "DELETE FROM pool_events WHERE instance_id = ? AND state = 3",
)
_DUE: Final = (
    "SELECT 3, item, event_id, due_at, seq FROM (SELECT item, event_id, due_at, seq"
    " FROM pool_events WHERE instance_id = ?1 AND state = 3 ORDER BY due_at, seq LIMIT ?4)"
)
"""The first delayed events by due time: those due, and one more for the next due time
(``?4`` is the batch plus one)."""
_ALARM: Final = (
    "SELECT 0, item, event_id, NULL, NULL FROM (SELECT item, event_id FROM pool_events"
    " WHERE instance_id = ?1 AND state = 0 ORDER BY neg_priority, seq LIMIT 1)"
    " UNION ALL SELECT 2, record, event_id, NULL, NULL FROM (SELECT record, event_id"
    " FROM pool_events WHERE instance_id = ?1 AND state = 2 AND finished_at < ?2"
    " ORDER BY finished_at LIMIT ?3) UNION ALL SELECT 3, item, event_id, due_at, seq"
    " FROM (SELECT item, event_id, due_at, seq FROM pool_events"
    " WHERE instance_id = ?1 AND state = 3 ORDER BY due_at, seq LIMIT ?4)"
)
"""A fired alarm needs the head, the expired records and the delayed events due: one
statement (the hot path of every pool event; with no delayed event, the third part is
one probe of an empty index range)."""
_RANK: Final = (
    "SELECT (SELECT COUNT(*) FROM pool_events WHERE instance_id = ?1 AND state = 0 "
    "AND neg_priority < ?2) + (SELECT COUNT(*) FROM pool_events WHERE instance_id = ?1 "
    "AND state = 0 AND neg_priority = ?2 AND seq < ?3)"
)
"""How many pending events are ahead of one: two index range counts."""
_EVENT_ONE: Final = (
    "SELECT event_id, state, item, neg_priority, seq, record FROM pool_events "
    "WHERE instance_id = ? AND event_id = ?"
)
_EVENT_MANY: Final = (
    "SELECT event_id, state, item, neg_priority, seq, record FROM pool_events "
    "WHERE instance_id = ? AND event_id IN ({})"
)
"""Several ids, bound one parameter each (a JSON list would end an id at NUL)."""


def load_view(
    db: sqlite3.Connection, codec: Codec, instance_id: str, reads: QueueReads
) -> QueueView[Any]:
    """The rows of one shard that ``reads`` names."""
    if reads == _NO_READS:
        return _EMPTY_VIEW  # an outcome, a pause: nothing to load
    structure = codec.converter.structure

    def item_of(row: tuple[Any, Any] | None) -> Any:
        if row is None:
            return None
        return codec.decode_item(row[0], instance=instance_id, event_id=row[1])

    def finished_of(text: object, event_id: object) -> FinishedEvent:
        try:
            record: FinishedEvent = structure(json.loads(text), FinishedEvent)  # type: ignore[arg-type]
        except Exception as error:
            raise StorageError(
                f"instance {instance_id}: stored finished event {event_id!r} cannot be read "
                f"({_describe(error)})"
            ) from None
        return record

    head = oldest = None
    expired: tuple[FinishedEvent, ...] = ()
    delayed: list[tuple[Any, Any, Any, Any]] = []
    if reads.head and reads.expired_before is not None and reads.due_by is not None:
        found: list[FinishedEvent] = []
        for kind, text, event_id, due_at, seq in db.execute(
            _ALARM, (instance_id, reads.expired_before, reads.limit, reads.due_limit + 1)
        ).fetchall():
            if kind == PENDING:
                head = (text, event_id)
            elif kind == DELAYED:
                delayed.append((due_at, seq, text, event_id))
            else:
                found.append(finished_of(text, event_id))
        expired = tuple(sorted(found, key=lambda record: record.finished_at))
    else:
        if reads.head:
            head = db.execute(_HEAD, (instance_id,)).fetchone()
        if reads.expired_before is not None:
            rows = db.execute(_EXPIRED, (instance_id, reads.expired_before, reads.limit))
            expired = tuple(finished_of(text, event_id) for text, event_id in rows.fetchall())
        if reads.due_by is not None:
            delayed = [
                (due_at, seq, text, event_id)
                for _, text, event_id, due_at, seq in db.execute(
                    _DUE, (instance_id, None, None, reads.due_limit + 1)
                ).fetchall()
            ]
    due: list[Any] = []
    next_due = None
    for due_at, _, text, event_id in sorted(delayed, key=lambda row: (row[0], row[1])):
        if reads.due_by is None or due_at > reads.due_by or len(due) == reads.due_limit:
            next_due = Instant(due_at)
            break
        due.append(item_of((text, event_id)))
    if reads.oldest:
        oldest = db.execute(_OLDEST, (instance_id,)).fetchone()
    ids = reads.event_ids if reads.event_id is None else (reads.event_id,)
    pending: dict[str, tuple[Any, int]] = {}
    records: dict[str, FinishedEvent] = {}
    if ids:
        if len(ids) == 1:
            found_rows = db.execute(_EVENT_ONE, (instance_id, ids[0])).fetchall()
        else:
            found_rows = []
            for part, marks in chunks(ids):
                query = _EVENT_MANY.format(marks)
                found_rows += db.execute(query, (instance_id, *part)).fetchall()
        for event_id, state, text, neg_priority, seq, record in found_rows:
            if state == PENDING:
                rank = db.execute(_RANK, (instance_id, neg_priority, seq)).fetchone()[0]
                pending[event_id] = (item_of((text, event_id)), rank)
            elif state == DELAYED:
                pending[event_id] = (item_of((text, event_id)), 0)
            elif state == FINISHED:
                records[event_id] = finished_of(record, event_id)
    if reads.event_id is not None:
        item, ahead = pending.get(reads.event_id, (None, 0))
        return QueueView(
            head=item_of(head),
            oldest=item_of(oldest),
            item=item,
            ahead=ahead,
            finished=records.get(reads.event_id),
            expired=expired,
            due=tuple(due),
            next_due=next_due,
        )
    return QueueView(
        pending=tuple(pending.values()),
        finished_records=tuple(records.values()),
        head=item_of(head),
        oldest=item_of(oldest),
        expired=expired,
        due=tuple(due),
        next_due=next_due,
    )


def _describe(error: Exception) -> str:
    if isinstance(error, cattrs.BaseValidationError):
        return "; ".join(cattrs.transform_error(error, path="$"))
    return f"{type(error).__name__}: {error}"


@attrs.define
class SqlQueueRows:
    """The queue-row changes of one plan, written with the connection of the open
    transaction (the engine's ``QueueRows``)."""

    db: sqlite3.Connection
    codec: Codec

    def put_items(self, instance_id: str, items: Sequence[QueueItem[Any]]) -> None:
        # Replaces only an expired finished row of the same id (the core never queues an
        # id that is pending, running or still remembered).
        encode = self.codec.encode_item
        self.db.executemany(
            "INSERT OR REPLACE INTO pool_events (instance_id, event_id, state, neg_priority,"
            " seq, item, due_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    instance_id,
                    item.event_id,
                    PENDING if item.due_at is None else DELAYED,
                    -item.priority,
                    item.seq,
                    encode(item),
                    item.due_at,
                )
                for item in items
            ],
        )

    def release_item(self, instance_id: str, item: QueueItem[Any]) -> None:
        self.db.execute(
            "UPDATE pool_events SET state = 0, due_at = NULL, item = ?"
            " WHERE instance_id = ? AND event_id = ? AND state = 3",
            (self.codec.encode_item(item), instance_id, item.event_id),
        )

    def delete_item(self, instance_id: str, event_id: str) -> None:
        self.db.execute(
            "DELETE FROM pool_events WHERE instance_id = ? AND event_id = ? AND state IN (0, 3)",
            (instance_id, event_id),
        )

    def take_item(self, instance_id: str, event_id: str) -> None:
        self.db.execute(
            "UPDATE pool_events SET state = 1 WHERE instance_id = ? AND event_id = ? AND state = 0",
            (instance_id, event_id),
        )

    def clear_queue(self, instance_id: str) -> None:
        # One statement per state, so each walks its own partial index (a literal state:
        # a bound one would not let SQLite choose the partial index).
        for statement in _CLEAR:
            self.db.execute(statement, (instance_id,))

    def put_finished(self, instance_id: str, record: FinishedEvent) -> None:
        self.db.execute(
            "INSERT INTO pool_events (instance_id, event_id, state, finished_at, record)"
            " VALUES (?, ?, 2, ?, ?) ON CONFLICT (instance_id, event_id) DO UPDATE"
            " SET state = 2, finished_at = excluded.finished_at,"
            " record = excluded.record, neg_priority = NULL, seq = NULL, item = NULL,"
            " due_at = NULL",
            (instance_id, record.event_id, record.finished_at, self._finished_text(record)),
        )

    def delete_finished(self, instance_id: str, records: tuple[FinishedEvent, ...]) -> None:
        self.db.executemany(
            "DELETE FROM pool_events WHERE instance_id = ? AND event_id = ?"
            " AND state = 2 AND finished_at = ?",
            [(instance_id, r.event_id, r.finished_at) for r in records],
        )

    def _finished_text(self, record: FinishedEvent) -> str:
        return json.dumps(self.codec.converter.unstructure(record, FinishedEvent))
