"""Benchmark of the durable-jobs core and the memory interpreter (prints figures).

Run it from the repository root, with the package installed::

    python tests/benchmarks/bench_core.py            # full run (~1M events, 30 days)
    python tests/benchmarks/bench_core.py --quick    # 100x smaller smoke run
    python tests/benchmarks/bench_core.py --reducer  # simulate with an on_event reducer

This is a program, not a pytest test. It measures three things in one run:

1. **decide rate of a Debounce add**, against a baseline. The baseline is the least an
   add has to do with frozen values: one ``attrs.evolve`` of a small frozen snapshot plus
   two small frozen commands (``Persist`` and ``ScheduleAlarm``). The measured loop calls
   ``durable_jobs.decide`` with a ``DebounceAdd`` on an existing batch of a definition
   without ``on_event`` (one pure call per add), with ``now`` one millisecond later each
   time. Each loop is timed with ``time.perf_counter`` several times and the best round
   counts. The printed ratio is ``decide_rate / baseline_rate`` (target: at least 0.3).
   For information, the same add through a definition *with* an ``on_event`` reducer is
   also timed: there it takes two ``decide`` calls (the add returns ``RunUserCode``; the
   reducer's result comes back as ``UserCodeSucceeded``). The reducer itself is not
   called, so only the core is timed.

2. **wall time of a simulation** on ``MemoryInterpreter(jobs, trace=False)``: 1,000,000
   Debounce events through ``client.debounce(job).add`` over 1,000 ids, a thousand events
   per virtual second (the clock advances one second after each thousand), with
   ``max_events`` and ``flush_after`` both firing; then 30 seconds more so that every
   open batch flushes; then the clock runs on, in one-day steps, to 30 days after the
   start, while a Continuous job on a one-minute schedule (started with the simulation)
   keeps running. Each phase is timed and the total is what the target is about. The user functions count the
   flushes, the flushed events and the Continuous runs; the counts are checked against
   what must happen (every event flushed exactly once, one run per minute) and printed,
   so the figure stands for real work. Target: 20 s or less on a 2-core machine.
   The ids are drawn up front (not timed) from a fixed-seed skewed distribution: a few
   hot ids reach ``max_events`` within a second, the many cold ones flush on
   ``flush_after``.

3. Progress lines during the long part and a summary block with every figure.

``sim.telemetry`` (a plain list) would grow with every event the core emits; the
simulation counts and clears it at each progress line to keep memory bounded, and says
so in its output.
"""

from __future__ import annotations

import argparse
import collections
import os
import platform
import random
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs

from durable_jobs import (
    Continuous,
    ContinuousContext,
    ContinuousDefinition,
    Debounce,
    DebounceContext,
    DebounceDefinition,
    DebounceEventContext,
    DebounceFlushed,
    Instant,
    Jobs,
)
from durable_jobs.interpreters.memory import MemoryInterpreter
from durable_jobs.protocol import (
    DebounceAdd,
    DebounceSnapshot,
    Persist,
    RunUserCode,
    ScheduleAlarm,
    Transition,
    UserCodeSucceeded,
    decide,
    from_datetime,
)

DECIDE_RATIO_TARGET = 0.3
WALL_TIME_TARGET_S = 20.0

FULL_EVENTS = 1_000_000
IDS = 1_000
EVENTS_PER_SECOND = 1_000
SIM_DAYS = 30
MAX_EVENTS = 100
FLUSH_AFTER = "30 seconds"
PROGRESS_EVERY = 100_000
SEED = 20_260_101
START = datetime(2026, 1, 1, tzinfo=UTC)

ROUNDS = 7
MICRO_ITERATIONS = 50_000


# ------------------------------------------------------------------------ micro part


@attrs.frozen
class _SmallSnapshot:
    """A small frozen record, standing in for a snapshot in the baseline."""

    id: str
    count: int = 0
    last_at: int = 0
    alarm_at: int | None = None
    version: int = 0


