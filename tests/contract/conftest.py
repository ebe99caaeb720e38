"""The contract suite's fixture: one harness per interpreter.

Every test in ``tests/contract/`` takes ``make`` and runs unchanged on every interpreter
listed in ``INTERPRETERS``. An interpreter joins the suite by adding a factory that
returns an object with the ``Harness`` surface: ``client()``, ``now()``, ``advance()``,
``advance_to()``, ``next_alarm_at()`` and ``telemetry``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Protocol

import pytest
from durable_jobs import Client, Jobs, TelemetryEvent
from durable_jobs.interpreters.memory import MemoryInterpreter

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


def _memory(jobs: Jobs) -> Harness:
    return MemoryInterpreter(jobs, start=START)


INTERPRETERS: dict[str, Make] = {"memory": _memory}


@pytest.fixture(params=sorted(INTERPRETERS))
def make(request: pytest.FixtureRequest) -> Make:
    factory: Make = INTERPRETERS[request.param]
    return factory


def types(events: Sequence[TelemetryEvent]) -> list[str]:
    """The event names, in order."""
    return [event.type for event in events]
