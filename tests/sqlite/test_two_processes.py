"""Two OS processes share one SQLite file: a producer that only asks, a worker that runs.

Issue 10: a client request never runs job code in the caller. It commits the run it
asks for as due now and answers; a worker process (``serve``, what ``durable-jobs
worker`` runs) runs ``execute``, ``on_idle``, the ``on_error`` after a failed
``execute``, ``on_dead_letter`` and ``on_empty``. Only the hooks that compute a
request's own answer run in the caller: a Debounce reducer, a Task ``on_event`` and the
``on_error`` that handles its failure. A request that meets a run in flight is queued
behind it (``queued=True``) and applied by the worker after the run, in order; a client
made with ``wait=`` waits for the run instead and then applies the request itself, or
raises ``BusyError`` naming the run and its worker.

This test proves it end to end. The producer is this pytest process: a default
``SqliteInterpreter`` (system clock, ``inline=False``) that never runs a worker. It
calls every client method of the four job types, first while no worker exists at all
(every request must answer, and no job code may run), then with a worker subprocess on
the same file (``start_worker`` serving this module's ``JOBS``), including while slow
runs are in flight there. Every hook appends
``start``/``end``/``fail`` lines with its process id to a log file (``crash_jobs.log``);
at the end the log must show each worker hook run in the worker's process and never in
the producer's, and the reducers and ``on_event`` of the requests that were answered at
once run in the producer's.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NamedTuple

import pytest

from durable_jobs import (
    BusyError,
    Continuous,
    ContinuousContext,
    ContinuousTriggerResult,
    Debounce,
    DebounceContext,
    DebounceEventContext,
    Enqueue,
    ErrorInfo,
    Jobs,
    PoolContext,
    PoolDeadLetterContext,
    PoolEmptyContext,
    Retry,
    Task,
    TaskContext,
    WorkerPool,
)
from durable_jobs.interpreters.sqlite import SqliteInterpreter
from tests.sqlite.crash_jobs import log, start_worker

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

SLOW_S = 1.5
"""How long a run made slow by its content takes: requests are sent while it runs."""
DEADLINE_S = 20.0
"""How long the test waits for the worker's effects (a loaded 2-core machine is slow)."""
SLOW = 1000
"""A Continuous state, a Debounce event: its run sleeps ``SLOW_S`` (a Task event and a
pool event ``"slow"`` do the same)."""
FAIL = 13
"""A Debounce batch holding it fails its flush (as do a Continuous state below 0, a
Task whose last event is ``"boom"`` and a pool event ``"boom"``): no retries, so each
ends as a dead letter."""

# -------------------------------------------------------------------------------- jobs
# Every hook writes its lines with ``crash_jobs.log``: phase job hook id detail pid ns.


@contextmanager
def hook(job: str, name: str, ident: object, detail: object = "-") -> Iterator[None]:
    log("start", job, name, ident, detail)
    try:
        yield
    except BaseException:
        log("fail", job, name, ident, detail)
        raise
    log("end", job, name, ident, detail)


def tick(ctx: ContinuousContext[int]) -> None:
    with hook("ticker", "execute", ctx.id, ctx.state):
        if ctx.state == SLOW:
            time.sleep(SLOW_S)
        if ctx.state < 0:
            raise RuntimeError("ticker failed")
        ctx.update_state(lambda n: n + 1)


def fold(ctx: DebounceEventContext[int, tuple[int, ...]]) -> tuple[int, ...]:
    with hook("batch", "on_event", ctx.id, ctx.event):
        return (*(ctx.state or ()), ctx.event)


def flush(ctx: DebounceContext[tuple[int, ...]]) -> None:
    with hook("batch", "execute", ctx.id, "-".join(map(str, ctx.state))):
        if SLOW in ctx.state:
            time.sleep(SLOW_S)
        if FAIL in ctx.state:
            raise RuntimeError("flush failed")


DELAYS = {"later": "200 milliseconds", "boom": "200 milliseconds", "hold": "1 hour"}
"""What a Task event schedules (``slow`` as ``hold``); other events schedule nothing."""


