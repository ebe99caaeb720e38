"""State versions in the pure core (issue 10 §5): ``make`` checks the options, ``Codec``
upgrades stored states when it reads them and refuses what it cannot upgrade.

The laws: reading a state written by the code's own version never calls the migration;
reading a v1 state with v3 code (two steps at once) equals reading it with v2 code,
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
)
from durable_jobs.protocol import (
    STATE_VERSION_KEY,
    Codec,
    ContinuousSnapshot,
    InstanceKey,
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
