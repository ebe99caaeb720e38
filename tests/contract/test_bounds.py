"""Contract: what the library accepts, every store can keep, and nothing it accepts
takes a worker down.

Every interpreter gives the same answer, because the checks are the core's: an id a
store could not hold (NUL, a lone surrogate, over 1,024 characters) and a value that is
not storable JSON (integers past 64 bits, NaN and infinities, lone surrogates, nesting
past 100 levels, sets, bytes or tuples where the type is ``Any``) are refused with a
``ValidationError`` and nothing written; a duration past 100 years is refused where it
is written; and a run whose results cannot be kept fails its attempt with the real
error, so the retry policy and the dead-letter store take over.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from durable_jobs import (
    Backoff,
    Continuous,
    ContinuousContext,
    Debounce,
    Enqueue,
    Jobs,
    Retry,
    Task,
    TaskContext,
    ValidationError,
    WorkerPool,
)
from tests.contract.conftest import Harness, Make

NO_RETRY = Retry(max_attempts=2, backoff=Backoff.constant("1 second"), jitter=False)


def _noop(ctx: object) -> None:
    return None


def _schedule_now(ctx: TaskContext[Any, Any]) -> None:
    ctx.set_state(ctx.event)
    ctx.schedule("0 seconds")


JOBS = Jobs(
    cont=Continuous.make(state=Any, schedule=Continuous.every("1 hour"), execute=_noop),
    deb=Debounce.make(event=Any, execute=_noop, flush_after="1 minute"),
    task=Task.make(state=Any, event=Any, on_event=_schedule_now, execute=_noop),
    pool=WorkerPool.make(event=Any, concurrency=2, execute=_noop),
)

BAD_IDS = ["x\x00y", "\x00", "lone \ud800 surrogate", "\udfff", "x" * 1025]


def _nothing_written(harness: Harness) -> None:
    assert list(harness.telemetry) == []
    assert harness.next_alarm_at() is None


def _id_calls(client: Any, bad: str) -> list[Callable[[], object]]:
    cont, deb = client.continuous("cont"), client.debounce("deb")
    task, pool = client.task("task"), client.worker_pool("pool")
    return [
        lambda: cont.start(id=bad, input=1),
        lambda: cont.trigger(bad),
        lambda: cont.terminate(bad),
        lambda: cont.status(bad),
        lambda: cont.get_state(bad),
        lambda: deb.add(id=bad, event=1),
        lambda: deb.flush(bad),
        lambda: deb.clear(bad),
        lambda: deb.status(bad),
        lambda: task.send(id=bad, event=1),
        lambda: task.trigger(bad),
        lambda: task.terminate(bad),
        lambda: task.status(bad),
        lambda: pool.enqueue(id=bad, event=1),
        lambda: pool.enqueue(id="ok", event=1, partition_key=bad),
        lambda: pool.enqueue_many([Enqueue("fine", 1), Enqueue(bad, 2)]),
        lambda: pool.cancel(bad),
    ]


@pytest.mark.parametrize("bad", BAD_IDS, ids=["nul", "only-nul", "surrogate", "low", "long"])
def test_ids_no_store_can_hold_are_refused_on_every_path(make: Make, bad: str) -> None:
    harness = make(JOBS)
    for call in _id_calls(harness.client(), bad):
        with pytest.raises(ValidationError, match=r"id|partition_key"):
            call()
    _nothing_written(harness)


def test_a_job_name_no_store_can_hold_is_refused() -> None:
    from durable_jobs import DefinitionError

    with pytest.raises(DefinitionError, match="job name must not contain NUL"):
        Jobs(**{"a\x00b": Debounce.make(event=int, execute=_noop, flush_after="1 s")})


GOOD_IDS = ["🚀 launch", "a:b%3Ac", "\x1b[2J", "x" * 1024]


@pytest.mark.parametrize("good", GOOD_IDS, ids=["emoji", "escapes", "control", "longest"])
def test_every_other_id_works_on_every_path(make: Make, good: str) -> None:
    harness = make(JOBS)
    client = harness.client()
    assert client.continuous("cont").start(id=good, input=1).created
    assert client.continuous("cont").status(good).status == "running"
    assert client.debounce("deb").add(id=good, event=1).event_count == 1
    assert client.debounce("deb").flush(good).flushing
    client.task("task").send(id=good, event=1)
    harness.advance("1 second")
    assert client.task("task").get_state(good) == 1
    pool = client.worker_pool("pool")
    assert not pool.enqueue(id=good, event=1, partition_key=good).duplicate
    assert [r.duplicate for r in pool.enqueue_many([Enqueue(good, 1), Enqueue("b", 2)])] == [
        True,
        False,
    ]
    harness.advance("1 second")
    assert pool.enqueue(id=good, event=1).duplicate  # finished, still remembered
    assert pool.status().total_processed == 2


BAD_VALUES: list[tuple[str, Any, str]] = [
    ("int-past-64-bits", 2**64, "does not fit in 64 bits"),
    ("negative-past-64-bits", -(2**63), "does not fit in 64 bits"),
    ("nan", float("nan"), "not a finite number"),
    ("infinity", {"x": [float("inf")]}, r"at \$\.x\[0\]: inf is not a finite number"),
    ("surrogate", {"name": "a\udcffb"}, "lone surrogate"),
    ("surrogate-key", {"\ud800": 1}, "lone surrogate"),
    ("set", {3, 1}, "a set is not JSON"),
    ("bytes", b"\xff\x00", "a bytes is not JSON"),
    ("tuple", (1, 2), "a tuple is not JSON"),
    ("int-key", {1: "a"}, "key 1 is not a string"),
    ("object", object(), "not JSON"),
]


def _nested(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [*BAD_VALUES, ("nested-328", _nested(328), "nested deeper than 100 levels")],
    ids=[name for name, _, _ in BAD_VALUES] + ["nested-328"],
)
def test_values_no_store_keeps_as_they_are_are_refused_with_nothing_written(
    make: Make, name: str, value: Any, says: str
) -> None:
    harness = make(JOBS)
    client = harness.client()
    calls: list[Callable[[], object]] = [
        lambda: client.continuous("cont").start(id="c", input=value),
        lambda: client.debounce("deb").add(id="d", event=value),
        lambda: client.task("task").send(id="t", event=value),
        lambda: client.worker_pool("pool").enqueue(id="e", event=value),
        lambda: client.worker_pool("pool").enqueue_many([Enqueue("f", 1), Enqueue("e", value)]),
    ]
    for call in calls:
        with pytest.raises(ValidationError, match=says):
            call()
    _nothing_written(harness)


def test_the_deepest_value_allowed_round_trips(make: Make) -> None:
    harness = make(JOBS)
    client = harness.client()
    deepest = _nested(100)  # a hundred lists, one in another: the most allowed
    client.task("task").send(id="t", event=deepest)
    assert client.task("task").get_state("t") == deepest


def test_a_priority_past_64_bits_is_refused(make: Make) -> None:
    harness = make(JOBS)
    with pytest.raises(ValidationError, match="priority must be an int between"):
        harness.client().worker_pool("pool").enqueue(id="e", event=1, priority=2**63)
    _nothing_written(harness)


def test_a_terminate_reason_that_is_not_valid_unicode_is_refused(make: Make) -> None:
    harness = make(JOBS)
    client = harness.client()
    client.continuous("cont").start(id="c", input=1)
    with pytest.raises(ValidationError, match="reason"):
        client.continuous("cont").terminate("c", reason="\udcff")
    assert client.continuous("cont").status("c").status == "running"


@pytest.mark.parametrize("far", ["1000000 weeks", "99999999999999999999 weeks", "5219 weeks"])
def test_a_schedule_past_100_years_fails_the_attempt_and_the_worker_goes_on(
    make: Make, far: str
) -> None:
    def execute(ctx: TaskContext[int, int]) -> None:
        if ctx.id == "far":
            ctx.schedule(far)

    jobs = Jobs(
        task=Task.make(
            state=int, event=int, on_event=_schedule_now, execute=execute, retry=NO_RETRY
        )
    )
    harness = make(jobs)
    task = harness.client().task("task")
    task.send(id="far", event=1)
    task.send(id="near", event=2)
    harness.advance("10 seconds")
    [letter] = task.dead_letters()
    assert (letter.id, letter.attempts) == ("far", 2)
    assert letter.error.type == "DefinitionError"
    assert "longer than the maximum, 100 years" in letter.error.message
    assert task.status("near").status == "idle"  # the other instance ran as usual
    task.send(id="near", event=3)  # and the interpreter still takes requests
    harness.advance("1 second")
    assert task.get_state("near") == 3


def test_a_state_nested_too_deep_fails_the_attempt_with_its_reason(make: Make) -> None:
    def execute(ctx: ContinuousContext[Any]) -> None:
        ctx.set_state(_nested(328))

    jobs = Jobs(
        cont=Continuous.make(
            state=Any, schedule=Continuous.every("1 hour"), execute=execute, retry=NO_RETRY
        )
    )
    harness = make(jobs)
    cont = harness.client().continuous("cont")
    cont.start(id="c", input=0)  # runs at once, then its retry a second later
    harness.advance("1 minute")
    [letter] = cont.dead_letters()
    assert letter.error.type == "durable_jobs.ValidationError"
    assert "nested deeper than 100 levels" in letter.error.message
    assert letter.payload == 0  # the state the failed runs started from
