"""State and event versions in the pure core (issue 10 §5): ``make`` checks the options,
``Codec`` upgrades stored states (and a WorkerPool's stored events: queue rows, the
snapshot's current event, dead letters) when it reads them and refuses what it cannot
upgrade.

The laws: reading a value written by the code's own version never calls the migration;
reading a v1 value with v3 code (two steps at once) equals reading it with v2 code,
writing it back, and reading that with v3 code.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from durable_jobs import (
    Continuous,
    DeadLetter,
    Debounce,
    DefinitionError,
    ErrorInfo,
    Instant,
    Jobs,
    StorageError,
    Task,
    WorkerPool,
)
from durable_jobs.protocol import (
    EVENT_VERSION_KEY,
    STATE_VERSION_KEY,
    Codec,
    ContinuousSnapshot,
    InstanceKey,
    Pending,
    PoolSnapshot,
    QueueItem,
    TaskSnapshot,
    read_snapshot,
)


@attrs.frozen
class V1:
    count: int


@attrs.frozen
class V2:
    total: int
    unit: str


@dataclasses.dataclass(frozen=True)
class V3:
    total: int
    unit: str
    tags: tuple[str, ...]


def step(data: Any, version: int) -> Any:
    """v1 → v2 → v3, one version at a time."""
    if version == 1:
        return {"total": data["count"], "unit": "runs"}
    if version == 2:
        return {**data, "tags": []}
    raise AssertionError(f"no step from {version}")


def ignore(ctx: Any) -> None:
    return None


Maker = Callable[..., Any]  # a Continuous, Debounce or Task definition
MAKERS: dict[str, Maker] = {
    "continuous": lambda **o: Continuous.make(
        schedule=Continuous.every("1 minute"), execute=ignore, **o
    ),
    "debounce": lambda **o: Debounce.make(
        event=int, execute=ignore, on_event=ignore, flush_after="1 minute", **o
    ),
    "task": lambda **o: Task.make(event=int, on_event=ignore, execute=ignore, **o),
}


def task(state: type, **options: Any) -> Codec:
    job = Task.make(state=state, event=int, on_event=ignore, execute=ignore, **options)
    return Codec(Jobs(t=job)["t"])


def continuous(state: type, **options: Any) -> Codec:
    job = Continuous.make(
        state=state, schedule=Continuous.every("1 minute"), execute=ignore, **options
    )
    return Codec(Jobs(c=job)["c"])


KEY = InstanceKey("task", "t", "u")
V1_CODEC = task(V1)
V2_CODEC = task(V2, state_version=2, migrate_state=step)
V3_CODEC = task(V3, state_version=3, migrate_state=step)


def stored(codec: Codec, state: Any) -> str:
    return codec.encode_snapshot(TaskSnapshot(KEY, Instant(0), state=state))


# ---------------------------------------------------------------------- definitions


@pytest.mark.parametrize("kind", sorted(MAKERS))
@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"state_version": 0}, "state_version must be an int >= 1, got 0"),
        ({"state_version": True}, "state_version must be an int >= 1, got True"),
        ({"state_version": "2"}, "state_version must be an int >= 1, got '2'"),
        ({"state_version": 2}, "state_version 2 needs migrate_state"),
        ({"state_version": 2, "migrate_state": 3}, "migrate_state must be a function"),
        ({"migrate_state": step}, "migrate_state is never called while state_version is 1"),
    ],
)
def test_make_refuses_a_bad_version_or_migration(
    kind: str, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(DefinitionError, match=message):
        MAKERS[kind](state=V2, **options)


@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_make_keeps_the_version_and_the_migration(kind: str) -> None:
    definition = MAKERS[kind](state=V2, state_version=2, migrate_state=step)
    assert (definition.state_version, definition.migrate_state) == (2, step)
    assert MAKERS[kind](state=V2).state_version == 1


# -------------------------------------------------------------------------- reading


def test_the_envelope_records_the_version_and_a_row_without_one_is_version_1() -> None:
    assert json.loads(stored(V2_CODEC, V2(1, "x")))[STATE_VERSION_KEY] == 2
    before = '{"schema":1,"snapshot":{"key":{"job_type":"task","job_name":"t","id":"u"},'
    before += '"created_at":0,"state":{"count":4}}}'  # as every release before wrote it
    assert V2_CODEC.decode_snapshot(before).state == V2(4, "runs")
    assert V1_CODEC.decode_snapshot(before).state == V1(4)


def test_a_state_from_newer_code_is_a_storage_error_naming_both_versions() -> None:
    with pytest.raises(StorageError, match=r"task:t:u: stored state version 3 of 't' is newer"):
        V2_CODEC.decode_snapshot(stored(V3_CODEC, V3(1, "x", ())), instance="task:t:u")
    with pytest.raises(StorageError, match=r"version 2 of 't' is newer .* state_version 1"):
        V1_CODEC.decode_snapshot(stored(V2_CODEC, V2(1, "x")), instance="task:t:u")


@pytest.mark.parametrize("version", ["2", 0, None, True, 1.5])
def test_a_stored_version_that_is_not_one_is_a_storage_error(version: Any) -> None:
    record = json.loads(stored(V1_CODEC, V1(1)))
    record[STATE_VERSION_KEY] = version
    with pytest.raises(StorageError, match=r"task:t:u: stored state version .* not an int"):
        V2_CODEC.decode_snapshot(json.dumps(record), instance="task:t:u")


def test_a_migration_that_raises_is_a_storage_error_naming_instance_and_versions() -> None:
    def broken(data: Any, version: int) -> Any:
        return {"total": data["cuont"], "unit": "runs"}

    codec = task(V2, state_version=2, migrate_state=broken)
    with pytest.raises(
        StorageError,
        match=r"task:t:u: migrate_state of 't' failed from state version 1 to 2 "
        r"\(KeyError: 'cuont'\)",
    ):
        codec.decode_snapshot(stored(V1_CODEC, V1(1)), instance="task:t:u")


def test_a_migration_whose_result_does_not_fit_is_a_storage_error_naming_versions() -> None:
    codec = task(V2, state_version=2, migrate_state=lambda data, version: V2(1, "typed"))
    with pytest.raises(
        StorageError,
        match=r"task:t:u: stored snapshot \(its state migrated from version 1 to 2\) "
        r"does not fit 't'",
    ):
        codec.decode_snapshot(stored(V1_CODEC, V1(1)), instance="task:t:u")


def test_no_state_is_never_migrated() -> None:
    def never(data: Any, version: int) -> Any:
        raise AssertionError("called")

    codec = task(V2, state_version=2, migrate_state=never)
    assert codec.decode_snapshot(stored(V1_CODEC, None)).state is None


def test_read_snapshot_without_the_registry_leaves_the_state_as_stored() -> None:
    assert read_snapshot(stored(V1_CODEC, V1(3)), "task").state == {"count": 3}
    assert read_snapshot(stored(V2_CODEC, V2(3, "x")), "task").state == {"total": 3, "unit": "x"}


# --------------------------------------------------------- dead letters, telemetry


def letter(payload: Any) -> DeadLetter[Any]:
    when = datetime(2026, 1, 1, tzinfo=UTC)
    error = ErrorInfo("RuntimeError", "down")
    return DeadLetter("task", "t", "u", "task:t:u", payload, error, 1, when)


def test_a_dead_letter_carries_its_version_above_1_and_is_migrated_when_read() -> None:
    old = json.loads(json.dumps(V1_CODEC.encode_dead_letter(letter(V1(2)))))
    assert STATE_VERSION_KEY not in old  # what every earlier release reads
    assert V2_CODEC.decode_dead_letter(old) == letter(V2(2, "runs"))
    new = V2_CODEC.encode_dead_letter(letter(V2(2, "x")))
    assert new[STATE_VERSION_KEY] == 2
    assert V2_CODEC.decode_dead_letter(new) == letter(V2(2, "x"))
    with pytest.raises(StorageError, match="task:t:u: stored state version 2 of 't' is newer"):
        V1_CODEC.decode_dead_letter(new)


def test_a_dead_letter_whose_migration_does_not_fit_names_the_versions() -> None:
    codec = task(V2, state_version=2, migrate_state=lambda data, version: {"total": 1})
    old = V1_CODEC.encode_dead_letter(letter(V1(2)))
    with pytest.raises(StorageError, match=r"migrated from version 1 to 2\) cannot be read"):
        codec.decode_dead_letter(old)


def test_a_job_started_event_is_migrated_when_read() -> None:
    from durable_jobs import JobStarted

    event = JobStarted(
        job_type="continuous", job_name="c", instance_id="continuous:c:u", id="u",
        timestamp=Instant(0), input=V1(5),
    )  # fmt: skip
    old = continuous(V1).encode_event(event)
    new_codec = continuous(V2, state_version=2, migrate_state=step)
    assert new_codec.decode_event(old) == attrs.evolve(event, input=V2(5, "runs"))
    written = new_codec.encode_event(attrs.evolve(event, input=V2(5, "x")))
    assert written[STATE_VERSION_KEY] == 2
    assert new_codec.decode_event(written).input == V2(5, "x")  # type: ignore[union-attr]


# ------------------------------------------------------------------------------ laws

COUNTS = st.integers(min_value=-(2**63) + 1, max_value=2**63 - 1)


@given(COUNTS, st.text())
def test_a_state_of_the_current_version_reads_back_without_a_migration(
    total: int, unit: str
) -> None:
    calls: list[int] = []

    def counting(data: Any, version: int) -> Any:
        calls.append(version)
        return step(data, version)

    codec = task(V2, state_version=2, migrate_state=counting)
    assert codec.decode_snapshot(stored(codec, V2(total, unit))).state == V2(total, unit)
    assert calls == []


@given(COUNTS)
def test_chained_migrations_equal_one_direct_read(count: int) -> None:
    text = stored(V1_CODEC, V1(count))
    direct = V3_CODEC.decode_snapshot(text)
    via_v2 = V3_CODEC.decode_snapshot(V2_CODEC.encode_snapshot(V2_CODEC.decode_snapshot(text)))
    assert direct == via_v2
    assert direct.state == V3(count, "runs", ())


def test_a_continuous_snapshot_round_trips_under_a_version() -> None:
    codec = continuous(V2, state_version=2, migrate_state=step)
    snapshot = ContinuousSnapshot(InstanceKey("continuous", "c", "u"), V2(1, "x"), Instant(0))
    assert codec.decode_snapshot(codec.encode_snapshot(snapshot)) == snapshot


# ----------------------------------------------------------------- WorkerPool events


def pool(event: Any, **options: Any) -> Codec:
    return Codec(
        Jobs(p=WorkerPool.make(event=event, concurrency=2, execute=ignore, **options))["p"]
    )


SHARD = "workerPool:p:1"
P1 = pool(V1)
P2 = pool(V2, event_version=2, migrate_event=step)
P3 = pool(V3, event_version=3, migrate_event=step)


def item(event: Any, event_id: str = "e1", due_at: int | None = None) -> QueueItem[Any]:
    return QueueItem(
        event_id, event, 3, 7, Instant(10), "k", None if due_at is None else Instant(due_at)
    )


def pool_letter(event: Any) -> DeadLetter[Any]:
    when = datetime(2026, 1, 1, tzinfo=UTC)
    return DeadLetter("workerPool", "p", "e9", SHARD, event, ErrorInfo("E", "x"), 3, when)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"event_version": 0}, "WorkerPool event_version must be an int >= 1, got 0"),
        ({"event_version": False}, "event_version must be an int >= 1, got False"),
        ({"event_version": 2.0}, "event_version must be an int >= 1, got 2.0"),
        ({"event_version": 3}, "event_version 3 needs migrate_event: stored events of versions "
         "1 to 2"),
        ({"event_version": 2, "migrate_event": "f"}, "migrate_event must be a function"),
        ({"migrate_event": step}, "migrate_event is never called while event_version is 1"),
    ],
)  # fmt: skip
def test_pool_make_refuses_a_bad_event_version_or_migration(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(DefinitionError, match=message):
        WorkerPool.make(event=V2, concurrency=1, execute=ignore, **options)


def test_pool_make_keeps_the_event_version_and_the_migration() -> None:
    definition = WorkerPool.make(
        event=V2, concurrency=1, execute=ignore, event_version=2, migrate_event=step
    )
    assert (definition.event_version, definition.migrate_event) == (2, step)
    assert WorkerPool.make(event=V2, concurrency=1, execute=ignore).event_version == 1


def test_a_queue_row_carries_its_version_above_1_only_and_old_rows_are_version_1() -> None:
    old = P1.encode_item(item(V1(4), due_at=99))
    assert EVENT_VERSION_KEY not in json.loads(old)  # what every earlier release reads
    assert P2.decode_item(old, instance=SHARD) == item(V2(4, "runs"), due_at=99)
    new = P2.encode_item(item(V2(4, "x")))
    assert json.loads(new)[EVENT_VERSION_KEY] == 2
    assert P2.decode_item(new) == item(V2(4, "x"))
    assert P3.decode_item(new) == item(V3(4, "x", ()))


def test_a_queue_row_from_newer_code_or_with_a_bad_version_names_shard_and_event() -> None:
    new = P2.encode_item(item(V2(4, "x")))
    with pytest.raises(
        StorageError,
        match=r"instance workerPool:p:1, event 'e1': stored event version 2 of 'p' is newer "
        r"than its definition's event_version 1",
    ):
        P1.decode_item(new, instance=SHARD, event_id="e1")
    bad = json.dumps({**json.loads(new), EVENT_VERSION_KEY: "2"})
    with pytest.raises(StorageError, match=r"event 'e1': stored event version '2' .* not an int"):
        P2.decode_item(bad, instance=SHARD, event_id="e1")


def test_a_queue_row_whose_migration_raises_or_does_not_fit_names_shard_and_event() -> None:
    old = P1.encode_item(item(V1(4)))

    def broken(data: Any, version: int) -> Any:
        return {"total": data["cuont"], "unit": "runs"}

    with pytest.raises(
        StorageError,
        match=r"workerPool:p:1, event 'e1': migrate_event of 'p' failed from event version 1 "
        r"to 2 \(KeyError: 'cuont'\)",
    ):
        pool(V2, event_version=2, migrate_event=broken).decode_item(
            old, instance=SHARD, event_id="e1"
        )
    typed_result = pool(V2, event_version=2, migrate_event=lambda d, v: V2(1, "typed"))
    with pytest.raises(
        StorageError,
        match=r"workerPool:p:1, event 'e1': stored queued event \(its event migrated from "
        r"version 1 to 2\) cannot be read",
    ):
        typed_result.decode_item(old, instance=SHARD, event_id="e1")
    with pytest.raises(
        StorageError,
        match=r"workerPool:p:1, event 'e1': stored queued event cannot be read \(Expecting",
    ):
        P1.decode_item("{oops", instance=SHARD, event_id="e1")


def test_a_shard_snapshot_migrates_its_current_event_and_names_it_on_failure() -> None:
    key = InstanceKey("workerPool", "p", "1")
    running = PoolSnapshot(key, Instant(0), next_seq=8, current=item(V1(2), "run-1"))
    text = P1.encode_snapshot(running)
    assert json.loads(text)[EVENT_VERSION_KEY] == 1  # the envelope always says
    assert P3.decode_snapshot(text).current == item(V3(2, "runs", ()), "run-1")
    idle: PoolSnapshot[Any] = PoolSnapshot(key, Instant(0), next_seq=8)
    assert P1.decode_snapshot(P3.encode_snapshot(idle)) == idle  # no event: nothing to refuse
    with pytest.raises(
        StorageError, match=r"workerPool:p:1, event 'run-1': stored event version 3 of 'p'"
    ):
        P2.decode_snapshot(P3.encode_snapshot(attrs.evolve(running, current=item(V3(1, "x", ()), "run-1"))), instance=SHARD)  # fmt: skip
    with pytest.raises(StorageError, match=r"workerPool:p:1, event 'run-1': stored snapshot does"):
        pool(V2).decode_snapshot(text, instance=SHARD)  # a changed type without a version


def test_a_pool_dead_letter_carries_its_event_version_above_1_and_is_migrated() -> None:
    old = json.loads(json.dumps(P1.encode_dead_letter(pool_letter(V1(2)))))
    assert EVENT_VERSION_KEY not in old
    assert STATE_VERSION_KEY not in old
    assert P2.decode_dead_letter(old) == pool_letter(V2(2, "runs"))
    new = P2.encode_dead_letter(pool_letter(V2(2, "x")))
    assert (new[EVENT_VERSION_KEY], STATE_VERSION_KEY in new) == (2, False)
    with pytest.raises(StorageError, match=r"workerPool:p:1, event 'e9': stored event version 2"):
        P1.decode_dead_letter(new)
    with pytest.raises(StorageError, match=r"workerPool:p:1, event 'e9': dead letter of 'p'"):
        pool(V2).decode_dead_letter(old)


def test_a_none_event_is_a_value_and_is_migrated() -> None:
    calls: list[Any] = []

    def count(data: Any, version: int) -> Any:
        calls.append(data)
        return data

    old = pool(V1 | None).encode_item(item(None))
    assert pool(V2 | None, event_version=2, migrate_event=count).decode_item(old).event is None
    assert calls == [None]


@given(COUNTS, st.text())
def test_an_event_of_the_current_version_reads_back_without_a_migration(
    total: int, unit: str
) -> None:
    def never(data: Any, version: int) -> Any:
        raise AssertionError("called")

    codec = pool(V2, event_version=2, migrate_event=never)
    row = item(V2(total, unit))
    assert codec.decode_item(codec.encode_item(row)) == row


@given(COUNTS, st.one_of(st.none(), st.integers(0, 2**40)))
def test_chained_event_migrations_equal_a_step_by_step_read(count: int, due_at: int | None) -> None:
    text = P1.encode_item(item(V1(count), due_at=due_at))
    direct = P3.decode_item(text)
    via_v2 = P3.decode_item(P2.encode_item(P2.decode_item(text)))
    assert direct == via_v2 == item(V3(count, "runs", ()), due_at=due_at)
    letter = P1.encode_dead_letter(pool_letter(V1(count)))
    assert P3.decode_dead_letter(letter) == P3.decode_dead_letter(
        P2.encode_dead_letter(P2.decode_dead_letter(letter))
    )


def test_events_pending_behind_a_run_are_migrated_when_read() -> None:
    """A Task (or Debounce) keeps events in ``pending`` while a run is in flight: a
    deploy that changes the event type upgrades them with ``migrate_event``, as a pool's
    queued events are upgraded; a trigger entry (no event) is left as it is."""

    def noop(ctx: Any) -> None:
        return None

    def to_v2(data: Any, version: int) -> Any:
        assert version == 1
        return {"total": data["count"], "unit": "items"}

    old = Jobs(t=Task.make(state=int, event=V1, on_event=noop, execute=noop))["t"]
    new = Jobs(
        t=Task.make(
            state=int, event=V2, on_event=noop, execute=noop, event_version=2, migrate_event=to_v2
        )
    )["t"]
    key = InstanceKey("task", "t", "u")
    queued: tuple[Pending[V1], ...] = (
        Pending("send", Instant(5), V1(3)),
        Pending("trigger", Instant(6)),
    )
    snapshot: TaskSnapshot[int, V1] = TaskSnapshot(key, Instant(0), state=1, pending=queued)
    text = Codec(old).encode_snapshot(snapshot)
    assert EVENT_VERSION_KEY not in json.loads(text)  # version 1 is the default
    read = Codec(new).decode_snapshot(text, instance=key.instance_id)
    assert read.pending == (Pending("send", Instant(5), V2(3, "items")), queued[1])
    again = Codec(new).encode_snapshot(read)
    assert json.loads(again)[EVENT_VERSION_KEY] == 2
    assert Codec(new).decode_snapshot(again).pending == read.pending
