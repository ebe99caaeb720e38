"""The ``durable-jobs demo`` scenario: the four job types on a SQLite file, narrated.

Theory of operation: ``run_demo`` registers a Continuous, a Debounce, a Task and a
WorkerPool job on a ``SqliteInterpreter`` with a ``ManualClock`` (the virtual clock keeps
the demo instant and its output the same on every run), drives them through the public
client API and narrates what happens, step by step: the user code's own view (each hook
prints a line), the results of client calls and the telemetry committed after each
step. At the end it closes the interpreter, opens the file again with a new one and
reads the state, the dead letters and the telemetry back from it, then counts the
telemetry in a table.

The demo holds no job semantics. Its hooks are ordinary user code, and apart from a few
short explanatory notes, everything printed about retries, flushes, schedules, queues
and dead letters is read back from a client result, a telemetry event, a dead-letter
record or a stored row that the core produced.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from contextlib import closing
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar, assert_never

import attrs
from rich.console import Console

from durable_jobs import (
    Backoff,
    Continuous,
    ContinuousContext,
    DeadLetter,
    Debounce,
    DebounceContext,
    DebounceEventContext,
    DebounceFlushed,
    DebounceStarted,
    ErrorInfo,
    JobDeadLettered,
    JobExecuted,
    JobFailed,
    JobRetryExhausted,
    Jobs,
    JobStarted,
    JobTerminated,
    PoolContext,
    PoolDeadLetterContext,
    PoolEmptyContext,
    PoolQueueRepaired,
    PoolStatusResult,
    Retry,
    Task,
    TaskContext,
    TaskScheduled,
    TelemetryEvent,
    WorkerPool,
)
from durable_jobs.interpreters._output import Write, print_table, table
from durable_jobs.interpreters.clock import ManualClock
from durable_jobs.interpreters.sqlite import SqliteInterpreter
from durable_jobs.interpreters.sqlite.schema import open_read_only
from durable_jobs.protocol import parse_duration, to_datetime

__all__ = ["run_demo"]

R = TypeVar("R")
STAMP = " " * len("[00:00:00] ")


def _clock(value: datetime) -> str:
    """``HH:MM:SS`` of the virtual clock, with milliseconds when there are any."""
    text = value.strftime("%H:%M:%S")
    millis = value.microsecond // 1000
    return f"{text}.{millis:03d}" if millis else text


def _at(value: datetime | None) -> str:
    return "-" if value is None else _clock(value)


def _describe(event: TelemetryEvent) -> str:
    """One readable line for a telemetry event."""
    who = f"{event.job_name}/{event.id}"
    match event:
        case JobStarted():
            return f"{event.type} {who}, input={event.input!r}"
        case JobExecuted():
            counted = event.hook == "execute" and event.job_type != "workerPool"
            run = f"run {event.run_count}, " if counted and event.run_count else ""
            return f"{event.type} {who}: {event.hook} succeeded ({run}attempt {event.attempt})"
        case JobFailed():
            then = (
                f"retry as attempt {event.next_attempt} at {_clock(to_datetime(event.retry_at))}"
                if event.will_retry and event.retry_at is not None
                else "no retry left"
            )
            return (
                f"{event.type} {who}: {event.hook} attempt {event.attempt} failed "
                f"({event.error.type}: {event.error.message}); {then}"
            )
        case JobRetryExhausted():
            return f"{event.type} {who}: gave up after {event.attempts} attempt(s), reason {event.reason}"
        case JobDeadLettered():
            return f"{event.type} {who}: payload kept after {event.attempts} attempt(s)"
        case JobTerminated():
            return f"{event.type} {who}, reason={event.reason!r}"
        case DebounceStarted():
            return f"{event.type} {who}: new batch, flush at {_clock(to_datetime(event.flush_at))}"
        case DebounceFlushed():
            return (
                f"{event.type} {who}: {event.event_count} event(s), reason {event.reason}, "
                f"batch age {event.duration_ms / 1000:g} s"
            )
        case TaskScheduled():
            return (
                f"{event.type} {who}: execute at {_clock(to_datetime(event.scheduled_at))} "
                f"(set by {event.trigger})"
            )
        case PoolQueueRepaired():  # pragma: no cover - the demo deletes no row by hand
            return f"{event.type} {who}: counters said {event.counted} pending, rows hold none"
        case _:  # pragma: no cover - the union is closed
            assert_never(event)


class Narrator:
    """Prints lines stamped with the virtual clock, and the telemetry not yet shown."""

    def __init__(self, write: Write) -> None:
        self.write = write
        self._sim: SqliteInterpreter | None = None
        self._shown = 0

    @property
    def sim(self) -> SqliteInterpreter:
        if self._sim is None:  # pragma: no cover - run_demo watches before narrating
            raise RuntimeError("Narrator.watch(sim) was not called")
        return self._sim

    def watch(self, sim: SqliteInterpreter) -> None:
        """Narrate ``sim``: stamp lines with its clock and show its telemetry."""
        self._sim = sim
        self._shown = len(sim.telemetry)

    def heading(self, text: str) -> None:
        self.write("")
        self.write(text)
        self.write("=" * len(text))

    def say(self, text: str) -> None:
        """A line stamped with the virtual clock."""
        self.write(f"[{_clock(self.sim.now())}] {text}")

    def user(self, text: str) -> None:
        """A line printed by the demo's user code."""
        self.say(f"  user code | {text}")

    def note(self, text: str) -> None:
        self.write(f"{STAMP}{text}")

    def telemetry(self) -> None:
        """Print the telemetry events committed since the last call."""
        for event in self.sim.telemetry[self._shown :]:
            self.note(f"  telemetry | {_describe(event)}")
        self._shown = len(self.sim.telemetry)

    def call(self, what: str, action: Callable[[], R], summary: Callable[[R], str]) -> R:
        """Make one client call: announce it, run it, show its telemetry and result."""
        self.say(f"client.{what}")
        result = action()
        self.telemetry()
        self.note(f"  -> {summary(result)}")
        return result

    def advance(self, total: str, step: str, report: Callable[[], str]) -> None:
        """Move the virtual clock by ``total`` in ``step``s, reporting after each step."""
        end = self.sim.now() + _duration(total)
        self.say(f"advancing the virtual clock by {total}, {step} at a time")
        while self.sim.now() < end:
            self.sim.advance(min(_duration(step), end - self.sim.now()))
            self.telemetry()
            self.say(f"+{step}: {report()}")


