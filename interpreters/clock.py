"""Clocks for interpreters: the system clock, and a manual one for deterministic runs.

Theory of operation: the core never reads a clock; an interpreter does, through one
object with ``now() -> Instant``. ``SystemClock`` reads the wall clock. ``ManualClock``
moves only when told to, so the same scenario runs identically on every interpreter
(the contract suite and the lockstep test rely on it).

A clock may also offer ``monotonic() -> int`` (milliseconds that never jump): the SQLite
worker judges other workers' leases by it, so a step of the wall clock (NTP, a VM
resumed) is never taken for a dead worker. ``SystemClock`` reads ``time.monotonic``;
``ManualClock`` has one time only, its own; a clock without it is read by ``now()``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

from durable_jobs import Instant
from durable_jobs.protocol import from_datetime

__all__ = ["Clock", "ManualClock", "SystemClock", "monotonic_of"]


class Clock(Protocol):
    def now(self) -> Instant: ...


def monotonic_of(clock: Clock) -> Callable[[], int]:
    """The clock's ``monotonic`` reading, or its ``now`` when it has none.

    >>> manual = ManualClock()
    >>> monotonic_of(manual)() == manual.now()
    True
    """
    reading: Callable[[], int] = getattr(clock, "monotonic", clock.now)
    return reading


class SystemClock:
    """The wall clock, in epoch milliseconds; ``monotonic`` for lengths of time."""

    def now(self) -> Instant:
        return Instant(time.time_ns() // 1_000_000)

    def monotonic(self) -> int:
        """Milliseconds on a clock that never jumps (its start is arbitrary)."""
        return time.monotonic_ns() // 1_000_000


class ManualClock:
    """A clock that moves only by ``set``; never backwards.

    >>> from durable_jobs.protocol import to_datetime
    >>> clock = ManualClock(datetime(2026, 1, 1, tzinfo=UTC))
    >>> clock.set(Instant(clock.now() + 1_000)); to_datetime(clock.now()).second
    1
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._now = from_datetime(start or datetime(2026, 1, 1, tzinfo=UTC))

    def now(self) -> Instant:
        return self._now

    def set(self, instant: Instant) -> None:
        if instant < self._now:
            raise ValueError(f"cannot move the clock back from {self._now} to {instant}")
        self._now = instant
