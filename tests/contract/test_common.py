"""Contract: behaviour shared by every job type and every interpreter."""

from __future__ import annotations

from typing import assert_type

import attrs
import pytest

from durable_jobs import (
    Continuous,
    ContinuousContext,
    Debounce,
    JobNotFoundError,
    Jobs,
    Task,
)
from tests.contract.conftest import Make


@attrs.frozen
class Note:
    text: str


def _noop(ctx: object) -> None:
    return None


JOBS = Jobs(
    cont=Continuous.make(state=Note, schedule=Continuous.every("1 hour"), execute=_noop),
    deb=Debounce.make(event=Note, execute=_noop, flush_after="1 minute"),
    task=Task.make(state=Note, event=Note, on_event=_noop, execute=_noop),
)


def test_unknown_names_and_kinds_raise_job_not_found(make: Make) -> None:
    client = make(JOBS).client()
    with pytest.raises(JobNotFoundError, match="continuous/nope"):
        client.continuous("nope")
    with pytest.raises(JobNotFoundError, match="debounce/cont"):
        client.debounce("cont")
    with pytest.raises(JobNotFoundError, match="task/deb"):
        client.task("deb")
    stray = Continuous.make(state=Note, schedule=Continuous.every("1 hour"), execute=_noop)
    with pytest.raises(JobNotFoundError):
        client.continuous(stray)


def test_instance_ids_never_collide(make: Make) -> None:
    sim = make(Jobs(x=Debounce.make(event=Note, execute=_noop, flush_after="1 minute")))
    client = sim.client().debounce("x")
    client.add(id="a:b", event=Note("first"))
    client.add(id="a", event=Note("second"))
    client.add(id="b:c", event=Note("third"))
    assert client.get_state("a:b") == Note("first")
    assert client.get_state("a") == Note("second")
    assert client.status("a:b").event_count == 1
    ids = {e.instance_id for e in sim.telemetry}
    assert len(ids) == 3


def test_the_same_id_in_different_jobs_is_a_different_instance(make: Make) -> None:
    sim = make(JOBS)
    client = sim.client()
    client.debounce("deb").add(id="u", event=Note("d"))
    client.task("task").send(id="u", event=Note("t"))
    assert client.debounce("deb").get_state("u") == Note("d")
    assert client.task("task").status("u").status == "idle"
    assert client.continuous("cont").status("u").status == "not_found"


def test_definition_objects_keep_their_types(make: Make) -> None:
    seen: list[int] = []

    def execute(ctx: ContinuousContext[Note]) -> None:
        seen.append(len(ctx.state.text))

    job = Continuous.make(state=Note, schedule=Continuous.every("1 hour"), execute=execute)
    sim = make(Jobs(job=job))
    sim.client().continuous(job).start(id="u", input=Note("hello"))
    state = sim.client().continuous(job).get_state("u")
    assert_type(state, Note | None)  # checked by mypy in tests/test_static.py
    assert state is not None
    assert state.text == "hello"  # typed as Note | None for mypy
    assert seen == [5]