def _duration(text: str) -> timedelta:
    return timedelta(milliseconds=parse_duration(text))


# ------------------------------------------------------------------------ demo jobs


@attrs.frozen
class Reading:
    """The Continuous job's state: how many samples were taken."""

    samples: int


@attrs.frozen
class Batch:
    """The Debounce job's state: the events of one batch, in order."""

    events: tuple[str, ...] = ()


@attrs.frozen
class Order:
    """The Task job's state."""

    status: str
    reminders: int = 0


@attrs.frozen
class Mail:
    """The WorkerPool's event: one e-mail to send."""

    to: str
    subject: str


def _pool_report(status: PoolStatusResult) -> str:
    """One line per pool: each shard's status and counts."""
    return "; ".join(
        f"shard {shard.instance_index} {shard.status}, pending={shard.pending_count}, "
        f"processed={shard.processed_count}, dead={shard.dead_lettered_count}"
        + (f", current={shard.current_event_id}" if shard.current_event_id else "")
        for shard in status.instances
    )


MAX_REMINDERS = 2


def run_demo(path: Path, console: Console, *, keep: bool) -> int:
    """Run the demo on the new SQLite file ``path``, printing to ``console``; exit status 0.

    ``keep`` says the file outlives the demo (``--db``): its name is printed then.
    """

    def write(text: str) -> None:
        console.out(text)

    narrator = Narrator(write)
    user = narrator.user

    # Continuous: the second run's first attempt fails once, then its retry succeeds.
    def sample(ctx: ContinuousContext[Reading]) -> None:
        where = f"execute run {ctx.run_count}, attempt {ctx.attempt}"
        if ctx.run_count == 2 and ctx.attempt == 1:
            user(f"{where}: the sensor does not answer, raising TimeoutError")
            raise TimeoutError("sensor did not answer")
        ctx.update_state(lambda reading: Reading(reading.samples + 1))
        user(f"{where}: sample taken, samples={ctx.state.samples}")

    sampler = Continuous.make(
        state=Reading,
        schedule=Continuous.every("10 minutes"),
        execute=sample,
        retry=Retry(max_attempts=3, backoff=Backoff.constant("1 minute")),
    )

    # Debounce: events fold into a Batch; a batch holding "poison" can never be delivered.
    def fold(ctx: DebounceEventContext[str, Batch]) -> Batch:
        before = ctx.state if ctx.state is not None else Batch()
        return Batch((*before.events, ctx.event))

    def deliver(ctx: DebounceContext[Batch]) -> None:
        where = f"execute (flush_reason={ctx.flush_reason}, attempt {ctx.attempt})"
        if "poison" in ctx.state.events:
            user(f"{where}: cannot deliver {list(ctx.state.events)}, raising ValueError")
            raise ValueError("downstream rejected the batch")
        user(f"{where}: delivered {list(ctx.state.events)}")

    batcher = Debounce.make(
        event=str,
        state=Batch,
        on_event=fold,
        execute=deliver,
        flush_after="1 minute",
        max_events=3,
        retry=Retry(max_attempts=2, backoff=Backoff.constant("30 seconds"), jitter=False),
    )

    # Task: an order that sends reminders until it is paid (at most MAX_REMINDERS).
    def on_order_event(ctx: TaskContext[Order, str]) -> None:
        if ctx.event == "placed":
            ctx.set_state(Order("placed"))
            ctx.schedule("1 hour")
            user("on_event 'placed': state set, execute scheduled in 1 hour")
        elif ctx.event == "paid" and ctx.state is not None:
            ctx.set_state(attrs.evolve(ctx.state, status="paid"))
            ctx.cancel_schedule()
            user("on_event 'paid': state set, schedule cancelled")

    def remind(ctx: TaskContext[Order, str]) -> None:
        if ctx.state is None:
            return
        ctx.update_state(lambda order: attrs.evolve(order, reminders=order.reminders + 1))
        sent = ctx.state.reminders
        if sent < MAX_REMINDERS:
            ctx.schedule("1 hour")
            user(f"execute #{ctx.execute_count}: reminder {sent} sent, next one in 1 hour")
        else:
            user(f"execute #{ctx.execute_count}: reminder {sent} sent, that was the last")

    def idle(ctx: TaskContext[Order, str]) -> None:
        user(f"on_idle (after {ctx.idle_reason}): nothing scheduled, state={ctx.state}")

    orders = Task.make(
        state=Order, event=str, on_event=on_order_event, execute=remind, on_idle=idle
    )

    # WorkerPool: mail to an address ending in ".invalid" can never be delivered.
    def send_mail(ctx: PoolContext[Mail]) -> None:
        where = (
            f"execute {ctx.event_id} on shard {ctx.instance_index} "
            f"(priority {ctx.priority}, attempt {ctx.attempt})"
        )
        if ctx.event.to.endswith(".invalid"):
            user(f"{where}: no route to {ctx.event.to}, raising ConnectionError")
            raise ConnectionError(f"no route to {ctx.event.to}")
        user(f"{where}: sent {ctx.event.subject!r} to {ctx.event.to}")

    def mail_dead_lettered(event: Mail, error: ErrorInfo, ctx: PoolDeadLetterContext[Mail]) -> None:
        user(
            f"on_dead_letter {ctx.event_id} after {ctx.attempts} attempt(s) "
            f"({error.type}: {error.message}): telling the sender about {event.subject!r}"
        )

    def mail_empty(ctx: PoolEmptyContext) -> None:
        user(
            f"on_empty: shard {ctx.instance_index} has no work left, processed={ctx.processed_count}"
        )

    mailer = WorkerPool.make(
        event=Mail,
        concurrency=2,
        execute=send_mail,
        retry=Retry(max_attempts=2, backoff=Backoff.constant("1 minute"), jitter=False),
        on_dead_letter=mail_dead_lettered,
        on_empty=mail_empty,
    )

    jobs = Jobs(sampler=sampler, batcher=batcher, orders=orders, mailer=mailer)
    sim = SqliteInterpreter(jobs, path, clock=ManualClock(), inline=True)
    narrator.watch(sim)
    client = sim.client()
    where = str(path) if keep else "a temporary file"
    write(
        "durable-jobs demo: Continuous, Debounce, Task and WorkerPool jobs on the SQLite "
        f"interpreter, in {where}."
    )
    write(
        f"The virtual clock starts at {sim.now():%Y-%m-%d %H:%M} UTC and moves only when "
        "the demo advances it, so nothing waits for real time."
    )

    # ------------------------------------------------------------------ Continuous
    narrator.heading("1. Continuous job 'sampler': every 10 minutes, at most 3 attempts per run")
    sampling = client.continuous(sampler)
    narrator.call(
        "continuous('sampler').start(id='sensor-1', input=Reading(samples=0))",
        lambda: sampling.start(id="sensor-1", input=Reading(0)),
        lambda r: f"created={r.created}, status={r.status}",
    )

    def sampler_status() -> str:
        status = sampling.status("sensor-1")
        return (
            f"run_count={status.run_count}, next attempt={status.attempt}, "
            f"next run at {_at(status.next_run_at)}, state={sampling.get_state('sensor-1')}"
        )

    narrator.advance("30 minutes", "5 minutes", sampler_status)
    narrator.call(
        "continuous('sampler').terminate('sensor-1', reason='demo over')",
        lambda: sampling.terminate("sensor-1", reason="demo over"),
        lambda r: f"terminated={r.terminated}",
    )

    # -------------------------------------------------------------------- Debounce
    narrator.heading("2. Debounce job 'batcher': flush 1 minute after the first event, or at 3")
    batching = client.debounce(batcher)

    def add(id_: str, event: str, aside: str = "") -> None:
        narrator.call(
            f"debounce('batcher').add(id={id_!r}, event={event!r}){aside}",
            lambda: batching.add(id=id_, event=event),
            lambda r: (
                f"event_count={r.event_count}, will_flush_at={_at(r.will_flush_at)}, "
                f"retry_scheduled={r.retry_scheduled}"
            ),
        )

    for event in ("a1", "a2", "a3"):
        add("inbox-a", event)
    narrator.note("  note: the third event reached max_events=3, so the batch was flushed at once")
    for event in ("b1", "b2"):
        add("inbox-b", event)

    def inbox(id_: str) -> Callable[[], str]:
        def report() -> str:
            status = batching.status(id_)
            if status.status == "not_found":
                return f"{id_} has no pending batch"
            return (
                f"{id_} is {status.status}, {status.event_count} event(s), "
                f"flush at {_at(status.will_flush_at)}"
            )

        return report

    narrator.advance("1 minute", "20 seconds", inbox("inbox-b"))
    add("inbox-c", "c1")
    narrator.call(
        "debounce('batcher').flush('inbox-c')",
        lambda: batching.flush("inbox-c"),
        lambda r: f"flushing={r.flushing}, reason={r.reason}",
    )

    # ----------------------------------------------------------------- dead letter
    narrator.heading("3. A batch that keeps failing ends in the dead-letter store")
    add("inbox-d", "poison")
    narrator.call(
        "debounce('batcher').flush('inbox-d')",
        lambda: batching.flush("inbox-d"),
        lambda r: f"flushing={r.flushing}, then {inbox('inbox-d')()}",
    )
    add("inbox-d", "d2", "   (during the retry backoff)")
    narrator.note(
        "  note: during a backoff an add only joins the batch; the pending retry will see it"
    )
    narrator.advance("1 minute", "30 seconds", inbox("inbox-d"))
    for letter in batching.dead_letters():
        narrator.say(
            f"dead letter: {letter.job_name}/{letter.id}, payload={letter.payload}, "
            f"attempts={letter.attempts}, error={letter.error.type}: {letter.error.message}"
        )

    # ------------------------------------------------------------------------ Task
    narrator.heading("4. Task job 'orders': events schedule execute; on_idle when nothing is due")
    ordering = client.task(orders)

    def order_status() -> str:
        status = ordering.status("order-7")
        return (
            f"status={status.status}, execute at {_at(status.scheduled_at)}, "
            f"execute_count={status.execute_count}, state={ordering.get_state('order-7')}"
        )

    narrator.call(
        "task('orders').send(id='order-7', event='placed')",
        lambda: ordering.send(id="order-7", event="placed"),
        lambda r: f"created={r.created}, scheduled_at={_at(r.scheduled_at)}",
    )
    narrator.advance("2 hours", "30 minutes", order_status)
    narrator.call(
        "task('orders').send(id='order-7', event='paid')",
        lambda: ordering.send(id="order-7", event="paid"),
        lambda r: f"created={r.created}, scheduled_at={_at(r.scheduled_at)}",
    )
    narrator.say(f"status: {order_status()}")

    # ------------------------------------------------------------------ WorkerPool
    narrator.heading(
        "5. WorkerPool 'mailer': 2 shards, one event at a time each, at most 2 attempts"
    )
    mailing = client.worker_pool(mailer)
    narrator.call(
        "worker_pool('mailer').pause()",
        mailing.pause,
        lambda r: f"paused={r.paused}",
    )
    narrator.note(
        "  note: paused before any event, so both shards are created paused and the "
        "events below wait"
    )

    def enqueue(
        id_: str, mail: Mail, partition_key: str | None = None, priority: int = 0, aside: str = ""
    ) -> None:
        options = "" if partition_key is None else f", partition_key={partition_key!r}"
        options += f", priority={priority}" if priority else ""
        narrator.call(
            f"worker_pool('mailer').enqueue(id={id_!r}, event=Mail({mail.to!r}, {mail.subject!r})"
            f"{options}){aside}",
            lambda: mailing.enqueue(
                id=id_, event=mail, partition_key=partition_key, priority=priority
            ),
            lambda r: (
                f"shard {r.instance_index}, position={r.position}, created={r.created}, "
                f"duplicate={r.duplicate}"
            ),
        )

    welcome = Mail("ada@acme.test", "Welcome")
    enqueue("welcome-1", welcome, partition_key="acme")
    enqueue("report-1", Mail("ada@acme.test", "Weekly report"), partition_key="acme")
    enqueue("invoice-1", Mail("ada@acme.test", "Invoice"), partition_key="acme", priority=10)
    enqueue("welcome-1", welcome, partition_key="acme", aside="   (sent again)")
    narrator.note(
        "  note: the same event id is answered duplicate=True and nothing is written; "
        "invoice-1 (priority 10) now runs first"
    )
    enqueue("promo-1", Mail("bob@nowhere.invalid", "Spring promo"), aside="   (routed by its id)")
    narrator.call(
        "worker_pool('mailer').cancel('report-1')",
        lambda: mailing.cancel("report-1"),
        lambda r: f"cancelled={r.cancelled}, reason={r.reason}",
    )
    narrator.say(f"status: {_pool_report(mailing.status())}")
    narrator.call(
        "worker_pool('mailer').resume()",
        mailing.resume,
        lambda r: f"resumed={r.resumed}",
    )
    narrator.advance("30 seconds", "15 seconds", lambda: _pool_report(mailing.status()))
    narrator.call(
        "worker_pool('mailer').cancel('promo-1')",
        lambda: mailing.cancel("promo-1"),
        lambda r: f"cancelled={r.cancelled}, reason={r.reason}",
    )
    narrator.note("  note: a failed event keeps its place at the head of its shard until its retry")
    narrator.advance("30 seconds", "15 seconds", lambda: _pool_report(mailing.status()))
    for kept in mailing.dead_letters():
        narrator.say(
            f"dead letter: {kept.job_name}/{kept.id}, payload={kept.payload}, "
            f"attempts={kept.attempts}, error={kept.error.type}: {kept.error.message}"
        )
    narrator.note("  note: a dead-lettered event counts in dead_lettered_count, not as processed")
    narrator.call(
        "worker_pool('mailer').cancel('invoice-1')",
        lambda: mailing.cancel("invoice-1"),
        lambda r: f"cancelled={r.cancelled}, reason={r.reason}",
    )
    pool = mailing.status()
    narrator.say(
        f"pool status: total_processed={pool.total_processed}, "
        f"total_dead_lettered={pool.total_dead_lettered}, total_pending={pool.total_pending}, "
        f"active_instances={pool.active_instances}, paused_instances={pool.paused_instances}"
    )

    # ------------------------------------------------------------------- the file
    narrator.heading("6. The state is in the file: a new interpreter opens it again")
    end = sim.now()
    sim.close()
    narrator.note(f"the interpreter is closed; a new SqliteInterpreter opens {where}")
    again = SqliteInterpreter(jobs, path, clock=ManualClock(end), inline=True)
    narrator.watch(again)
    reopened = again.client()
    narrator.say(
        f"task('orders').get_state('order-7') -> {reopened.task(orders).get_state('order-7')}"
    )
    pool = reopened.worker_pool(mailer).status()
    narrator.say(f"worker_pool('mailer').status() -> {_pool_report(pool)}")
    dead: list[DeadLetter[Any]] = [
        *reopened.continuous(sampler).dead_letters(),
        *reopened.debounce(batcher).dead_letters(),
        *reopened.task(orders).dead_letters(),
        *reopened.worker_pool(mailer).dead_letters(),
    ]
    for record in dead:
        narrator.say(
            f"dead letter read back: {record.job_name}/{record.id}, payload={record.payload}, "
            f"error={record.error.type}"
        )
    stored = _stored_instances(path)
    narrator.say(
        f"the instances table holds {len(stored)} row(s): "
        + ", ".join(f"{job_type} {name}/{id_}" for job_type, name, id_ in stored)
    )
    telemetry = again.telemetry
    again.close()

    # --------------------------------------------------------------------- summary
    narrator.heading("Summary")
    counts = Counter(event.type for event in telemetry)
    write(f"{len(telemetry)} telemetry events in the file, by type:")
    rows = table("event type", "count", right=("count",))
    for name, count in sorted(counts.items()):
        rows.add_row(name, str(count))
    print_table(console, rows)
    write(
        f"pool 'mailer': {pool.total_processed} event(s) processed, "
        f"{pool.total_dead_lettered} dead-lettered, {pool.total_pending} pending."
    )
    write(f"{len(dead)} dead letter(s); {len(stored)} instance(s) still stored.")
    if keep:
        write(f"The file stays: durable-jobs inspect --db {path}")
    return 0


def _stored_instances(path: Path) -> list[tuple[str, str, str]]:
    """``(job type, job name, id)`` of every row of ``path``'s instances table."""
    with closing(open_read_only(path)) as db:
        rows = db.execute(
            "SELECT job_type, job_name, user_id FROM instances ORDER BY job_name, user_id"
        ).fetchall()
    return [(str(a), str(b), str(c)) for a, b, c in rows]
