"""WorkerPool core: the routing hash, and attempts recorded before user code runs."""

from __future__ import annotations

import attrs
from hypothesis import given
from hypothesis import strategies as st

from durable_jobs import Duration, Instant, JobFailed, Jobs, PoolQueueRepaired, WorkerPool
from durable_jobs.protocol import (
    AlarmFired,
    CancelAlarm,
    Emit,
    InstanceKey,
    Persist,
    PoolEnqueue,
    PoolSnapshot,
    PoolView,
    PutQueueItem,
    QueueItem,
    QueueView,
    ReleaseQueueItem,
    RunInterrupted,
    RunUserCode,
    ScheduleAlarm,
    ScheduleRetry,
    TakeQueueItem,
    decide,
    java_hash32,
    shard_index,
)


def _reference_hash(text: str) -> int:
    """Java's String.hashCode spelled out: split non-BMP characters into surrogates."""
    units: list[int] = []
    for char in text:
        code = ord(char)
        if code > 0xFFFF:
            code -= 0x10000
            units += [0xD800 + (code >> 10), 0xDC00 + (code & 0x3FF)]
        else:
            units.append(code)
    h = 0
    for unit in units:
        h = (h * 31 + unit) % 2**32
    return h - 2**32 if h >= 2**31 else h


def test_java_hash32_matches_known_java_values() -> None:
    assert java_hash32("") == 0
    assert java_hash32("hello") == 99162322
    assert java_hash32("Aa") == java_hash32("BB") == 2112
    assert java_hash32("polygenelubricants") == -(2**31)
    assert java_hash32("😀") == 1772899  # U+1F600: surrogates D83D DE00
    assert java_hash32("a😀b") == _reference_hash("a😀b")
    assert shard_index("polygenelubricants", 10) == 2**31 % 10


@given(st.text(max_size=40), st.integers(1, 64))
def test_java_hash32_is_the_utf16_string_hash(text: str, concurrency: int) -> None:
    assert java_hash32(text) == _reference_hash(text)
    assert 0 <= shard_index(text, concurrency) < concurrency


def test_a_run_is_recorded_as_started_and_an_interruption_counts_as_a_failure() -> None:
    pool = Jobs(p=WorkerPool.make(event=str, concurrency=1, execute=print))["p"]
    now = Instant(1_000)
    enqueued = decide(pool, PoolView(None), PoolEnqueue("0", "e1", "hi"), now).unwrap()
    shard = enqueued.snapshot
    assert isinstance(shard, PoolSnapshot)
    item = next(c.item for c in enqueued.commands if isinstance(c, PutQueueItem))
    fired = decide(pool, PoolView(shard, QueueView(head=item)), AlarmFired(now), now).unwrap()
    kinds = [type(c) for c in fired.commands]
    # The attempt, the current event and the row's taking are committed before user code.
    assert kinds == [TakeQueueItem, Persist, CancelAlarm, RunUserCode]
    started = fired.snapshot
    assert started is not None
    assert started.current == item
    assert started.in_flight is not None
    assert started.in_flight.attempt == 1
    run = fired.commands[-1]
    assert isinstance(run, RunUserCode)
    later = Instant(now + 60_000)
    crashed = decide(pool, PoolView(started), RunInterrupted(run_id=run.run_id), later).unwrap()
    retry = [c for c in crashed.commands if isinstance(c, ScheduleRetry)]
    assert [c.attempt for c in retry] == [2]
    assert crashed.snapshot is not None
    assert crashed.snapshot.current == item  # the event keeps its place at the head
    failed = [c.event for c in crashed.commands if isinstance(c, Emit)]
    assert isinstance(failed[0], JobFailed)
    assert failed[0].error.type == "Interrupted"


