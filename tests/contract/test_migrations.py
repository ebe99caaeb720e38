"""Contract: a state or event type that changes between deploys (issue 10 §5), on every
interpreter.

Each test stores instances under ``CountV1`` (field ``count``), deploys a definition of
the same name whose state is ``CountV2`` (``count`` renamed ``total``, a new required
field ``unit``) with ``state_version=2`` and a migration, and checks one action on the
old instances. The twin ``..._without_a_migration`` tests deploy ``CountV2`` the way one
had to before state versions (no version, no migration) and expect the
``StorageError`` naming the instance that every action met.

A WorkerPool's events are stored (queue rows, pending and delayed; the event a shard is
retrying, in its snapshot; dead letters): the pool tests store them under ``MailV1`` and
deploy ``MailV2`` (``email`` renamed ``to``, a new required ``subject``) with
``event_version=2`` and ``migrate_event``, or without them.

``deploy`` (see ``conftest``) reopens the SQLite file, or carries the memory store's
contents over through the codecs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import attrs
import pytest

from durable_jobs import (
    Backoff,
    Continuous,
    ContinuousContext,
    Debounce,
    DebounceContext,
    DebounceEventContext,
    Jobs,
    JobStarted,
    PoolContext,
    Retry,
    StorageError,
    Task,
    TaskContext,
    WorkerPool,
)
from tests.contract.conftest import Deploy


@attrs.frozen
class CountV1:
    count: int


@dataclasses.dataclass(frozen=True)
class CountV2:
    total: int
    unit: str


def to_v2(data: Any, version: int) -> Any:
    assert version == 1
    return {"total": data["count"], "unit": "runs"}


Versioning = dict[str, Any]
MIGRATED: Versioning = {"state_version": 2, "migrate_state": to_v2}
UNVERSIONED: Versioning = {}

ran: list[Any] = []


# ------------------------------------------------------------------------- Continuous


def tick_v1(ctx: ContinuousContext[CountV1]) -> None:
    ctx.update_state(lambda s: CountV1(s.count + 1))


def tick_v2(ctx: ContinuousContext[CountV2]) -> None:
    ran.append(ctx.state)
    ctx.update_state(lambda s: CountV2(s.total + 1, s.unit))


EVERY = Continuous.every("10 minutes")


def continuous_v1(**options: Any) -> Jobs:
    return Jobs(job=Continuous.make(state=CountV1, schedule=EVERY, execute=tick_v1, **options))


def continuous_v2(versioning: Versioning, **options: Any) -> Jobs:
    job = Continuous.make(state=CountV2, schedule=EVERY, execute=tick_v2, **versioning, **options)
    return Jobs(job=job)


def started_continuous(deploy: Deploy) -> None:
    """Instance ``u`` ran once under v1: its stored state is ``{"count": 1}``."""
    sim = deploy(continuous_v1())
    sim.client().continuous("job").start(id="u", input=CountV1(0))
    assert sim.client().continuous("job").get_state("u") == CountV1(1)


def test_continuous_get_state_reads_a_v1_state_as_v2(deploy: Deploy) -> None:
    started_continuous(deploy)
    sim = deploy(continuous_v2(MIGRATED))
    assert sim.client().continuous("job").get_state("u") == CountV2(1, "runs")


def test_continuous_status_and_terminate_read_a_v1_instance(deploy: Deploy) -> None:
    started_continuous(deploy)
    sim = deploy(continuous_v2(MIGRATED))
    client = sim.client().continuous("job")
    assert client.status("u").status == "running"
    assert client.terminate("u").terminated is True
    assert client.status("u").status == "not_found"


def test_continuous_start_of_an_existing_v1_instance_keeps_its_migrated_state(
    deploy: Deploy,
) -> None:
    started_continuous(deploy)
    sim = deploy(continuous_v2(MIGRATED))
    client = sim.client().continuous("job")
    assert client.start(id="u", input=CountV2(0, "x")).created is False
    assert client.get_state("u") == CountV2(1, "runs")


def test_continuous_due_run_sees_the_migrated_state_and_writes_v2(deploy: Deploy) -> None:
    started_continuous(deploy)
    sim = deploy(continuous_v2(MIGRATED))
    ran.clear()
    sim.advance("10 minutes")
    assert ran == [CountV2(1, "runs")]
    assert sim.client().continuous("job").get_state("u") == CountV2(2, "runs")
    # Written back as version 2: a further deploy of the same code reads it unchanged.
    assert deploy(continuous_v2(MIGRATED)).client().continuous("job").get_state("u") == (
        CountV2(2, "runs")
    )


def test_continuous_dead_letters_and_telemetry_of_v1_are_read_as_v2(deploy: Deploy) -> None:
    def fail(ctx: ContinuousContext[CountV1]) -> None:
        raise RuntimeError("down")

    job = Continuous.make(state=CountV1, schedule=EVERY, execute=fail, retry=Retry(1))
    sim = deploy(Jobs(job=job))
    sim.client().continuous("job").start(id="u", input=CountV1(7))
    sim = deploy(continuous_v2(MIGRATED))
    [letter] = sim.client().continuous("job").dead_letters()
    assert letter.payload == CountV2(7, "runs")
    [started] = [e for e in sim.telemetry if isinstance(e, JobStarted)]
    assert started.input == CountV2(7, "runs")


@pytest.mark.parametrize(
    "action",
    [
        lambda c: c.get_state("u"),
        lambda c: c.status("u"),
        lambda c: c.terminate("u"),
        lambda c: c.start(id="u", input=CountV2(0, "x")),
        lambda c: c.dead_letters(),
    ],
    ids=["get_state", "status", "terminate", "start", "dead_letters"],
)
def test_continuous_without_a_migration_every_action_is_a_storage_error(
    deploy: Deploy, action: Callable[[Any], Any]
) -> None:
    job = Continuous.make(state=CountV1, schedule=EVERY, execute=lambda ctx: 1 / 0, retry=Retry(1))
    sim = deploy(Jobs(job=job))
    sim.client().continuous("job").start(id="u", input=CountV1(0))
    with pytest.raises(StorageError, match=r"'job'|continuous:job:u"):
        action(deploy(continuous_v2(UNVERSIONED)).client().continuous("job"))


# ----------------------------------------------------------------------------- Task


def on_event_v1(ctx: TaskContext[CountV1, int]) -> None:
    ctx.set_state(CountV1((ctx.state.count if ctx.state else 0) + ctx.event))
    ctx.schedule(timedelta(minutes=1))


def on_event_v2(ctx: TaskContext[CountV2, int]) -> None:
    state = ctx.state or CountV2(0, "new")
    ctx.set_state(CountV2(state.total + ctx.event, state.unit))
    ctx.schedule(timedelta(minutes=1))


def execute_v2(ctx: TaskContext[CountV2, int]) -> None:
    ran.append(ctx.state)


def task_v2(versioning: Versioning) -> Jobs:
    return Jobs(
        t=Task.make(
            state=CountV2, event=int, on_event=on_event_v2, execute=execute_v2, **versioning
        )
    )


def sent_task(deploy: Deploy) -> None:
    """Task ``u`` holds ``{"count": 5}`` and is due in a minute."""
    job = Task.make(state=CountV1, event=int, on_event=on_event_v1, execute=lambda ctx: None)
    sim = deploy(Jobs(t=job))
    sim.client().task("t").send(id="u", event=5)


def test_task_state_status_send_run_and_terminate_after_a_migration(deploy: Deploy) -> None:
    sent_task(deploy)
    sim = deploy(task_v2(MIGRATED))
    client = sim.client().task("t")
    assert client.get_state("u") == CountV2(5, "runs")
    assert client.status("u").status == "active"
    assert client.send(id="u", event=2).created is False  # on_event sees the v2 state
    ran.clear()
    sim.advance("1 minute")
    assert ran == [CountV2(7, "runs")]
    assert client.terminate("u").terminated is True


def test_task_without_a_migration_is_a_storage_error(deploy: Deploy) -> None:
    sent_task(deploy)
    with pytest.raises(StorageError, match="task:t:u"):
        deploy(task_v2(UNVERSIONED)).client().task("t").get_state("u")


# ------------------------------------------------------------------------- Debounce


def fold_v1(ctx: DebounceEventContext[int, CountV1]) -> CountV1:
    return CountV1((ctx.state.count if ctx.state else 0) + ctx.event)


def fold_v2(ctx: DebounceEventContext[int, CountV2]) -> CountV2:
    state = ctx.state or CountV2(0, "new")
    return CountV2(state.total + ctx.event, state.unit)


def flush_v2(ctx: DebounceContext[CountV2]) -> None:
    ran.append(ctx.state)


def debounce_v2(versioning: Versioning) -> Jobs:
    job = Debounce.make(
        event=int,
        state=CountV2,
        on_event=fold_v2,
        execute=flush_v2,
        flush_after="1 minute",
        **versioning,
    )
    return Jobs(b=job)


def added_debounce(deploy: Deploy) -> None:
    """Batch ``u`` holds ``{"count": 5}`` (two events), flushing in a minute."""
    job = Debounce.make(
        event=int, state=CountV1, on_event=fold_v1, execute=lambda ctx: None, flush_after="1 m"
    )
    sim = deploy(Jobs(b=job))
    sim.client().debounce("b").add(id="u", event=2)
    sim.client().debounce("b").add(id="u", event=3)


def test_debounce_batch_state_add_and_flush_after_a_migration(deploy: Deploy) -> None:
    added_debounce(deploy)
    sim = deploy(debounce_v2(MIGRATED))
    client = sim.client().debounce("b")
    assert client.get_state("u") == CountV2(5, "runs")
    assert client.status("u").status == "debouncing"
    assert client.add(id="u", event=1).event_count == 3
    ran.clear()
    sim.advance("1 minute")
    assert ran == [CountV2(6, "runs")]


def test_debounce_without_a_migration_is_a_storage_error(deploy: Deploy) -> None:
    added_debounce(deploy)
    with pytest.raises(StorageError, match="debounce:b:u"):
        deploy(debounce_v2(UNVERSIONED)).client().debounce("b").add(id="u", event=1)


# ----------------------------------------------------------------------- WorkerPool


@attrs.frozen
class MailV1:
    email: str


@attrs.frozen
class MailV2:
    to: str
    subject: str


def mail_to_v2(data: Any, version: int) -> Any:
    assert version == 1
    return {"to": data["email"], "subject": "(none)"}


EVENTS_MIGRATED: Versioning = {"event_version": 2, "migrate_event": mail_to_v2}
RETRY = Retry(max_attempts=2, backoff=Backoff.constant("1 minute"), jitter=False)
sent: list[tuple[str, MailV2]] = []


def fail_v1(ctx: PoolContext[MailV1]) -> None:
    raise ConnectionError(f"{ctx.event.email} unreachable")


def send_v2(ctx: PoolContext[MailV2]) -> None:
    sent.append((ctx.event_id, ctx.event))


def pool_v2(versioning: Versioning) -> Jobs:
    return Jobs(mail=WorkerPool.make(event=MailV2, concurrency=1, execute=send_v2, **versioning))


def v2(email: str) -> MailV2:
    return MailV2(email, "(none)")


def paused_pool(deploy: Deploy) -> None:
    """A paused shard holding two pending events and one delayed an hour: queue rows only
    (nothing is running, so the snapshot holds no event)."""
    sim = deploy(Jobs(mail=WorkerPool.make(event=MailV1, concurrency=1, execute=fail_v1)))
    client = sim.client().worker_pool("mail")
    client.pause()
    client.enqueue(id="p1", event=MailV1("a@x"))
    client.enqueue(id="p2", event=MailV1("b@x"), priority=5)
    client.enqueue(id="later", event=MailV1("c@x"), delay="1 hour")
    assert (client.status().total_pending, client.status().total_delayed) == (2, 1)


def test_pool_pending_and_delayed_events_run_as_v2_after_a_migration(deploy: Deploy) -> None:
    paused_pool(deploy)
    sim = deploy(pool_v2(EVENTS_MIGRATED))
    client = sim.client().worker_pool("mail")
    status = client.status()
    assert (status.total_pending, status.total_delayed, status.paused_instances) == (2, 1, 1)
    assert client.enqueue(id="p1", event=v2("z@x")).duplicate is True  # reads its row
    assert client.enqueue(id="new", event=MailV2("d@x", "hi")).position == 2
    sent.clear()
    client.resume()
    sim.advance("1 second")
    assert sent == [("p2", v2("b@x")), ("p1", v2("a@x")), ("new", MailV2("d@x", "hi"))]
    sim.advance("1 hour")
    assert sent[-1] == ("later", v2("c@x"))
    assert client.status().total_processed == 4


def test_pool_events_are_written_back_as_v2(deploy: Deploy) -> None:
    paused_pool(deploy)
    client = deploy(pool_v2(EVENTS_MIGRATED)).client().worker_pool("mail")
    assert client.cancel("p2").reason == "cancelled"
    client.enqueue(id="v2", event=MailV2("e@x", "hi"))  # a row of the new version
    sim = deploy(pool_v2(EVENTS_MIGRATED))  # the same code again: v1 and v2 rows side by side
    sent.clear()
    sim.client().worker_pool("mail").resume()
    sim.advance("1 hour")
    assert sent == [("p1", v2("a@x")), ("v2", MailV2("e@x", "hi")), ("later", v2("c@x"))]


def failing_pool(deploy: Deploy) -> None:
    """A dead letter of ``dead``; ``flaky`` failed once and waits for its retry in the
    shard's snapshot; ``p1`` is pending behind it."""
    pool = WorkerPool.make(event=MailV1, concurrency=1, execute=fail_v1, retry=RETRY)
    sim = deploy(Jobs(mail=pool))
    client = sim.client().worker_pool("mail")
    client.enqueue(id="dead", event=MailV1("dead@x"))
    sim.advance("1 minute")
    client.enqueue(id="flaky", event=MailV1("flaky@x"))
    client.enqueue(id="p1", event=MailV1("a@x"))
    sim.advance("1 second")
    status = client.instance_status(0)
    assert (status.current_event_id, status.pending_count, status.dead_lettered_count) == (
        "flaky",
        2,
        1,
    )


