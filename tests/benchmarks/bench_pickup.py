"""Worker pickup latency on SQLite: from a request's return to its ``execute`` (prints figures).

Run it from the repository root, with the package installed::

    python tests/benchmarks/bench_pickup.py                      # full run (about 2.5 minutes)
    python tests/benchmarks/bench_pickup.py --quick              # smaller smoke run
    python tests/benchmarks/bench_pickup.py --synchronous NORMAL # another durability level

This is a program, not a pytest test. A request never runs job code in the caller: it
commits the run as due now and returns, and a worker picks the row up. This measures
how long that takes when the worker is another process, as in production.

* **The worker** is the real command, ``durable-jobs worker bench_pickup:JOBS --db
  FILE`` (default options: 8 workers), started as a child process in this folder and
  ready (a warm-up request ran) before anything is timed. It sleeps between claims and
  notices another process's commit by polling ``PRAGMA data_version``: every
  ``HOT_CHECK`` (1 ms) for ``HOT_FOR`` (1 s) after such a commit woke it, else every
  ``CHANGE_CHECK`` (20 ms). So a pickup is expected to take about half the interval in
  use, plus a claim and the commit of the attempt (one fsync at FULL).
* **The producer** is this process: a ``SqliteInterpreter`` opened with the default
  ``inline=False`` (so it runs no job code) and the same ``synchronous``.
* **Requests**, each to its own instance, so that none is queued behind another:
  ``continuous.trigger`` (instances started beforehand with ``start_immediately=False``),
  ``task.trigger`` (instances created beforehand by a ``send`` that schedules nothing)
  and ``worker_pool.enqueue`` (a pool of 8 shards, routed by event id).
* **Latency** = the wall time (``time.time()``) read first thing in ``execute``, written
  by the worker process to a log file, minus the wall time read in this process right
  after the request returned. Both processes read the same system clock.
  A value can be slightly negative when the worker starts the run before the
  producer's call has finished returning.

Two shapes per request kind:

* *spaced*: N requests (default 200; ``--quick`` 30), each sent only after the previous
  one's ``execute`` started, then a pause drawn from 30 to 80 ms (seeded), so that each
  request is picked up on its own by a worker that the previous one woke (1 ms checks);
* *idle*: I requests (default 20; ``--quick`` 4) the same way with pauses of 1.1 to
  1.5 s, so that the worker has gone back to its 20 ms checks (a random phase of them);
* *burst*: B requests (default 200; ``--quick`` 30) sent back to back; each one's
  latency is measured from its own return, so later ones include the time the worker
  takes to work through those before them.

The summary prints p50, p90, p99 (nearest rank) and the maximum in ms for each, with
the request's own duration (p50) for scale, the ``synchronous`` level, Python and SQLite
versions, and the machine's cores and load.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import attrs

from durable_jobs import (
    Continuous,
    ContinuousContext,
    Jobs,
    PoolContext,
    Task,
    TaskContext,
    WorkerPool,
)
from durable_jobs.interpreters.sqlite import (
    CHANGE_CHECK,
    HOT_CHECK,
    HOT_FOR,
    SYNCHRONOUS,
    SqliteInterpreter,
)

BENCH_DIR = Path(__file__).resolve().parent
LOG_ENV = "BENCH_PICKUP_LOG"
"""The environment variable naming the file the worker's hooks append to."""
POOL_SHARDS = 8
GAP_S = (0.030, 0.080)
"""The pause after each spaced request's ``execute`` started (uniform, seeded)."""
IDLE_GAP_S = (HOT_FOR + 0.1, HOT_FOR + 0.5)
"""The pause after each idle request's ``execute`` started: the worker cools down."""
WARM_UP = 5
WAIT_LIMIT_S = 60.0


# ------------------------------------------------------------------- the jobs (both sides)