def on_event(ctx: TaskContext[tuple[str, ...], str]) -> None:
    with hook("task", "on_event", ctx.id, ctx.event):
        if ctx.event == "bad":
            raise ValueError("a bad event")
        ctx.set_state((*(ctx.state or ()), ctx.event))
        delay = DELAYS.get("hold" if ctx.event == "slow" else ctx.event)
        if delay is not None:
            ctx.schedule(delay)


def execute(ctx: TaskContext[tuple[str, ...], str]) -> None:
    last = ctx.state[-1] if ctx.state else "-"
    with hook("task", "execute", ctx.id, last):
        if last == "slow":
            time.sleep(SLOW_S)
        if last == "boom":
            raise RuntimeError("execute failed")
        ctx.update_state(lambda s: (*s, "ran"))


def on_idle(ctx: TaskContext[tuple[str, ...], str]) -> None:
    with hook("task", "on_idle", ctx.id, ctx.idle_reason):
        pass


def on_error(ctx: TaskContext[tuple[str, ...], str]) -> None:
    with hook("task", "on_error", ctx.id, ctx.error_source):
        pass


def work(ctx: PoolContext[str]) -> None:
    with hook("pool", "execute", ctx.event_id, ctx.instance_index):
        if ctx.event == "slow":
            time.sleep(SLOW_S)
        if ctx.event == "boom":
            raise RuntimeError("event failed")


def dead(event: str, error: ErrorInfo, ctx: PoolDeadLetterContext[str]) -> None:
    with hook("pool", "on_dead_letter", ctx.event_id, error.type):
        pass


def empty(ctx: PoolEmptyContext) -> None:
    with hook("pool", "on_empty", ctx.instance_index, ctx.processed_count):
        pass


ticker = Continuous.make(state=int, schedule=Continuous.every("1 hour"), execute=tick)
batch = Debounce.make(
    event=int,
    state=tuple[int, ...],
    on_event=fold,
    execute=flush,
    flush_after="1 hour",
    max_events=3,
)
task = Task.make(
    state=tuple[str, ...],
    event=str,
    on_event=on_event,
    execute=execute,
    on_idle=on_idle,
    on_error=on_error,
)
pool = WorkerPool.make(
    event=str,
    concurrency=2,
    execute=work,
    retry=Retry(max_attempts=1),
    on_dead_letter=dead,
    on_empty=empty,
)
JOBS = Jobs(ticker=ticker, batch=batch, task=task, pool=pool)
"""Served by the worker subprocess as ``tests.sqlite.test_two_processes:JOBS``."""

# ----------------------------------------------------------------------------- helpers


class Line(NamedTuple):
    phase: str
    job: str
    hook: str
    id: str
    detail: str
    pid: int
    ns: int


def read_log(path: Path) -> list[Line]:
    if not path.exists():
        return []
    lines = []
    for text in path.read_text().splitlines():
        phase, job, name, ident, detail, pid, ns = text.split()
        lines.append(Line(phase, job, name, ident, detail, int(pid), int(ns)))
    return lines


def wait_for(what: str, done: Callable[[], bool]) -> None:
    """Poll ``done`` until it holds; fail after ``DEADLINE_S``."""
    deadline = time.monotonic() + DEADLINE_S
    while not done():
        if time.monotonic() > deadline:
            pytest.fail(f"the worker did not {what} within {DEADLINE_S:g} s")
        time.sleep(0.02)


def near(when: datetime | None, delta: timedelta, *, within: float = 5.0) -> bool:
    """``when`` is about ``delta`` from now (the clock moved on since the call)."""
    return when is not None and abs(when - datetime.now(UTC) - delta) < timedelta(seconds=within)


def only(lines: list[Line], job: str, name: str, ident: str, phase: str = "end") -> Line:
    found = [x for x in lines if (x.phase, x.job, x.hook, x.id) == (phase, job, name, ident)]
    assert len(found) == 1, found
    return found[0]


WORKER_HOOKS = {"execute", "on_idle", "on_dead_letter", "on_empty"}
"""Hooks only a worker runs (and ``on_error`` after a failed ``execute``)."""


