"""Benchmark of the SQLite interpreter against Huey's ``SqliteHuey`` (prints figures).

Run it from the repository root, with the package and the ``bench`` extra installed::

    pip install -e '.[dev,bench]'
    python tests/benchmarks/bench_sqlite.py                      # full run (a few minutes)
    python tests/benchmarks/bench_sqlite.py --quick              # smaller smoke run
    python tests/benchmarks/bench_sqlite.py --synchronous NORMAL # another durability level

This is a program, not a pytest test; it installs nothing itself. Both systems run in
this one process, on files in one temporary directory (``--dir`` to choose it), with
``journal_mode=WAL`` and the same ``PRAGMA synchronous`` (``--synchronous``, default
FULL). ``SqliteHuey`` has no option for every level (its ``fsync=True/False`` only sets
``synchronous`` to 2 or 0), so the benchmark gives it a ``SqliteStorage`` subclass whose
connections run ``PRAGMA synchronous=<level>`` after Huey's own pragmas; the value each
connection really has is read back and printed. The other Huey settings are its
defaults (``cache_mb=8``, pickle serializer, results on; a ``None`` result is not
stored); durable-jobs uses SQLite's default cache.

1. **Throughput.** N durable no-op jobs (default 5,000; ``--quick`` 200), end to end:
   enqueue all N, then process all of them, in the calling thread.

   * durable-jobs (the figure held against the target): a ``WorkerPool`` of
     ``concurrency=BATCH`` (32) shards on a ``SqliteInterpreter``; the events go in
     through ``enqueue_many``, 1,000 per call (one transaction each), then ``run_due()``
     runs in a loop until ``status().total_processed == N``. ``run_due`` advances up to
     ``BATCH`` shards per transaction (group commit), so about 32 events share a commit.
   * durable-jobs, like for like (printed as information): one shard, ``enqueue``
     called N times (a commit per call), then the same ``run_due`` loop (a commit per
     processed event: outcome and next attempt together).
   * Huey: a ``@huey.task()`` no-op called N times (each call enqueues), then
     ``huey.dequeue()`` / ``huey.execute(task)`` in a loop until the queue is empty.

   That loop is the body of Huey's own consumer ``Worker.loop`` without its idle-poll
   sleep, just as ``run_due`` is the body of ``run_forever`` without its sleep: the
   fairest "one worker processing everything from the queue", with no thread hand-off
   or polling delay on either side. As a cross-check the same work is also timed with
   each system's real worker threads (``run_forever(workers=<shards>)`` in a thread;
   ``huey.create_consumer(workers=1)``, thread workers, ``periodic=False``), from the
   moment the worker starts until the Nth job has run (and, for durable-jobs, the pool's
   status shows N processed). The guarantees differ: Huey deletes a task from its queue
   *before* running it (a crash mid-run loses it), durable-jobs commits the attempt
   before the run and the outcome after it (a crash mid-run is an interrupted attempt
   that is retried), keeps a dedup record per event and writes telemetry. Target:
   ours/Huey jobs per second >= 2.

2. **Alarm lateness** of work due 1 second later. K items (default 200; quick 30) are
   scheduled from the main thread, spread evenly over ~2 s, each due 1 s after it is
   scheduled, while one worker runs in a background thread. Lateness = the time the
   work starts (``time.time()`` read first thing in the user function) minus the due
   time.

   * durable-jobs: a ``Task`` per item; ``send`` runs ``on_event``, which stores the due
     time (epoch ms) as the state and passes it to ``ctx.schedule``; ``execute`` records
     the lateness. The worker is ``run_forever(poll="1 second", workers=1)``.
   * Huey: ``task.schedule(args=(due,), eta=due)``; the consumer is
     ``create_consumer(workers=1, periodic=False)`` with its other defaults (scheduler
     every 1 s, the minimum Huey allows; worker polling from 0.1 s, backoff 1.15).

   p50 and p99 (nearest rank) and the maximum, in ms. Target: our p99 <= 20 ms.

3. **Claim + transition cost vs file size.** A file holds 1k, then 100k (quick: 10k)
   idle ``Task`` instances (half with no alarm, half with an alarm a year ahead),
   written through the client by an interpreter opened with ``synchronous=OFF``
   (filling is not what is measured; its rate is printed), then reopened at the chosen
   level. One more ``Task`` re-schedules itself at ``ctx.now`` in ``execute``, so it is
   always due; ``run_due(limit=STEPS)`` then runs STEPS claim + fire + execute + outcome
   steps of it. The per-step time is the best of ``ROUNDS`` rounds. Target:
   cost(large) / cost(1k) <= 1.5.

4. A summary block with every figure, PASS/MISS against each target, the Python,
   SQLite and Huey versions, and the machine's CPU count and load. For scale it also
   prints the cost of a bare one-row ``BEGIN IMMEDIATE``/``COMMIT`` at the chosen level.
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import platform
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import attrs

from durable_jobs import Enqueue, Jobs, PoolContext, Task, TaskContext, WorkerPool
from durable_jobs.interpreters.sqlite import BATCH, SYNCHRONOUS, SqliteInterpreter

THROUGHPUT_TARGET = 2.0
PRODUCER_TARGETS = {1: 1.0, 8: 2.0}
"""Ours / Huey jobs per second with producer threads calling enqueue once per job."""
LATENESS_P99_TARGET_MS = 20.0
SIZE_RATIO_TARGET = 1.5

SPREAD_S = 2.0
DELAY_S = 1.0
ROUNDS = 3
WAIT_LIMIT_S = 120.0


@attrs.frozen
class Scale:
    jobs: int
    alarms: int
    sizes: tuple[int, int]
    steps: int


FULL = Scale(jobs=5_000, alarms=200, sizes=(1_000, 100_000), steps=2_000)
QUICK = Scale(jobs=200, alarms=30, sizes=(1_000, 10_000), steps=300)


def _require(condition: bool, message: str) -> None:
    """Stop the benchmark when a count is off: a fast wrong run proves nothing."""
    if not condition:
        raise SystemExit(f"benchmark check failed: {message}")


def _wait(condition: Callable[[], bool], what: str, limit: float = WAIT_LIMIT_S) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        _require(time.monotonic() < deadline, f"timed out waiting for {what}")
        time.sleep(0.001)


# --------------------------------------------------------------------------- pragmas


def _pragmas(conn: sqlite3.Connection) -> str:
    journal = conn.execute("PRAGMA journal_mode").fetchone()[0]
    level = int(conn.execute("PRAGMA synchronous").fetchone()[0])
    cache = int(conn.execute("PRAGMA cache_size").fetchone()[0])
    cache_text = f"{-cache / 1000:g} MB" if cache < 0 else f"{cache} pages"
    return f"journal_mode={journal}, synchronous={SYNCHRONOUS[level]} ({level}), cache {cache_text}"


def _ours_pragmas(db: SqliteInterpreter) -> str:
    return _pragmas(db._sql.db)  # the interpreter's own connection: pragmas are per connection


def _huey(path: Path, synchronous: str) -> Any:
    """A ``SqliteHuey`` on ``path`` whose connections run ``PRAGMA synchronous=<level>``."""
    from huey import SqliteHuey
    from huey.storage import SqliteStorage

    def create_connection(storage: Any) -> sqlite3.Connection:
        conn: sqlite3.Connection = SqliteStorage._create_connection(storage)
        conn.execute(f"PRAGMA synchronous={synchronous}")
        return conn

    storage_class = type(
        "SynchronousSqliteStorage", (SqliteStorage,), {"_create_connection": create_connection}
    )
    return SqliteHuey("bench", filename=str(path), storage_class=storage_class, fsync=None)


def _huey_pragmas(huey: Any) -> str:
    conn: sqlite3.Connection = huey.storage.conn
    return _pragmas(conn)


@contextmanager
def _signals_kept() -> Iterator[None]:
    """Huey's consumer installs signal handlers in the main thread; put them back after."""
    names = ("SIGINT", "SIGTERM", "SIGHUP")
    saved = {
        name: signal.getsignal(getattr(signal, name)) for name in names if hasattr(signal, name)
    }
    try:
        yield
    finally:
        for name, handler in saved.items():
            signal.signal(getattr(signal, name), handler)


