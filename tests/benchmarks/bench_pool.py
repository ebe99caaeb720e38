"""WorkerPool benchmark: enqueue and processing rates at 1k and 100k pending events.

Run it from the repository root, with the package installed::

    python tests/benchmarks/bench_pool.py           # 1k and 100k pending
    python tests/benchmarks/bench_pool.py --quick   # 1k and 10k, a smoke run

A program, not a test: it prints figures. Everything runs on the memory interpreter with
one shard (``concurrency=1``), so the queue length is really the shard's length.

* **enqueue**: the shard is paused and pre-filled with N pending events (not timed); then
  ``MEASURED`` more enqueues are timed.
* **processing**: the shard holds N low-priority events plus ``MEASURED`` high-priority
  ones; on resume the high-priority ones run first, so the timed events are processed
  while at least N others wait. The clock is read in ``execute`` when the last timed
  event runs; the rest of the queue is then processed untimed.

The target: the cost does not grow with the queue, i.e. rate(1k) / rate(N) <= 1.5.
"""

from __future__ import annotations

import argparse
import gc
import time

from durable_jobs import Jobs, PoolContext, WorkerPool
from durable_jobs.interpreters.memory import MemoryInterpreter

MEASURED = 5_000
ROUNDS = 3


def _enqueue_rate(pending: int) -> float:
    pool = WorkerPool.make(event=int, concurrency=1, execute=lambda ctx: None)
    sim = MemoryInterpreter(Jobs(pool=pool), trace=False)
    client = sim.client().worker_pool(pool)
    client.pause()
    for i in range(pending):
        client.enqueue(id=f"fill-{i}", event=i)
    gc.collect()
    started = time.perf_counter()
    for i in range(MEASURED):
        client.enqueue(id=f"timed-{i}", event=i)
    elapsed = time.perf_counter() - started
    assert client.instance_status(0).pending_count == pending + MEASURED
    return MEASURED / elapsed


def _processing_rate(pending: int) -> float:
    marks: dict[str, float] = {}
    done = {"timed": 0}

    def execute(ctx: PoolContext[int]) -> None:
        if ctx.priority == 1:
            done["timed"] += 1
            if done["timed"] == 1:
                marks["first"] = time.perf_counter()
            if done["timed"] == MEASURED:
                marks["last"] = time.perf_counter()

    pool = WorkerPool.make(event=int, concurrency=1, execute=execute)
    sim = MemoryInterpreter(Jobs(pool=pool), trace=False)
    client = sim.client().worker_pool(pool)
    client.pause()
    for i in range(pending):
        client.enqueue(id=f"fill-{i}", event=i)
    for i in range(MEASURED + 1):
        client.enqueue(id=f"timed-{i}", event=i, priority=1)
    gc.collect()
    client.resume()
    sim.advance("1 second")
    assert done["timed"] == MEASURED + 1
    assert client.instance_status(0).processed_count == pending + MEASURED + 1
    # MEASURED events ran between the first and the last mark (the first is not counted).
    return (MEASURED - 1) / (marks["last"] - marks["first"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1k and 10k pending")
    args = parser.parse_args()
    sizes = (1_000, 10_000) if args.quick else (1_000, 100_000)
    rates: dict[str, dict[int, float]] = {"enqueue": {}, "processing": {}}
    for size in sizes:
        print(f"measuring with {size:,} pending events ...", flush=True)
        rates["enqueue"][size] = max(_enqueue_rate(size) for _ in range(ROUNDS))
        rates["processing"][size] = max(_processing_rate(size) for _ in range(ROUNDS))
    small, large = sizes
    print("=" * 72)
    print(f"WorkerPool on the memory interpreter, one shard, best of {ROUNDS} rounds")
    print(f"{'':24}{small:>12,} pending{large:>12,} pending{'ratio':>10}")
    for name, by_size in rates.items():
        ratio = by_size[small] / by_size[large]
        verdict = "MET" if ratio <= 1.5 else "MISSED"
        print(
            f"{name + ' (events/s)':24}{by_size[small]:>20,.0f}{by_size[large]:>20,.0f}"
            f"{ratio:>10.2f}  target <= 1.5: {verdict}"
        )
    print("=" * 72)


if __name__ == "__main__":
    main()
