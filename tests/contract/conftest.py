"""The contract suite's fixture: one harness per interpreter.

Every test in ``tests/contract/`` takes ``make`` and runs unchanged on every interpreter
listed in ``INTERPRETERS``. An interpreter joins the suite by adding a factory that
returns an object with the ``Harness`` surface: ``client()``, ``now()``, ``advance()``,
``advance_to()``, ``next_alarm_at()`` and ``telemetry``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

import pytest

from durable_jobs import Client, Jobs, TelemetryEvent
from durable_jobs.interpreters.clock import ManualClock
from durable_jobs.interpreters.memory import MemoryInterpreter
from durable_jobs.interpreters.sqlite import SqliteInterpreter

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class Harness(Protocol):
    @property
    def telemetry(self) -> Sequence[TelemetryEvent]: ...
    def client(self) -> Client: ...
    def now(self) -> datetime: ...
    def advance(self, duration: timedelta | str) -> None: ...
    def advance_to(self, when: datetime) -> None: ...
    def next_alarm_at(self) -> datetime | None: ...


Make = Callable[[Jobs], Harness]


def _memory(jobs: Jobs, folder: Path) -> Harness:
    return MemoryInterpreter(jobs, start=START)


def _sqlite(jobs: Jobs, folder: Path) -> Harness:
    return SqliteInterpreter(jobs, folder / "jobs.db", clock=ManualClock(START))


INTERPRETERS: dict[str, Callable[[Jobs, Path], Harness]] = {"memory": _memory, "sqlite": _sqlite}


@pytest.fixture(params=sorted(INTERPRETERS))
def make(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Make]:
    factory = INTERPRETERS[request.param]
    made: list[Harness] = []

    def build(jobs: Jobs) -> Harness:
        folder = tmp_path / str(len(made))
        folder.mkdir()
        made.append(factory(jobs, folder))
        return made[-1]

    yield build
    for harness in made:
        close = getattr(harness, "close", None)
        if close is not None:
            close()


def types(events: Sequence[TelemetryEvent]) -> list[str]:
    """The event names, in order."""
    return [event.type for event in events]