def _commit_cost(folder: Path, synchronous: str, commits: int = 500) -> float:
    """Seconds for one bare one-row write transaction at this level (for scale)."""
    conn = sqlite3.connect(str(folder / "commit.db"), isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={synchronous}")
        conn.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL)")
        started = time.perf_counter()
        for i in range(commits):
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO t VALUES (?, ?)", (i, "x" * 200))
            conn.execute("COMMIT")
        return (time.perf_counter() - started) / commits
    finally:
        conn.close()


# ------------------------------------------------------------------------ throughput


@attrs.frozen
class Shape:
    """How durable-jobs is driven: the pool's shards, and ``enqueue_many`` or not."""

    concurrency: int
    batched: bool


ONE_BY_ONE = Shape(concurrency=1, batched=False)
BATCHED = Shape(concurrency=BATCH, batched=True)
ENQUEUE_BATCH = 1000


@attrs.frozen
class Throughput:
    jobs: int
    enqueue_s: float
    process_s: float
    worker_s: float
    """Processing time with the system's real worker thread (the cross-check)."""
    pragmas: str

    @property
    def total_s(self) -> float:
        return self.enqueue_s + self.process_s

    @property
    def rate(self) -> float:
        return self.jobs / self.total_s

    @property
    def worker_rate(self) -> float:
        return self.jobs / self.worker_s


