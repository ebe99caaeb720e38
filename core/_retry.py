"""Retry policies: how many attempts, and how long to wait between them.

Theory of operation: ``Retry(max_attempts, backoff, jitter, max_duration)`` is a plain
value held by a definition. ``max_attempts`` counts **total** executions, the first one
included, so ``Retry(max_attempts=3)`` runs user code at most three times. The wait after
failed attempt *a* (1-based) is ``backoff.delay(a)``; with ``jitter`` the wait is moved by
up to ±10 %, by an amount derived from the instance id and the attempt (a hash), never from
a random generator, so a replay of the same history gives the same times.

``max_duration`` caps the whole failure sequence: a retry that would start later than
``max_duration`` after the first failed attempt began is not scheduled, and the sequence
is exhausted with reason ``"max_duration"``.
"""

from __future__ import annotations

import hashlib
import math
from typing import Literal

import attrs

from durable_jobs._errors import DefinitionError
from durable_jobs._time import MAX_DURATION, Duration, DurationLike, parse_duration

__all__ = [
    "Backoff",
    "BackoffPolicy",
    "ConstantBackoff",
    "ExponentialBackoff",
    "LinearBackoff",
    "Retry",
    "jitter_fraction",
    "jittered",
]

JITTER_SPREAD = 0.1


@attrs.frozen
class ConstantBackoff:
    """The same wait after every failure."""

    delay_ms: Duration
    kind: Literal["constant"] = "constant"

    def delay(self, attempt: int) -> Duration:
        """The wait after failed attempt ``attempt``.

        >>> Backoff.constant("2 seconds").delay(5)
        2000
        """
        return self.delay_ms


@attrs.frozen
class LinearBackoff:
    """``initial + increment * (attempt - 1)``, capped at ``max`` when given."""

    initial: Duration
    increment: Duration
    max: Duration | None = None
    kind: Literal["linear"] = "linear"

    def delay(self, attempt: int) -> Duration:
        """The wait after failed attempt ``attempt``.

        >>> Backoff.linear("1 second", "2 seconds", max="4 seconds").delay(3)
        4000
        """
        value = min(self.initial + self.increment * (attempt - 1), MAX_DURATION)
        return Duration(value if self.max is None else min(value, self.max))


def _check_factor(instance: object, attribute: object, value: object) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 1
    ):
        raise DefinitionError(
            f"Backoff.exponential factor must be a finite number >= 1, got {value!r}"
        )


@attrs.frozen
class ExponentialBackoff:
    """``base * factor ** (attempt - 1)``, capped at ``max`` when given (and always at
    ``MAX_DURATION``, so no attempt count overflows a float or an alarm)."""

    base: Duration
    factor: float = attrs.field(default=2.0, validator=_check_factor)
    max: Duration | None = None
    kind: Literal["exponential"] = "exponential"

    def delay(self, attempt: int) -> Duration:
        """The wait after failed attempt ``attempt``.

        >>> [Backoff.exponential("1 second", max="5 seconds").delay(a) for a in (1, 2, 3, 4)]
        [1000, 2000, 4000, 5000]
        >>> Backoff.exponential("1 second").delay(5000) == MAX_DURATION
        True
        """
        cap = MAX_DURATION if self.max is None else min(self.max, MAX_DURATION)
        if self.base == 0:
            return Duration(0)
        if self.base >= cap:
            return cap  # the first delay is already past the cap (a factor never shrinks)
        exponent = attempt - 1
        # Compare logarithms first: factor ** exponent may not fit in a float at all.
        if exponent * math.log(self.factor) >= math.log(cap / self.base):
            return cap
        return Duration(min(round(self.base * self.factor**exponent), cap))


BackoffPolicy = ConstantBackoff | LinearBackoff | ExponentialBackoff


def _nonnegative(value: DurationLike, what: str) -> Duration:
    return parse_duration(value, what=what)


