"""Contract: Continuous jobs, every client action and every DESIGN §4 decision."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import attrs
import pytest
from returns.result import Failure, Success

from durable_jobs import (
    Backoff,
    Continuous,
    ContinuousContext,
    ContinuousDefinition,
    JobDeadLettered,
    JobExecuted,
    JobFailed,
    JobRetryExhausted,
    Jobs,
    JobTerminated,
    Retry,
    Unstructured,
    ValidationError,
)
from tests.contract.conftest import START, Make, types


@attrs.frozen
class Counter:
    count: int


def counting(
    fail_runs: frozenset[int] = frozenset(),
    **options: Any,
) -> tuple[ContinuousDefinition[Counter], list[ContinuousContext[Counter]]]:
    """A job that counts its successful runs; runs numbered in ``fail_runs`` raise."""
    seen: list[ContinuousContext[Counter]] = []
    calls = {"n": 0}

    def execute(ctx: ContinuousContext[Counter]) -> None:
        calls["n"] += 1
        seen.append(ctx)
        ctx.update_state(lambda s: Counter(s.count + 1))
        if calls["n"] in fail_runs:
            raise RuntimeError(f"call {calls['n']} failed")

    options.setdefault("schedule", Continuous.every("10 minutes"))
    return Continuous.make(state=Counter, execute=execute, **options), seen


def test_start_runs_at_once_and_schedules_the_next_slot(make: Make) -> None:
    job, seen = counting()
    sim = make(Jobs(job=job))
    result = sim.client().continuous(job).start(id="u1", input=Counter(0))
    assert result.created is True
    assert result.status == "running"
    assert result.instance_id == "continuous:job:u1"
    assert len(seen) == 1
    assert seen[0].run_count == 1
    assert seen[0].attempt == 1
    assert not seen[0].is_retry
    assert seen[0].now == START
    status = sim.client().continuous(job).status("u1")
    assert status.status == "running"
    assert status.run_count == 1
    assert status.next_run_at == START + timedelta(minutes=10)
    assert sim.client().continuous(job).get_state("u1") == Counter(1)
    assert types(sim.telemetry) == ["job.started", "job.executed"]


def test_start_accepts_the_json_form_and_a_second_start_changes_nothing(make: Make) -> None:
    job, seen = counting()
    sim = make(Jobs(job=job))
    client = sim.client().continuous("job")
    assert client.start(id="u1", input={"count": 5}).created
    again = client.start(id="u1", input={"count": 100})
    assert again.created is False
    assert again.status == "running"
    assert client.get_state("u1") == Counter(6)
    assert len(seen) == 1


def test_invalid_input_is_refused_with_nothing_written(make: Make) -> None:
    job, seen = counting()
    sim = make(Jobs(job=job))
    client = sim.client().continuous(job)
    with pytest.raises(ValidationError, match="count"):
        client.start(id="u1", input=Unstructured({"count": "many"}))
    with pytest.raises(ValidationError):
        client.start(id="", input=Counter(0))
    assert client.status("u1").status == "not_found"
    assert sim.telemetry == []
    assert seen == []
    assert sim.next_alarm_at() is None


def test_start_immediately_false_waits_for_the_first_slot(make: Make) -> None:
    job, seen = counting(start_immediately=False)
    sim = make(Jobs(job=job))
    sim.client().continuous(job).start(id="u1", input=Counter(0))
    assert seen == []
    sim.advance("9 minutes")
    assert seen == []
    sim.advance("1 minute")
    assert [ctx.now for ctx in seen] == [START + timedelta(minutes=10)]


def test_every_runs_at_a_fixed_rate_without_drift(make: Make) -> None:
    job, seen = counting()
    sim = make(Jobs(job=job))
    sim.client().continuous(job).start(id="u1", input=Counter(0))
    sim.advance("1 hour")
    assert [ctx.now - START for ctx in seen] == [timedelta(minutes=10 * i) for i in range(7)]
    assert [ctx.run_count for ctx in seen] == list(range(1, 8))
    assert sim.client().continuous(job).get_state("u1") == Counter(7)


def test_cron_schedule_in_a_time_zone(make: Make) -> None:
    job, seen = counting(schedule=Continuous.cron("0 9 * * *", tz="Europe/Paris"))
    sim = make(Jobs(job=job))
    sim.client().continuous(job).start(id="u1", input=Counter(0))
    sim.advance("3 days")
    # 09:00 in Paris is 08:00 UTC in March before the DST change (29 March 2026).
    assert [ctx.now.hour for ctx in seen[1:]] == [8, 8, 8]
    assert [ctx.now.day for ctx in seen[1:]] == [2, 3, 4]


def test_trigger_runs_now_and_keeps_the_schedule(make: Make) -> None:
    job, seen = counting()
    sim = make(Jobs(job=job))
    client = sim.client().continuous(job)
    client.start(id="u1", input=Counter(0))
    sim.advance("3 minutes")
    result = client.trigger("u1")
    assert (result.triggered, result.queued) == (True, False)
    assert seen[-1].run_count == 2  # the memory interpreter (and SQLite inline) ran it
    assert client.status("u1").next_run_at == START + timedelta(minutes=10)
    assert client.trigger("nobody").triggered is False


def test_terminate_purges_and_the_id_can_start_again(make: Make) -> None:
    job, _seen = counting()
    sim = make(Jobs(job=job))
    client = sim.client().continuous(job)
    client.start(id="u1", input=Counter(0))
    result = client.terminate("u1", reason="moved away")
    assert result.terminated is True
    assert result.reason == "moved away"
    assert client.status("u1").status == "not_found"
    assert client.get_state("u1") is None
    assert sim.next_alarm_at() is None
    terminated = [e for e in sim.telemetry if isinstance(e, JobTerminated)]
    assert [(e.reason, e.run_count) for e in terminated] == [("moved away", 1)]
    again = client.terminate("u1")
    assert again.terminated is False
    assert again.reason == "not_found"
    assert client.start(id="u1", input=Counter(10)).created is True
    assert client.get_state("u1") == Counter(11)


def test_retry_backs_off_and_drops_the_failed_runs_changes(make: Make) -> None:
    job, seen = counting(
        fail_runs=frozenset({2}),
        retry=Retry(max_attempts=3, backoff=Backoff.constant("1 minute"), jitter=False),
    )
    sim = make(Jobs(job=job))
    client = sim.client().continuous(job)
    client.start(id="u1", input=Counter(0))
    sim.advance("10 minutes")
    status = client.status("u1")
    assert status.next_run_at == START + timedelta(minutes=11)
    assert status.attempt == 2
    assert client.get_state("u1") == Counter(1)
    sim.advance("1 minute")
    assert [(c.run_count, c.attempt, c.is_retry) for c in seen] == [
        (1, 1, False),
        (2, 1, False),
        (2, 2, True),
    ]
    assert client.get_state("u1") == Counter(2)
    failed = [e for e in sim.telemetry if isinstance(e, JobFailed)]
    assert len(failed) == 1
    assert failed[0].will_retry is True
    assert failed[0].attempt == 1
    assert failed[0].next_attempt == 2
    assert failed[0].error.message == "call 2 failed"
    # The regular schedule resumes on its grid.
    assert client.status("u1").next_run_at == START + timedelta(minutes=20)


def test_exhaustion_dead_letters_the_state_and_the_schedule_goes_on(make: Make) -> None:
    job, _seen = counting(
        fail_runs=frozenset({2, 3}),
        retry=Retry(max_attempts=2, backoff=Backoff.constant("1 minute"), jitter=False),
    )
    sim = make(Jobs(job=job))
    client = sim.client().continuous(job)
    client.start(id="u1", input=Counter(0))
    sim.advance("11 minutes")
    (dead,) = client.dead_letters()
    assert dead.payload == Counter(1)
    assert dead.attempts == 2
    assert dead.error.type == "RuntimeError"
    assert dead.error.message == "call 3 failed"
    assert dead.failed_at == START + timedelta(minutes=11)
    assert (dead.job_type, dead.job_name, dead.id) == ("continuous", "job", "u1")
    exhausted = [e for e in sim.telemetry if isinstance(e, JobRetryExhausted)]
    assert [(e.attempts, e.reason) for e in exhausted] == [(2, "max_attempts")]
    assert any(isinstance(e, JobDeadLettered) for e in sim.telemetry)
    assert client.status("u1").next_run_at == START + timedelta(minutes=20)
    sim.advance("9 minutes")
    assert client.get_state("u1") == Counter(2)


def test_exhaustion_can_terminate_instead(make: Make) -> None:
    job, _ = counting(
        fail_runs=frozenset({2}),
        on_retry_exhausted="terminate",
        retry=Retry(max_attempts=1),
    )
    sim = make(Jobs(job=job))
    client = sim.client().continuous(job)
    client.start(id="u1", input=Counter(0))
    sim.advance("10 minutes")
    assert client.status("u1").status == "not_found"
    assert len(client.dead_letters()) == 1
    assert types(sim.telemetry)[-4:] == [
        "job.failed",
        "job.retryExhausted",
        "job.deadLettered",
        "job.terminated",
    ]


def test_a_failure_without_retry_leaves_no_zombie(make: Make) -> None:
    job, seen = counting(fail_runs=frozenset({1}))
    sim = make(Jobs(job=job))
    client = sim.client().continuous(job)
    assert client.start(id="u1", input=Counter(0)).status == "running"
    assert client.get_state("u1") == Counter(0)
    assert len(client.dead_letters()) == 1
    assert client.status("u1").next_run_at == START + timedelta(minutes=10)
    sim.advance("10 minutes")
    assert len(seen) == 2
    assert client.get_state("u1") == Counter(1)


def test_max_duration_ends_the_sequence_with_its_reason(make: Make) -> None:
    job, _ = counting(
        fail_runs=frozenset(range(1, 100)),
        retry=Retry(
            max_attempts=50,
            backoff=Backoff.constant("1 minute"),
            jitter=False,
            max_duration="150 seconds",
        ),
    )
    sim = make(Jobs(job=job))
    sim.client().continuous(job).start(id="u1", input=Counter(0))
    sim.advance("5 minutes")
    exhausted = [e for e in sim.telemetry if isinstance(e, JobRetryExhausted)]
    assert [(e.attempts, e.reason) for e in exhausted] == [(3, "max_duration")]


def test_ctx_terminate_purges_even_when_user_code_catches_exception(make: Make) -> None:
    def execute(ctx: ContinuousContext[Counter]) -> None:
        ctx.set_state(Counter(99))
        try:
            ctx.terminate("done")
        except Exception:  # the signal is not an Exception: this must not catch it
            ctx.set_state(Counter(-1))

    job = Continuous.make(state=Counter, schedule=Continuous.every("1 hour"), execute=execute)
    sim = make(Jobs(job=job))
    result = sim.client().continuous(job).start(id="u1", input=Counter(0))
    assert result.status == "running"  # the answer is given before the run (in a worker)
    assert sim.client().continuous(job).status("u1").status == "not_found"
    terminated = [e for e in sim.telemetry if isinstance(e, JobTerminated)]
    assert [e.reason for e in terminated] == ["done"]


def test_async_and_returns_containers_are_user_functions_too(make: Make) -> None:
    async def async_execute(ctx: ContinuousContext[Counter]) -> None:
        await asyncio.sleep(0)
        ctx.update_state(lambda s: Counter(s.count + 1))

    def failing(ctx: ContinuousContext[Counter]) -> Any:
        return Failure(ValueError("declined"))

    def declining(ctx: ContinuousContext[Counter]) -> Any:
        return Failure("quota used up")

    def succeeding(ctx: ContinuousContext[Counter]) -> Any:
        ctx.set_state(Counter(42))
        return Success(None)

    jobs = Jobs(
        a=Continuous.make(
            state=Counter, schedule=Continuous.every("1 hour"), execute=async_execute
        ),
        f=Continuous.make(state=Counter, schedule=Continuous.every("1 hour"), execute=failing),
        s=Continuous.make(state=Counter, schedule=Continuous.every("1 hour"), execute=succeeding),
        d=Continuous.make(state=Counter, schedule=Continuous.every("1 hour"), execute=declining),
    )
    sim = make(jobs)
    client = sim.client()
    client.continuous("a").start(id="x", input=Counter(0))
    client.continuous("f").start(id="x", input=Counter(0))
    client.continuous("s").start(id="x", input=Counter(0))
    assert client.continuous("a").get_state("x") == Counter(1)
    (dead,) = client.continuous("f").dead_letters()
    assert (dead.error.type, dead.error.message) == ("ValueError", "declined")
    assert client.continuous("s").get_state("x") == Counter(42)
    client.continuous("d").start(id="x", input=Counter(0))
    (declined,) = client.continuous("d").dead_letters()
    assert (declined.error.type, declined.error.message) == ("Failure", "'quota used up'")


def test_a_state_of_the_wrong_type_fails_the_run(make: Make) -> None:
    def execute(ctx: ContinuousContext[Counter]) -> None:
        ctx.set_state("not a counter")  # type: ignore[arg-type]

    job = Continuous.make(state=Counter, schedule=Continuous.every("1 hour"), execute=execute)
    sim = make(Jobs(job=job))
    client = sim.client().continuous(job)
    client.start(id="u1", input=Counter(3))
    assert client.get_state("u1") == Counter(3)
    (dead,) = client.dead_letters()
    assert dead.error.type == "durable_jobs.ValidationError"


def test_telemetry_events_carry_the_base_fields(make: Make) -> None:
    job, _ = counting(fail_runs=frozenset({1}))
    sim = make(Jobs(job=job))
    sim.client().continuous(job).start(id="u1", input=Counter(0))
    for event in sim.telemetry:
        assert event.instance_id == "continuous:job:u1"
        assert event.id == "u1"
        assert event.job_name == "job"
        assert event.job_type == "continuous"
        assert event.at == START
    assert types(sim.telemetry) == [
        "job.started",
        "job.failed",
        "job.retryExhausted",
        "job.deadLettered",
    ]
    executed_fields = attrs.fields_dict(JobExecuted)
    assert {"attempt", "run_count", "duration_ms"} <= set(executed_fields)
