"""What ``durable-jobs inspect`` prints: a database's instances, queues and dead letters.

Theory of operation: ``sqlite.schema.read_database`` reads the rows (read-only, at most
``--limit`` per table, with the full counts); ``show`` prints them as three tables. Each
stored snapshot is read with ``read_snapshot`` (user values left as JSON), so the
status column is the client's own word from the core's ``job_status`` (``running``;
``debouncing``/``idle``; ``active``/``idle``; ``paused``/``processing``/``idle``), with
the batch size of a Debounce and the attempt of a pending retry. With a registry
(``--jobs``), each row is also decoded with its job's ``Codec``: states and payloads are
shown as the user's types. Times are UTC.

A damaged row is shown, not fatal: a snapshot that cannot be read has the status
``unreadable``, a version or time that is not one (text, or beyond year 9999) shows as
``unreadable: 'soon'``, a dead letter that is not a JSON object as an unreadable record,
and a row the registry cannot decode as unreadable with the reason, as a worker would
find it. Every value from the database is printed through ``_output.printable`` (ids,
names and messages may hold control characters: they are shown escaped).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from durable_jobs import Instant, Jobs, StorageError
from durable_jobs.interpreters._output import add_row, print_table, printable, short, table
from durable_jobs.interpreters.sqlite.schema import (
    DatabaseView,
    StoredDeadLetter,
    StoredInstance,
    is_instant,
)
from durable_jobs.protocol import Codec, job_status, read_snapshot, to_datetime

__all__ = ["show", "status_text"]


def status_text(instance: StoredInstance) -> str:
    """The client's status word for a stored row, plus what a glance needs: the events
    of a Debounce batch, the attempt of a pending retry; ``unreadable`` for a snapshot
    that cannot be read.

    >>> row = StoredInstance("debounce:b:u", "b", "debounce", "u",
    ...     '{"schema":1,"snapshot":{"key":{"job_type":"debounce","job_name":"b","id":"u"},'
    ...     '"created_at":0,"event_count":2,"attempts":{"attempt":2,"retry_at":5}}}',
    ...     1, 5, False, None)
    >>> status_text(row)
    'debouncing, 2 event(s), attempt 2 due'

    Work a request left for a worker, or requests queued behind a run, are counted:

    >>> import attrs
    >>> row = attrs.evolve(row, snapshot_text=row.snapshot_text.replace(
    ...     '"event_count":2,', '"event_count":2,"pending":[{"kind":"flush","at":9}],'))
    >>> status_text(row)
    'debouncing, 2 event(s), attempt 2 due, 1 pending for a worker (flush)'
    """
    snapshot = _snapshot(instance)
    if snapshot is None:
        return "unreadable"
    word = job_status(snapshot)
    if instance.job_type == "debounce" and snapshot.event_count:
        word += f", {snapshot.event_count} event(s)"
    if snapshot.attempts.retry_at is not None:
        word += f", attempt {snapshot.attempts.attempt} due"
    owed = getattr(snapshot, "pending", ())
    if owed:
        word += f", {len(owed)} pending for a worker ({', '.join(p.kind for p in owed[:3])}"
        word += ", ...)" if len(owed) > 3 else ")"
    return word


def _snapshot(instance: StoredInstance) -> Any:
    try:
        return read_snapshot(
            instance.snapshot_text, instance.job_type, instance=instance.instance_id
        )
    except StorageError:
        return None


def _when(millis: object) -> str:
    """An epoch-milliseconds instant as ``YYYY-MM-DD HH:MM:SS`` (UTC); ``-`` for none.

    >>> _when(0), _when(None), _when("soon")
    ('1970-01-01 00:00:00', '-', "unreadable: 'soon'")
    """
    if millis is None:
        return "-"
    if not is_instant(millis):
        return _unreadable(millis)
    return to_datetime(Instant(millis)).strftime("%Y-%m-%d %H:%M:%S")


def _unreadable(value: object) -> str:
    return short(f"unreadable: {value!r}", 40)


def _version(value: object) -> str:
    return str(value) if type(value) is int else _unreadable(value)


def _iso_time(value: object) -> str:
    """A stored ISO time as ``YYYY-MM-DD HH:MM:SS`` in UTC; other values as they are."""
    try:
        moment = datetime.fromisoformat(str(value))
        if moment.tzinfo is not None:
            moment = moment.astimezone(UTC)
    except (ValueError, OverflowError):
        return str(value)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _lease(instance: StoredInstance, now: int) -> str:
    lease = instance.lease_until
    if not instance.running:
        return "-"
    if lease is None:
        return "running, no lease (unreadable)"
    if not is_instant(lease):
        return f"running, lease {_unreadable(lease)}"
    expired = " (expired)" if lease <= now else ""
    return f"running, lease until {_when(lease)}{expired}"


def _section(console: Console, title: str, rows: Table, shown: int, total: int) -> None:
    """A title with the row count, then the table (or ``none``)."""
    console.out("")
    if not total:
        console.out(f"{title}: none")
        return
    limited = "" if shown >= total else f", showing {shown} (--limit)"
    console.out(f"{title} ({total}{limited})")
    print_table(console, rows)


def _json_object(text: str) -> dict[str, Any]:
    """A stored JSON object; ``{}`` when the text is not one (shown as unreadable)."""
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def show(view: DatabaseView, jobs: Jobs | None, console: Console) -> None:
    """Print ``view`` as three tables; with ``jobs``, decode rows with its codecs."""
    codecs = {name: Codec(definition) for name, definition in jobs.items()} if jobs else {}
    console.out(
        f"{printable(view.path)}: schema {view.schema}, {view.instance_count} instance(s), "
        f"{view.queued_count} queued event(s), {view.delayed_count} delayed, "
        f"{view.dead_letter_count} dead letter(s), "
        f"{view.telemetry_count} telemetry event(s). Times are UTC."
    )

    columns = ["type", "job", "id", "status", "next alarm", "version", "running / lease"]
    if jobs is not None:
        columns.append("state (decoded)")
    rows = table(*columns, right=("version",), wrap=("running / lease", "state (decoded)"))
    now = time.time_ns() // 1_000_000
    for instance in view.instances:
        row = [
            instance.job_type,
            instance.job_name,
            instance.id,
            status_text(instance),
            _when(instance.alarm_at),
            _version(instance.version),
            _lease(instance, now),
        ]
        if jobs is not None:
            row.append(_decoded_state(instance, codecs))
        add_row(rows, *row)
    _section(console, "Instances", rows, len(view.instances), view.instance_count)

    rows = table(
        "pool",
        "shard",
        "status",
        "queued",
        "delayed",
        "current",
        "processed",
        "dead-lettered",
        right=("queued", "delayed", "processed", "dead-lettered"),
    )
    for shard in view.shards:
        snapshot = _snapshot(shard.instance)
        current = None if snapshot is None else snapshot.current
        add_row(
            rows,
            shard.job_name,
            shard.instance.id,
            status_text(shard.instance),
            str(shard.queued_rows),
            str(shard.delayed_rows),
            "?" if snapshot is None else "-" if current is None else current.event_id,
            "?" if snapshot is None else str(snapshot.processed_count),
            "?" if snapshot is None else str(snapshot.dead_lettered_count),
        )
    _section(console, "Worker pool shards", rows, len(view.shards), view.shard_count)

    rows = table(
        "job",
        "id",
        "error",
        "attempts",
        "failed at",
        "payload",
        right=("attempts",),
        wrap=("error", "payload"),
    )
    for letter in view.dead_letters:
        record = _json_object(letter.record_text)
        if not record:
            add_row(rows, letter.job_name, "?", "unreadable record", "?", "?", "?")
            continue
        error = record.get("error")
        error = error if isinstance(error, dict) else {}
        add_row(
            rows,
            letter.job_name,
            str(record.get("id", "?")),
            f"{error.get('type', '?')}: {error.get('message', '?')}",
            str(record.get("attempts", "?")),
            _iso_time(record.get("failed_at")),
            _payload(letter, record, codecs, decode=jobs is not None),
        )
    title = (
        "Dead letters"
        if len(view.dead_letters) >= view.dead_letter_count
        else "Dead letters, newest"
    )
    _section(console, title, rows, len(view.dead_letters), view.dead_letter_count)


def _decoded_state(instance: StoredInstance, codecs: dict[str, Codec]) -> str:
    codec = codecs.get(instance.job_name)
    if codec is None or codec.definition.job_type != instance.job_type:
        return f"(no {instance.job_type} job {instance.job_name!r} in the registry)"
    try:
        snapshot = codec.decode_snapshot(instance.snapshot_text, instance=instance.instance_id)
    except StorageError as error:
        return short(f"unreadable: {error}")
    if instance.job_type == "workerPool":
        return "-"  # a shard has no state; its events are in the queue
    return short(repr(snapshot.state))


def _payload(
    letter: StoredDeadLetter, record: dict[str, Any], codecs: dict[str, Codec], *, decode: bool
) -> str:
    if not decode:
        return short(json.dumps(record.get("payload"), separators=(",", ":")), 40)
    codec = codecs.get(letter.job_name)
    if codec is None:
        return f"(no job {letter.job_name!r} in the registry)"
    try:
        return short(repr(codec.decode_dead_letter(record).payload))
    except StorageError as error:
        return short(f"unreadable: {error}")