def _pool_job(done: threading.Event, count: list[int], n: int, concurrency: int) -> Any:
    def execute(ctx: PoolContext[int]) -> None:
        count[0] += 1
        if count[0] == n:
            done.set()

    return WorkerPool.make(event=int, concurrency=concurrency, execute=execute)


def _enqueue(client: Any, n: int, batched: bool) -> None:
    if not batched:
        for i in range(n):
            client.enqueue(id=f"job-{i}", event=i)
        return
    for start in range(0, n, ENQUEUE_BATCH):
        stop = min(n, start + ENQUEUE_BATCH)
        results = client.enqueue_many([Enqueue(f"job-{i}", i) for i in range(start, stop)])
        _require(not any(r.duplicate for r in results), "a fresh id came back as a duplicate")


def _ours_throughput(folder: Path, synchronous: str, n: int, shape: Shape) -> Throughput:
    done, count = threading.Event(), [0]
    pool = _pool_job(done, count, n, shape.concurrency)
    name = f"ours-{shape.concurrency}-{shape.batched}"
    with SqliteInterpreter(Jobs(pool=pool), folder / f"{name}.db", synchronous=synchronous) as db:
        pragmas = _ours_pragmas(db)
        client = db.client().worker_pool(pool)
        started = time.perf_counter()
        _enqueue(client, n, shape.batched)
        enqueued = time.perf_counter()
        processed = 0
        while processed < n:
            ran = db.run_due(limit=n)
            processed = client.status().total_processed
            _require(ran > 0 or processed == n, f"run_due stalled at {processed:,} of {n:,}")
        finished = time.perf_counter()
        _require(count[0] == n and not db.errors, f"ran {count[0]:,} of {n:,}, errors {db.errors}")

    # Cross-check: the same work processed by run_forever's worker threads.
    done, count = threading.Event(), [0]
    pool = _pool_job(done, count, n, shape.concurrency)
    with SqliteInterpreter(
        Jobs(pool=pool), folder / f"{name}-worker.db", synchronous=synchronous
    ) as db:
        client = db.client().worker_pool(pool)
        _enqueue(client, n, shape.batched)
        worker = threading.Thread(
            target=db.run_forever,
            kwargs={"poll": "1 second", "workers": shape.concurrency},
            daemon=True,
        )
        worker_started = time.perf_counter()
        worker.start()
        _require(done.wait(WAIT_LIMIT_S), f"the worker ran {count[0]:,} of {n:,}")
        _wait(lambda: client.status().total_processed == n, "the last outcome to commit")
        worker_finished = time.perf_counter()
        db.stop()
        worker.join()
        _require(not db.errors, f"errors {db.errors}")
    return Throughput(
        jobs=n,
        enqueue_s=enqueued - started,
        process_s=finished - enqueued,
        worker_s=worker_finished - worker_started,
        pragmas=pragmas,
    )


def _huey_throughput(folder: Path, synchronous: str, n: int) -> Throughput:
    count = [0]
    huey = _huey(folder / "huey-throughput.db", synchronous)
    pragmas = _huey_pragmas(huey)

    def count_one(i: int) -> None:
        count[0] += 1

    noop = huey.task()(count_one)
    started = time.perf_counter()
    for i in range(n):
        noop(i)
    enqueued = time.perf_counter()
    while (task := huey.dequeue()) is not None:
        huey.execute(task)
    finished = time.perf_counter()
    _require(count[0] == n and huey.pending_count() == 0, f"Huey ran {count[0]:,} of {n:,}")
    huey.storage.close()

    # Cross-check: the same work processed by Huey's consumer with one worker thread.
    done, count = threading.Event(), [0]
    huey = _huey(folder / "huey-worker.db", synchronous)

    def count_until_n(i: int) -> None:
        count[0] += 1
        if count[0] == n:
            done.set()

    counted = huey.task()(count_until_n)
    for i in range(n):
        counted(i)
    consumer = huey.create_consumer(workers=1, worker_type="thread", periodic=False)
    with _signals_kept():
        worker_started = time.perf_counter()
        consumer.start()
        _require(done.wait(WAIT_LIMIT_S), f"the Huey worker ran {count[0]:,} of {n:,}")
        worker_finished = time.perf_counter()
        consumer.stop(graceful=True)
    huey.storage.close()
    return Throughput(
        jobs=n,
        enqueue_s=enqueued - started,
        process_s=finished - enqueued,
        worker_s=worker_finished - worker_started,
        pragmas=pragmas,
    )


