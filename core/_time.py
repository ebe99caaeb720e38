"""Points in time and lengths of time.

Theory of operation: the core never reads a clock. Time arrives as an ``Instant``, an
integer count of milliseconds since the Unix epoch (UTC), and lengths of time are
``Duration`` values, also integer milliseconds. Both are ``NewType``s over ``int`` so they
cost nothing at run time, while mypy keeps a duration from being passed where a point in
time is meant (the original took bare numbers as timestamps, pitfall p-1).

Users write durations as ``timedelta`` values or strings such as ``"30 minutes"`` or
``"5s"``. A bare number is refused wherever a duration is meant, because its unit would be
unsaid. Durations are whole milliseconds; a string that names a fraction of a millisecond
is refused rather than rounded, so what a user wrote is what runs. Digits are ASCII only
(``int`` would read full-width or Arabic-Indic digits too, which no one means to write).

Decision (hardening): a duration is at most ``MAX_DURATION``, 100 years. Every alarm is
``now`` plus some duration, so no definition or request can put one past year 9999 (where
``datetime`` ends) or outside a 64-bit integer column; a longer one is refused where it is
written (``DefinitionError``, a ``ValueError``), not when a worker meets it.

Conversion to aware ``datetime`` values is pure arithmetic (no clock is read).
"""

from __future__ import annotations

import re
import reprlib
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import NewType

from durable_jobs._errors import DefinitionError

__all__ = [
    "MAX_DURATION",
    "Duration",
    "DurationLike",
    "Instant",
    "from_datetime",
    "parse_duration",
    "to_datetime",
]

Instant = NewType("Instant", int)
"""Milliseconds since 1970-01-01T00:00:00Z."""

Duration = NewType("Duration", int)
"""A length of time in whole milliseconds, never negative."""

DurationLike = timedelta | str
"""What users may write where a duration is meant."""

_UNIT_MS: dict[str, int] = {}
for _names, _ms in (
    (("ms", "milli", "millis", "millisecond", "milliseconds", "msec", "msecs"), 1),
    (("s", "sec", "secs", "second", "seconds"), 1_000),
    (("m", "min", "mins", "minute", "minutes"), 60_000),
    (("h", "hr", "hrs", "hour", "hours"), 3_600_000),
    (("d", "day", "days"), 86_400_000),
    (("w", "week", "weeks"), 604_800_000),
):
    for _name in _names:
        _UNIT_MS[_name] = _ms

MAX_DURATION = Duration(36_525 * 86_400_000)
"""The longest duration accepted anywhere: 100 years (36,525 days)."""

_DURATION_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]+)\s*$", re.ASCII)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def parse_duration(value: DurationLike, *, what: str = "duration") -> Duration:
    """Turn a ``timedelta`` or a ``"<number> <unit>"`` string into a ``Duration``.

    Raises ``DefinitionError`` (a ``ValueError``) for anything else, including bare numbers.

    >>> parse_duration("30 minutes")
    1800000
    >>> parse_duration("1.5 s")
    1500
    >>> parse_duration(timedelta(hours=2))
    7200000
    >>> parse_duration(5000)
    Traceback (most recent call last):
    ...
    durable_jobs._errors.DefinitionError: duration: a bare number has no unit; write e.g. "5 seconds" or timedelta(seconds=5), got 5000
    >>> parse_duration("1000000 weeks")
    Traceback (most recent call last):
    ...
    durable_jobs._errors.DefinitionError: duration: '1000000 weeks' is longer than the maximum, 100 years
    """
    raw: object = value  # checked at run time too: callers may not be type-checked
    if isinstance(raw, timedelta):
        total = raw // timedelta(milliseconds=1)
        if raw % timedelta(milliseconds=1):
            raise DefinitionError(f"{what}: {raw!r} is not a whole number of milliseconds")
        if total < 0:
            raise DefinitionError(f"{what}: must not be negative, got {raw!r}")
        return _bounded(total, what, raw)
    if isinstance(raw, int | float):
        raise DefinitionError(
            f'{what}: a bare number has no unit; write e.g. "5 seconds" or '
            f"timedelta(seconds=5), got {value!r}"
        )
    if not isinstance(raw, str):
        raise DefinitionError(
            f"{what}: expected a timedelta or a string such as '30 minutes', got {raw!r}"
        )
    match = _DURATION_RE.match(raw)
    if match is None:
        raise DefinitionError(
            f"{what}: cannot read {value!r}; write '<number> <unit>' with a unit among "
            "ms, seconds, minutes, hours, days, weeks (or s, m, h, d, w)"
        )
    number, unit = match.group(1), match.group(2).lower()
    unit_ms = _UNIT_MS.get(unit)
    if unit_ms is None:
        raise DefinitionError(f"{what}: unknown unit {match.group(2)!r} in {value!r}")
    whole, _, frac = number.partition(".")
    whole, frac = whole.lstrip("0") or "0", frac.rstrip("0")
    if len(whole) > 20:  # far past the bound (and int() refuses over 4,300 digits)
        raise DefinitionError(
            f"{what}: {reprlib.repr(value)} is longer than the maximum, 100 years"
        )
    if len(frac) > 20:  # no unit has that many decimal places of milliseconds
        raise DefinitionError(f"{what}: {value!r} is not a whole number of milliseconds")
    numerator = int(whole + frac) * unit_ms
    denominator = 10 ** len(frac)
    if numerator % denominator:
        raise DefinitionError(
            f"{what}: {reprlib.repr(value)} is not a whole number of milliseconds"
        )
    return _bounded(numerator // denominator, what, raw)


def _bounded(total: int, what: str, written: object) -> Duration:
    if total > MAX_DURATION:
        raise DefinitionError(f"{what}: {written!r} is longer than the maximum, 100 years")
    return Duration(total)


@lru_cache(maxsize=4096)  # replies repeat the same deadlines many times; pure, so safe
def to_datetime(instant: Instant) -> datetime:
    """The aware UTC ``datetime`` of an ``Instant`` (pure arithmetic, no clock).

    >>> to_datetime(Instant(86_400_000))
    datetime.datetime(1970, 1, 2, 0, 0, tzinfo=datetime.timezone.utc)
    """
    return _EPOCH + timedelta(milliseconds=instant)


def from_datetime(value: datetime) -> Instant:
    """The ``Instant`` of an aware ``datetime``; naive values are refused.

    >>> from_datetime(datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC))
    1000
    """
    if value.tzinfo is None or value.utcoffset() is None:
        raise DefinitionError(f"expected an aware datetime (with a time zone), got {value!r}")
    return Instant((value - _EPOCH) // timedelta(milliseconds=1))