def is_worker_hook(line: Line) -> bool:
    return line.hook in WORKER_HOOKS or (line.hook == "on_error" and line.detail == "execute")


def worker_hooks_run_by(pid: int, lines: list[Line]) -> list[Line]:
    return [line for line in lines if is_worker_hook(line) and line.pid == pid]


# -------------------------------------------------------------------------------- test


def test_a_producer_process_answers_requests_and_a_worker_process_runs_the_jobs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "jobs.db"
    log_path = tmp_path / "hooks.log"
    monkeypatch.setenv("DURABLE_JOBS_TEST_LOG", str(log_path))  # the worker inherits it
    me = os.getpid()
    producer = SqliteInterpreter(JOBS, db)  # the system clock; inline=False
    client = producer.client()
    waiting = producer.client(wait="10 seconds")
    hasty = producer.client(wait="1 millisecond")
    tickers, batches, tasks, pools = (
        client.continuous(ticker),
        client.debounce(batch),
        client.task(task),
        client.worker_pool(pool),
    )
    worker: subprocess.Popen[bytes] | None = None
    errors = b""
    try:
        # ------------------------------------------- 1. no worker yet: answers, no runs
        assert tickers.start(id="c", input=0).created
        assert tickers.start(id="c", input=5).created is False  # no-op: it exists
        assert tickers.start(id="doomed", input=-1).status == "running"
        # The starts' first runs are owed to a worker: they did not run here ...
        assert worker_hooks_run_by(me, read_log(log_path)) == []
        # ... and a trigger queues behind the one still owed.
        assert tickers.trigger("c") == ContinuousTriggerResult(triggered=True, queued=True)
        assert tickers.trigger("nobody").triggered is False
        started = tickers.status("c")
        assert (started.status, started.run_count) == ("running", 0)
        assert near(started.next_run_at, timedelta(0))  # due now, for a worker
        assert tickers.get_state("c") == 0

        first = batches.add(id="b1", event=1)
        assert (first.created, first.event_count, first.queued) == (True, 1, False)
        assert near(first.will_flush_at, timedelta(hours=1))
        assert batches.add(id="b1", event=2).event_count == 2
        full = batches.add(id="b1", event=3)  # max_events: the flush is due now
        assert (full.created, full.event_count, full.queued) == (False, 3, False)
        assert near(full.will_flush_at, timedelta(0))
        debouncing = batches.status("b1")
        assert (debouncing.status, debouncing.event_count) == ("debouncing", 3)
        assert batches.get_state("b1") == (1, 2, 3)
        batches.add(id="b2", event=10)
        flushing = batches.flush("b2")
        assert (flushing.flushing, flushing.event_count, flushing.reason) == (True, 1, "manual")
        assert flushing.queued is False
        batches.add(id="b3", event=20)
        batches.add(id="b3", event=21)
        cleared = batches.clear("b3")
        assert (cleared.cleared, cleared.discarded_events, cleared.queued) == (True, 2, False)
        assert batches.status("b3").status == "not_found"
        assert batches.get_state("b3") is None
        batches.add(id="bdead", event=FAIL)
        assert batches.flush("bdead").flushing

        sent = tasks.send(id="t-idle", event="idle")  # schedules nothing: on_idle is owed
        assert (sent.created, sent.scheduled_at, sent.queued) == (True, None, False)
        later = tasks.send(id="t-later", event="later")
        assert near(later.scheduled_at, timedelta(milliseconds=200))
        assert tasks.send(id="t-trig", event="hold").queued is False
        triggered = tasks.trigger("t-trig")  # nothing owed: execute is due now
        assert (triggered.triggered, triggered.queued) == (True, False)
        assert tasks.trigger("nobody").triggered is False
        handled = tasks.send(id="t-bad", event="bad")  # on_event fails, on_error handles it
        assert (handled.created, handled.queued) == (True, False)
        assert tasks.send(id="t-boom", event="boom").scheduled_at is not None
        idle = tasks.status("t-idle")
        assert (idle.status, idle.event_count, idle.execute_count) == ("idle", 1, 0)
        assert tasks.get_state("t-idle") == ("idle",)

        assert pools.pause().paused
        assert pools.status().paused_instances == 2
        pools.enqueue(id="x1", event="ok")
        pools.enqueue(id="x2", event="ok")
        drained = pools.drain()
        assert (drained.drained, drained.events_cleared) == (True, 2)
        one = pools.enqueue(id="e1", event="ok")
        assert (one.position, one.duplicate) == (0, False)
        assert pools.enqueue(id="e1", event="ok").duplicate
        many = pools.enqueue_many(
            [Enqueue("e2", "ok"), Enqueue("e3", "ok", priority=5), Enqueue("e-boom", "boom")]
        )
        assert [(r.event_id, r.duplicate) for r in many] == [
            ("e2", False),
            ("e3", False),
            ("e-boom", False),
        ]
        pools.enqueue(id="e-cancel", event="ok")
        cancelled = pools.cancel("e-cancel")
        assert (cancelled.cancelled, cancelled.reason) == (True, "cancelled")
        assert pools.cancel("nothing").reason == "not_found"
        waiting_pool = pools.status()
        assert (waiting_pool.total_pending, waiting_pool.paused_instances) == (4, 2)
        assert {pools.instance_status(i).status for i in range(2)} == {"paused"}
        assert pools.resume().resumed

        time.sleep(0.3)  # t-boom's and t-later's alarms fall due: still, nothing runs
        assert [line for line in read_log(log_path) if is_worker_hook(line)] == []
        assert tickers.status("c").run_count == 0
        assert pools.status().total_processed == 0

        # ------------------------------ 2. a worker process runs what the requests left
        worker = start_worker(db, workers=8, target="tests.sqlite.test_two_processes:JOBS")

        def ended(job: str, name: str, ident: str) -> bool:
            return any(
                (x.phase, x.job, x.hook, x.id) == ("end", job, name, ident)
                for x in read_log(log_path)
            )

        wait_for("run the start and the queued trigger", lambda: tickers.get_state("c") == 2)
        wait_for(
            "flush b1 and b2",
            lambda: ended("batch", "execute", "b2") and ended("batch", "execute", "b1"),
        )
        wait_for("dead-letter bdead", lambda: len(batches.dead_letters()) == 1)
        wait_for("dead-letter doomed", lambda: len(tickers.dead_letters()) == 1)
        idle_ids = ("t-idle", "t-later", "t-bad", "t-boom")
        wait_for("run on_idle", lambda: all(ended("task", "on_idle", i) for i in idle_ids))
        wait_for("run t-trig", lambda: tasks.get_state("t-trig") == ("hold", "ran"))
        wait_for(
            "process the pool",
            lambda: (pools.status().total_processed, pools.status().total_dead_lettered) == (3, 1),
        )
        shards = {str(r.instance_index) for r in (one, *many)}
        wait_for("run on_empty", lambda: all(ended("pool", "on_empty", i) for i in shards))

        # A trigger of an instance that owes nothing: answered at once, run by the worker.
        again = tickers.trigger("c")
        assert (again.triggered, again.queued) == (True, False)
        wait_for("run the trigger", lambda: tickers.status("c").run_count == 3)

        # ----------------------------- 3. requests that meet runs in flight in the worker
        assert tickers.start(id="cslow", input=SLOW).created
        batches.add(id="bslow", event=SLOW)
        assert batches.flush("bslow").flushing
        tasks.send(id="tslow", event="slow")
        assert tasks.trigger("tslow").queued is False
        slow_lane = pools.enqueue(id="pslow", event="slow", partition_key="lane")
        lane = slow_lane.instance_index

        def flushes(ident: str) -> int:
            return sum(x[:4] == ("end", "batch", "execute", ident) for x in read_log(log_path))

        def running(job: str, ident: str) -> bool:
            return any(
                (x.phase, x.job, x.hook, x.id) == ("start", job, "execute", ident)
                for x in read_log(log_path)
            )

        slow = (("ticker", "cslow"), ("batch", "bslow"), ("task", "tslow"), ("pool", "pslow"))
        wait_for("start the slow runs", lambda: all(running(j, i) for j, i in slow))

        # A client that waits a millisecond: busy with the run, on the worker process.
        busy: list[str] = []
        with pytest.raises(BusyError) as raised:
            hasty.task(task).send(id="tslow", event="never")
        busy.append(str(raised.value))
        with pytest.raises(BusyError) as raised:
            hasty.continuous(ticker).trigger("cslow")
        busy.append(str(raised.value))
        with pytest.raises(BusyError) as raised:
            hasty.debounce(batch).add(id="bslow", event=-99)
        busy.append(str(raised.value))

        # The default client: queued behind the run, answered at once.
        q1 = tasks.send(id="tslow", event="q1")
        assert (q1.created, q1.scheduled_at, q1.queued) == (False, None, True)
        assert tasks.send(id="tslow", event="q2").queued
        requeued = tasks.trigger("tslow")
        assert (requeued.triggered, requeued.queued) == (True, True)
        assert tickers.trigger("cslow") == ContinuousTriggerResult(triggered=True, queued=True)
        q5 = batches.add(id="bslow", event=5)
        assert (q5.event_count, q5.will_flush_at, q5.queued) == (0, None, True)
        assert batches.add(id="bslow", event=6).queued
        # A pool answers while its shard runs, even for a client that waits.
        asked = time.monotonic()
        behind = waiting.worker_pool(pool).enqueue(id="pafter", event="ok", partition_key="lane")
        assert time.monotonic() - asked < SLOW_S / 2
        assert (behind.instance_index, behind.position, behind.duplicate) == (lane, 1, False)
        processing = pools.instance_status(lane)
        assert (processing.status, processing.current_event_id) == ("processing", "pslow")
        assert pools.cancel("pslow").reason == "already_processing"
        still = read_log(log_path)
        for job, ident in (("ticker", "cslow"), ("batch", "bslow"), ("task", "tslow")):
            assert not [x for x in still if x[:4] == ("end", job, "execute", ident)], (
                f"{job} {ident} ended before the requests were made: lower the load or raise SLOW_S"
            )

        # A client that waits: it waits for the run (and the requests queued behind it),
        # then applies its request here and answers as usual.
        waits_from = time.time_ns()
        w = waiting.task(task).send(id="tslow", event="w")
        assert (w.created, w.queued) == (False, False)
        returned = {"tslow": time.time_ns()}
        waited_trigger = waiting.continuous(ticker).trigger("cslow")
        assert (waited_trigger.triggered, waited_trigger.queued) == (True, False)
        returned["cslow"] = time.time_ns()
        waited_flush = waiting.debounce(batch).flush("bslow")
        assert (waited_flush.flushing, waited_flush.event_count) == (True, 2)
        assert (waited_flush.reason, waited_flush.queued) == ("manual", False)
        returned["bslow"] = time.time_ns()

        wait_for("run cslow three times", lambda: tickers.get_state("cslow") == SLOW + 3)
        wait_for("flush bslow's queued events", lambda: flushes("bslow") == 2)
        wait_for("process pafter", lambda: pools.status().total_processed == 5)
        assert tasks.get_state("tslow") == ("slow", "ran", "q1", "q2", "ran", "w")

        # ------------------------------------------------- 4. the rest of the surface
        assert tickers.terminate("c", reason="done").terminated
        assert tickers.status("c").status == "not_found"
        assert tickers.get_state("c") is None
        assert tickers.terminate("nobody").terminated is False
        assert tasks.terminate("t-trig").terminated
        assert tasks.status("t-trig").status == "not_found"
        assert tasks.status("tslow").status == "active"  # "slow" scheduled an hour ahead
        assert pools.cancel("e1").reason == "already_completed"
        [ticker_dead] = tickers.dead_letters()
        assert (ticker_dead.id, ticker_dead.payload, ticker_dead.error.type) == (
            "doomed",
            -1,
            "RuntimeError",
        )
        [batch_dead] = batches.dead_letters()
        assert (batch_dead.id, batch_dead.payload) == ("bdead", (FAIL,))
        [task_dead] = tasks.dead_letters()
        assert (task_dead.id, task_dead.payload, task_dead.attempts) == ("t-boom", ("boom",), 1)
        [pool_dead] = pools.dead_letters()
        assert (pool_dead.id, pool_dead.payload, pool_dead.error.type) == (
            "e-boom",
            "boom",
            "RuntimeError",
        )
        final = pools.status()
        assert (final.total_processed, final.total_dead_lettered, final.total_pending) == (5, 1, 0)
    finally:
        producer.close()
        if worker is not None:
            worker.send_signal(signal.SIGTERM)  # graceful: runs going finish first
            try:
                _, errors = worker.communicate(timeout=30)
            finally:
                if worker.poll() is None:  # pragma: no cover - only when the worker hangs
                    worker.kill()
                    worker.communicate()
    assert worker is not None
    assert worker.returncode == 0, errors.decode()
    assert b"Traceback" not in errors, errors.decode()

    # ------------------------------------------------------------- where each hook ran
    lines = read_log(log_path)
    assert {line.pid for line in lines} == {me, worker.pid}
    assert worker_hooks_run_by(me, lines) == []
    ran = {(line.job, line.hook) for line in lines if line.pid == worker.pid}
    assert {
        ("ticker", "execute"),
        ("batch", "execute"),
        ("task", "execute"),
        ("task", "on_idle"),
        ("task", "on_error"),
        ("pool", "execute"),
        ("pool", "on_dead_letter"),
        ("pool", "on_empty"),
    } <= ran
    assert only(lines, "task", "on_error", "t-boom").detail == "execute"
    assert only(lines, "task", "on_error", "t-bad").pid == me  # it handled an on_event
    assert only(lines, "task", "on_idle", "t-bad").detail == "onError"

    # Answered at once: the reducer and on_event ran in the caller, the producer ...
    queued = {("batch", "5"), ("batch", "6"), ("task", "q1"), ("task", "q2")}
    for line in lines:
        if line.hook == "on_event" and (line.job, line.detail) not in queued:
            assert line.pid == me, line
    # ... queued behind a run: the worker applied them after it, in order.
    task_lines = [x for x in lines if x.id == "tslow" and x.phase == "end"]
    assert [(x.hook, x.detail, x.pid) for x in task_lines] == [
        ("on_event", "slow", me),
        ("execute", "slow", worker.pid),
        ("on_event", "q1", worker.pid),
        ("on_event", "q2", worker.pid),
        ("execute", "q2", worker.pid),
        ("on_event", "w", me),
    ]
    batch_lines = [x for x in lines if x.id == "bslow" and x.phase == "end"]
    assert [(x.hook, x.detail, x.pid) for x in batch_lines] == [
        ("on_event", str(SLOW), me),
        ("execute", str(SLOW), worker.pid),
        ("on_event", "5", worker.pid),
        ("on_event", "6", worker.pid),
        ("execute", "5-6", worker.pid),
    ]
    ticker_runs = [x for x in lines if x.id == "cslow" and x.phase == "end"]
    assert [(x.detail, x.pid) for x in ticker_runs] == [
        (str(SLOW), worker.pid),
        (str(SLOW + 1), worker.pid),
        (str(SLOW + 2), worker.pid),
    ]
    # The waiting calls began while the slow runs were in flight, and returned only
    # after the run and the requests queued behind it were done.
    slow_end = {"cslow": ticker_runs[0], "bslow": batch_lines[1], "tslow": task_lines[1]}
    queued_done = {"cslow": ticker_runs[1], "bslow": batch_lines[3], "tslow": task_lines[4]}
    for ident, returned_ns in returned.items():
        assert waits_from < slow_end[ident].ns, f"the waiting call to {ident} met no run"
        assert queued_done[ident].ns < returned_ns, f"the waiting call to {ident} did not wait"
    # Refused as busy: nothing of those requests was written or run.
    assert not [x for x in lines if x.detail in ("never", "-99")]
    for message, instance in zip(
        busy, ("task:task:tslow", "continuous:ticker:cslow", "debounce:batch:bslow"), strict=True
    ):
        assert message.startswith(f"{instance} is busy with a run of execute"), message
        assert f"on worker {socket.gethostname()}/{worker.pid}/" in message, message
