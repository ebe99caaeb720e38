"""Work an instance owes a worker (``pending``), in the pure core (issue 10).

Laws: a queued send's handler is a committed run whose entry leaves ``pending`` only
when its outcome is decided, so a worker that dies mid-run leaves it to run again; a
row with nothing pending is written without the field, as releases before it wrote.
"""

from __future__ import annotations

import json
from typing import Any

import attrs
from hypothesis import given
from hypothesis import strategies as st

from durable_jobs import Instant, JobFailed, Jobs, Task, TaskContext
from durable_jobs.protocol import (
    MAX_INTERRUPTS,
    AlarmFired,
    Codec,
    Emit,
    InstanceKey,
    Pending,
    RunInterrupted,
    RunUserCode,
    TaskSnapshot,
    UserCodeSucceeded,
    decide,
)


def _on_event(ctx: TaskContext[int, int]) -> None:
    ctx.set_state(ctx.event)


JOB = Jobs(t=Task.make(state=int, event=int, on_event=_on_event, execute=print))["t"]
KEY = InstanceKey("task", "t", "u")


def _owing(events: list[int]) -> TaskSnapshot[int, int]:
    entries = tuple(Pending("send", Instant(10 + i), event) for i, event in enumerate(events))
    return TaskSnapshot(KEY, Instant(0), state=0, pending=entries, alarm_at=Instant(10))


def _run(transition: Any) -> RunUserCode:
    runs = [c for c in transition.commands if isinstance(c, RunUserCode)]
    assert len(runs) == 1
    return runs[0]


@given(st.lists(st.integers(0, 99), min_size=1, max_size=5))
def test_a_queued_send_survives_its_worker_dying_and_runs_again(events: list[int]) -> None:
    started = decide(JOB, _owing(events), AlarmFired(Instant(10)), Instant(20)).unwrap()
    running = started.snapshot
    assert running.in_flight is not None
    assert running.pending == _owing(events).pending  # still there while it runs
    assert running.alarm_at is None
    run_id = _run(started).run_id
    after = decide(JOB, running, RunInterrupted(run_id=run_id), Instant(30)).unwrap().snapshot
    assert after.in_flight is None
    assert [p.event for p in after.pending] == events  # nothing lost: it runs again
    assert after.pending[0].interrupted == 1
    assert after.alarm_at == Instant(10)
    again = decide(JOB, after, AlarmFired(Instant(10)), Instant(40)).unwrap()
    done = (
        decide(
            JOB,
            again.snapshot,
            UserCodeSucceeded(run_id=_run(again).run_id, state_set=True, state=events[0]),
            Instant(50),
        )
        .unwrap()
        .snapshot
    )
    assert done.state == events[0]
    assert done.pending == _owing(events).pending[1:]  # taken off once decided
    assert done.event_count == 1


def test_a_row_with_nothing_pending_is_written_without_the_field() -> None:
    codec = Codec(JOB)
    text = codec.encode_snapshot(TaskSnapshot(KEY, Instant(0), state=3))
    assert "pending" not in json.loads(text)["snapshot"]
    assert codec.decode_snapshot(text).pending == ()
    owing = codec.encode_snapshot(_owing([7]))
    assert json.loads(owing)["snapshot"]["pending"][0]["event"] == 7
    assert codec.decode_snapshot(owing) == _owing([7])


def test_a_queued_send_whose_hook_keeps_killing_its_worker_is_dropped() -> None:
    """After ``MAX_INTERRUPTS`` interrupted runs the request is taken off (recorded as
    ``job.failed``), and the next one runs: one request cannot stop its instance."""
    snapshot: Any = _owing([1, 2])
    failures: list[JobFailed] = []
    for _ in range(MAX_INTERRUPTS):
        started = decide(JOB, snapshot, AlarmFired(Instant(10)), Instant(20)).unwrap()
        ended = decide(
            JOB, started.snapshot, RunInterrupted(run_id=_run(started).run_id), Instant(30)
        ).unwrap()
        failures += [
            c.event
            for c in ended.commands
            if isinstance(c, Emit) and isinstance(c.event, JobFailed)
        ]
        snapshot = ended.snapshot
    assert [p.event for p in snapshot.pending] == [2]
    assert [f.error.type for f in failures] == ["Interrupted"] * MAX_INTERRUPTS
    assert "is dropped" in failures[-1].error.message
    assert snapshot.alarm_at == Instant(11)  # the next request is due


def test_a_pending_entry_is_written_as_older_releases_wrote_it_until_interrupted() -> None:
    codec = Codec(JOB)
    text = json.loads(codec.encode_snapshot(_owing([7])))
    assert "interrupted" not in text["snapshot"]["pending"][0]
    interrupted = attrs.evolve(_owing([7]), pending=(Pending("send", Instant(10), 7, None, 1),))
    again = json.loads(codec.encode_snapshot(interrupted))
    assert again["snapshot"]["pending"][0]["interrupted"] == 1
    assert codec.decode_snapshot(codec.encode_snapshot(interrupted)) == interrupted