class Backoff:
    """Constructors for backoff policies, plus the original's presets.

    >>> Backoff.standard()
    ExponentialBackoff(base=1000, factor=2.0, max=30000, kind='exponential')
    """

    @staticmethod
    def constant(delay: DurationLike) -> ConstantBackoff:
        return ConstantBackoff(_nonnegative(delay, "Backoff.constant delay"))

    @staticmethod
    def linear(
        initial: DurationLike, increment: DurationLike, max: DurationLike | None = None
    ) -> LinearBackoff:
        return LinearBackoff(
            _nonnegative(initial, "Backoff.linear initial"),
            _nonnegative(increment, "Backoff.linear increment"),
            None if max is None else _nonnegative(max, "Backoff.linear max"),
        )

    @staticmethod
    def exponential(
        base: DurationLike, max: DurationLike | None = None, factor: float = 2
    ) -> ExponentialBackoff:
        _check_factor(None, None, factor)
        return ExponentialBackoff(
            _nonnegative(base, "Backoff.exponential base"),
            float(factor),
            None if max is None else _nonnegative(max, "Backoff.exponential max"),
        )

    @staticmethod
    def standard() -> ExponentialBackoff:
        """1 s, doubling, at most 30 s."""
        return ExponentialBackoff(Duration(1_000), 2.0, Duration(30_000))

    @staticmethod
    def aggressive() -> ExponentialBackoff:
        """100 ms, doubling, at most 5 s."""
        return ExponentialBackoff(Duration(100), 2.0, Duration(5_000))

    @staticmethod
    def patient() -> ExponentialBackoff:
        """5 s, doubling, at most 2 minutes."""
        return ExponentialBackoff(Duration(5_000), 2.0, Duration(120_000))

    @staticmethod
    def simple() -> ConstantBackoff:
        """1 s every time."""
        return ConstantBackoff(Duration(1_000))


def _check_max_attempts(instance: Retry, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DefinitionError(f"Retry max_attempts must be an int >= 1, got {value!r}")


def _check_backoff(
    instance: Retry, attribute: attrs.Attribute[BackoffPolicy], value: object
) -> None:
    if not isinstance(value, ConstantBackoff | LinearBackoff | ExponentialBackoff):
        raise DefinitionError(f"Retry backoff must come from Backoff.*, got {value!r}")


def _check_jitter(instance: Retry, attribute: attrs.Attribute[bool], value: object) -> None:
    if not isinstance(value, bool):
        raise DefinitionError(f"Retry jitter must be True or False, got {value!r}")


def _to_max_duration(value: DurationLike | None) -> Duration | None:
    if value is None:
        return None
    return parse_duration(value, what="Retry max_duration")


@attrs.frozen
class Retry:
    """A retry policy. ``max_attempts`` counts every execution, the first included.

    >>> policy = Retry(max_attempts=3, backoff=Backoff.constant("10 seconds"), jitter=False)
    >>> policy.max_attempts, policy.backoff.delay(1)
    (3, 10000)
    >>> Retry(max_attempts=3, jitter="no")
    Traceback (most recent call last):
    ...
    durable_jobs._errors.DefinitionError: Retry jitter must be True or False, got 'no'
    """

    max_attempts: int = attrs.field(validator=_check_max_attempts)
    backoff: BackoffPolicy = attrs.field(factory=Backoff.standard, validator=_check_backoff)
    jitter: bool = attrs.field(default=True, validator=_check_jitter)
    max_duration: Duration | None = attrs.field(default=None, converter=_to_max_duration)


NO_RETRY = Retry(max_attempts=1, backoff=Backoff.simple(), jitter=False)


def jitter_fraction(instance_id: str, attempt: int) -> float:
    """A number in [-1, 1) derived from the instance id and attempt, stable across runs.

    >>> jitter_fraction("x", 1) == jitter_fraction("x", 1)
    True
    """
    digest = hashlib.blake2b(f"{instance_id}\x00{attempt}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**63 - 1.0


def jittered(delay: Duration, instance_id: str, attempt: int) -> Duration:
    """``delay`` moved by up to ±10 %, deterministically, rounded to whole ms.

    >>> 900 <= jittered(Duration(1000), "continuous:job:1", 2) <= 1100
    True
    """
    return Duration(round(delay + delay * JITTER_SPREAD * jitter_fraction(instance_id, attempt)))
