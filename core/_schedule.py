"""Continuous schedules: a fixed rate (``every``) or a cron expression in a time zone.

Theory of operation.

``Every(interval)`` runs at a fixed rate anchored on the previous *scheduled* time, not on
the end of the previous run, so the period does not drift. When the job was late (the
process was down, or a run overran), all missed slots collapse into one run: the next
slot is the first one strictly after ``now``.

``Cron(expression, tz)`` takes 5 fields (minute hour day-of-month month day-of-week) or 6
(seconds first). It is parsed by ``croniter`` at definition time; an expression that can
never match (``0 0 30 2 *``) is refused then too. The next run is the first matching
instant strictly after ``now``, at one-second resolution, with matching done on the wall
clock of the IANA zone (default UTC). Across daylight-saving changes:

* a matching wall time that does not exist (the hour skipped in spring) runs at the same
  distance after the change, e.g. 02:30 on a 02:00→03:00 night runs at 03:30;
* a matching wall time that happens twice (the hour repeated in autumn) runs once, at its
  first occurrence, unless the hour field is ``*``: then it runs in both hours, as a job
  that means "every N minutes" expects. This is the rule of Vixie cron.

Reading the zone database at definition time is the one place the core touches files;
it is configuration, like reading the definition itself, and never happens in ``decide``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import attrs
from croniter import croniter
from croniter.croniter import CroniterError

from durable_jobs._errors import DefinitionError
from durable_jobs._time import Duration, DurationLike, Instant, from_datetime, parse_duration

__all__ = ["Cron", "Every", "Schedule", "cron", "every"]

_MAX_FOLD_SHIFT = timedelta(hours=3)


@attrs.frozen
class Every:
    """Run every ``interval`` at a fixed rate."""

    interval: Duration

    def first_after(self, now: Instant) -> Instant:
        """The first slot after a start at ``now``.

        >>> every("10 seconds").first_after(Instant(5))
        10005
        """
        return Instant(now + self.interval)

    def next_slot(self, previous_slot: Instant, now: Instant) -> Instant:
        """The first slot of the grid anchored at ``previous_slot`` strictly after ``now``.

        >>> every("10 seconds").next_slot(Instant(0), Instant(35_000))
        40000
        """
        if now < previous_slot:
            return previous_slot
        missed = (now - previous_slot) // self.interval
        return Instant(previous_slot + (missed + 1) * self.interval)


@attrs.frozen
class Cron:
    """Run at the instants whose wall-clock time in ``tz`` matches ``expression``."""

    expression: str
    tz: str = "UTC"
    _zone: ZoneInfo = attrs.field(init=False, eq=False, repr=False)
    _seconds_first: bool = attrs.field(init=False, eq=False, repr=False)
    _hour_wildcard: bool = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        fields = self.expression.split()
        if len(fields) not in (5, 6):
            raise DefinitionError(
                f"cron expression {self.expression!r} must have 5 fields "
                "(minute hour day month weekday) or 6 (seconds first)"
            )
        seconds_first = len(fields) == 6
        if not croniter.is_valid(self.expression, second_at_beginning=seconds_first):
            raise DefinitionError(f"invalid cron expression {self.expression!r}")
        try:
            zone = ZoneInfo(self.tz)
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise DefinitionError(f"unknown time zone {self.tz!r}") from error
        object.__setattr__(self, "_zone", zone)
        object.__setattr__(self, "_seconds_first", seconds_first)
        object.__setattr__(self, "_hour_wildcard", fields[2 if seconds_first else 1] == "*")
        try:
            self.next_after(Instant(0))
        except CroniterError as error:
            raise DefinitionError(f"cron expression {self.expression!r} never matches") from error

    def first_after(self, now: Instant) -> Instant:
        return self.next_after(now)

    def next_slot(self, previous_slot: Instant, now: Instant) -> Instant:
        """Cron slots do not depend on the previous one: the next match after ``now``."""
        return self.next_after(now)

    def next_after(self, now: Instant) -> Instant:
        """The first matching instant strictly after ``now``.

        >>> c = cron("0 9 * * mon-fri", tz="Europe/Paris")
        >>> from durable_jobs._time import to_datetime
        >>> to_datetime(c.next_after(from_datetime(datetime(2026, 11, 27, 9, 0, tzinfo=UTC))))
        datetime.datetime(2026, 11, 30, 8, 0, tzinfo=datetime.timezone.utc)
        """
        zone = self._zone
        now_utc = datetime.fromtimestamp(now / 1000, tz=UTC)
        local_now = now_utc.astimezone(zone)
        offset_now = local_now.utcoffset() or timedelta(0)
        offset_soon = (now_utc + timedelta(days=1)).astimezone(zone).utcoffset() or timedelta(0)
        # When the clock is about to fall back, wall times just before the current one will
        # happen again (second occurrence); start the search early enough to see them.
        look_back = max(timedelta(0), offset_now - offset_soon)
        start = local_now.replace(tzinfo=None, microsecond=0) - look_back - timedelta(seconds=1)
        walker = croniter(self.expression, start, second_at_beginning=self._seconds_first)
        best: Instant | None = None
        best_wall: datetime | None = None
        for _ in range(100_000):
            wall: datetime = walker.get_next(datetime)
            if best_wall is not None and wall - best_wall > _MAX_FOLD_SHIFT:
                break
            for instant in self._instants_of(wall):
                if instant > now and (best is None or instant < best):
                    best, best_wall = instant, wall
        if best is None:  # pragma: no cover - croniter raises first for impossible dates
            raise CroniterError("no match found")
        return best

    def _instants_of(self, wall: datetime) -> tuple[Instant, ...]:
        first = wall.replace(tzinfo=self._zone, fold=0)
        second = wall.replace(tzinfo=self._zone, fold=1)
        first_instant = from_datetime(first)
        if first.utcoffset() == second.utcoffset():
            return (first_instant,)
        exists = first.astimezone(UTC).astimezone(self._zone).replace(tzinfo=None) == wall
        if not exists:
            return (first_instant,)  # a skipped wall time: the same distance past the change
        if self._hour_wildcard:
            return (first_instant, from_datetime(second))
        return (first_instant,)


Schedule = Every | Cron


def every(interval: DurationLike) -> Every:
    """A fixed-rate schedule; ``interval`` must be a positive duration.

    >>> every("30 minutes")
    Every(interval=1800000)
    """
    value = parse_duration(interval, what="Continuous.every interval")
    if value <= 0:
        raise DefinitionError("Continuous.every interval must be positive")
    return Every(value)


def cron(expression: str, tz: str = "UTC") -> Cron:
    """A cron schedule in an IANA time zone.

    >>> cron("*/15 * * * *")
    Cron(expression='*/15 * * * *', tz='UTC')
    """
    if not isinstance(expression, str):
        raise DefinitionError(f"cron expression must be a string, got {expression!r}")
    if not isinstance(tz, str):
        raise DefinitionError(f"cron tz must be an IANA zone name, got {tz!r}")
    return Cron(expression, tz)