# ------------------------------------------------------------------ many producers

PRODUCER_THREADS = (1, 8)
"""The producer shapes of section 1b: one thread, and a web server's eight."""
PRODUCER_SHARDS = 8
"""The pool's shards there, and ``run_forever``'s workers (Huey: its best of 1 and 8)."""


@attrs.frozen
class Producers:
    threads: int
    ours_s: float
    huey_s: float
    huey_workers: int
    jobs: int

    @property
    def ratio(self) -> float:
        return self.huey_s / self.ours_s


def _split(n: int, threads: int) -> list[range]:
    return [range(t, n, threads) for t in range(threads)]


def _produce(threads: int, n: int, one: Callable[[int], object]) -> list[threading.Thread]:
    def produce(part: range) -> None:
        for i in part:
            one(i)

    started = [threading.Thread(target=produce, args=(part,)) for part in _split(n, threads)]
    for thread in started:
        thread.start()
    return started


BENCH_DIR = Path(__file__).resolve().parent


def count_one(i: int) -> None:
    """A job of section 1b: one byte appended to the file ``BENCH_COUNTER`` names (so
    the producer process sees, by its size, how many ran in the worker process)."""
    fd = os.open(os.environ["BENCH_COUNTER"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"x")
    finally:
        os.close(fd)


def count_event(ctx: PoolContext[int]) -> None:
    """Section 1b's pool ``execute``: count the event (``count_one``)."""
    count_one(ctx.event)


def producer_jobs() -> Jobs:
    """Section 1b's pool, the same in the producer and in the worker process."""
    return Jobs(pool=WorkerPool.make(event=int, concurrency=PRODUCER_SHARDS, execute=count_event))


_OURS_WORKER = """
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from bench_sqlite import producer_jobs
from durable_jobs.interpreters.sqlite import SqliteInterpreter
db = SqliteInterpreter(producer_jobs(), sys.argv[2], synchronous=sys.argv[3])
Path(sys.argv[4]).write_text("ready")
db.run_forever(poll="1 second", workers=int(sys.argv[5]))
"""
_HUEY_WORKER = """
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import bench_sqlite
huey = bench_sqlite._huey(Path(sys.argv[2]), sys.argv[3])
huey.task()(bench_sqlite.count_one)
consumer = huey.create_consumer(workers=int(sys.argv[5]), worker_type="thread", periodic=False)
Path(sys.argv[4]).write_text("ready")
consumer.run()
"""


def _timed_with_worker(
    folder: Path,
    code: str,
    db: Path,
    synchronous: str,
    workers: int,
    n: int,
    produce: Callable[[int], object],
    threads: int,
) -> float:
    """Seconds from the first ``produce`` call of ``threads`` producer threads until a
    worker process (``code``, started and ready beforehand) ran ``n`` jobs."""
    counter, ready = folder / f"{db.stem}.count", folder / f"{db.stem}.ready"
    env = {**os.environ, "BENCH_COUNTER": str(counter)}
    worker = subprocess.Popen(
        [
            sys.executable,
            "-c",
            code,
            str(BENCH_DIR),
            str(db),
            synchronous,
            str(ready),
            str(workers),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    try:
        _wait(ready.exists, "the worker process to start")
        os.environ["BENCH_COUNTER"] = str(counter)
        started = time.perf_counter()
        producers = _produce(threads, n, produce)
        _wait(lambda: counter.exists() and counter.stat().st_size >= n, f"{n:,} jobs to run")
        finished = time.perf_counter()
        for producer in producers:
            producer.join()
        _require(counter.stat().st_size == n, f"{counter.stat().st_size:,} jobs ran, not {n:,}")
    finally:
        worker.terminate()
        worker.wait(30)
    return finished - started


def _ours_producers(folder: Path, synchronous: str, n: int, threads: int) -> float:
    """Seconds until ``n`` jobs, enqueued one call each by ``threads`` producer threads
    (the web process), were run by a worker process (``run_forever``)."""
    path = folder / f"ours-producers-{threads}.db"
    with SqliteInterpreter(producer_jobs(), path, synchronous=synchronous) as web:
        client = web.client().worker_pool("pool")
        return _timed_with_worker(
            folder,
            _OURS_WORKER,
            path,
            synchronous,
            PRODUCER_SHARDS,
            n,
            lambda i: client.enqueue(id=f"job-{i}", event=i),
            threads,
        )


def _huey_producers(folder: Path, synchronous: str, n: int, threads: int, workers: int) -> float:
    """The same with Huey: ``threads`` threads calling a task, a consumer process."""
    path = folder / f"huey-producers-{threads}-{workers}.db"
    huey = _huey(path, synchronous)
    # Registered from the module ``bench_sqlite`` (not ``__main__``), as the consumer
    # process registers it: Huey finds a task by its module and name.
    sys.path.insert(0, str(BENCH_DIR))
    module = importlib.import_module("bench_sqlite")
    task = huey.task()(module.count_one)
    try:
        return _timed_with_worker(
            folder, _HUEY_WORKER, path, synchronous, workers, n, task, threads
        )
    finally:
        huey.storage.close()


def _producers(folder: Path, synchronous: str, n: int, threads: int) -> Producers:
    ours = _ours_producers(folder, synchronous, n, threads)
    theirs = {w: _huey_producers(folder, synchronous, n, threads, w) for w in (1, 8)}
    best = min(theirs, key=lambda w: theirs[w])
    return Producers(threads, ours, theirs[best], best, n)


# -------------------------------------------------------------------------- lateness


@attrs.frozen
class Lateness:
    samples_ms: tuple[float, ...]

    def quantile(self, q: float) -> float:
        ordered = sorted(self.samples_ms)
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)]

    @property
    def p50(self) -> float:
        return self.quantile(0.50)

    @property
    def p99(self) -> float:
        return self.quantile(0.99)

    @property
    def worst(self) -> float:
        return max(self.samples_ms)


def _spread(k: int, schedule_one: Callable[[int], None]) -> None:
    """Call ``schedule_one(i)`` for i < k, evenly over ``SPREAD_S`` seconds."""
    start = time.monotonic()
    for i in range(k):
        pause = start + i * SPREAD_S / k - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        schedule_one(i)


def _ours_lateness(folder: Path, synchronous: str, k: int) -> Lateness:
    samples: list[float] = []
    done = threading.Event()

    def on_event(ctx: TaskContext[int, int]) -> None:
        ctx.set_state(ctx.event)
        ctx.schedule(datetime.fromtimestamp(ctx.event / 1000, UTC))

    def execute(ctx: TaskContext[int, int]) -> None:
        started_ms = time.time() * 1000
        assert ctx.state is not None
        samples.append(started_ms - ctx.state)
        if len(samples) == k:
            done.set()

    timer = Task.make(state=int, event=int, on_event=on_event, execute=execute)
    with SqliteInterpreter(
        Jobs(timer=timer), folder / "ours-lateness.db", synchronous=synchronous
    ) as db:
        client = db.client().task(timer)
        worker = threading.Thread(
            target=db.run_forever, kwargs={"poll": "1 second", "workers": 1}, daemon=True
        )
        worker.start()

        def schedule_one(i: int) -> None:
            due_ms = time.time_ns() // 1_000_000 + int(DELAY_S * 1000)
            client.send(id=f"timer-{i}", event=due_ms)

        _spread(k, schedule_one)
        _require(done.wait(WAIT_LIMIT_S), f"{len(samples)} of {k} alarms ran")
        db.stop()
        worker.join()
        _require(not db.errors, f"errors {db.errors}")
    return Lateness(tuple(samples))


def _huey_lateness(folder: Path, synchronous: str, k: int) -> Lateness:
    samples: list[float] = []
    done = threading.Event()
    huey = _huey(folder / "huey-lateness.db", synchronous)

    def record(due: float) -> None:
        started = time.time()
        samples.append((started - due) * 1000)
        if len(samples) == k:
            done.set()

    late = huey.task()(record)
    consumer = huey.create_consumer(workers=1, worker_type="thread", periodic=False)

    def schedule_one(i: int) -> None:
        due = time.time() + DELAY_S
        late.schedule(args=(due,), eta=datetime.fromtimestamp(due, UTC))

    with _signals_kept():
        consumer.start()
        _spread(k, schedule_one)
        _require(done.wait(WAIT_LIMIT_S), f"{len(samples)} of {k} Huey tasks ran")
        consumer.stop(graceful=True)
    huey.storage.close()
    return Lateness(tuple(samples))


# ------------------------------------------------------------------------- file size


@attrs.frozen
class SizeFigures:
    instances: int
    fill_s: float
    file_mb: float
    step_s: float
    steps: int

    @property
    def fill_rate(self) -> float:
        return self.instances / self.fill_s


def _size_jobs(count: list[int]) -> tuple[Jobs, Any, Any]:
    def park(ctx: TaskContext[int, int]) -> None:
        ctx.set_state(ctx.event)
        if ctx.event % 2 == 0:
            ctx.schedule("365 days")

    def loop_execute(ctx: TaskContext[int, int]) -> None:
        count[0] += 1
        ctx.schedule(ctx.now)  # due again at once: each run_due step is one more run

    def start(ctx: TaskContext[int, int]) -> None:
        ctx.set_state(0)
        ctx.schedule(ctx.now)

    idle = Task.make(state=int, event=int, on_event=park, execute=lambda ctx: None)
    looping = Task.make(state=int, event=int, on_event=start, execute=loop_execute)
    return Jobs(idle=idle, looping=looping), idle, looping


def _step_cost(folder: Path, synchronous: str, instances: int, steps: int) -> SizeFigures:
    count = [0]
    jobs, idle, looping = _size_jobs(count)
    path = folder / f"ours-size-{instances}.db"
    started = time.perf_counter()
    with SqliteInterpreter(jobs, path, synchronous="OFF") as filler:
        client = filler.client().task(idle)
        for i in range(instances):
            client.send(id=f"idle-{i}", event=i)
            if (i + 1) % 20_000 == 0:
                rate = (i + 1) / (time.perf_counter() - started)
                print(f"    filled {i + 1:,} of {instances:,} ({rate:,.0f}/s)", flush=True)
    fill_s = time.perf_counter() - started
    # group_commit=0: each run is claimed on its own, so the claim cost is what is timed
    # (with group commit an always-due instance is re-fired inside its own transaction).
    with SqliteInterpreter(jobs, path, synchronous=synchronous, group_commit=0) as db:
        db.client().task(looping).send(id="loop", event=0)
        _require(db.run_due(limit=50) == 50, "the looping task should always be due")
        best = float("inf")
        for _ in range(ROUNDS):
            before = count[0]
            started = time.perf_counter()
            ran = db.run_due(limit=steps)
            elapsed = time.perf_counter() - started
            _require(ran == steps and count[0] - before == steps, f"ran {ran} of {steps} steps")
            best = min(best, elapsed / steps)
        _require(not db.errors, f"errors {db.errors}")
        rows = db._sql.db.execute("SELECT COUNT(*) FROM instances").fetchone()[0]
        _require(rows == instances + 1, f"{rows:,} instances in the file, not {instances + 1:,}")
    size = sum(p.stat().st_size for p in folder.glob(f"{path.name}*"))
    return SizeFigures(instances, fill_s, size / 1e6, best, steps)


# ---------------------------------------------------------------------------- report


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def _row(label: str, value: str, note: str = "") -> str:
    return f"   {label:<46}{value:>14}" + (f"   {note}" if note else "")


def _load() -> str:
    try:
        one, five, _ = os.getloadavg()
    except OSError:  # pragma: no cover - not every platform has it
        return "n/a"
    return f"{one:.2f} (1 min), {five:.2f} (5 min)"


@attrs.frozen
class Figures:
    synchronous: str
    commit_s: float
    ours: Throughput
    single: Throughput
    huey: Throughput
    producers: tuple[Producers, ...]
    ours_late: Lateness
    huey_late: Lateness
    small: SizeFigures
    large: SizeFigures


def _summary(f: Figures, quick: bool, load_at_start: str) -> str:
    ratio = f.ours.rate / f.huey.rate
    worker_ratio = f.ours.worker_rate / f.huey.worker_rate
    size_ratio = f.large.step_s / f.small.step_s
    ms = 1000.0
    lines = [
        "=" * 86,
        "durable-jobs SQLite interpreter vs Huey SqliteHuey" + ("  (--quick)" if quick else ""),
        f"python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
        f"huey {metadata.version('huey')}, {platform.machine()}, {os.cpu_count()} CPUs, "
        f"{platform.platform()}",
        f"load average at start {load_at_start}; at end {_load()}",
        f"--synchronous {f.synchronous}; bare 1-row write transaction at this level: "
        f"{f.commit_s * ms:.3f} ms",
        f"  durable-jobs connection: {f.ours.pragmas}",
        f"  Huey connection:         {f.huey.pragmas}",
        "    (Huey: SqliteStorage subclass running PRAGMA synchronous after its own pragmas,",
        "     fsync=None, cache_mb=8 default; durable-jobs: synchronous= argument)",
        "-" * 86,
        f"1. throughput, {f.ours.jobs:,} durable no-op jobs, enqueue all then process all",
        f"   durable-jobs as {BATCHED.concurrency} shards fed by enqueue_many "
        f"({ENQUEUE_BATCH:,} per call), processed by run_due (group commit)",
        _row("durable-jobs enqueue (enqueue_many)", f"{f.ours.enqueue_s:.3f} s"),
        _row("durable-jobs process (run_due loop)", f"{f.ours.process_s:.3f} s"),
        _row("durable-jobs total", f"{f.ours.total_s:.3f} s", f"{f.ours.rate:,.0f} jobs/s"),
        _row("Huey enqueue (task calls)", f"{f.huey.enqueue_s:.3f} s"),
        _row("Huey process (dequeue/execute loop)", f"{f.huey.process_s:.3f} s"),
        _row("Huey total", f"{f.huey.total_s:.3f} s", f"{f.huey.rate:,.0f} jobs/s"),
        _row(
            "ratio ours / Huey (jobs/s)",
            f"{ratio:.2f}",
            f"target >= {THROUGHPUT_TARGET:g}: {_verdict(ratio >= THROUGHPUT_TARGET)}",
        ),
        _row(
            f"info: run_forever(workers={BATCHED.concurrency}), processing",
            f"{f.ours.worker_s:.3f} s",
            f"{f.ours.worker_rate:,.0f} jobs/s",
        ),
        _row(
            "info: Huey consumer(workers=1), processing",
            f"{f.huey.worker_s:.3f} s",
            f"{f.huey.worker_rate:,.0f} jobs/s",
        ),
        _row("info: worker-thread ratio ours / Huey", f"{worker_ratio:.2f}", "processing only"),
        "   like for like: 1 shard, enqueue called once per job (a commit per call and per job)",
        _row("durable-jobs enqueue (enqueue per job)", f"{f.single.enqueue_s:.3f} s"),
        _row("durable-jobs process (run_due loop)", f"{f.single.process_s:.3f} s"),
        _row("durable-jobs total", f"{f.single.total_s:.3f} s", f"{f.single.rate:,.0f} jobs/s"),
        _row("info: ratio ours / Huey, like for like", f"{f.single.rate / f.huey.rate:.2f}"),
        _row(
            "info: run_forever(workers=1), processing",
            f"{f.single.worker_s:.3f} s",
            f"{f.single.worker_rate:,.0f} jobs/s",
        ),
        "-" * 86,
        f"1b. many producers: enqueue called once per job by producer threads of this process"
        f" while one worker process runs ({PRODUCER_SHARDS} shards, run_forever(workers="
        f"{PRODUCER_SHARDS}); Huey: its better consumer of 1 or 8 worker threads); from the"
        " first call until every job ran",
    ]
    for shape in f.producers:
        target = PRODUCER_TARGETS[shape.threads]
        lines += [
            _row(
                f"{shape.threads} producer thread(s): durable-jobs",
                f"{shape.ours_s:.3f} s",
                f"{shape.jobs / shape.ours_s:,.0f} jobs/s",
            ),
            _row(
                f"{shape.threads} producer thread(s): Huey ({shape.huey_workers} worker(s))",
                f"{shape.huey_s:.3f} s",
                f"{shape.jobs / shape.huey_s:,.0f} jobs/s",
            ),
            _row(
                f"{shape.threads} producer thread(s): ratio ours / Huey",
                f"{shape.ratio:.2f}",
                f"target >= {target:g}: {_verdict(shape.ratio >= target)}",
            ),
        ]
    lines += [
        "-" * 86,
        f"2. lateness of {len(f.ours_late.samples_ms)} items due {DELAY_S:g} s after scheduling,"
        f" scheduled over {SPREAD_S:g} s, one worker thread",
        _row("durable-jobs p50", f"{f.ours_late.p50:.1f} ms"),
        _row(
            "durable-jobs p99",
            f"{f.ours_late.p99:.1f} ms",
            f"target <= {LATENESS_P99_TARGET_MS:g} ms: "
            f"{_verdict(f.ours_late.p99 <= LATENESS_P99_TARGET_MS)}",
        ),
        _row("durable-jobs max", f"{f.ours_late.worst:.1f} ms"),
        _row("Huey p50", f"{f.huey_late.p50:.1f} ms"),
        _row("Huey p99", f"{f.huey_late.p99:.1f} ms"),
        _row("Huey max", f"{f.huey_late.worst:.1f} ms"),
        "-" * 86,
        f"3. claim + fire + execute + outcome of one always-due Task, best of {ROUNDS} rounds"
        f" x {f.small.steps:,} steps",
    ]
    for s in (f.small, f.large):
        lines += [
            _row(
                f"{s.instances:,} idle instances: fill (sync OFF)",
                f"{s.fill_s:.1f} s",
                f"{s.fill_rate:,.0f} instances/s, file {s.file_mb:.1f} MB",
            ),
            _row(f"{s.instances:,} idle instances: per step", f"{s.step_s * ms:.3f} ms"),
        ]
    lines += [
        _row(
            f"ratio {f.large.instances:,} / {f.small.instances:,}",
            f"{size_ratio:.2f}",
            f"target <= {SIZE_RATIO_TARGET:g}: {_verdict(size_ratio <= SIZE_RATIO_TARGET)}",
        ),
        "=" * 86,
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a smaller smoke run")
    parser.add_argument(
        "--synchronous",
        default="FULL",
        type=str.upper,
        choices=SYNCHRONOUS,
        help="PRAGMA synchronous for both systems (default FULL)",
    )
    parser.add_argument("--dir", type=Path, default=None, help="where the temporary files go")
    args = parser.parse_args(argv)
    try:
        import huey  # noqa: F401
    except ImportError:
        raise SystemExit("this benchmark needs Huey: pip install -e '.[bench]'") from None
    scale = QUICK if args.quick else FULL
    sync: str = args.synchronous
    load_at_start = _load()
    with tempfile.TemporaryDirectory(prefix="bench-sqlite-", dir=args.dir) as tmp:
        folder = Path(tmp)
        print(f"files in {folder}; synchronous={sync}", flush=True)
        commit_s = _commit_cost(folder, sync)
        print(f"1. throughput: {scale.jobs:,} jobs ...", flush=True)
        ours = _ours_throughput(folder, sync, scale.jobs, BATCHED)
        print(f"   durable-jobs, enqueue_many + group commit: {ours.rate:,.0f} jobs/s", flush=True)
        single = _ours_throughput(folder, sync, scale.jobs, ONE_BY_ONE)
        print(f"   durable-jobs, one by one: {single.rate:,.0f} jobs/s", flush=True)
        theirs = _huey_throughput(folder, sync, scale.jobs)
        print(f"   Huey {theirs.rate:,.0f} jobs/s", flush=True)
        shapes = []
        for threads in PRODUCER_THREADS:
            print(f"1b. {threads} producer thread(s) ...", flush=True)
            shapes.append(_producers(folder, sync, scale.jobs, threads))
            print(f"   ratio ours / Huey {shapes[-1].ratio:.2f}", flush=True)
        print(f"2. lateness: {scale.alarms} items ...", flush=True)
        ours_late = _ours_lateness(folder, sync, scale.alarms)
        print(f"   durable-jobs p99 {ours_late.p99:.1f} ms", flush=True)
        huey_late = _huey_lateness(folder, sync, scale.alarms)
        print(f"   Huey p99 {huey_late.p99:.1f} ms", flush=True)
        sized: list[SizeFigures] = []
        for instances in scale.sizes:
            print(f"3. step cost with {instances:,} idle instances ...", flush=True)
            sized.append(_step_cost(folder, sync, instances, scale.steps))
            print(f"   {sized[-1].step_s * 1000:.3f} ms per step", flush=True)
    figures = Figures(
        sync,
        commit_s,
        ours,
        single,
        theirs,
        tuple(shapes),
        ours_late,
        huey_late,
        sized[0],
        sized[1],
    )
    print(_summary(figures, args.quick, load_at_start))
    return 0


if __name__ == "__main__":
    sys.exit(main())
