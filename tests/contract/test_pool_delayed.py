"""Contract: delayed and scheduled WorkerPool events (``enqueue(..., delay=| at=)``),
on every interpreter.

A delayed event is stored at once, counted, de-duplicated and cancellable from its
enqueue; it never runs before it is due; once due it takes its place by priority, then
original enqueue order; the shard sleeps until the first one is due.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from durable_jobs import (
    Enqueue,
    Jobs,
    PoolEmptyContext,
    QueueFullError,
    ValidationError,
)
from durable_jobs.protocol import DUE_BATCH, shard_index
from tests.contract.conftest import START, Make
from tests.contract.test_pool import Mail, mailer


def ids(runs: list[tuple[str, int, int]]) -> list[str]:
    return [run[0] for run in runs]


def test_a_delayed_event_is_stored_at_once_and_runs_when_due_not_before(make: Make) -> None:
    pool, runs, contexts = mailer()
    sim = make(Jobs(mail=pool))
    client = sim.client().worker_pool(pool)
    result = client.enqueue(id="later", event=Mail("a"), delay="10 minutes")
    assert (result.duplicate, result.created, result.position) == (False, True, None)
    assert result.due_at == START + timedelta(minutes=10)
    assert sim.next_alarm_at() == START + timedelta(minutes=10)  # sleeps until it is due
    sim.advance("9 minutes")
    assert runs == []
    sim.advance("59 seconds")
    assert runs == []
    sim.advance("1 second")
    assert runs == [("later", 0, 1)]
    ctx = contexts[0]
    assert (ctx.now, ctx.enqueued_at) == (START + timedelta(minutes=10), START)
    assert sim.next_alarm_at() is None
    assert client.status().total_processed == 1


def test_at_schedules_an_event_and_a_due_time_not_in_the_future_means_now(make: Make) -> None:
    pool, runs, _ = mailer()
    sim = make(Jobs(mail=pool))
    client = sim.client().worker_pool(pool)
    noon = START + timedelta(hours=1)
    scheduled = client.enqueue(id="at-noon", event=Mail("a"), at=noon)
    assert (scheduled.due_at, scheduled.position) == (noon, None)
    past = client.enqueue(id="past", event=Mail("b"), at=START - timedelta(days=1))
    zero = client.enqueue(id="zero", event=Mail("c"), delay=timedelta(0))
    assert (past.due_at, past.position, zero.due_at, zero.position) == (None, 0, None, 1)
    sim.advance("1 second")
    assert ids(runs) == ["past", "zero"]
    sim.advance_to(noon - timedelta(milliseconds=1))
    assert ids(runs) == ["past", "zero"]
    sim.advance("1 ms")
    assert ids(runs) == ["past", "zero", "at-noon"]


def test_once_due_it_ranks_by_priority_then_original_enqueue_order(make: Make) -> None:
    pool, runs, _ = mailer()
    sim = make(Jobs(mail=pool))
    client = sim.client().worker_pool(pool)
    client.pause()
    client.enqueue(id="early-delayed", event=Mail("a"), delay="1 minute")
    client.enqueue(id="low", event=Mail("b"))
    client.enqueue(id="urgent-delayed", event=Mail("c"), delay="30 seconds", priority=9)
    client.enqueue(id="high", event=Mail("d"), priority=5)
    client.enqueue(id="not-yet", event=Mail("e"), delay="1 hour", priority=100)
    sim.advance("2 minutes")
    assert runs == []  # paused: what fell due waits for resume
    client.resume()
    sim.advance("1 second")
    # Due ones join by priority, then by when they were enqueued (not when they fell due);
    # one that is not due never runs, whatever its priority.
    assert ids(runs) == ["urgent-delayed", "high", "early-delayed", "low"]
    sim.advance("1 hour")
    assert ids(runs)[-1] == "not-yet"


def test_a_waiting_queue_runs_first_and_the_delayed_event_runs_at_its_time(make: Make) -> None:
    pool, runs, contexts = mailer()
    sim = make(Jobs(mail=pool))
    client = sim.client().worker_pool(pool)
    client.enqueue(id="later", event=Mail("a"), delay="5 minutes", priority=10)
    client.enqueue(id="now-1", event=Mail("b"))
    client.enqueue(id="now-2", event=Mail("c"))
    sim.advance("1 second")
    assert ids(runs) == ["now-1", "now-2"]
    assert sim.next_alarm_at() == START + timedelta(minutes=5)
    sim.advance("5 minutes")
    assert ids(runs) == ["now-1", "now-2", "later"]
    assert contexts[-1].now == START + timedelta(minutes=5)


def test_a_delayed_event_falling_due_during_a_retry_waits_for_the_current_one(
    make: Make,
) -> None:
    pool, runs, _ = mailer()
    sim = make(Jobs(mail=pool))
    client = sim.client().worker_pool(pool)
    client.enqueue(id="flaky", event=Mail("a", fail=1))
    client.enqueue(id="later", event=Mail("b"), delay="10 seconds", priority=50)
    sim.advance("30 seconds")  # flaky failed at once; its retry is one minute later
    assert runs == [("flaky", 0, 1)]
    sim.advance("30 seconds")
    assert runs == [("flaky", 0, 1), ("flaky", 0, 2), ("later", 0, 1)]


def test_more_delayed_events_due_at_once_than_one_batch_all_run_in_order(make: Make) -> None:
    pool, runs, _ = mailer()
    sim = make(Jobs(mail=pool))
    client = sim.client().worker_pool(pool)
    count = DUE_BATCH * 2 + 5
    batch = [
        Enqueue(f"e{i:03}", Mail(str(i)), priority=i % 3, delay="1 minute") for i in range(count)
    ]
    results = client.enqueue_many(batch)
    assert {r.due_at for r in results} == {START + timedelta(minutes=1)}
    assert client.instance_status(0).delayed_count == count
    sim.advance("1 minute")
    expected = sorted((f"e{i:03}" for i in range(count)), key=lambda e: -(int(e[1:]) % 3))
    assert ids(runs) == expected
    assert client.instance_status(0).delayed_count == 0


def test_a_delayed_id_is_a_duplicate_from_its_enqueue_until_retention_ends(make: Make) -> None:
    pool, runs, _ = mailer(dedup_retention="1 hour")
    sim = make(Jobs(mail=pool))
    client = sim.client().worker_pool(pool)
    first = client.enqueue(id="m1", event=Mail("a"), delay="10 minutes")
    again = client.enqueue(id="m1", event=Mail("other"))
    later = client.enqueue(id="m1", event=Mail("other"), delay="1 minute")
    for dup in (again, later):
        assert (dup.duplicate, dup.created, dup.position) == (True, False, None)
        assert dup.due_at == first.due_at
    [many] = client.enqueue_many([Enqueue("m1", Mail("x"), at=START + timedelta(days=1))])
    assert (many.duplicate, many.due_at) == (True, first.due_at)
    sim.advance("10 minutes")
    assert runs == [("m1", 0, 1)]
    assert client.enqueue(id="m1", event=Mail("other"), delay="1 minute").duplicate is True
    sim.advance("2 hours")
    assert ids(runs) == ["m1"]
    assert client.status().total_processed == 1


def test_cancel_removes_a_delayed_event_and_the_shard_does_not_wake_for_it(make: Make) -> None:
    pool, runs, _ = mailer()
    sim = make(Jobs(mail=pool))
    client = sim.client().worker_pool(pool)
    client.enqueue(id="soon", event=Mail("a"), delay="1 minute")
    client.enqueue(id="later", event=Mail("b"), delay="1 hour")
    cancelled = client.cancel("soon")
    assert (cancelled.cancelled, cancelled.reason) == (True, "cancelled")
    assert client.cancel("soon").reason == "not_found"
    assert client.instance_status(0).delayed_count == 1
    sim.advance("59 minutes")
    assert runs == []
    sim.advance("1 minute")
    assert ids(runs) == ["later"]
    client.enqueue(id="gone", event=Mail("c"), delay="1 minute")
    client.cancel("gone")
    sim.advance("1 hour")
    assert ids(runs) == ["later"]
    assert sim.next_alarm_at() is None
    assert client.instance_status(0).delayed_count == 0


def test_status_counts_delayed_events_apart_from_pending_ones(make: Make) -> None:
    pool, _, _ = mailer(concurrency=2)
    sim = make(Jobs(mail=pool))
    client = sim.client().worker_pool(pool)
    client.pause()
    client.enqueue(id="a", event=Mail("a"), partition_key="one", delay="1 minute")
    client.enqueue(id="b", event=Mail("b"), partition_key="one", delay="2 minutes")
    client.enqueue(id="c", event=Mail("c"), partition_key="one")
    client.enqueue(id="d", event=Mail("d"), partition_key="left", delay="1 minute")
    client.resume()
    one = shard_index("one", 2)
    shard = client.instance_status(one)
    assert (shard.status, shard.pending_count, shard.delayed_count) == ("processing", 1, 2)
    assert shard.oldest_enqueued_at == START  # of the pending ones: "c"
    status = client.status()
    assert (status.total_pending, status.total_delayed) == (1, 3)
    sim.advance("1 second")
    shard = client.instance_status(one)
    assert (shard.status, shard.pending_count, shard.delayed_count) == ("idle", 0, 2)
    assert shard.oldest_enqueued_at is None
    sim.advance("1 minute")
    status = client.status()
    assert (status.total_pending, status.total_delayed, status.total_processed) == (0, 1, 3)
    sim.advance("1 minute")
    assert (client.status().total_delayed, client.status().total_processed) == (0, 4)


def test_drain_removes_delayed_events_too(make: Make) -> None:
    pool, runs, _ = mailer()
    sim = make(Jobs(mail=pool))
    client = sim.client().worker_pool(pool)
    client.enqueue(id="a", event=Mail("a"), delay="1 minute")
    client.enqueue(id="b", event=Mail("b"), at=START + timedelta(hours=1))
    client.pause()
    client.enqueue(id="c", event=Mail("c"))
    result = client.drain()
    assert (result.drained, result.events_cleared) == (True, 3)
    client.resume()
    sim.advance("2 hours")
    assert runs == []
    assert client.instance_status(0).delayed_count == 0
    assert client.enqueue(id="a", event=Mail("a")).duplicate is False  # not remembered


def test_delayed_events_count_against_max_queue_depth(make: Make) -> None:
    pool, _, _ = mailer(max_queue_depth=2)
    sim = make(Jobs(mail=pool))
    client = sim.client().worker_pool(pool)
    client.enqueue(id="a", event=Mail("a"), delay="1 hour")
    client.enqueue(id="b", event=Mail("b"))
    with pytest.raises(QueueFullError, match="max_queue_depth=2"):
        client.enqueue(id="c", event=Mail("c"), delay="1 minute")
    assert client.status().total_delayed == 1
    sim.advance("1 second")
    assert client.enqueue(id="c", event=Mail("c"), delay="1 minute").duplicate is False


def test_on_empty_waits_until_no_delayed_event_is_left(make: Make) -> None:
    empties: list[datetime] = []

    def on_empty(ctx: PoolEmptyContext) -> None:
        empties.append(sim.now())

    pool, _, _ = mailer(on_empty=on_empty)
    sim = make(Jobs(mail=pool))
    client = sim.client().worker_pool(pool)
    client.enqueue(id="now", event=Mail("a"))
    client.enqueue(id="later", event=Mail("b"), delay="1 minute")
    sim.advance("1 second")
    assert empties == []
    sim.advance("1 minute")
    assert empties == [START + timedelta(minutes=1)]


def test_bad_delay_or_at_is_refused_before_anything_is_written(make: Make) -> None:
    pool, _, _ = mailer()
    sim = make(Jobs(mail=pool))
    client = sim.client().worker_pool(pool)
    with pytest.raises(ValidationError, match="not both"):
        client.enqueue(id="a", event=Mail("a"), delay="1 minute", at=START)
    with pytest.raises(ValidationError, match="aware"):
        client.enqueue(id="a", event=Mail("a"), at=datetime(2026, 3, 1, 13, 0))
    with pytest.raises(ValidationError, match="longer than the maximum, 100 years"):
        client.enqueue(id="a", event=Mail("a"), delay=timedelta(days=36_526))
    with pytest.raises(ValidationError, match="bare number"):
        client.enqueue(id="a", event=Mail("a"), delay=60)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="aware datetime"):
        client.enqueue(id="a", event=Mail("a"), at="tomorrow")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="not both"):
        client.enqueue_many(
            [Enqueue("b", Mail("b")), Enqueue("a", Mail("a"), delay="1 s", at=START)]
        )
    assert client.instance_status(0).status == "not_found"
    assert sim.telemetry == []