def test_pool_dead_letters_and_the_event_being_retried_are_read_as_v2(deploy: Deploy) -> None:
    failing_pool(deploy)
    sim = deploy(pool_v2(EVENTS_MIGRATED))
    client = sim.client().worker_pool("mail")
    [letter] = client.dead_letters()
    assert (letter.id, letter.payload) == ("dead", v2("dead@x"))
    status = client.instance_status(0)
    assert (status.status, status.current_event_id, status.pending_count) == (
        "processing",
        "flaky",
        2,
    )
    sent.clear()
    sim.advance("1 minute")
    assert sent == [("flaky", v2("flaky@x")), ("p1", v2("a@x"))]
    assert client.status().total_processed == 2


STORED = {"paused": ("p1", "p2", "later"), "failing": ("dead", "flaky", "p1")}


@pytest.mark.parametrize(
    ("setup", "action", "event_id"),
    [
        ("paused", lambda c: c.status(), "p1"),  # the oldest pending event
        ("paused", lambda c: c.cancel("p1"), "p1"),
        ("paused", lambda c: c.cancel("later"), "later"),
        ("paused", lambda c: c.enqueue(id="p1", event=v2("a@x")), "p1"),
        ("failing", lambda c: c.instance_status(0), "flaky"),
        ("failing", lambda c: c.dead_letters(), "dead"),
    ],
    ids=["status", "cancel", "cancel-delayed", "enqueue-duplicate", "retried", "dead-letters"],
)
def test_pool_without_a_migration_every_stored_event_is_a_storage_error(
    deploy: Deploy,
    request: pytest.FixtureRequest,
    setup: str,
    action: Callable[[Any], Any],
    event_id: str,
) -> None:
    (paused_pool if setup == "paused" else failing_pool)(deploy)
    # The memory deploy carries every stored event over at once, so it stops at the first.
    named = STORED[setup] if request.node.callspec.params["deploy"] == "memory" else (event_id,)
    with pytest.raises(StorageError, match=rf"workerPool:mail:0, event '({'|'.join(named)})'"):
        action(deploy(pool_v2(UNVERSIONED)).client().worker_pool("mail"))
