"""The contract suite's fixture: one harness per interpreter.

Every test in ``tests/contract/`` takes ``make`` and runs unchanged on every interpreter
listed in ``INTERPRETERS``. An interpreter joins the suite by adding a factory that
returns an object with the ``Harness`` surface: ``client()``, ``now()``, ``advance()``,
``advance_to()``, ``next_alarm_at()`` and ``telemetry``.

``deploy`` stands for deploying new code over stored data (state versions, issue 10
§5): its first call opens an interpreter with a registry; each later call closes it and
opens one with the next registry over the same data. SQLite reopens the same file. The
memory interpreter keeps Python objects and is gone when its process ends, so a new
registry never meets its old values by itself; its ``deploy`` moves the old store's
contents (snapshots with their alarms, dead letters, telemetry, queue rows) into the new
interpreter through the core's ``Codec`` of each side, as every persistent store does:
the old code encodes, the new code decodes (and migrates).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

import pytest

from durable_jobs import Client, Jobs, TelemetryEvent
from durable_jobs.interpreters._queue import ShardQueue
from durable_jobs.interpreters.clock import ManualClock
from durable_jobs.interpreters.memory import MemoryInterpreter
from durable_jobs.interpreters.sqlite import SqliteInterpreter
from durable_jobs.protocol import Codec, CommitPlan

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class Harness(Protocol):
    @property
    def telemetry(self) -> Sequence[TelemetryEvent]: ...
    def client(self, *, wait: timedelta | str | None = None) -> Client: ...
    def now(self) -> datetime: ...
    def advance(self, duration: timedelta | str) -> None: ...
    def advance_to(self, when: datetime) -> None: ...
    def next_alarm_at(self) -> datetime | None: ...


Make = Callable[[Jobs], Harness]


def _memory(jobs: Jobs, folder: Path) -> Harness:
    return MemoryInterpreter(jobs, start=START)


def _sqlite(jobs: Jobs, folder: Path) -> Harness:
    return SqliteInterpreter(jobs, folder / "jobs.db", clock=ManualClock(START), inline=True)


INTERPRETERS: dict[str, Callable[[Jobs, Path], Harness]] = {"memory": _memory, "sqlite": _sqlite}


@pytest.fixture(params=sorted(INTERPRETERS))
def make(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Make]:
    factory = INTERPRETERS[request.param]
    made: list[Harness] = []

    def build(jobs: Jobs) -> Harness:
        folder = tmp_path / str(len(made))
        folder.mkdir()
        made.append(factory(jobs, folder))
        return made[-1]

    yield build
    for harness in made:
        close = getattr(harness, "close", None)
        if close is not None:
            close()


Deploy = Callable[[Jobs], Harness]


def _memory_deploy(old: MemoryInterpreter, jobs: Jobs) -> MemoryInterpreter:
    """A memory interpreter running ``jobs`` over ``old``'s data, carried through JSON."""
    new = MemoryInterpreter(jobs, start=old.now())
    before, after = old._memory, new._memory
    old_codecs = {name: Codec(definition) for name, definition in old.jobs.items()}
    codecs = {name: Codec(definition) for name, definition in jobs.items()}
    alarms = sorted(before._alarms.items(), key=lambda item: item[1][1])  # in setting order
    for instance_id, (at, _) in alarms:
        snapshot = before.snapshots[instance_id]
        name = snapshot.key.job_name
        text = old_codecs[name].encode_snapshot(snapshot)
        moved = codecs[name].decode_snapshot(text, instance=instance_id)
        plan = CommitPlan(snapshot.key, None, "put", moved, alarm_changed=True, alarm_at=at)
        after.commit(jobs[name], plan)
    for instance_id, snapshot in before.snapshots.items():
        if instance_id not in before._alarms:
            name = snapshot.key.job_name
            text = old_codecs[name].encode_snapshot(snapshot)
            moved = codecs[name].decode_snapshot(text, instance=instance_id)
            after.commit(jobs[name], CommitPlan(snapshot.key, None, "put", moved))
    after.dead = [
        codecs[d.job_name].decode_dead_letter(
            json.loads(json.dumps(old_codecs[d.job_name].encode_dead_letter(d)))
        )
        for d in before.dead
    ]
    after.telemetry = [
        codecs[e.job_name].decode_event(
            json.loads(json.dumps(old_codecs[e.job_name].encode_event(e)))
        )
        for e in before.telemetry
    ]
    for instance_id, queue in before._queues.items():
        name = before.snapshots[instance_id].key.job_name
        moved_queue = ShardQueue()
        for item in queue._items.values():
            text = old_codecs[name].encode_item(item)
            moved_queue.put(
                codecs[name].decode_item(text, instance=instance_id, event_id=item.event_id)
            )
        for record in sorted(queue._finished.values(), key=lambda r: r.finished_at):
            moved_queue.put_finished(record)
        after._queues[instance_id] = moved_queue
    return new


@pytest.fixture(params=sorted(INTERPRETERS))
def deploy(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Deploy]:
    live: list[Harness] = []

    def build(jobs: Jobs) -> Harness:
        if not live:
            live.append(INTERPRETERS[request.param](jobs, tmp_path))
        elif isinstance(live[-1], MemoryInterpreter):
            live.append(_memory_deploy(live[-1], jobs))
        else:
            old = live[-1]
            assert isinstance(old, SqliteInterpreter)
            old.close()
            clock = ManualClock(old.now())
            live.append(SqliteInterpreter(jobs, tmp_path / "jobs.db", clock=clock, inline=True))
        return live[-1]

    yield build
    for harness in live:
        close = getattr(harness, "close", None)
        if close is not None:
            close()


def types(events: Sequence[TelemetryEvent]) -> list[str]:
    """The event names, in order."""
    return [event.type for event in events]
