"""Laws of commit plans and of the runs a transition starts, on random histories.

* A run of user code is either committed as started (the transition persists the
  snapshot it runs on) or explicitly not written (``Transition.unsaved``: a request's
  own handler runs first); an unsaved transition writes no record and answers nothing.
* A Debounce reducer sees ``initial_state`` exactly when it starts a batch, as the core
  says with ``DebounceReduce.first``.
* ``plan_of`` leaves out nothing a store must write, and a merged plan (``then``) does
  what its parts do one after the other: the engine relies on it to commit several
  transitions of one instance at once.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from durable_jobs import Instant, StorageError
from durable_jobs.interpreters.memory import MemoryStore
from durable_jobs.protocol import (
    Codec,
    CommitPlan,
    DebounceAdd,
    DebounceReduce,
    Emit,
    InstanceKey,
    Persist,
    PoolView,
    Purge,
    QueueReads,
    RecordDeadLetter,
    RunUserCode,
    TaskSend,
    decide,
    plan_of,
)
from tests.core.test_laws import JOBS, NAMES, walk

FAR: Instant = Instant(10**15)


@given(st.data(), NAMES)
def test_a_run_is_committed_as_started_or_explicitly_unsaved(
    data: st.DataObject, name: str
) -> None:
    for _, _, _, transition in walk(data, name):
        kinds = {type(command) for command in transition.commands}
        if transition.unsaved:
            assert RunUserCode in kinds
            assert not kinds & {Persist, Purge}, transition.commands
            plan, run, reply = plan_of(InstanceKey("task", name, "x"), None, transition)
            assert run is not None
            assert reply is None
            assert plan is None or (plan.write == "keep" and not plan.alarm_changed)
        elif RunUserCode in kinds:
            assert Persist in kinds, transition.commands


def test_the_requests_that_run_their_handler_first_write_nothing_before_it() -> None:
    for name, request in (("deb", DebounceAdd("u", 1)), ("task", TaskSend("u", 1))):
        transition = decide(JOBS[name], None, request, Instant(0)).unwrap()
        assert transition.unsaved
        plan, run, reply = plan_of(InstanceKey("task", name, "u"), None, transition)
        assert (plan, reply) == (None, None)
        assert run is not None
        assert run.hook == "on_event"


@given(st.data())
def test_a_reducer_sees_the_initial_state_exactly_when_it_starts_a_batch(
    data: st.DataObject,
) -> None:
    # (test_the_walk_reaches_the_interesting_states checks that walks reach reducers)
    for arg, _, _, transition in walk(data, "deb"):
        for command in transition.commands:
            if isinstance(command, RunUserCode) and isinstance(command.payload, DebounceReduce):
                starts = arg is None or arg.event_count == 0
                assert command.payload.first == starts
                assert command.payload.event_count == (1 if starts else arg.event_count + 1)


def _state(store: MemoryStore, keys: set[InstanceKey], name: str) -> dict[str, Any]:
    """Everything a store holds for these instances, through its public reads."""
    definition = JOBS[name]
    alarms = set()
    while (due := store.claim(FAR)) is not None:
        alarms.add(due)
    queues = {}
    for key in keys:
        reads = QueueReads(
            head=True,
            oldest=True,
            expired_before=FAR,
            limit=10**6,
            event_ids=("e1", "e2", "e:3", "e4"),
        )
        queues[key.instance_id] = store.queue_view(definition, key.instance_id, reads)
    return {
        "snapshots": dict(store.snapshots),
        "alarms": alarms,
        "queues": queues,
        "telemetry": list(store.telemetry),
        "dead": list(store.dead),
    }


@given(st.data(), NAMES)
def test_a_merged_plan_does_what_its_parts_do(data: st.DataObject, name: str) -> None:
    keys: list[InstanceKey] = []
    plans: dict[InstanceKey, list[CommitPlan[Any]]] = defaultdict(list)
    expected_effects = 0
    for (arg, _, _, transition), key in zip(walk(data, name, keys), keys, strict=True):
        snapshot = arg.snapshot if isinstance(arg, PoolView) else arg
        plan, _, _ = plan_of(key, None if snapshot is None else snapshot.version, transition)
        effects = [c for c in transition.commands if isinstance(c, Emit | RecordDeadLetter)]
        expected_effects += len(effects)
        if plan is not None:
            assert len(plan.telemetry) + len(plan.dead_letters) == len(effects)
            plans[key].append(plan)
        else:
            assert not effects
    one_by_one, merged = MemoryStore(), MemoryStore()
    definition = JOBS[name]
    for sequence in plans.values():
        for plan in sequence:
            one_by_one.commit(definition, plan)
        pairs = [sequence[i : i + 2] for i in range(0, len(sequence), 2)]
        for pair in pairs:
            plan = pair[0] if len(pair) == 1 else pair[0].then(pair[1])
            assert plan.expected_version == pair[0].expected_version
            merged.commit(definition, plan)
    assert len(one_by_one.telemetry) + len(one_by_one.dead) == expected_effects
    assert _state(merged, set(plans), name) == _state(one_by_one, set(plans), name)


def test_a_plan_whose_parts_disagree_is_refused_whole() -> None:
    """A remote store applies what it is sent: a plan must be read whole or not at all."""
    job = JOBS["latest"]
    codec = Codec(job)
    key = InstanceKey("debounce", "latest", "u")
    transition = decide(job, None, DebounceAdd("u", 1), Instant(0)).unwrap()
    plan, _, _ = plan_of(key, None, transition)
    assert plan is not None
    good = json.loads(json.dumps(codec.encode_plan(plan)))
    other = {"job_type": "debounce", "job_name": "latest", "id": "v"}
    bad = [
        {**good, "snapshot": None},  # a put without its snapshot
        {**good, "write": "delete"},  # a delete that carries one
        {**good, "key": {**other, "job_name": "cont"}},  # another job
        {**good, "key": other},  # a snapshot of another instance
        {**good, "queue": {}},
        {**good, "telemetry": [{"tag": "no.such.event"}]},
        {**good, "extra": 1},
        [],
    ]
    for data in bad:
        with pytest.raises(StorageError):
            codec.decode_plan(data)  # type: ignore[arg-type]
    assert codec.decode_plan(good) == plan


def test_unknown_tags_are_storage_errors() -> None:
    codec = Codec(JOBS["task"])
    with pytest.raises(StorageError, match="telemetry event"):
        codec.decode_event({"tag": "job.renamed"})
    with pytest.raises(StorageError, match="command"):
        codec.decode_command({"tag": "launchMissiles"})
    with pytest.raises(StorageError, match="input"):
        codec.decode_input({"tag": "task.nope", "id": "u"})
