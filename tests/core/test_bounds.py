"""Laws of the core's bounds: durations, backoffs, ids and storable values.

Every value that enters the core is checked where it is written, so that no definition
or request can later take a worker down (an alarm past year 9999, an integer a store
cannot bind, a float that never ends).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from durable_jobs import (
    Backoff,
    Continuous,
    Debounce,
    DefinitionError,
    Duration,
    Retry,
    Unstructured,
    ValidationError,
    WorkerPool,
)
from durable_jobs._retry import ExponentialBackoff, LinearBackoff
from durable_jobs.protocol import (
    MAX_DEPTH,
    MAX_DURATION,
    MAX_ID_LENGTH,
    MAX_INT,
    check_id,
    parse_duration,
    to_datetime,
    validate,
)


def _noop(ctx: object) -> None:
    return None


PAST_THE_BOUND = ["1000000 weeks", "99999999999999999999 weeks", "36526 days", "5219 w"]


@pytest.mark.parametrize("far", PAST_THE_BOUND)
def test_every_duration_past_100_years_is_refused_where_it_is_written(far: str) -> None:
    makers: list[Callable[[], object]] = [
        lambda: Continuous.every(far),
        lambda: Debounce.make(event=int, execute=_noop, flush_after=far),
        lambda: Debounce.make(event=int, execute=_noop, flush_after="1 s", quiet_period=far),
        lambda: WorkerPool.make(event=int, concurrency=1, execute=_noop, dedup_retention=far),
        lambda: Backoff.constant(far),
        lambda: Backoff.exponential("1 s", max=far),
        lambda: Retry(max_attempts=2, max_duration=far),
    ]
    for make in makers:
        with pytest.raises(DefinitionError, match="longer than the maximum, 100 years"):
            make()


def test_the_bound_itself_is_accepted_and_fits_a_datetime() -> None:
    assert parse_duration("36525 days") == MAX_DURATION
    assert parse_duration(timedelta(days=36525)) == MAX_DURATION
    with pytest.raises(DefinitionError):
        parse_duration(timedelta(days=36525, milliseconds=1))
    assert to_datetime(MAX_DURATION * 2).year < 9999  # now + any duration stays a date


@pytest.mark.parametrize("digits", ["\uff15 s", "\u0663 seconds", "1.\u0665 s", "\u00b2s"])
def test_only_ascii_digits_make_a_duration(digits: str) -> None:
    with pytest.raises(DefinitionError, match="cannot read"):
        parse_duration(digits)


def test_a_huge_digit_string_is_refused_clearly() -> None:
    with pytest.raises(DefinitionError, match="longer than the maximum"):
        parse_duration("9" * 5000 + " ms")


@pytest.mark.parametrize("factor", [math.inf, -math.inf, math.nan, 0.5, True, "2"])
def test_an_exponential_factor_is_a_finite_number_of_at_least_one(factor: Any) -> None:
    with pytest.raises(DefinitionError, match="finite number >= 1"):
        Backoff.exponential("1 s", factor=factor)
    with pytest.raises(DefinitionError, match="finite number >= 1"):
        ExponentialBackoff(Duration(1000), factor)  # built directly: checked too


@given(
    base=st.integers(0, MAX_DURATION),
    factor=st.floats(1, 1e6, allow_nan=False),
    attempt=st.integers(1, 10**9),
    cap=st.none() | st.integers(0, MAX_DURATION),
)
def test_exponential_delays_never_overflow_and_never_pass_their_cap(
    base: int, factor: float, attempt: int, cap: int | None
) -> None:
    backoff = ExponentialBackoff(Duration(base), factor, None if cap is None else Duration(cap))
    delay = backoff.delay(attempt)
    assert 0 <= delay <= (MAX_DURATION if cap is None else min(cap, MAX_DURATION))
    assert backoff.delay(attempt + 1) >= delay  # never shrinks


@given(
    initial=st.integers(0, MAX_DURATION),
    increment=st.integers(0, MAX_DURATION),
    attempt=st.integers(1, 10**12),
)
def test_linear_delays_stop_at_the_bound(initial: int, increment: int, attempt: int) -> None:
    delay = LinearBackoff(Duration(initial), Duration(increment)).delay(attempt)
    assert 0 <= delay <= MAX_DURATION


@given(st.text(min_size=1, max_size=MAX_ID_LENGTH))
def test_an_id_is_accepted_exactly_when_every_store_can_hold_it(text: str) -> None:
    holdable = "\x00" not in text and not any(0xD800 <= ord(c) <= 0xDFFF for c in text)
    if holdable:
        assert check_id(text) == text
    else:
        with pytest.raises(ValidationError):
            check_id(text)


def test_an_id_longer_than_the_bound_is_refused() -> None:
    assert check_id("x" * MAX_ID_LENGTH)
    with pytest.raises(ValidationError, match="1025 characters long; the most is 1024"):
        check_id("x" * (MAX_ID_LENGTH + 1))


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-MAX_INT, MAX_INT)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(JSON)
def test_storable_json_is_accepted_unchanged(value: Any) -> None:
    assert validate(value, Any, what="event") == value


@given(st.integers(MAX_INT + 1, 2**200) | st.integers(-(2**200), -MAX_INT - 1))
def test_integers_past_64_bits_are_refused(value: int) -> None:
    with pytest.raises(ValidationError, match="does not fit in 64 bits"):
        validate({"n": value}, dict[str, int], what="event")


def test_declared_types_keep_what_any_would_lose() -> None:
    assert validate({3, 1}, set[int], what="event") == {1, 3}
    assert validate(b"\xff\x00", bytes, what="event") == b"\xff\x00"
    assert validate((1, "a"), tuple[int, str], what="event") == (1, "a")
    with pytest.raises(ValidationError, match=r"at \$\.tags: a set is not JSON"):
        validate({"tags": {"a"}}, dict[str, Any], what="event")


def test_nesting_is_bounded_at_the_boundary() -> None:
    value: Any = 0
    for _ in range(MAX_DEPTH):  # a hundred objects, one in another: the most allowed
        value = {"x": value}
    assert validate(value, Any, what="event") == value
    assert validate(value, dict[str, Any], what="event") == value
    for deeper in ({"x": value}, [value]):
        with pytest.raises(ValidationError, match="nested deeper than 100 levels"):
            validate(deeper, Any, what="event")
        with pytest.raises(ValidationError, match="nested deeper than 100 levels"):
            validate(Unstructured(deeper), Any, what="event")
    deep: Any = 0
    for _ in range(100_000):  # far past the recursion limit: refused, not a crash
        deep = [deep]
    with pytest.raises(ValidationError, match="nested deeper than 100 levels"):
        validate(deep, Any, what="event")


class Color(enum.IntEnum):
    RED = 1
    BLUE = 2


class Mood(enum.Enum):
    CALM = "calm"


@attrs.frozen
class Annotated:
    """String annotations (this module has ``from __future__ import annotations``)."""

    meta: dict[str, Any]
    extra: dict[str, Any] | None = None
    loose: Any | None = None
    color: Color = Color.RED
    mood: Mood = Mood.CALM


@pytest.mark.parametrize(
    ("value", "where"),
    [
        (Annotated({"a": (1, 2)}), r"\$\.meta\.a: a tuple"),
        (Annotated({}, {"x": {1}}), r"\$\.extra\.x: a set"),
        (Annotated({}, None, b"x"), r"\$\.loose: a bytes"),
    ],
)
def test_any_inside_string_annotated_classes_and_unions_is_checked_too(
    value: Annotated, where: str
) -> None:
    for _ in range(2):  # the second time from the cached check
        with pytest.raises(ValidationError, match=where):
            validate(value, Annotated, what="state")


def test_enum_members_round_trip_as_members() -> None:
    value = Annotated({"ok": [1]}, {"x": None}, 3, Color.BLUE, Mood.CALM)
    assert validate(value, Annotated, what="state") == value
    assert validate(Color.BLUE, Color, what="event") is Color.BLUE
    assert validate(Unstructured(2), Color, what="event") is Color.BLUE
    with pytest.raises(ValidationError, match="3 is not a valid Color"):
        validate(Unstructured(3), Color, what="event")
