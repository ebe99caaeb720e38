"""Durations, backoff and jitter, cron, definitions, and the core's purity."""

from __future__ import annotations

import ast
import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from durable_jobs import (
    Backoff,
    Continuous,
    ContinuousDefinition,
    Debounce,
    DefinitionError,
    Duration,
    Instant,
    JobNotFoundError,
    Jobs,
    Retry,
    Task,
    Unstructured,
    ValidationError,
    WorkerPool,
)
from durable_jobs._retry import jittered
from durable_jobs._runtime import Attempts, Exhausted, RetryAt, decide_failure
from durable_jobs.protocol import (
    MAX_DURATION,
    InstanceKey,
    from_datetime,
    parse_duration,
    to_datetime,
    validate,
)

UNITS = {
    "ms": 1,
    "millis": 1,
    "s": 1_000,
    "seconds": 1_000,
    "second": 1_000,
    "m": 60_000,
    "minutes": 60_000,
    "h": 3_600_000,
    "hours": 3_600_000,
    "d": 86_400_000,
    "days": 86_400_000,
    "weeks": 604_800_000,
}


@given(st.integers(0, 10_000), st.sampled_from(sorted(UNITS)), st.sampled_from(["", " ", "  "]))
def test_duration_strings_parse_to_milliseconds(n: int, unit: str, space: str) -> None:
    """Up to the 100-year bound a string is its milliseconds; past it, refused."""
    if n * UNITS[unit] <= MAX_DURATION:
        assert parse_duration(f"{n}{space}{unit}") == n * UNITS[unit]
    else:
        with pytest.raises(DefinitionError, match="longer than the maximum, 100 years"):
            parse_duration(f"{n}{space}{unit}")


@given(st.integers(0, 10**12))
def test_timedeltas_parse_to_milliseconds(ms: int) -> None:
    assert parse_duration(timedelta(milliseconds=ms)) == ms


@pytest.mark.parametrize(
    "bad",
    [5000, 1.5, True, None, "5", "five seconds", "5 parsecs", "-1 s", "0.5 ms", "1 day 2 hours"],
)
def test_bad_durations_are_refused(bad: object) -> None:
    with pytest.raises(DefinitionError):
        parse_duration(bad)  # type: ignore[arg-type]


@given(st.integers(-(6 * 10**13), 2 * 10**14))
def test_instants_and_datetimes_convert_both_ways(ms: int) -> None:
    assert from_datetime(to_datetime(Instant(ms))) == ms


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(DefinitionError, match="aware"):
        from_datetime(datetime(2026, 1, 1))


BACKOFFS = st.one_of(
    st.builds(
        Backoff.exponential,
        st.integers(0, 10_000).map(lambda ms: timedelta(milliseconds=ms)),
        st.none() | st.integers(0, 100_000).map(lambda ms: timedelta(milliseconds=ms)),
        st.sampled_from([1, 1.5, 2, 3]),
    ),
    st.builds(
        Backoff.linear,
        st.integers(0, 10_000).map(lambda ms: timedelta(milliseconds=ms)),
        st.integers(0, 10_000).map(lambda ms: timedelta(milliseconds=ms)),
        st.none() | st.integers(0, 100_000).map(lambda ms: timedelta(milliseconds=ms)),
    ),
    st.builds(Backoff.constant, st.integers(0, 10_000).map(lambda ms: timedelta(milliseconds=ms))),
    st.sampled_from(
        [Backoff.standard(), Backoff.aggressive(), Backoff.patient(), Backoff.simple()]
    ),
)


@given(BACKOFFS, st.integers(1, 60))
def test_backoff_delays_grow_and_respect_their_cap(backoff: object, attempt: int) -> None:
    assert not isinstance(backoff, Retry)
    delay = backoff.delay(attempt)  # type: ignore[attr-defined]
    later = backoff.delay(attempt + 1)  # type: ignore[attr-defined]
    assert 0 <= delay <= later
    cap = getattr(backoff, "max", None)
    if cap is not None:
        assert later <= cap


@given(st.integers(0, 10**7), st.text(min_size=1, max_size=30), st.integers(1, 100))
def test_jitter_stays_within_ten_percent_and_is_deterministic(
    delay: int, instance_id: str, attempt: int
) -> None:
    moved = jittered(Duration(delay), instance_id, attempt)
    assert moved == jittered(Duration(delay), instance_id, attempt)
    assert round(delay * 0.9) - 1 <= moved <= round(delay * 1.1) + 1


def test_jitter_spreads_instances_apart() -> None:
    values = {jittered(Duration(10_000), f"debounce:j:{i}", 1) for i in range(50)}
    assert len(values) > 25


