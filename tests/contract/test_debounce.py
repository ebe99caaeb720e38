"""Contract: Debounce jobs, every client action and every DESIGN §4 decision."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import attrs
import pytest

from durable_jobs import (
    Backoff,
    Debounce,
    DebounceContext,
    DebounceDefinition,
    DebounceEventContext,
    DebounceFlushed,
    DebounceStarted,
    Jobs,
    Retry,
    Unstructured,
    UserCodeError,
    ValidationError,
)
from tests.contract.conftest import START, Make, types


@attrs.frozen
class Click:
    page: str


@attrs.frozen
class Tally:
    pages: tuple[str, ...] = ()


def tally(ctx: DebounceEventContext[Click, Tally]) -> Tally:
    base = ctx.state if ctx.state is not None else Tally()
    return Tally((*base.pages, ctx.event.page))


Flush = tuple[str, Tally, int, int]  # reason, batch, event_count, attempt


def batching(
    fail_calls: frozenset[int] = frozenset(), **options: Any
) -> tuple[DebounceDefinition[Click, Tally], list[Flush]]:
    flushes: list[Flush] = []
    calls = {"n": 0}

    def execute(ctx: DebounceContext[Tally]) -> None:
        calls["n"] += 1
        flushes.append((ctx.flush_reason, ctx.state, ctx.event_count, ctx.attempt))
        if calls["n"] in fail_calls:
            raise RuntimeError(f"flush {calls['n']} failed")

    options.setdefault("flush_after", "5 minutes")
    options.setdefault("on_event", tally)
    options.setdefault("initial_state", Tally())
    job = Debounce.make(event=Click, state=Tally, execute=execute, **options)
    return job, flushes


def test_add_creates_a_batch_with_a_fixed_window(make: Make) -> None:
    job, flushes = batching()
    sim = make(Jobs(clicks=job))
    client = sim.client().debounce(job)
    first = client.add(id="u1", event=Click("home"))
    assert first.created is True
    assert first.event_count == 1
    assert first.instance_id == "debounce:clicks:u1"
    assert first.will_flush_at == START + timedelta(minutes=5)
    assert first.retry_scheduled is False
    sim.advance("4 minutes")
    second = client.add(id="u1", event=Unstructured({"page": "about"}))
    assert second.created is False
    assert second.event_count == 2
    assert second.will_flush_at == START + timedelta(minutes=5)
    status = client.status("u1")
    assert status.status == "debouncing"
    assert status.event_count == 2
    assert status.started_at == START
    assert client.get_state("u1") == Tally(("home", "about"))
    started = [e for e in sim.telemetry if isinstance(e, DebounceStarted)]
    assert [e.flush_at for e in started] == [int((START + timedelta(minutes=5)).timestamp() * 1000)]
    sim.advance("1 minute")
    assert flushes == [("flushAfter", Tally(("home", "about")), 2, 1)]
    assert client.status("u1").status == "not_found"
    flushed = [e for e in sim.telemetry if isinstance(e, DebounceFlushed)]
    assert [(e.reason, e.event_count, e.duration_ms) for e in flushed] == [
        ("flushAfter", 2, 300_000)
    ]


def test_max_events_makes_the_flush_due_at_once(make: Make) -> None:
    job, flushes = batching(max_events=2)
    sim = make(Jobs(clicks=job))
    client = sim.client().debounce(job)
    client.add(id="u1", event=Click("a"))
    result = client.add(id="u1", event=Click("b"))
    assert result.event_count == 2
    assert result.will_flush_at == START  # due now: the interpreter's worker flushed it
    assert flushes == [("maxEvents", Tally(("a", "b")), 2, 1)]
    assert client.status("u1").status == "not_found"
    assert sim.next_alarm_at() is None
    assert types(sim.telemetry) == [
        "debounce.started",
        "job.executed",
        "debounce.flushed",
    ]


def test_quiet_period_flushes_early_but_never_past_flush_after(make: Make) -> None:
    job, flushes = batching(flush_after="10 minutes", quiet_period="2 minutes")
    sim = make(Jobs(clicks=job))
    client = sim.client().debounce(job)
    client.add(id="quiet", event=Click("a"))
    sim.advance("1 minute")
    assert client.add(id="quiet", event=Click("b")).will_flush_at == START + timedelta(minutes=3)
    sim.advance("2 minutes")
    assert flushes == [("quietPeriod", Tally(("a", "b")), 2, 1)]
    busy = "busy"
    client.add(id=busy, event=Click("0"))
    for i in range(1, 12):
        sim.advance("1 minute")
        client.add(id=busy, event=Click(str(i)))
    assert flushes[1][0] == "flushAfter"
    assert flushes[1][2] == 10


def test_the_reducer_sees_initial_state_or_none_never_the_event(make: Make) -> None:
    seen: list[Any] = []

    def record(ctx: DebounceEventContext[Click, Tally]) -> Tally:
        seen.append(ctx.state)
        return tally(ctx)

    made: list[int] = []

    def factory() -> Tally:
        made.append(1)
        return Tally(("start",))

    jobs = Jobs(
        plain=Debounce.make(
            event=Click, state=Tally, on_event=record, execute=lambda ctx: None, flush_after="1 s"
        ),
        seeded=Debounce.make(
            event=Click,
            state=Tally,
            on_event=record,
            initial_state=factory,
            execute=lambda ctx: None,
            flush_after="1 s",
        ),
    )
    sim = make(jobs)
    sim.client().debounce("plain").add(id="u", event=Click("x"))
    sim.client().debounce("seeded").add(id="u", event=Click("x"))
    sim.client().debounce("seeded").add(id="u", event=Click("y"))
    assert seen == [None, Tally(("start",)), Tally(("start", "x"))]
    assert sim.client().debounce("seeded").get_state("u") == Tally(("start", "x", "y"))
    assert len(made) == 1


def test_without_a_reducer_the_batch_keeps_the_latest_event(make: Make) -> None:
    got: list[Any] = []
    job = Debounce.make(event=Click, execute=lambda ctx: got.append(ctx.state), flush_after="1 s")
    sim = make(Jobs(latest=job))
    sim.client().debounce(job).add(id="u", event=Click("a"))
    sim.client().debounce(job).add(id="u", event=Click("b"))
    sim.advance("1 second")
    assert got == [Click("b")]


def test_manual_flush_clear_and_empty_answers(make: Make) -> None:
    job, flushes = batching()
    sim = make(Jobs(clicks=job))
    client = sim.client().debounce(job)
    empty = client.flush("nobody")
    assert (empty.flushing, empty.event_count, empty.reason) == (False, 0, "empty")
    client.add(id="u1", event=Click("a"))
    result = client.flush("u1")
    assert (result.flushing, result.event_count, result.reason) == (True, 1, "manual")
    assert result.queued is False
    assert flushes == [("manual", Tally(("a",)), 1, 1)]
    client.add(id="u2", event=Click("a"))
    client.add(id="u2", event=Click("b"))
    cleared = client.clear("u2")
    assert (cleared.cleared, cleared.discarded_events) == (True, 2)
    assert client.status("u2").status == "not_found"
    missing = client.clear("u2")
    assert (missing.cleared, missing.discarded_events) == (False, 0)
    sim.advance("10 minutes")
    assert len(flushes) == 1


def test_bad_events_and_bad_reducer_output_write_nothing(make: Make) -> None:
    def wrong(ctx: DebounceEventContext[Click, Tally]) -> Any:
        return "not a tally" if ctx.event.page == "bad" else tally(ctx)

    def broken(ctx: DebounceEventContext[Click, Tally]) -> Tally:
        raise KeyError(ctx.event.page)

    jobs = Jobs(
        wrong=Debounce.make(
            event=Click, state=Tally, on_event=wrong, execute=lambda c: None, flush_after="1 s"
        ),
        broken=Debounce.make(
            event=Click, state=Tally, on_event=broken, execute=lambda c: None, flush_after="1 s"
        ),
    )
    sim = make(jobs)
    client = sim.client()
    with pytest.raises(ValidationError, match="page"):
        client.debounce("wrong").add(id="u", event={"title": "x"})
    with pytest.raises(ValidationError):
        client.debounce("wrong").add(id="u", event=Click("bad"))
    assert client.debounce("wrong").status("u").status == "not_found"
    client.debounce("wrong").add(id="u", event=Click("ok"))
    with pytest.raises(ValidationError):
        client.debounce("wrong").add(id="u", event=Click("bad"))
    assert client.debounce("wrong").status("u").event_count == 1
    with pytest.raises(UserCodeError) as info:
        client.debounce("broken").add(id="u", event=Click("p"))
    assert info.value.error.type == "KeyError"
    assert info.value.hook == "on_event"
    assert client.debounce("broken").status("u").status == "not_found"
    assert sim.next_alarm_at() == START + timedelta(seconds=1)


def test_retry_keeps_the_reason_and_adds_during_backoff_only_accumulate(make: Make) -> None:
    job, flushes = batching(
        fail_calls=frozenset({1}),
        max_events=2,
        retry=Retry(max_attempts=3, backoff=Backoff.constant("1 minute"), jitter=False),
    )
    sim = make(Jobs(clicks=job))
    client = sim.client().debounce(job)
    client.add(id="u1", event=Click("a"))
    flushing = client.add(id="u1", event=Click("b"))
    assert flushing.will_flush_at == START  # the flush was due at once, and failed
    assert client.status("u1").will_flush_at == START + timedelta(minutes=1)
    more = client.add(id="u1", event=Click("c"))
    assert more.retry_scheduled is True
    assert more.event_count == 3
    assert len(flushes) == 1  # reaching max_events during the backoff does not flush again
    sim.advance("1 minute")
    assert flushes == [
        ("maxEvents", Tally(("a", "b")), 2, 1),
        ("maxEvents", Tally(("a", "b", "c")), 3, 2),
    ]
    flushed = [e for e in sim.telemetry if isinstance(e, DebounceFlushed)]
    assert [(e.reason, e.event_count) for e in flushed] == [("maxEvents", 3)]
    assert client.status("u1").status == "not_found"


def test_manual_flush_of_a_failing_batch_reports_the_retry(make: Make) -> None:
    job, flushes = batching(
        fail_calls=frozenset({1}),
        retry=Retry(max_attempts=2, backoff=Backoff.constant("30 seconds"), jitter=False),
    )
    sim = make(Jobs(clicks=job))
    client = sim.client().debounce(job)
    client.add(id="u1", event=Click("a"))
    result = client.flush("u1")
    assert (result.flushing, result.event_count, result.reason) == (True, 1, "manual")
    assert client.status("u1").will_flush_at == START + timedelta(seconds=30)
    sim.advance("30 seconds")
    assert [(f[0], f[3]) for f in flushes] == [("manual", 1), ("manual", 2)]


def test_a_manual_flush_during_a_backoff_runs_the_retry_with_the_first_reason(
    make: Make,
) -> None:
    job, flushes = batching(
        fail_calls=frozenset({1}),
        max_events=1,
        retry=Retry(max_attempts=3, backoff=Backoff.constant("10 minutes"), jitter=False),
    )
    sim = make(Jobs(clicks=job))
    client = sim.client().debounce(job)
    client.add(id="u1", event=Click("a"))  # max_events: flushed at once, and failed
    assert client.add(id="u1", event=Click("b")).retry_scheduled  # joins the backoff
    result = client.flush("u1")
    assert (result.flushing, result.reason) == (True, "manual")
    assert [(f[0], f[3]) for f in flushes] == [("maxEvents", 1), ("maxEvents", 2)]
    flushed = [e for e in sim.telemetry if isinstance(e, DebounceFlushed)]
    assert [e.reason for e in flushed] == ["maxEvents"]


def test_exhaustion_dead_letters_the_batch_and_purges(make: Make) -> None:
    job, flushes = batching(
        fail_calls=frozenset({1, 2}),
        retry=Retry(max_attempts=2, backoff=Backoff.constant("1 minute"), jitter=False),
    )
    sim = make(Jobs(clicks=job))
    client = sim.client().debounce(job)
    client.add(id="u1", event=Click("a"))
    client.add(id="u1", event=Click("b"))
    sim.advance("6 minutes")
    assert len(flushes) == 2
    (dead,) = client.dead_letters()
    assert dead.payload == Tally(("a", "b"))
    assert dead.attempts == 2
    assert dead.error.message == "flush 2 failed"
    assert client.status("u1").status == "not_found"
    fresh = client.add(id="u1", event=Click("c"))
    assert fresh.created is True
    assert fresh.event_count == 1


def test_a_failure_without_retry_leaves_no_zombie(make: Make) -> None:
    job, flushes = batching(fail_calls=frozenset({1}))
    sim = make(Jobs(clicks=job))
    client = sim.client().debounce(job)
    client.add(id="u1", event=Click("a"))
    sim.advance("5 minutes")
    assert client.status("u1").status == "not_found"
    assert [d.payload for d in client.dead_letters()] == [Tally(("a",))]
    assert "job.retryExhausted" in types(sim.telemetry)
    client.add(id="u1", event=Click("b"))
    sim.advance("5 minutes")
    assert flushes[-1] == ("flushAfter", Tally(("b",)), 1, 1)


def test_ctx_terminate_in_execute_purges_the_batch(make: Make) -> None:
    def execute(ctx: DebounceContext[Click]) -> None:
        ctx.terminate("not today")

    job = Debounce.make(event=Click, execute=execute, flush_after="1 minute")
    sim = make(Jobs(j=job))
    sim.client().debounce(job).add(id="u", event=Click("a"))
    sim.advance("1 minute")
    assert sim.client().debounce(job).status("u").status == "not_found"
    assert sim.client().debounce(job).dead_letters() == []
    assert types(sim.telemetry)[-1] == "job.terminated"