def _best_rates(loops: list[Callable[[int], float]], iterations: int, rounds: int) -> list[float]:
    """The best rate (iterations per second) of each loop over ``rounds`` timed runs.

    The loops take turns within each round, so a burst of load from elsewhere on the
    machine hits all of them alike and the best round of each stays comparable.
    """
    for loop in loops:
        loop(max(1, iterations // 10))  # warm-up
    best = [float("inf")] * len(loops)
    for round_ in range(1, rounds + 1):
        for k, loop in enumerate(loops):
            best[k] = min(best[k], loop(iterations))
        rates = ", ".join(f"{iterations / seconds:,.0f}" for seconds in best)
        print(f"  round {round_}/{rounds}: best so far {rates} ops/s", flush=True)
    return [iterations / seconds for seconds in best]


def _baseline_loop(iterations: int) -> float:
    snapshot = _SmallSnapshot(id="bench")
    start = time.perf_counter()
    for i in range(iterations):
        nxt = attrs.evolve(snapshot, count=i, last_at=i, version=i)
        Persist(nxt)
        ScheduleAlarm(Instant(i))
    return time.perf_counter() - start


def _plain_definition() -> DebounceDefinition[int, int]:
    job = Debounce.make(event=int, execute=lambda ctx: None, flush_after="1 hour")
    return Jobs(plain=job).resolve(job, DebounceDefinition)


def _reducer_definition() -> DebounceDefinition[int, int]:
    def add(ctx: DebounceEventContext[int, int]) -> int:
        return (ctx.state or 0) + ctx.event

    job = Debounce.make(
        event=int, state=int, on_event=add, execute=lambda ctx: None, flush_after="1 hour"
    )
    return Jobs(summed=job).resolve(job, DebounceDefinition)


def _run_of(transition: Transition[Any]) -> RunUserCode:
    """The ``RunUserCode`` a transition asks for (the last command when there is one)."""
    run = transition.commands[-1] if transition.commands else None
    if not isinstance(run, RunUserCode):
        raise SystemExit(f"benchmark check failed: no RunUserCode in {transition.commands!r}")
    return run


def _existing_batch(definition: DebounceDefinition[Any, Any], now: Instant) -> Any:
    """A realistic stored batch: the snapshot after the first add of an instance."""
    first = decide(definition, None, DebounceAdd(id="bench", event=1), now).unwrap()
    if definition.on_event is None:
        return first.snapshot
    outcome = UserCodeSucceeded(run_id=_run_of(first).run_id, state_set=True, state=1)
    return decide(definition, first.snapshot, outcome, now).unwrap().snapshot


def _decide_loop(definition: DebounceDefinition[int, int], t0: Instant) -> Callable[[int], float]:
    snapshot = _existing_batch(definition, t0)
    assert isinstance(snapshot, DebounceSnapshot)
    # One checked call: an add on this batch is accepted and writes the snapshot.
    check = decide(definition, snapshot, DebounceAdd(id="bench", event=2), t0).unwrap()
    _require(
        any(isinstance(c, Persist) for c in check.commands)
        and check.snapshot is not None
        and check.snapshot.event_count == snapshot.event_count + 1,
        f"an add without on_event should persist the grown batch, got {check.commands!r}",
    )

    def loop(iterations: int) -> float:
        start = time.perf_counter()
        for i in range(iterations):
            decide(definition, snapshot, DebounceAdd(id="bench", event=i), Instant(t0 + i))
        return time.perf_counter() - start

    return loop


def _reduced_decide_loop(
    definition: DebounceDefinition[int, int], t0: Instant
) -> Callable[[int], float]:
    snapshot = _existing_batch(definition, t0)
    assert isinstance(snapshot, DebounceSnapshot)
    state: int = snapshot.state or 0

    def loop(iterations: int) -> float:
        start = time.perf_counter()
        for i in range(iterations):
            now = Instant(t0 + i)
            asked = decide(definition, snapshot, DebounceAdd(id="bench", event=i), now).unwrap()
            run = asked.commands[-1]
            assert isinstance(run, RunUserCode)
            outcome = UserCodeSucceeded(run_id=run.run_id, state_set=True, state=state + i)
            decide(definition, asked.snapshot, outcome, now).unwrap()
        return time.perf_counter() - start

    # One checked round trip: the outcome is accepted and the batch grows.
    asked = decide(definition, snapshot, DebounceAdd(id="bench", event=5), t0).unwrap()
    outcome = UserCodeSucceeded(run_id=_run_of(asked).run_id, state_set=True, state=6)
    done = decide(definition, asked.snapshot, outcome, t0).unwrap()
    _require(
        done.snapshot.event_count == snapshot.event_count + 1 and done.snapshot.state == 6,
        f"the reducer outcome should grow the batch, got {done.snapshot!r}",
    )
    return loop


@attrs.frozen
class MicroFigures:
    baseline_rate: float
    decide_rate: float
    reduced_rate: float

    @property
    def ratio(self) -> float:
        return self.decide_rate / self.baseline_rate


def measure_decide(iterations: int, rounds: int) -> MicroFigures:
    t0 = from_datetime(START)
    baseline, plain, reduced = _best_rates(
        [
            _baseline_loop,
            _decide_loop(_plain_definition(), t0),
            _reduced_decide_loop(_reducer_definition(), t0),
        ],
        iterations,
        rounds,
    )
    return MicroFigures(baseline_rate=baseline, decide_rate=plain, reduced_rate=reduced)


# ------------------------------------------------------------------- simulation part


@attrs.frozen
class Tick:
    """The Continuous job's state: how many runs it has seen."""

    runs: int


@attrs.define
class Tally:
    """What the user functions observed (counted by them, not by the interpreter)."""

    flushes: int = 0
    flushed_events: int = 0
    flush_reasons: collections.Counter[str] = attrs.field(factory=collections.Counter)
    reducer_calls: int = 0
    continuous_runs: int = 0
    telemetry_seen: int = 0
    telemetry_flushed: int = 0


@attrs.frozen
class SimFigures:
    events: int
    ids: int
    debounce_wall_s: float
    drain_wall_s: float
    continuous_wall_s: float
    tally: Tally
    expected_runs: int
    span: timedelta
    reducer: bool

    @property
    def total_wall_s(self) -> float:
        return self.debounce_wall_s + self.drain_wall_s + self.continuous_wall_s

    @property
    def events_per_s(self) -> float:
        return self.events / self.debounce_wall_s


def _make_jobs(
    tally: Tally, reducer: bool
) -> tuple[Jobs, DebounceDefinition[int, int], ContinuousDefinition[Tick]]:
    def flush(ctx: DebounceContext[int]) -> None:
        tally.flushes += 1
        tally.flushed_events += ctx.event_count
        tally.flush_reasons[ctx.flush_reason] += 1

    def fold(ctx: DebounceEventContext[int, int]) -> int:
        tally.reducer_calls += 1
        return (ctx.state or 0) + ctx.event

    def tick(ctx: ContinuousContext[Tick]) -> None:
        tally.continuous_runs += 1
        ctx.update_state(lambda s: Tick(s.runs + 1))

    batcher = Debounce.make(
        event=int,
        state=int,
        execute=flush,
        on_event=fold if reducer else None,
        flush_after=FLUSH_AFTER,
        max_events=MAX_EVENTS,
    )
    ticker = Continuous.make(state=Tick, schedule=Continuous.every("1 minute"), execute=tick)
    return Jobs(batcher=batcher, ticker=ticker), batcher, ticker


def _skewed_ids(events: int, ids: int, seed: int) -> list[str]:
    """``events`` ids drawn up front: id k is picked with a density falling like k^(-2/3)."""
    names = [f"user-{k:04d}" for k in range(ids)]
    rng = random.Random(seed)
    draw = rng.random
    return [names[int(ids * draw() ** 3)] for _ in range(events)]


def _count_telemetry(sim: MemoryInterpreter, tally: Tally) -> None:
    tally.telemetry_seen += len(sim.telemetry)
    tally.telemetry_flushed += sum(1 for e in sim.telemetry if isinstance(e, DebounceFlushed))
    sim.telemetry.clear()


def simulate(events: int, span: timedelta, *, reducer: bool, progress_every: int) -> SimFigures:
    """Run the simulation: ``events`` adds, then the clock on to ``span`` after the start."""
    tally = Tally()
    jobs, batcher, ticker = _make_jobs(tally, reducer)
    sequence = _skewed_ids(events, IDS, SEED)
    second = timedelta(seconds=1)
    sim = MemoryInterpreter(jobs, start=START, trace=False)
    client = sim.client()
    add = client.debounce(batcher).add
    ticks = client.continuous(ticker)
    print(
        f"simulation: {events:,} debounce events over {IDS:,} ids "
        f"({'with' if reducer else 'without'} on_event reducer, max_events={MAX_EVENTS}, "
        f"flush_after={FLUSH_AFTER}), then a 1-minute Continuous job to {_span(span)}",
        flush=True,
    )
    print(
        "  (sim.telemetry is counted and cleared at every progress line to bound memory)",
        flush=True,
    )

    begin = time.perf_counter()
    ticks.start(id="ticker", input=Tick(0))
    for n, id_ in enumerate(sequence, start=1):
        add(id=id_, event=1)
        if n % EVENTS_PER_SECOND == 0:
            sim.advance(second)
        if n % progress_every == 0:
            _count_telemetry(sim, tally)
            elapsed = time.perf_counter() - begin
            print(
                f"  {n:>9,} events  {elapsed:7.2f} s  {n / elapsed:9,.0f} events/s  "
                f"flushes {tally.flushes:,}  continuous runs {tally.continuous_runs:,}",
                flush=True,
            )
    debounce_done = time.perf_counter()

    # Let every batch still open reach its flush_after deadline.
    sim.advance(FLUSH_AFTER)
    _count_telemetry(sim, tally)
    drain_done = time.perf_counter()

    target = START + span
    step = span / SIM_DAYS  # one day on the full run
    steps = 0
    while sim.now() < target:
        sim.advance_to(min(target, sim.now() + step))
        _count_telemetry(sim, tally)
        steps += 1
        if steps % 5 == 0 or sim.now() == target:
            elapsed = time.perf_counter() - begin
            print(
                f"  clock +{_span(sim.now() - START):>12}  {elapsed:7.2f} s  "
                f"continuous runs {tally.continuous_runs:,}",
                flush=True,
            )
    end = time.perf_counter()

    expected_runs = 1 + span // timedelta(minutes=1)
    stored = ticks.get_state("ticker")
    open_batches = [s for s in sim.instances() if s.key.job_type == "debounce"]
    _require(
        tally.flushed_events == events,
        f"every event should be flushed once: {tally.flushed_events:,} of {events:,}",
    )
    _require(
        tally.telemetry_flushed == tally.flushes,
        f"debounce.flushed telemetry ({tally.telemetry_flushed:,}) != flushes seen by "
        f"execute ({tally.flushes:,})",
    )
    _require(
        not reducer or tally.reducer_calls == events,
        f"the reducer should run once per event: {tally.reducer_calls:,} of {events:,}",
    )
    _require(
        tally.continuous_runs == expected_runs and stored == Tick(expected_runs),
        f"continuous runs {tally.continuous_runs:,} (state {stored!r}) != {expected_runs:,}",
    )
    _require(not open_batches, f"{len(open_batches)} debounce batches left open")
    return SimFigures(
        events=events,
        ids=IDS,
        debounce_wall_s=debounce_done - begin,
        drain_wall_s=drain_done - debounce_done,
        continuous_wall_s=end - drain_done,
        tally=tally,
        expected_runs=expected_runs,
        span=span,
        reducer=reducer,
    )


def _span(span: timedelta) -> str:
    days = span / timedelta(days=1)
    if days >= 1:
        return f"{days:.3g} days"
    return f"{span / timedelta(hours=1):.3g} hours"


# ---------------------------------------------------------------------------- report


def _require(condition: bool, message: str) -> None:
    """Stop the benchmark when a count is off: a fast wrong run proves nothing."""
    if not condition:
        raise SystemExit(f"benchmark check failed: {message}")


def _verdict(ok: bool) -> str:
    return "MET" if ok else "MISSED"


def _row(label: str, value: str, note: str = "") -> str:
    return f"   {label:<44}{value:>14}" + (f"   {note}" if note else "")


def _load() -> str:
    try:
        one, five, _ = os.getloadavg()
    except OSError:  # pragma: no cover - not every platform has it
        return "n/a"
    return f"{one:.2f} (1 min), {five:.2f} (5 min)"


def _summary(micro: MicroFigures, sim: SimFigures, quick: bool, load_at_start: str) -> str:
    t = sim.tally
    reasons = ", ".join(f"{k} {v:,}" for k, v in sorted(t.flush_reasons.items()))
    ratio_ok = micro.ratio >= DECIDE_RATIO_TARGET
    wall_ok = sim.total_wall_s <= WALL_TIME_TARGET_S
    wall_verdict = "n/a for --quick" if quick else _verdict(wall_ok)
    mode = "with" if sim.reducer else "without"
    lines = [
        "=" * 78,
        "durable-jobs core benchmark" + ("  (--quick: simulation 100x smaller)" if quick else ""),
        f"python {platform.python_version()} on {platform.machine()}, "
        f"{os.cpu_count()} CPUs, {platform.platform()}",
        f"load average at start {load_at_start}; at end {_load()}",
        "-" * 78,
        f"1. decide, Debounce add (best of {ROUNDS} rounds x {MICRO_ITERATIONS:,} iterations)",
        _row("baseline (evolve + Persist + ScheduleAlarm)", f"{micro.baseline_rate:,.0f}", "ops/s"),
        _row("decide(DebounceAdd), no on_event", f"{micro.decide_rate:,.0f}", "ops/s"),
        _row(
            "ratio decide / baseline",
            f"{micro.ratio:.3f}",
            f"target >= {DECIDE_RATIO_TARGET}: {_verdict(ratio_ok)}",
        ),
        _row(
            "add with on_event (2 decide calls), info",
            f"{micro.reduced_rate:,.0f}",
            f"adds/s (ratio {micro.reduced_rate / micro.baseline_rate:.3f})",
        ),
        "-" * 78,
        f"2. MemoryInterpreter(trace=False) simulation ({mode} on_event reducer)",
        _row("debounce events added", f"{sim.events:,}", f"over {sim.ids:,} ids"),
        _row(
            "debounce phase",
            f"{sim.debounce_wall_s:.2f} s",
            f"{sim.events_per_s:,.0f} events/s, clock +{sim.events // EVENTS_PER_SECOND:,} s",
        ),
        _row(f"drain (advance {FLUSH_AFTER})", f"{sim.drain_wall_s:.2f} s"),
        _row(f"clock on to +{_span(sim.span)} (Continuous)", f"{sim.continuous_wall_s:.2f} s"),
        _row(
            "TOTAL wall time",
            f"{sim.total_wall_s:.2f} s",
            f"target <= {WALL_TIME_TARGET_S:.0f} s on 2 cores: {wall_verdict}",
        ),
        _row("flushes (counted in execute)", f"{t.flushes:,}", reasons),
        _row("events flushed (counted in execute)", f"{t.flushed_events:,}", "= events added"),
        _row("on_event reducer calls", f"{t.reducer_calls:,}"),
        _row(
            "Continuous runs (counted in execute)",
            f"{t.continuous_runs:,}",
            f"expected {sim.expected_runs:,} (1 at start + 1 a minute)",
        ),
        _row(
            "telemetry events emitted",
            f"{t.telemetry_seen:,}",
            "counted, then cleared at each progress line",
        ),
        "=" * 78,
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--quick", action="store_true", help="scale the simulation down 100x (smoke run)"
    )
    parser.add_argument(
        "--reducer",
        action="store_true",
        help="give the simulated Debounce job an on_event reducer (two decide calls per add)",
    )
    args = parser.parse_args(argv)
    scale = 100 if args.quick else 1
    events = FULL_EVENTS // scale
    span = timedelta(days=SIM_DAYS) / scale

    load_at_start = _load()
    print("measuring decide rates (baseline, decide add, add with on_event) ...", flush=True)
    micro = measure_decide(MICRO_ITERATIONS, ROUNDS)
    print(
        f"  baseline {micro.baseline_rate:,.0f} ops/s, decide {micro.decide_rate:,.0f} ops/s, "
        f"ratio {micro.ratio:.3f}",
        flush=True,
    )
    sim = simulate(
        events,
        span,
        reducer=args.reducer,
        progress_every=max(1, PROGRESS_EVERY // scale),
    )
    print(_summary(micro, sim, args.quick, load_at_start))
    return 0


if __name__ == "__main__":
    sys.exit(main())