@given(
    st.integers(1, 6),
    st.integers(1, 8),
    st.booleans(),
    st.none() | st.integers(0, 60_000),
)
def test_the_retry_decision_follows_the_policy(
    max_attempts: int, attempt: int, jitter: bool, max_duration_ms: int | None
) -> None:
    policy = Retry(
        max_attempts=max_attempts,
        backoff=Backoff.constant("10 seconds"),
        jitter=jitter,
        max_duration=None if max_duration_ms is None else timedelta(milliseconds=max_duration_ms),
    )
    key = InstanceKey("continuous", "job", "u")
    now = Instant(1_000_000)
    decision = decide_failure(policy, key, Attempts(sequence_started_at=now), attempt, now)
    if attempt >= max_attempts:
        assert decision == Exhausted("max_attempts", attempt)
    elif max_duration_ms is not None and max_duration_ms < 9_000:
        assert decision == Exhausted("max_duration", attempt)
    elif isinstance(decision, RetryAt):
        assert decision.attempt == attempt + 1
        wait = decision.at - now
        assert 9_000 <= wait <= 11_000 if jitter else wait == 10_000
    else:
        assert max_duration_ms is not None
        assert decision.reason == "max_duration"


@pytest.mark.parametrize("bad", [0, -1, 1.5, "3", True])
def test_retry_refuses_bad_max_attempts(bad: object) -> None:
    with pytest.raises(DefinitionError):
        Retry(max_attempts=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["no", "", 0, 1, None])
def test_retry_refuses_a_jitter_that_is_not_a_bool(bad: object) -> None:
    # "no" used to be accepted and, being truthy, turned jitter on.
    with pytest.raises(DefinitionError, match="jitter"):
        Retry(max_attempts=3, jitter=bad)  # type: ignore[arg-type]


def test_a_registry_never_mistakes_a_new_definition_for_one_it_registered() -> None:
    """``Jobs`` finds definitions by the id of the object the user holds; it keeps those
    objects alive, so their ids cannot be handed to new objects."""
    jobs = Jobs(a=Continuous.make(state=int, schedule=Continuous.every("1 minute"), execute=print))
    for _ in range(2_000):  # fresh objects of the same size, made after the first is unused
        other = Continuous.make(state=int, schedule=Continuous.every("1 minute"), execute=print)
        with pytest.raises(JobNotFoundError):
            jobs.resolve(other, ContinuousDefinition)
    assert jobs.resolve("a", ContinuousDefinition).name == "a"


def _utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> Instant:
    return from_datetime(datetime(year, month, day, hour, minute, second, tzinfo=UTC))


def test_cron_is_strictly_after_now_with_five_or_six_fields() -> None:
    every_minute = Continuous.cron("* * * * *")
    assert every_minute.next_after(_utc(2026, 5, 1, 10, 0)) == _utc(2026, 5, 1, 10, 1)
    seconds = Continuous.cron("30 * * * * *")
    assert seconds.next_after(_utc(2026, 5, 1, 10, 0)) == _utc(2026, 5, 1, 10, 0, 30)
    weekdays = Continuous.cron("0 9 * * mon-fri", tz="Europe/Paris")
    friday = _utc(2026, 11, 27, 8, 0)  # exactly 09:00 in Paris: strictly after → Monday
    assert weekdays.next_after(friday) == _utc(2026, 11, 30, 8, 0)


def test_cron_across_the_spring_gap_runs_the_skipped_time_an_hour_later() -> None:
    daily = Continuous.cron("30 2 * * *", tz="America/New_York")
    before = _utc(2026, 3, 8, 5, 0)  # 00:00 EST on the night clocks jump 02:00 → 03:00
    at = to_datetime(daily.next_after(before)).astimezone(ZoneInfo("America/New_York"))
    assert (at.day, at.hour, at.minute) == (8, 3, 30)
    following = to_datetime(daily.next_after(from_datetime(at)))
    assert following.astimezone(ZoneInfo("America/New_York")).hour == 2


def test_cron_across_the_autumn_fold() -> None:
    zone = ZoneInfo("America/New_York")
    fixed = Continuous.cron("30 1 * * *", tz="America/New_York")
    start = _utc(2026, 11, 1, 4, 0)  # 00:00 EDT; 01:00-02:00 happens twice this night
    first = fixed.next_after(start)
    assert first == _utc(2026, 11, 1, 5, 30)  # 01:30 EDT, the first of the two 01:30s
    assert to_datetime(first).astimezone(zone).hour == 1
    assert to_datetime(fixed.next_after(first)).day == 2  # not again in the repeated hour
    hourly = Continuous.cron("30 * * * *", tz="America/New_York")
    runs = [hourly.next_after(start)]
    for _ in range(3):
        runs.append(hourly.next_after(runs[-1]))
    gaps = [b - a for a, b in itertools.pairwise(runs)]
    assert gaps == [3_600_000, 3_600_000, 3_600_000]  # both 01:30s run, an hour apart


@given(st.integers(0, 2 * 10**12), st.sampled_from(["*/7 * * * *", "15 3 * * 1", "0 0 1 * *"]))
def test_cron_next_is_always_later(now: int, expression: str) -> None:
    schedule = Continuous.cron(expression, tz="Europe/Paris")
    assert schedule.next_after(Instant(now)) > now


