"""The engine's own promises, beyond what the contract suite checks per interpreter.

* A request whose handler runs before anything is stored (a working snapshot) is run
  again from the top when another writer changed the instance meanwhile: nothing the
  other writer did is lost, and the request's handler sees the new stored state.
* A store that is sent plans gets exactly one plan per transition that writes, and a
  query writes nothing.
* A successful run whose results the store refuses is committed as a failed attempt
  carrying the store's error, and retried as any failed attempt.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from durable_jobs import (
    Backoff,
    Continuous,
    ContinuousContext,
    Debounce,
    DebounceEventContext,
    Definition,
    JobFailed,
    Jobs,
    Retry,
)
from durable_jobs.interpreters.clock import ManualClock
from durable_jobs.interpreters.memory import MemoryInterpreter, MemoryStore
from durable_jobs.interpreters.sqlite import SqliteInterpreter
from durable_jobs.protocol import CommitPlan


def test_a_working_snapshot_changed_by_another_writer_runs_the_request_again(
    tmp_path: Path,
) -> None:
    path = tmp_path / "jobs.db"
    seen: list[tuple[int, tuple[int, ...]]] = []
    others: list[SqliteInterpreter] = []

    def fold(ctx: DebounceEventContext[int, tuple[int, ...]]) -> tuple[int, ...]:
        seen.append((ctx.event, ctx.state or ()))
        if ctx.event == 1 and len(seen) == 1:
            # While this request's reducer runs (nothing stored yet), another process
            # adds to the same batch.
            others[0].client().debounce("b").add(id="u", event=2)
        return (*(ctx.state or ()), ctx.event)

    job = Debounce.make(
        event=int, state=tuple[int, ...], on_event=fold, execute=print, flush_after="1 hour"
    )
    jobs = Jobs(b=job)
    with (
        SqliteInterpreter(jobs, path, clock=ManualClock()) as first,
        SqliteInterpreter(jobs, path, clock=ManualClock()) as second,
    ):
        others.append(second)
        result = first.client().debounce("b").add(id="u", event=1)
        assert result.event_count == 2
        assert first.client().debounce("b").get_state("u") == (2, 1)
    # The reducer of event 1 ran twice: first on the empty batch (its outcome then found
    # the instance changed), again on the batch holding event 2.
    assert seen == [(1, ()), (2, ()), (1, (2,))]


class CountingStore(MemoryStore):
    """A memory store that keeps every plan it is sent."""

    def __init__(self) -> None:
        super().__init__()
        self.plans: list[CommitPlan[Any]] = []

    def commit(self, definition: Definition, plan: CommitPlan[Any]) -> None:
        self.plans.append(plan)
        super().commit(definition, plan)


def test_each_writing_transition_is_one_plan_and_a_query_writes_none() -> None:
    job = Debounce.make(event=int, execute=lambda ctx: None, flush_after="1 minute")
    sim = MemoryInterpreter(Jobs(b=job))
    store = CountingStore()
    sim._store = store  # the engine's store: what it commits is what a remote store gets
    client = sim.client().debounce(job)
    client.add(id="u", event=1)
    client.add(id="u", event=2)
    assert [plan.write for plan in store.plans] == ["put", "put"]
    assert [plan.expected_version for plan in store.plans] == [None, 1]
    client.status("u")
    client.get_state("u")
    assert len(store.plans) == 2
    sim.advance("1 minute")  # the flush: its start, then its outcome (the batch is purged)
    assert [plan.write for plan in store.plans[2:]] == ["put", "delete"]
    assert store.plans[2].starts_run


class RefusingStore(MemoryStore):
    """A memory store that cannot keep one value (as a store with a narrower column
    type, or a value encoder that fails, would refuse it)."""

    def commit(self, definition: Definition, plan: CommitPlan[Any]) -> None:
        snapshot = plan.snapshot
        if snapshot is not None and getattr(snapshot, "state", None) == "unstorable":
            raise ValueError("this store cannot keep 'unstorable'")
        super().commit(definition, plan)


def test_an_outcome_that_cannot_be_committed_is_a_failed_attempt_with_its_real_error() -> None:
    def execute(ctx: ContinuousContext[str]) -> None:
        ctx.set_state("unstorable" if ctx.attempt == 1 else "kept")

    retry = Retry(max_attempts=3, backoff=Backoff.constant("1 second"), jitter=False)
    job = Continuous.make(
        state=str, schedule=Continuous.every("1 hour"), execute=execute, retry=retry
    )
    sim = MemoryInterpreter(Jobs(c=job))
    sim._store = store = RefusingStore()
    client = sim.client().continuous(job)
    client.start(id="c", input="first")  # attempt 1 runs; its outcome cannot be kept
    failed = [event for event in store.telemetry if isinstance(event, JobFailed)]
    assert [(event.error.type, event.error.message) for event in failed] == [
        ("ValueError", "this store cannot keep 'unstorable'")
    ]
    sim.advance("1 second")  # the retry (attempt 2) runs from the state last kept
    assert client.get_state("c") == "kept"
    assert client.dead_letters() == []