@given(
    queued=st.integers(-3, 40),
    priorities=st.lists(st.tuples(st.integers(-5, 5), st.integers(-3, 9)), max_size=3),
    late=st.integers(0, 600_000),
)
def test_counters_that_promise_rows_the_queue_does_not_hold_are_repaired_not_re_armed(
    queued: int, priorities: list[tuple[int, int]], late: int
) -> None:
    """A fired alarm whose head read finds no pending row proves every counter wrong
    (a row deleted by hand): the counters become what the rows show (none), the repair
    is reported once, and no alarm is left due to fire again at once."""
    pool = Jobs(p=WorkerPool.make(event=str, concurrency=1, execute=print))["p"]
    due = Instant(1_000)
    now = Instant(due + late)
    shard: PoolSnapshot[str] = PoolSnapshot(
        key=InstanceKey("workerPool", "p", "0"),
        created_at=Instant(0),
        queued=queued,
        priorities=tuple(priorities),
        alarm_at=due,
        version=3,
    )
    fired = decide(pool, PoolView(shard, QueueView()), AlarmFired(due), now).unwrap()
    after = fired.snapshot
    assert isinstance(after, PoolSnapshot)
    assert (after.queued, after.priorities) == (0, ())
    assert after.alarm_at is None
    assert not [c for c in fired.commands if isinstance(c, ScheduleAlarm)]
    repaired = [c.event for c in fired.commands if isinstance(c, Emit)]
    if queued or priorities:
        assert repaired == [
            PoolQueueRepaired(
                job_type="workerPool",
                job_name="p",
                instance_id="workerPool:p:0",
                id="0",
                timestamp=now,
                counted=queued,
            )
        ]
    else:
        assert repaired == []  # an empty shard's counters were right: nothing to report
    again = decide(pool, PoolView(after, QueueView()), AlarmFired(due), now).unwrap()
    assert not [c for c in again.commands if isinstance(c, Emit | ScheduleAlarm)]


@given(
    delay=st.integers(1, 10**9),
    early=st.integers(0, 10**9),
    priority=st.integers(-5, 5),
)
def test_a_delayed_enqueue_wakes_the_shard_at_its_due_time_and_never_before(
    delay: int, early: int, priority: int
) -> None:
    """The enqueue stores a delayed row and arms the alarm at its due time; an alarm
    before then (a stale one) takes nothing and re-arms for the due time; the alarm at
    the due time releases the row into the queue and takes it."""
    pool = Jobs(p=WorkerPool.make(event=str, concurrency=1, execute=print))["p"]
    now = Instant(1_000)
    due = Instant(now + delay)
    request = PoolEnqueue("0", "e1", "hi", priority=priority, delay=Duration(delay))
    enqueued = decide(pool, PoolView(None), request, now).unwrap()
    shard = enqueued.snapshot
    assert isinstance(shard, PoolSnapshot)
    assert (shard.queued, shard.delayed, shard.next_due, shard.alarm_at) == (0, 1, due, due)
    [item] = [c.item for c in enqueued.commands if isinstance(c, PutQueueItem)]
    assert item.due_at == due
    assert [c.at for c in enqueued.commands if isinstance(c, ScheduleAlarm)] == [due]
    at = Instant(due - 1 - early % delay)  # any time before it is due
    stale = attrs.evolve(shard, alarm_at=at)
    waiting = QueueView[str](next_due=due)
    fired = decide(pool, PoolView(stale, waiting), AlarmFired(at), at).unwrap()
    assert not [c for c in fired.commands if isinstance(c, TakeQueueItem | RunUserCode)]
    assert fired.snapshot is not None
    assert fired.snapshot.alarm_at == due
    ready = QueueView[str](due=(item,))
    taken = decide(pool, PoolView(shard, ready), AlarmFired(due), due).unwrap()
    released = attrs.evolve(item, due_at=None)
    kinds = [c for c in taken.commands if isinstance(c, ReleaseQueueItem | TakeQueueItem)]
    assert kinds == [ReleaseQueueItem(released), TakeQueueItem("e1")]
    assert taken.snapshot is not None
    assert (taken.snapshot.delayed, taken.snapshot.next_due) == (0, None)
    assert taken.snapshot.current == released


@given(delayed=st.integers(1, 40), released=st.integers(0, 3))
def test_a_delayed_count_the_rows_do_not_hold_is_repaired(delayed: int, released: int) -> None:
    pool = Jobs(p=WorkerPool.make(event=str, concurrency=1, execute=print))["p"]
    due = Instant(5_000)
    items = tuple(
        QueueItem(f"e{i}", "x", priority=0, seq=i, enqueued_at=Instant(0), due_at=due)
        for i in range(min(released, delayed))
    )
    shard: PoolSnapshot[str] = PoolSnapshot(
        key=InstanceKey("workerPool", "p", "0"),
        created_at=Instant(0),
        next_seq=len(items),
        delayed=delayed,
        next_due=due,
        alarm_at=due,
    )
    fired = decide(pool, PoolView(shard, QueueView(due=items)), AlarmFired(due), due).unwrap()
    after = fired.snapshot
    assert isinstance(after, PoolSnapshot)
    assert (after.delayed, after.next_due) == (0, None)
    repaired = [c.event for c in fired.commands if isinstance(c, Emit)]
    lost = delayed - len(items)
    assert [e.counted for e in repaired if isinstance(e, PoolQueueRepaired)] == (
        [lost] if lost else []
    )