@pytest.mark.parametrize(
    ("expression", "tz"),
    [("* * *", "UTC"), ("61 * * * *", "UTC"), ("0 0 30 2 *", "UTC"), ("* * * * *", "Mars/Base")],
)
def test_bad_cron_fails_at_definition_time(expression: str, tz: str) -> None:
    with pytest.raises(DefinitionError):
        Continuous.cron(expression, tz=tz)


def _noop(ctx: object) -> None:
    return None


def test_bad_definitions_fail_at_definition_time() -> None:
    every = Continuous.every("1 minute")
    with pytest.raises(DefinitionError):
        Continuous.every(60_000)  # type: ignore[arg-type]
    with pytest.raises(DefinitionError):
        Continuous.every("0 seconds")
    with pytest.raises(DefinitionError):
        Continuous.make(state=int, schedule="hourly", execute=_noop)  # type: ignore[arg-type]
    with pytest.raises(DefinitionError):
        Continuous.make(state=int, schedule=every, execute="nope")  # type: ignore[arg-type]
    with pytest.raises(DefinitionError):
        Continuous.make(
            state=int,
            schedule=every,
            execute=_noop,
            on_retry_exhausted="explode",  # type: ignore[arg-type]
        )
    with pytest.raises(DefinitionError):
        Debounce.make(event=int, execute=_noop, flush_after=5000)  # type: ignore[call-overload]
    with pytest.raises(DefinitionError):
        Debounce.make(event=int, execute=_noop, flush_after="1 s", max_events=0)
    with pytest.raises(DefinitionError):
        Debounce.make(event=int, execute=_noop, flush_after="1 s", quiet_period="0 s")
    with pytest.raises(DefinitionError):
        Debounce.make(event=int, state=str, execute=_noop, flush_after="1 s")
    with pytest.raises(DefinitionError):
        Task.make(state=int, event=int, on_event=_noop, execute=_noop, retry=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Task.make(state=int, event=int, on_event=_noop, execute=_noop, colour="red")  # type: ignore[call-arg]
    with pytest.raises(DefinitionError):
        Jobs(x="not a job")  # type: ignore[arg-type]
    job = Debounce.make(event=int, execute=_noop, flush_after="1 s")
    with pytest.raises(DefinitionError, match="twice"):
        Jobs(a=job, b=job)


@pytest.mark.parametrize(
    "options",
    [
        {"concurrency": 0},
        {"concurrency": 1.5},
        {"concurrency": True},
        {"max_queue_depth": 0},
        {"dedup_retention": 3600},
        {"dedup_retention": "a while"},
        {"retry": 3},
        {"on_dead_letter": "log it"},
        {"on_empty": 1},
        {"event": "str"},
    ],
)
def test_bad_worker_pool_options_fail_at_definition_time(options: dict[str, object]) -> None:
    arguments: dict[str, object] = {"event": int, "concurrency": 2, "execute": _noop}
    arguments.update(options)
    with pytest.raises(DefinitionError):
        WorkerPool.make(**arguments)  # type: ignore[arg-type]


FORBIDDEN_MODULES = {
    "asyncio",
    "httpx",
    "io",
    "os",
    "pathlib",
    "random",
    "requests",
    "secrets",
    "shutil",
    "socket",
    "sqlite3",
    "subprocess",
    "tempfile",
    "threading",
    "time",
    "urllib",
    "uuid",
}
CLOCK_READS = {"now", "utcnow", "today"}


def test_the_core_imports_nothing_that_does_io() -> None:
    core = Path(__file__).resolve().parents[2] / "core"
    files = sorted(core.glob("*.py"))
    assert len(files) > 10
    for path in files:
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                names = []
            for name in names:
                assert name.split(".")[0] not in FORBIDDEN_MODULES, f"{path.name} imports {name}"
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                receiver = node.func.value
                if isinstance(receiver, ast.Name) and receiver.id in {"datetime", "date", "time"}:
                    assert node.func.attr not in CLOCK_READS, f"{path.name} reads the clock"


@pytest.mark.parametrize(
    ("value", "type_"),
    [
        ("urgent", list[str]),
        ({"a": 1, "b": 2}, tuple[str, ...]),
        ("", tuple[int, ...]),
        ([1], tuple[int, int]),
        (Unstructured("ab"), frozenset[str]),
    ],
)
def test_a_list_tuple_or_set_is_built_only_from_an_array(value: object, type_: object) -> None:
    # A string or an object is iterable too; taken as an array it would be stored as its
    # characters or its keys.
    with pytest.raises(ValidationError):
        validate(value, type_, what="event")


def test_arrays_still_structure_their_items() -> None:
    assert validate([["a", 1]], list[tuple[str, int]], what="event") == [("a", 1)]
    assert validate(Unstructured([1, 2]), frozenset[int], what="event") == frozenset({1, 2})