def _record(kind: str, key: str) -> None:
    """Append ``kind key wall-time-ns`` to the log file, first thing in a hook."""
    now = time.time_ns()
    fd = os.open(os.environ[LOG_ENV], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{kind} {key} {now}\n".encode())
    finally:
        os.close(fd)


def continuous_execute(ctx: ContinuousContext[int]) -> None:
    _record("continuous", ctx.id)


def task_on_event(ctx: TaskContext[int, int]) -> None:
    ctx.set_state(ctx.event)  # schedules nothing: the task waits for a trigger


def task_execute(ctx: TaskContext[int, int]) -> None:
    _record("task", ctx.id)


def pool_execute(ctx: PoolContext[int]) -> None:
    _record("pool", ctx.event_id)


JOBS = Jobs(
    cont=Continuous.make(
        state=int,
        schedule=Continuous.every("1 day"),
        execute=continuous_execute,
        start_immediately=False,
    ),
    task=Task.make(state=int, event=int, on_event=task_on_event, execute=task_execute),
    pool=WorkerPool.make(event=int, concurrency=POOL_SHARDS, execute=pool_execute),
)
"""The registry the worker process loads (``bench_pickup:JOBS``)."""


# --------------------------------------------------------------------------- measuring


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise SystemExit(f"benchmark check failed: {message}")


class Log:
    """The hooks' log file, read incrementally: ``(kind, key)`` -> wall time in ns."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.seen: dict[tuple[str, str], int] = {}
        self._offset = 0

    def read(self) -> None:
        if not self.path.exists():
            return
        with self.path.open("rb") as file:
            file.seek(self._offset)
            data = file.read()
        complete = data[: data.rfind(b"\n") + 1]
        self._offset += len(complete)
        for line in complete.decode().splitlines():
            kind, key, at = line.split(" ")
            _require((kind, key) not in self.seen, f"{kind} {key} ran twice")
            self.seen[kind, key] = int(at)

    def wait_for(self, keys: list[tuple[str, str]]) -> None:
        deadline = time.monotonic() + WAIT_LIMIT_S
        while True:
            self.read()
            if all(key in self.seen for key in keys):
                return
            _require(time.monotonic() < deadline, f"timed out waiting for {keys[-1]} to run")
            time.sleep(0.0005)


@attrs.frozen
class Samples:
    """Latencies (execute start - request return) and request durations, in ms."""

    kind: str
    shape: str
    latency_ms: tuple[float, ...]
    request_ms: tuple[float, ...]
    sent_ms: float
    """From the first request's call to the last one's return."""
    drained_ms: float
    """From the first request's call to the last ``execute`` start."""

    def quantile(self, q: float, values: tuple[float, ...] | None = None) -> float:
        ordered = sorted(self.latency_ms if values is None else values)
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


Request = Callable[[str], object]


def _measure(
    log: Log, kind: str, shape: str, request: Request, keys: list[str], rng: random.Random
) -> Samples:
    """Send ``request(key)`` for each key, spaced or in a burst; the samples."""
    returned: dict[str, int] = {}
    took: list[float] = []
    first = time.time_ns()
    for key in keys:
        before = time.time_ns()
        request(key)
        after = time.time_ns()
        returned[key] = after
        took.append((after - before) / 1e6)
        if shape in ("spaced", "idle"):
            log.wait_for([(kind, key)])
            time.sleep(rng.uniform(*(GAP_S if shape == "spaced" else IDLE_GAP_S)))
    log.wait_for([(kind, key) for key in keys])
    latency = tuple((log.seen[kind, key] - returned[key]) / 1e6 for key in keys)
    sent = (returned[keys[-1]] - first) / 1e6
    drained = (max(log.seen[kind, key] for key in keys) - first) / 1e6
    return Samples(kind, shape, latency, tuple(took), sent, drained)


def _requests(db: SqliteInterpreter, ids: int) -> dict[str, Request]:
    """The three requests, with every instance they address created beforehand."""
    client = db.client()
    continuous = client.continuous("cont")
    task = client.task("task")
    pool = client.worker_pool("pool")
    for i in range(ids):
        continuous.start(id=f"c-{i}", input=0)
        task.send(id=f"t-{i}", event=i)
    return {
        "continuous": lambda key: _checked(continuous.trigger(key), "triggered"),
        "task": lambda key: _checked(task.trigger(key), "triggered"),
        "pool": lambda key: pool.enqueue(id=key, event=0),
    }


def _checked(result: Any, field: str) -> object:
    _require(getattr(result, field) is True, f"{result!r}")
    _require(getattr(result, "queued", False) is False, f"queued behind a run: {result!r}")
    return result


def _key(kind: str, n: int) -> str:
    return {"continuous": f"c-{n}", "task": f"t-{n}", "pool": f"e-{n}"}[kind]


def _start_worker(db: Path, synchronous: str, log: Path, err: IO[bytes]) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        "-m",
        "durable_jobs.interpreters.cli",
        "worker",
        "bench_pickup:JOBS",
        "--db",
        str(db),
        "--synchronous",
        synchronous,
    ]
    return subprocess.Popen(
        command,
        cwd=BENCH_DIR,  # the worker imports bench_pickup from its current folder
        env={**os.environ, LOG_ENV: str(log)},
        stdout=subprocess.DEVNULL,
        stderr=err,
    )


# ---------------------------------------------------------------------------- report


def _load() -> str:
    try:
        one, five, _ = os.getloadavg()
    except OSError:  # pragma: no cover - not every platform has it
        return "n/a"
    return f"{one:.2f} (1 min), {five:.2f} (5 min)"


def _cores() -> str:
    total = os.cpu_count()
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not every platform has it
        return f"{total} cores"
    return f"{total} cores ({usable} usable by this process)"


