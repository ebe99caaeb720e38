"""Contract: Task jobs, every client action and every DESIGN §4 decision."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import attrs
import pytest

from durable_jobs import (
    Backoff,
    Jobs,
    Retry,
    Task,
    TaskContext,
    TaskDefinition,
    TaskScheduled,
    Unstructured,
    UserCodeError,
    ValidationError,
)
from tests.contract.conftest import START, Make, types


@attrs.frozen
class Order:
    items: int
    paid: bool = False


@attrs.frozen
class Placed:
    items: int


@attrs.frozen
class Paid:
    pass


Event = Placed | Paid
Log = list[tuple[str, Any]]


def workflow(
    *,
    idle: bool = True,
    on_error: bool = False,
    fail_executes: frozenset[int] = frozenset(),
    **options: Any,
) -> tuple[TaskDefinition[Order, Event], Log]:
    """Placed → schedule a reminder in 1 hour; Paid → cancel it; execute → remind again."""
    log: Log = []
    calls = {"execute": 0}

    def on_event(ctx: TaskContext[Order, Event]) -> None:
        log.append(("on_event", (ctx.event, ctx.state, ctx.is_first_event, ctx.event_count)))
        match ctx.event:
            case Placed(items=n):
                if n < 0:
                    raise ValueError("negative order")
                ctx.set_state(Order(n))
                ctx.schedule("1 hour")
            case Paid():
                ctx.update_state(lambda o: attrs.evolve(o, paid=True))
                assert ctx.state is not None
                assert ctx.state.paid
                ctx.cancel_schedule()

    def execute(ctx: TaskContext[Order, Event]) -> None:
        calls["execute"] += 1
        log.append(("execute", (ctx.state, ctx.execute_count, ctx.attempt, ctx.now)))
        if calls["execute"] in fail_executes:
            raise RuntimeError(f"execute {calls['execute']} failed")

    def on_idle(ctx: TaskContext[Order, Event]) -> None:
        log.append(("on_idle", ctx.idle_reason))

    def handle(ctx: TaskContext[Order, Event]) -> None:
        assert ctx.error is not None
        log.append(("on_error", (ctx.error_source, ctx.error.message)))
        ctx.set_state(Order(0))

    job = Task.make(
        state=Order,
        event=Event,  # type: ignore[arg-type]
        on_event=on_event,
        execute=execute,
        on_idle=on_idle if idle else None,
        on_error=handle if on_error else None,
        **options,
    )
    return job, log


def test_send_creates_the_task_and_schedules_execute(make: Make) -> None:
    job, log = workflow()
    sim = make(Jobs(orders=job))
    client = sim.client().task(job)
    result = client.send(id="o1", event=Placed(3))
    assert result.created is True
    assert result.instance_id == "task:orders:o1"
    assert result.scheduled_at == START + timedelta(hours=1)
    assert log == [("on_event", (Placed(3), None, True, 1))]
    status = client.status("o1")
    assert status.status == "active"
    assert status.scheduled_at == START + timedelta(hours=1)
    assert status.created_at == START
    assert (status.event_count, status.execute_count) == (1, 0)
    assert client.get_state("o1") == Order(3)
    scheduled = [e for e in sim.telemetry if isinstance(e, TaskScheduled)]
    assert [(e.trigger, e.scheduled_at) for e in scheduled] == [
        ("event", int((START + timedelta(hours=1)).timestamp() * 1000))
    ]


def test_the_alarm_runs_execute_clears_the_schedule_and_on_idle_follows(make: Make) -> None:
    job, log = workflow()
    sim = make(Jobs(orders=job))
    client = sim.client().task(job)
    client.send(id="o1", event=Unstructured({"items": 2}))
    sim.advance("1 hour")
    assert log[1:] == [
        ("execute", (Order(2), 1, 1, START + timedelta(hours=1))),
        ("on_idle", "execute"),
    ]
    status = client.status("o1")
    assert status.status == "idle"
    assert status.scheduled_at is None
    assert status.execute_count == 1


def test_on_idle_runs_after_on_event_that_leaves_nothing_scheduled(make: Make) -> None:
    job, log = workflow()
    sim = make(Jobs(orders=job))
    client = sim.client().task(job)
    client.send(id="o1", event=Placed(1))
    reply = client.send(id="o1", event=Paid())
    assert reply.created is False
    assert reply.scheduled_at is None
    assert log[-2:] == [("on_event", (Paid(), Order(1), False, 2)), ("on_idle", "onEvent")]
    assert client.get_state("o1") == Order(1, paid=True)
    sim.advance("2 hours")
    assert [entry for entry in log if entry[0] == "execute"] == []


def test_trigger_runs_execute_now_and_leaves_the_schedule(make: Make) -> None:
    job, log = workflow(idle=False)
    sim = make(Jobs(orders=job))
    client = sim.client().task(job)
    client.send(id="o1", event=Placed(1))
    result = client.trigger("o1")
    assert (result.instance_id, result.triggered) == ("task:orders:o1", True)
    assert log[-1] == ("execute", (Order(1), 1, 1, START))
    assert client.status("o1").scheduled_at == START + timedelta(hours=1)
    assert client.trigger("nobody").triggered is False


def test_terminate_purges_and_answers_for_missing_tasks(make: Make) -> None:
    job, _ = workflow()
    sim = make(Jobs(orders=job))
    client = sim.client().task(job)
    client.send(id="o1", event=Placed(1))
    assert client.terminate("o1").terminated is True
    assert client.status("o1").status == "not_found"
    assert client.get_state("o1") is None
    assert sim.next_alarm_at() is None
    assert client.terminate("o1").terminated is False
    assert types(sim.telemetry)[-1] == "job.terminated"


def test_a_failing_on_event_rejects_the_event_and_stores_nothing(make: Make) -> None:
    job, _ = workflow()
    sim = make(Jobs(orders=job))
    client = sim.client().task(job)
    with pytest.raises(UserCodeError, match="negative order"):
        client.send(id="o1", event=Placed(-1))
    assert client.status("o1").status == "not_found"
    assert types(sim.telemetry) == ["job.failed"]
    with pytest.raises(ValidationError):
        client.send(id="o1", event=Unstructured({"unknown": True}))


def test_on_error_handles_a_failing_on_event(make: Make) -> None:
    job, log = workflow(on_error=True)
    sim = make(Jobs(orders=job))
    client = sim.client().task(job)
    result = client.send(id="o1", event=Placed(-1))
    assert result.created is True
    assert ("on_error", ("onEvent", "negative order")) in log
    assert client.get_state("o1") == Order(0)
    assert client.status("o1").event_count == 1
    assert log[-1] == ("on_idle", "onError")


def test_execute_retries_then_dead_letters_and_calls_on_error(make: Make) -> None:
    job, log = workflow(
        on_error=True,
        fail_executes=frozenset({1, 2}),
        retry=Retry(max_attempts=2, backoff=Backoff.constant("5 minutes"), jitter=False),
    )
    sim = make(Jobs(orders=job))
    client = sim.client().task(job)
    client.send(id="o1", event=Placed(4))
    sim.advance("1 hour")
    # execute failed and waits for its retry: the status says it will run again, when,
    # and as which attempt (it once answered "idle", with nothing scheduled).
    waiting = client.status("o1")
    assert waiting.status == "active"
    assert waiting.scheduled_at is None
    assert waiting.next_run_at == START + timedelta(hours=1, minutes=5)
    assert waiting.attempt == 2
    assert sim.next_alarm_at() == START + timedelta(hours=1, minutes=5)
    sim.advance("5 minutes")
    executes = [entry[1] for entry in log if entry[0] == "execute"]
    assert [(count, attempt) for _, count, attempt, _ in executes] == [(1, 1), (1, 2)]
    (dead,) = client.dead_letters()
    assert dead.payload == Order(4)
    assert dead.attempts == 2
    assert ("on_error", ("execute", "execute 2 failed")) in log
    assert client.get_state("o1") == Order(0)


def test_ctx_terminate_from_any_hook_purges(make: Make) -> None:
    def on_event(ctx: TaskContext[int, int]) -> None:
        if ctx.event == 0:
            ctx.terminate()
        ctx.set_state(ctx.event)
        ctx.schedule("1 minute")

    def execute(ctx: TaskContext[int, int]) -> None:
        ctx.terminate("finished")

    job = Task.make(state=int, event=int, on_event=on_event, execute=execute)
    sim = make(Jobs(t=job))
    client = sim.client().task(job)
    client.send(id="a", event=5)
    sim.advance("1 minute")
    assert client.status("a").status == "not_found"
    client.send(id="b", event=5)
    client.send(id="b", event=0)
    assert client.status("b").status == "not_found"
    assert sim.next_alarm_at() is None


def test_advance_fires_alarms_scheduled_inside_the_window_at_their_own_times(make: Make) -> None:
    times: list[Any] = []

    def on_event(ctx: TaskContext[int, int]) -> None:
        ctx.set_state(0)
        ctx.schedule("1 minute")

    def execute(ctx: TaskContext[int, int]) -> None:
        times.append(ctx.now)
        ctx.update_state(lambda n: n + 1)
        ctx.schedule(ctx.now + timedelta(minutes=1))

    job = Task.make(state=int, event=int, on_event=on_event, execute=execute)
    sim = make(Jobs(t=job))
    sim.client().task(job).send(id="a", event=1)
    assert sim.next_alarm_at() == START + timedelta(minutes=1)
    sim.advance("10 minutes")
    assert times == [START + timedelta(minutes=m) for m in range(1, 11)]
    assert sim.client().task(job).get_state("a") == 10
    sim.advance_to(START + timedelta(minutes=12, seconds=30))
    assert len(times) == 12
    assert sim.now() == START + timedelta(minutes=12, seconds=30)
