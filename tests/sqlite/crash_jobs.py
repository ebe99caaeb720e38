"""Jobs of every type for the crash and multi-process tests; run by worker subprocesses.

Every run of user code appends ``start``/``end`` lines to the file named by the
``DURABLE_JOBS_TEST_LOG`` environment variable (one ``write`` per line on an ``O_APPEND``
file, so lines from several processes never interleave). Runs sleep a little so that a
SIGKILL often lands while one is in flight, and a pool event of value ``HOLD`` runs for
seconds on its first attempt, so that a kill can be made to land mid-run for certain.
"""

from __future__ import annotations

import contextlib
import os
import random
import subprocess
import sys
import time
from pathlib import Path

from durable_jobs import (
    Backoff,
    Continuous,
    ContinuousContext,
    Debounce,
    DebounceContext,
    DebounceEventContext,
    Instant,
    Jobs,
    PoolContext,
    Retry,
    Task,
    TaskContext,
    WorkerPool,
)
from durable_jobs.interpreters.clock import SystemClock


def log(*words: object) -> None:
    path = os.environ["DURABLE_JOBS_TEST_LOG"]
    line = " ".join(str(w) for w in (*words, os.getpid(), time.time_ns())) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def pause() -> None:
    time.sleep(random.uniform(0.0, 0.015))


HOLD = -1
"""A pool event with this value runs for ``HOLD_SECONDS`` on its first attempt: long
enough for the crash test to see its start in the log and kill the worker mid-run."""
HOLD_SECONDS = 3.0


def work(ctx: PoolContext[int]) -> None:
    log("start", "pool", ctx.event_id, ctx.attempt, ctx.instance_index)
    if ctx.event == HOLD and ctx.attempt == 1:
        time.sleep(HOLD_SECONDS)
    pause()
    log("end", "pool", ctx.event_id, ctx.attempt, ctx.instance_index)


def tick(ctx: ContinuousContext[int]) -> None:
    log("start", "tick", ctx.id, ctx.run_count, 0)
    pause()
    ctx.update_state(lambda n: n + 1)
    log("end", "tick", ctx.id, ctx.run_count, 0)


def fold(ctx: DebounceEventContext[int, tuple[int, ...]]) -> tuple[int, ...]:
    return (*(ctx.state or ()), ctx.event)


def flush(ctx: DebounceContext[tuple[int, ...]]) -> None:
    batch = "-".join(str(n) for n in ctx.state)
    log("start", "flush", ctx.id, ctx.attempt, batch)
    pause()
    log("end", "flush", ctx.id, ctx.attempt, batch)


def on_event(ctx: TaskContext[int, int]) -> None:
    ctx.set_state(ctx.event)
    ctx.schedule("100 milliseconds")


def execute(ctx: TaskContext[int, int]) -> None:
    log("start", "task", ctx.id, ctx.execute_count, 0)
    pause()
    ctx.update_state(lambda n: n - 1)
    if ctx.state:
        ctx.schedule("100 milliseconds")
    log("end", "task", ctx.id, ctx.execute_count, 0)


RETRY = Retry(max_attempts=10, backoff=Backoff.constant("50 milliseconds"), jitter=False)

JOBS = Jobs(
    pool=WorkerPool.make(event=int, concurrency=3, execute=work, retry=RETRY),
    tick=Continuous.make(
        state=int, schedule=Continuous.every("200 milliseconds"), execute=tick, retry=RETRY
    ),
    batch=Debounce.make(
        event=int,
        state=tuple[int, ...],
        on_event=fold,
        execute=flush,
        flush_after="300 milliseconds",
        max_events=5,
        retry=RETRY,
    ),
    task=Task.make(state=int, event=int, on_event=on_event, execute=execute, retry=RETRY),
)


ROOT = Path(__file__).resolve().parents[2]


class OffsetClock(SystemClock):
    """The wall clock moved forward by the milliseconds written in the file named by
    ``DURABLE_JOBS_CLOCK_OFFSET`` (a test steps every worker's wall clock at once, as an
    NTP step or a resumed VM would); its monotonic clock is the system's, unmoved."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._offset = 0
        self._read_at = 0.0

    def now(self) -> Instant:
        if time.monotonic() - self._read_at > 0.02:  # re-read it at most 50 times a second
            self._read_at = time.monotonic()
            with contextlib.suppress(OSError, ValueError):  # being rewritten: keep the last
                self._offset = int(Path(self._path).read_text() or "0")
        return Instant(super().now() + self._offset)


def start_worker(
    db: Path,
    *,
    workers: int,
    lease: str = "30 seconds",
    busy_timeout: str = "30 seconds",
    stderr: Path | None = None,
    target: str = "tests.sqlite.crash_jobs:JOBS",
) -> subprocess.Popen[bytes]:
    """A worker process serving ``target`` (this module's ``JOBS`` by default) on ``db``
    (the log variable is inherited; with ``DURABLE_JOBS_CLOCK_OFFSET`` set, its wall
    clock is an ``OffsetClock``). Its standard error is a pipe, or appended to
    ``stderr``."""
    code = (
        "import os, sys\n"
        "from durable_jobs.interpreters.worker import serve\n"
        "from tests.sqlite.crash_jobs import OffsetClock\n"
        "offset = os.environ.get('DURABLE_JOBS_CLOCK_OFFSET')\n"
        "clock = None if offset is None else OffsetClock(offset)\n"
        f"sys.exit(serve({target!r}, sys.argv[1], clock=clock, "
        f"lease={lease!r}, busy_timeout={busy_timeout!r}, workers={workers}))\n"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code, str(db)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE if stderr is None else stderr.open("ab"),
    )