def _summary(results: list[Samples], synchronous: str, quick: bool, load_at_start: str) -> str:
    lines = [
        "=" * 92,
        "durable-jobs worker pickup latency: execute start - request return"
        + ("  (--quick)" if quick else ""),
        f"python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
        f"{platform.machine()}, {_cores()}, {platform.platform()}",
        f"load average at start {load_at_start}; at end {_load()}",
        f"--synchronous {synchronous}; worker: `durable-jobs worker` process (8 workers), "
        f"PRAGMA data_version checked every {HOT_CHECK * 1000:g} ms for {HOT_FOR:g} s after "
        f"another process's commit, else every {CHANGE_CHECK * 1000:g} ms; "
        "producer: SqliteInterpreter(inline=False)",
        "-" * 92,
        f"   {'request':<26}{'shape':<8}{'n':>5}{'p50':>9}{'p90':>9}{'p99':>9}{'max':>9}"
        f"{'request p50':>15}",
    ]
    for s in results:
        lines.append(
            f"   {s.kind + _WHAT[s.kind]:<26}{s.shape:<8}{len(s.latency_ms):>5}"
            f"{s.quantile(0.5):>9.1f}{s.quantile(0.9):>9.1f}{s.quantile(0.99):>9.1f}"
            f"{max(s.latency_ms):>9.1f}{s.quantile(0.5, s.request_ms):>15.2f}"
        )
    lines += [
        "   (ms; 'request p50' is how long the call itself took)",
        "   bursts, from the first call: all requests returned / the last execute started",
    ]
    for s in results:
        if s.shape == "burst":
            n = len(s.latency_ms)
            lines.append(
                f"   {s.kind + _WHAT[s.kind]:<26}{n} sent in {s.sent_ms:.0f} ms "
                f"({n / s.sent_ms * 1000:,.0f}/s); the last started after {s.drained_ms:.0f} ms "
                f"({n / s.drained_ms * 1000:,.0f} runs/s)"
            )
    lines.append("=" * 92)
    return "\n".join(lines)


_WHAT = {"continuous": ".trigger", "task": ".trigger", "pool": ".enqueue"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a smaller smoke run")
    parser.add_argument(
        "--synchronous",
        default="FULL",
        type=str.upper,
        choices=SYNCHRONOUS,
        help="PRAGMA synchronous for the producer and the worker (default FULL)",
    )
    parser.add_argument("--spaced", type=int, default=None, help="spaced requests per kind")
    parser.add_argument("--burst", type=int, default=None, help="requests per burst")
    parser.add_argument("--idle", type=int, default=None, help="idle requests per kind")
    parser.add_argument("--seed", type=int, default=7, help="seed of the pauses")
    parser.add_argument("--dir", type=Path, default=None, help="where the temporary files go")
    args = parser.parse_args(argv)
    spaced: int = args.spaced or (30 if args.quick else 200)
    burst: int = args.burst or (30 if args.quick else 200)
    idle: int = args.idle or (4 if args.quick else 20)
    sync: str = args.synchronous
    rng = random.Random(args.seed)
    load_at_start = _load()
    results: list[Samples] = []
    with tempfile.TemporaryDirectory(prefix="bench-pickup-", dir=args.dir) as tmp:
        folder = Path(tmp)
        path, log_path = folder / "jobs.db", folder / "hooks.log"
        print(f"files in {folder}; synchronous={sync}", flush=True)
        with SqliteInterpreter(JOBS, path, synchronous=sync) as db:
            _require(not db.inline, "the producer must leave job code to the worker")
            count = WARM_UP + spaced + burst + idle
            requests = _requests(db, count)
            err = (folder / "worker.err").open("wb")
            worker = _start_worker(path, sync, log_path, err)
            try:
                log = Log(log_path)
                for kind, request in requests.items():
                    keys = [_key(kind, n) for n in range(count)]
                    warm, rest = keys[:WARM_UP], keys[WARM_UP:]
                    _measure(log, kind, "spaced", request, warm, rng)  # not counted
                    shapes = (
                        ("spaced", rest[:spaced]),
                        ("burst", rest[spaced : spaced + burst]),
                        ("idle", rest[spaced + burst :]),
                    )
                    for shape, chosen in shapes:
                        print(f"{kind}: {len(chosen)} requests, {shape} ...", flush=True)
                        results.append(_measure(log, kind, shape, request, chosen, rng))
                        print(f"   p50 {results[-1].quantile(0.5):.1f} ms", flush=True)
                _require(worker.poll() is None, "the worker process stopped")
            finally:
                worker.terminate()
                worker.wait(30)
                err.close()
            _require(not db.errors, f"errors {db.errors}")
    print(_summary(results, sync, args.quick, load_at_start))
    return 0


if __name__ == "__main__":
    sys.exit(main())
