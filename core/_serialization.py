"""Serialisation: one cattrs converter, JSON only, stable explicit tags.

Theory of operation: ``make_converter()`` builds a cattrs converter on the JSON preset and
registers tagged unions for inputs, commands, telemetry events and replies. Each union
member has an explicit tag written here (``TAGS``), never derived from a class name, so
renaming a class cannot break stored data. Instants and durations are plain integers.

User values (states, events, inputs) sit in fields typed ``Any`` inside the framework's
values, and a converter alone cannot know their types. ``Codec(definition)`` knows them:
it encodes and decodes every value of one job with the user types restored, and wraps a
stored snapshot in an envelope with a schema version. A record from a newer schema, an
unknown tag or malformed JSON raises ``StorageError`` naming what could not be read.
Nothing here uses pickle or ``eval``.

*State versions* (issue 10 §5). A job with a state declares ``state_version`` (default
1) and, above 1, ``migrate_state(data, version)``, which turns a state's JSON form as
written under ``version`` into the JSON form of ``version + 1``. Every stored record that
holds a state says which version wrote it: the snapshot envelope always
(``{"schema": 1, "state_version": 2, "snapshot": …}``); a dead letter (payload: the state
or batch) and a ``job.started`` telemetry event (input: the state) carry the key only
above 1, because earlier releases refuse unknown keys there and rows of unversioned jobs
should stay readable by them. A record without the key is version 1 (every row written
before versions existed). Reading applies the migration step by step, v1→v2→…→current,
on the JSON form *before* it is structured, so the class of an older version need not
exist any more; it is a pure function of the stored text and the definition, no IO.
Writing stores the current version, so a migrated row is upgraded for good the next
time its instance is written. A record from a newer version (code rolled back), a
version that is not an int >= 1, a migration that raises, or a result that does not
structure as the state type is a ``StorageError`` naming the instance and the versions.
Decisions: a ``None`` state (a Task or Debounce with no state yet, a Task's dead letter
before any state) is never migrated: "no state" means the same in every version. Commit
plans and commands (``encode_plan``) are not versioned: they are handed from one step to
a store by the same code, never kept across a deploy. ``read_snapshot``, for tools
without the registry, leaves the state as stored (JSON, of whatever version wrote it).

*Event versions.* A WorkerPool has no state but stores its events: one queue row per
pending or delayed event (``encode_item``/``decode_item``, the only way a store turns a
``QueueItem`` into text and back), the event a shard is running or retrying (the
snapshot's ``current``) and its dead letters (payload: the event). ``event_version`` and
``migrate_event`` version them by the same rules and the same code (``_Versions``): the
pool envelope always records ``event_version``; a queue row and a dead letter carry the
key only above 1 (earlier releases refuse unknown keys there, and rows of unversioned
pools stay readable by them); a row without it is version 1. Unlike a state, an event of
``None`` (a pool whose event type allows it) is a value someone enqueued, so it is
migrated like any other. A ``StorageError`` about an event names the shard and the event
id. Pool requests (``enqueue``) are never stored as such: the event is validated as the
current type when it is sent. A Task or Debounce stores events too, while they wait in
``pending`` behind a run in flight (issue 10): they take the same ``event_version`` and
``migrate_event``, recorded in the snapshot envelope once it is above 1.
"""

from __future__ import annotations

import enum
import json
import math
import reprlib
from collections import abc
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from functools import lru_cache
from types import UnionType
from typing import Any, Final, Literal, Optional, Union, get_args, get_origin

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn
from cattrs.preconf.json import make_converter as make_json_converter
from cattrs.strategies import configure_tagged_union

from durable_jobs import _commands as cmd
from durable_jobs import _inputs as inp
from durable_jobs import _results as res
from durable_jobs import _telemetry as tel
from durable_jobs._definitions import Definition
from durable_jobs._errors import StorageError, ValidationError
from durable_jobs._keys import InstanceKey
from durable_jobs._kinds import kind_named, kind_of
from durable_jobs._plan import CommitPlan
from durable_jobs._queue import FinishedEvent, QueueItem

__all__ = [
    "EVENT_VERSION_KEY",
    "MAX_DEPTH",
    "MAX_INT",
    "SCHEMA_VERSION",
    "STATE_VERSION_KEY",
    "TAGS",
    "Codec",
    "Unstructured",
    "make_converter",
    "read_snapshot",
    "typed",
    "validate",
]

SCHEMA_VERSION: Final = 1

STATE_VERSION_KEY: Final = "state_version"
"""Where a stored record says which version of its job's state type wrote its state."""

EVENT_VERSION_KEY: Final = "event_version"
"""Where a stored record says which version of its pool's event type wrote its event."""

_compact = json.JSONEncoder(separators=(",", ":")).encode
"""``json.dumps(..., separators=...)`` builds an encoder per call; this one is reused."""

TAGS: Final[dict[type, str]] = {
    # inputs
    inp.ContinuousStart: "continuous.start",
    inp.ContinuousTrigger: "continuous.trigger",
    inp.ContinuousTerminate: "continuous.terminate",
    inp.ContinuousStatus: "continuous.status",
    inp.ContinuousGetState: "continuous.getState",
    inp.DebounceAdd: "debounce.add",
    inp.DebounceFlush: "debounce.flush",
    inp.DebounceClear: "debounce.clear",
    inp.DebounceStatus: "debounce.status",
    inp.DebounceGetState: "debounce.getState",
    inp.TaskSend: "task.send",
    inp.TaskTrigger: "task.trigger",
    inp.TaskTerminate: "task.terminate",
    inp.TaskStatus: "task.status",
    inp.TaskGetState: "task.getState",
    inp.PoolEnqueue: "workerPool.enqueue",
    inp.PoolEnqueueMany: "workerPool.enqueueMany",
    inp.PoolPause: "workerPool.pause",
    inp.PoolResume: "workerPool.resume",
    inp.PoolCancel: "workerPool.cancel",
    inp.PoolDrain: "workerPool.drain",
    inp.PoolStatus: "workerPool.status",
    inp.AlarmFired: "alarm.fired",
    inp.UserCodeSucceeded: "userCode.succeeded",
    inp.UserCodeFailed: "userCode.failed",
    inp.TerminateRequested: "userCode.terminateRequested",
    inp.RunInterrupted: "userCode.interrupted",
    # commands
    cmd.Persist: "persist",
    cmd.Purge: "purge",
    cmd.ScheduleAlarm: "scheduleAlarm",
    cmd.ScheduleRetry: "scheduleRetry",
    cmd.CancelAlarm: "cancelAlarm",
    cmd.Emit: "emit",
    cmd.RecordDeadLetter: "recordDeadLetter",
    cmd.Reply: "reply",
    cmd.RunUserCode: "runUserCode",
    cmd.PutQueueItem: "putQueueItem",
    cmd.ReleaseQueueItem: "releaseQueueItem",
    cmd.DeleteQueueItem: "deleteQueueItem",
    cmd.TakeQueueItem: "takeQueueItem",
    cmd.ClearQueue: "clearQueue",
    cmd.PutFinished: "putFinished",
    cmd.DeleteFinished: "deleteFinished",
    # hook payloads of RunUserCode
    cmd.ContinuousExecute: "continuous.execute",
    cmd.DebounceReduce: "debounce.onEvent",
    cmd.DebounceExecute: "debounce.execute",
    cmd.TaskOnEvent: "task.onEvent",
    cmd.TaskExecute: "task.execute",
    cmd.TaskOnIdle: "task.onIdle",
    cmd.TaskOnError: "task.onError",
    cmd.PoolExecute: "workerPool.execute",
    cmd.PoolOnDeadLetter: "workerPool.onDeadLetter",
    cmd.PoolOnEmpty: "workerPool.onEmpty",
    # telemetry: the event name is the tag
    **{cls: cls.type for cls in tel.TELEMETRY_CLASSES},
    # replies
    res.ContinuousStartResult: "continuous.start",
    res.ContinuousTriggerResult: "continuous.trigger",
    res.ContinuousTerminateResult: "continuous.terminate",
    res.ContinuousStatusResult: "continuous.status",
    res.DebounceAddResult: "debounce.add",
    res.DebounceFlushResult: "debounce.flush",
    res.DebounceClearResult: "debounce.clear",
    res.DebounceStatusResult: "debounce.status",
    res.TaskSendResult: "task.send",
    res.TaskTriggerResult: "task.trigger",
    res.TaskTerminateResult: "task.terminate",
    res.TaskStatusResult: "task.status",
    res.StateResult: "state",
    res.RequestFailed: "requestFailed",
    res.PoolEnqueueResult: "workerPool.enqueue",
    res.PoolEnqueueManyResult: "workerPool.enqueueMany",
    res.PoolPauseResult: "workerPool.pause",
    res.PoolResumeResult: "workerPool.resume",
    res.PoolCancelResult: "workerPool.cancel",
    res.PoolDrainResult: "workerPool.drain",
    res.PoolInstanceStatus: "workerPool.status",
}


def make_converter() -> cattrs.Converter:
    """A JSON converter with the framework's tagged unions registered.

    >>> from durable_jobs.protocol import AlarmFired, Input
    >>> conv = make_converter()
    >>> conv.unstructure(AlarmFired(at=5), Input)
    {'at': 5, 'tag': 'alarm.fired'}
    >>> conv.structure({'at': 5, 'tag': 'alarm.fired'}, Input)
    AlarmFired(at=5)
    """
    converter = make_json_converter(forbid_extra_keys=True)
    _strict_scalars(converter)
    _arrays_from_arrays_only(converter)
    _attrs_from_mappings_only(converter)
    _enums_by_value(converter)

    def tag(cls: type) -> str:
        return TAGS[get_origin(cls) or cls]  # Persist[Any] is tagged as Persist

    for union in (res.ReplyValue, tel.TelemetryEvent, inp.Input, cmd.HookPayload, cmd.Command):
        # A union of generic members (``Persist[Any]``) is tagged by the bare classes,
        # which is what a value's ``__class__`` is; the union as annotated delegates.
        plain = _bare(union)
        if plain != union:
            _delegate(converter, union, plain)
        configure_tagged_union(plain, converter, tag_generator=tag, tag_name="tag")
    return converter


def _bare(union: Any) -> Any:
    """``union`` with every generic member replaced by its bare class."""
    return Union[tuple(get_origin(member) or member for member in get_args(union))]  # noqa: UP007


def _delegate(converter: cattrs.Converter, annotated: Any, plain: Any) -> None:
    def structure_as(target: Any) -> Any:
        return lambda data, _: converter.structure(data, target)

    for member in get_args(annotated):
        bare = get_origin(member)
        if bare is not None:  # structure a bare generic class as its ``[Any, ...]`` form
            converter.register_structure_hook(bare, structure_as(member))

    def unstructure(value: Any) -> Any:
        return converter.unstructure(value, plain)

    converter.register_unstructure_hook(annotated, unstructure)
    converter.register_structure_hook(annotated, structure_as(plain))


def _strict_scalars(converter: cattrs.Converter) -> None:
    """Scalars structure only from their own JSON kind: no ``str(1)``, no ``int("7")``."""

    def exact(kind: type, accepted: tuple[type, ...]) -> Any:
        def hook(value: Any, type_: Any) -> Any:
            if isinstance(value, bool) and kind is not bool:
                raise TypeError(f"expected {kind.__name__}, got a bool")
            if not isinstance(value, accepted):
                raise TypeError(f"expected {kind.__name__}, got {type(value).__name__}")
            if type_ is not kind and isinstance(type_, type) and issubclass(type_, enum.Enum):
                return type_(value)  # an IntEnum or StrEnum member, by its value
            return kind(value)

        return hook

    converter.register_structure_hook(str, exact(str, (str,)))
    converter.register_structure_hook(int, exact(int, (int,)))
    converter.register_structure_hook(float, exact(float, (int, float)))
    converter.register_structure_hook(bool, exact(bool, (bool,)))


_ARRAYS: Final[dict[Any, Any]] = {
    list: list,
    tuple: tuple,
    set: set,
    frozenset: frozenset,
    abc.Sequence: tuple,
    abc.MutableSequence: list,
    abc.Set: frozenset,
    abc.MutableSet: set,
}
"""Collection types, and what cattrs builds for each."""


def _arrays_from_arrays_only(converter: cattrs.Converter) -> None:
    """A list, tuple or set structures only from a JSON array (cattrs alone iterates any
    iterable, so ``"abc"`` would become ``['a', 'b', 'c']`` and an object its keys)."""

    def factory(type_: Any) -> Any:
        origin: Any = get_origin(type_)
        build = _ARRAYS[type_ if origin is None else origin]
        args = get_args(type_)
        fixed = build is tuple and args and not (len(args) == 2 and args[1] is Ellipsis)
        element = args[0] if args and not fixed else Any

        def hook(value: Any, _: Any) -> Any:
            if not isinstance(value, list | tuple | set | frozenset):
                raise TypeError(f"expected an array, got {type(value).__name__}")
            if fixed:
                if len(value) != len(args):
                    raise TypeError(f"expected {len(args)} items, got {len(value)}")
                return tuple(converter.structure(v, a) for v, a in zip(value, args, strict=True))
            return build(converter.structure(v, element) for v in value)

        return hook

    def is_array(type_: Any) -> bool:
        origin: Any = get_origin(type_)
        return (type_ if origin is None else origin) in _ARRAYS

    converter.register_structure_hook_factory(is_array, factory)


def _enums_by_value(converter: cattrs.Converter) -> None:
    """An enum member is stored as its value and read back as the member. (An
    ``IntEnum``/``StrEnum`` type reaches the ``int``/``str`` hooks of
    ``_strict_scalars`` first, which build the member too; this covers the others.)"""

    def is_enum(type_: Any) -> bool:
        return isinstance(type_, type) and issubclass(type_, enum.Enum)

    converter.register_unstructure_hook_func(is_enum, lambda member: member.value)
    converter.register_structure_hook_func(is_enum, lambda value, type_: type_(value))


def _attrs_from_mappings_only(converter: cattrs.Converter) -> None:
    """An attrs class structures only from a JSON object (cattrs alone accepts any value
    and falls back to defaults, so ``"oops"`` would become an empty record)."""

    def factory(cls: Any) -> Any:
        inner = make_dict_structure_fn(cls, converter, _cattrs_forbid_extra_keys=True)

        def hook(value: Any, type_: Any) -> Any:
            if not isinstance(value, Mapping):
                raise TypeError(
                    f"expected an object for {getattr(cls, '__name__', cls)}, "
                    f"got {type(value).__name__}"
                )
            return inner(value, type_)

        return hook

    converter.register_structure_hook_factory(attrs.has, factory)


_DEFAULT = make_converter()


_PLAIN_SCALARS: Final = (int, str, float, bool)


@attrs.frozen
class Unstructured:
    """A value in its JSON form (dicts, lists, strings, numbers), to be structured as the
    job's declared type: the explicit way to hand a client JSON instead of a typed value.

    >>> validate(Unstructured({"x": 1}), dict[str, int], what="event")
    {'x': 1}
    """

    data: Any


def validate(value: Any, type_: Any, *, what: str, converter: cattrs.Converter = _DEFAULT) -> Any:
    """``value`` (typed, in its JSON form, or ``Unstructured``) structured as ``type_``, or
    ``ValidationError``.

    A typed value goes through the converter too (unstructure, then structure), so a
    value that could not be stored is refused before anything is written: its JSON form
    must hold only strings of valid Unicode, integers within 64 bits, finite numbers and
    string keys, nested at most ``MAX_DEPTH`` levels; where the declared type is ``Any``
    the value must already be JSON (a set, bytes or a tuple would come back as something
    else, so it is refused instead of changed).

    >>> validate({"x": 1}, dict[str, int], what="event")
    {'x': 1}
    >>> validate("nope", int, what="event")
    Traceback (most recent call last):
    ...
    durable_jobs._errors.ValidationError: event: expected int, got 'nope' (expected int, got str)
    >>> validate({3, 1}, Any, what="event")
    Traceback (most recent call last):
    ...
    durable_jobs._errors.ValidationError: event: expected Any, got {1, 3} (at $: a set is not JSON; declare the type (e.g. set[int]) or send a list)
    """
    try:
        if type(value) is type_ and type_ in _PLAIN_SCALARS:
            _check_json(value, 0)  # exactly the declared JSON scalar: only its range
            return value
        if isinstance(value, Unstructured):
            raw = value.data
        else:
            _faithful(value, type_, 0)
            raw = converter.unstructure(value)
        _check_json(raw, 0)
        return converter.structure(raw, type_)
    except Exception as error:
        name = getattr(type_, "__name__", repr(type_))
        shown = value.data if isinstance(value, Unstructured) else value
        raise ValidationError(
            f"{what}: expected {name}, got {_SHORT.repr(shown)} ({_describe(error)})"
        ) from None


_SHORT: Final = reprlib.Repr()
"""Shows a refused value in an error message, cut short (it may be huge, or deep)."""
_SHORT.maxstring = _SHORT.maxother = 120
_SHORT.maxlevel, _SHORT.maxdict, _SHORT.maxlist = 4, 10, 10
_SHORT.maxlong = 40

MAX_DEPTH: Final = 100
"""How deeply a value's JSON form may nest (arrays and objects), at most."""

MAX_INT: Final = 2**63 - 1
"""The largest integer a value may hold (and ``-MAX_INT`` the smallest): every store
keeps 64-bit integers."""


class _NotJson(ValueError):
    """Where a value is not storable JSON: the path is filled in while unwinding (so the
    walk builds no strings unless it fails)."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem
        self.path: list[str] = []

    def __str__(self) -> str:
        steps = self.path[::-1]
        if len(steps) > 6:
            steps = [*steps[:3], f"…({len(steps) - 5} more)…", *steps[-2:]]
        return f"at ${''.join(steps)}: {self.problem}"


def _at(error: _NotJson, step: object) -> _NotJson:
    error.path.append(f"[{step}]" if isinstance(step, int) else f".{step}")
    return error


def _check_json(raw: Any, depth: int) -> None:
    """Raise ``_NotJson`` unless ``raw`` is JSON every store keeps as it is."""
    kind = type(raw)
    if kind is str:
        if not raw.isascii():
            try:
                raw.encode("utf-8")
            except UnicodeEncodeError:
                raise _NotJson("a string holds a lone surrogate (not valid Unicode)") from None
    elif kind is int:
        if not -MAX_INT <= raw <= MAX_INT:
            raise _NotJson(f"{_SHORT.repr(raw)} does not fit in 64 bits")
    elif kind is float:
        if not math.isfinite(raw):
            raise _NotJson(f"{raw} is not a finite number")
    elif kind is dict or kind is list:
        if depth >= MAX_DEPTH:
            raise _NotJson(f"nested deeper than {MAX_DEPTH} levels")
        if kind is list:
            for index, item in enumerate(raw):
                try:
                    _check_json(item, depth + 1)
                except _NotJson as error:
                    raise _at(error, index) from None
        else:
            for key, item in raw.items():
                if type(key) is not str:
                    raise _NotJson(f"key {key!r} is not a string")
                try:
                    _check_json(key, depth + 1)
                    _check_json(item, depth + 1)
                except _NotJson as error:
                    raise _at(error, key) from None
    elif isinstance(raw, enum.Enum):  # an IntEnum/StrEnum member: stored as its value
        _check_json(raw.value, depth)
    elif raw is not None and kind is not bool:
        raise _NotJson(f"{type(raw).__name__} is not JSON")


_JSON_NATIVE: Final = (dict, list, str, int, float, bool, type(None))

_Check = Callable[[Any, int], None]
"""Checks a value (at a nesting depth) where its declared type says what it must be."""


def _faithful(value: Any, type_: Any, depth: int) -> None:
    """Raise ``_NotJson`` where ``type_`` is ``Any`` and ``value`` is not plain JSON there
    (the converter would turn a set or a tuple into a list, bytes into text, and nothing
    could turn them back). Declared types restore what they unstructure, so only the
    places a type leaves as ``Any`` are looked at (``_checker`` finds them once per type)."""
    check = _checker(type_)
    if check is not None:
        check(value, depth)


def _checker(type_: Any) -> _Check | None:
    """The check for values of ``type_``, or ``None`` when nothing in it is ``Any``."""
    try:
        return _cached_checker(type_)
    except TypeError:  # an unhashable annotation: build it each time
        return _build_checker(type_)


def _build_checker(type_: Any) -> _Check | None:
    if type_ is Any or type_ is object:
        return _native
    if isinstance(type_, type) and attrs.has(type_):
        return _attrs_checker(type_)
    origin, args = get_origin(type_), get_args(type_)
    if origin is Union or origin is UnionType:
        members = [(member, _checker(member)) for member in args]
        if all(check is None for _, check in members):
            return None
        return _union_checker(tuple(members))
    if origin in _MAPPINGS and len(args) == 2:
        inner = _checker(args[1])
        return None if inner is None else _mapping_checker(inner)
    if origin in _ARRAYS and args:
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            places = tuple(_checker(arg) for arg in args)
            return None if all(p is None for p in places) else _places_checker(places)
        inner = _checker(args[0])
        return None if inner is None else _array_checker(inner)
    return None


_cached_checker = lru_cache(maxsize=1024)(_build_checker)


def _union_checker(members: tuple[tuple[Any, _Check | None], ...]) -> _Check:
    """The check of the first member the value is an instance of (``None`` fits
    ``None``); a value no member class matches is checked as ``Any`` if one member is."""

    def check(value: Any, depth: int) -> None:
        if value is None:
            return
        loose = None
        for member, inner in members:
            if member is Any or member is object:
                loose = inner
                continue
            runtime = get_origin(member) or member
            if isinstance(runtime, type) and isinstance(value, runtime):
                if inner is not None:
                    inner(value, depth)
                return
        if loose is not None:
            loose(value, depth)

    return check


def _mapping_checker(inner: _Check) -> _Check:
    def check(value: Any, depth: int) -> None:
        if isinstance(value, Mapping):
            if depth >= MAX_DEPTH:
                raise _NotJson(f"nested deeper than {MAX_DEPTH} levels")
            for key, item in value.items():
                try:
                    inner(item, depth + 1)
                except _NotJson as error:
                    raise _at(error, key) from None

    return check


def _array_checker(inner: _Check) -> _Check:
    def check(value: Any, depth: int) -> None:
        if isinstance(value, list | tuple | set | frozenset):
            if depth >= MAX_DEPTH:
                raise _NotJson(f"nested deeper than {MAX_DEPTH} levels")
            for index, item in enumerate(value):
                try:
                    inner(item, depth + 1)
                except _NotJson as error:
                    raise _at(error, index) from None

    return check


def _places_checker(places: tuple[_Check | None, ...]) -> _Check:
    def check(value: Any, depth: int) -> None:
        if isinstance(value, tuple):
            for index, (item, inner) in enumerate(zip(value, places, strict=False)):
                if inner is not None:
                    try:
                        inner(item, depth + 1)
                    except _NotJson as error:
                        raise _at(error, index) from None

    return check


def _attrs_checker(cls: type) -> _Check:
    """Checks the fields of ``cls`` that hold ``Any`` somewhere. Built on first use, so a
    class that refers to itself does not recurse while it is built."""
    fields: list[tuple[str, _Check]] | None = None

    def check(value: Any, depth: int) -> None:
        nonlocal fields
        if not isinstance(value, cls):
            return
        if fields is None:
            with suppress(NameError, TypeError):  # a name the class's module lacks
                attrs.resolve_types(cls)  # ``from __future__ import annotations``
            found = []
            for field in attrs.fields(cls):
                inner = None if isinstance(field.type, str) else _checker(field.type)
                if inner is not None:  # (an annotation that does not resolve is left)
                    found.append((field.name, inner))
            fields = found
        if fields and depth >= MAX_DEPTH:
            raise _NotJson(f"nested deeper than {MAX_DEPTH} levels")
        for name, inner in fields:
            try:
                inner(getattr(value, name), depth + 1)
            except _NotJson as error:
                raise _at(error, name) from None

    return check


def _native(value: Any, depth: int) -> None:
    """``value`` must be plain JSON (what ``Any`` keeps as it is)."""
    kind = type(value)
    if kind is dict or kind is list:
        if depth >= MAX_DEPTH:
            raise _NotJson(f"nested deeper than {MAX_DEPTH} levels")
        steps: Any = value.items() if kind is dict else enumerate(value)
        for step, item in steps:
            if type(item) in _JSON_SCALARS:
                continue
            try:
                _native(item, depth + 1)
            except _NotJson as error:
                raise _at(error, step) from None
    elif not isinstance(value, _JSON_NATIVE):
        if isinstance(value, set | frozenset):
            hint = "declare the type (e.g. set[int]) or send a list"
        elif isinstance(value, bytes | bytearray):
            hint = "declare the type (bytes) or send text"
        elif isinstance(value, tuple):
            hint = "declare the type (e.g. tuple[int, int]) or send a list"
        else:
            hint = "declare the job's type"
        raise _NotJson(f"a {type(value).__name__} is not JSON; {hint}")


_JSON_SCALARS: Final = frozenset({str, int, float, bool, type(None)})


_MAPPINGS: Final = (dict, abc.Mapping, abc.MutableMapping)


def _describe(error: BaseException) -> str:
    if isinstance(error, cattrs.BaseValidationError):
        return "; ".join(cattrs.transform_error(error, path="$"))
    return str(error)


def typed(cls: Any, state_type: Any, event_type: Any) -> Any:
    """``cls`` with its type parameters bound: ``S`` to the state type, ``E`` to the
    event type (every generic value of the core names its parameters so).

    >>> typed(QueueItem, int, str)
    durable_jobs._queue.QueueItem[str]
    """
    parameters = getattr(cls, "__parameters__", ())
    if not parameters:
        return cls
    bound = {"S": state_type, "E": event_type}
    try:
        return cls[tuple(bound[p.__name__] for p in parameters)]
    except KeyError:
        raise TypeError(f"{cls.__name__} has a type parameter that is neither S nor E") from None


_PAYLOAD_TAGS: Final = {TAGS[cls]: cls for cls in cmd.PAYLOAD_CLASSES}


_Upgrade = Callable[[Mapping[str, Any], dict[str, Any], str], tuple[Any, str, str]]
"""Brings the user values of a stored snapshot's body to the current versions (given the
envelope, the body and the instance); returns the body, how an error names where it is
(the instance, and a pool's current event) and a note for error messages (``""`` when
nothing was migrated)."""


def _where(instance: str, event_id: object = None) -> str:
    """How a ``StorageError`` names the instance, and the event when there is one."""
    return f"instance {instance}" + ("" if event_id is None else f", event {event_id!r}")


def _holds_event(entry: object) -> bool:
    """Whether a stored ``pending`` entry carries a user event (a queued send or add)."""
    return isinstance(entry, dict) and entry.get("kind") in ("send", "add") and "event" in entry


@attrs.frozen
class _Versions:
    """How one kind of stored user value of a job is versioned (``of``: its state, or a
    WorkerPool's events): the version its code reads and writes, and the migration."""

    of: Literal["state", "event"]
    job: str
    current: int = 1
    migrate: Callable[[Any, int], Any] | None = None

    @property
    def key(self) -> str:
        """``STATE_VERSION_KEY`` or ``EVENT_VERSION_KEY``."""
        return f"{self.of}_version"

    def upgrade(self, data: Any, version: Any, where: str) -> tuple[Any, str]:
        """``data`` (JSON form, as written under ``version``) in the JSON form of
        ``current``, with a note for error messages (``""`` when nothing was migrated).
        ``where`` names the instance (and event) in a ``StorageError``."""
        of, current, name = self.of, self.current, self.job
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise StorageError(
                f"{where}: stored {of} version {version!r} of {name!r} is not an int >= 1"
            )
        if version > current:
            raise StorageError(
                f"{where}: stored {of} version {version} of {name!r} is newer than its "
                f"definition's {of}_version {current} (written by newer code)"
            )
        if version == current or (data is None and of == "state"):  # no state: as it is
            return data, ""
        migrate = self.migrate
        assert migrate is not None  # make refuses a version above 1 without one
        for step in range(version, current):
            try:
                data = migrate(data, step)
            except Exception as error:
                raise StorageError(
                    f"{where}: migrate_{of} of {name!r} failed from {of} version {step} to "
                    f"{step + 1} ({type(error).__name__}: {error})"
                ) from None
        return data, f" (its {of} migrated from version {version} to {current})"


def _decode_snapshot(
    converter: cattrs.Converter,
    text: str,
    type_: Any,
    what: str,
    instance: str,
    upgrade: _Upgrade | None = None,
) -> Any:
    try:
        record = json.loads(text)
    except ValueError as error:
        raise StorageError(f"instance {instance}: stored record is not JSON ({error})") from None
    if not isinstance(record, dict) or "snapshot" not in record:
        raise StorageError(f"instance {instance}: stored record has no snapshot")
    schema = record.get("schema")
    if not isinstance(schema, int) or schema > SCHEMA_VERSION:
        raise StorageError(
            f"instance {instance}: stored schema {schema!r} is newer than this library "
            f"understands ({SCHEMA_VERSION})"
        )
    body, where, note = record["snapshot"], _where(instance), ""
    if upgrade is not None and isinstance(body, dict):
        body, where, note = upgrade(record, body, instance)
    try:
        return converter.structure(body, type_)
    except Exception as error:
        raise StorageError(
            f"{where}: stored snapshot{note} does not fit {what} ({_describe(error)})"
        ) from None


def read_snapshot(
    text: str, job_type: str, *, instance: str = "?", converter: cattrs.Converter = _DEFAULT
) -> Any:
    """A stored snapshot of any job of ``job_type``, its user values (states, events)
    left in their JSON form: for tools that read a store without the job's registry.
    ``StorageError`` when it cannot be read.

    >>> text = '{"schema":1,"snapshot":{"key":{"job_type":"task","job_name":"t","id":"u"},'
    >>> text += '"created_at":0,"state":{"n":1},"scheduled_at":60000}}'
    >>> snapshot = read_snapshot(text, "task")
    >>> snapshot.state, snapshot.scheduled_at
    ({'n': 1}, 60000)
    """
    try:
        kind = kind_named(job_type)
    except LookupError:
        raise StorageError(f"instance {instance}: unknown job type {job_type!r}") from None
    type_ = typed(kind.snapshot, Any, Any)
    return _decode_snapshot(converter, text, type_, f"a {job_type} job", instance)


class Codec:
    """Encodes and decodes the values of one job with its user types restored.

    >>> from durable_jobs import Debounce, Jobs
    >>> from durable_jobs.protocol import DebounceAdd
    >>> job = Jobs(b=Debounce.make(event=int, execute=print, flush_after="1 s"))["b"]
    >>> codec = Codec(job)
    >>> codec.decode_input(codec.encode_input(DebounceAdd(id="u", event=3)))
    DebounceAdd(id='u', event=3, wait=None)
    """

    def __init__(self, definition: Definition, converter: cattrs.Converter = _DEFAULT) -> None:
        self.definition = definition
        self.converter = converter
        name = definition.name
        self._states = _Versions(
            "state",
            name,
            getattr(definition, "state_version", 1),
            getattr(definition, "migrate_state", None),
        )
        self._events = _Versions(
            "event",
            name,
            getattr(definition, "event_version", 1),
            getattr(definition, "migrate_event", None),
        )
        self.state_version: int = self._states.current
        """The state version this job's code reads and writes (a pool's is always 1)."""
        self.event_version: int = self._events.current
        """The event version a WorkerPool's code reads and writes (1 for other jobs: their
        events are never stored)."""
        self.is_pool = definition.job_type == "workerPool"
        self._payloads = self._events if self.is_pool else self._states
        """What a dead letter's payload is: a pool's event, or a job's state."""
        self.kind = kind_of(definition)
        self.state_type: Any = definition.state
        self.event_type: Any = getattr(definition, "event", definition.state)
        self.snapshot_type = typed(self.kind.snapshot, self.state_type, self.event_type)
        self.item_type: Any = QueueItem[self.event_type]  # type: ignore[name-defined]
        """A WorkerPool's pending-event row type (built once: subscripting is not free)."""
        self._payload_types = {
            cls: typed(cls, self.state_type, self.event_type) for cls in cmd.PAYLOAD_CLASSES
        }

    # ----------------------------------------------------------------- snapshots
    def encode_snapshot(self, snapshot: Any) -> str:
        body = self.converter.unstructure(snapshot, self.snapshot_type)
        pending = body.get("pending")
        if pending == []:
            # Left out when empty (it reads back as empty): rows stay readable by the
            # releases before ``pending`` existed, for a rolling deploy.
            del body["pending"]
        elif pending:
            for entry in pending:  # likewise the count added later, while it is 0
                if entry.get("interrupted") == 0:
                    del entry["interrupted"]
        envelope: dict[str, Any] = {"schema": SCHEMA_VERSION, STATE_VERSION_KEY: self.state_version}
        if self.is_pool or self.event_version > 1:  # its current or pending events
            envelope[EVENT_VERSION_KEY] = self.event_version
        envelope["snapshot"] = body
        return _compact(envelope)

    def decode_snapshot(self, text: str, *, instance: str = "?") -> Any:
        return _decode_snapshot(
            self.converter,
            text,
            self.snapshot_type,
            f"{self.definition.name!r}",
            instance,
            self._upgrade_body,
        )

    def _upgrade_body(
        self, record: Mapping[str, Any], body: dict[str, Any], instance: str
    ) -> tuple[Any, str, str]:
        where = _where(instance)
        if self.is_pool:
            current = body.get("current")
            if not isinstance(current, dict) or "event" not in current:
                return body, where, ""  # no event in flight (or a body that will not fit)
            where = _where(instance, current.get("event_id"))
            version = record.get(EVENT_VERSION_KEY, 1)
            event, note = self._events.upgrade(current["event"], version, where)
            return {**body, "current": {**current, "event": event}}, where, note
        note = ""
        pending = body.get("pending")
        if isinstance(pending, list) and any(_holds_event(entry) for entry in pending):
            # Events a Task or Debounce keeps while they wait behind a run.
            version = record.get(EVENT_VERSION_KEY, 1)
            upgraded = []
            for entry in pending:
                if _holds_event(entry):
                    event, note = self._events.upgrade(entry["event"], version, where)
                    entry = {**entry, "event": event}
                upgraded.append(entry)
            body = {**body, "pending": upgraded}
        if "state" not in body:
            return body, where, note
        version = record.get(STATE_VERSION_KEY, 1)
        state, state_note = self._states.upgrade(body["state"], version, where)
        return {**body, "state": state}, where, state_note or note

    # ------------------------------------------------------------ state versions
    def upgrade_state(self, data: Any, version: int, *, instance: str = "?") -> Any:
        """``data``, a state in its JSON form as written under state ``version``, in the
        JSON form of this job's ``state_version``: ``migrate_state`` is applied once per
        version in between (``None``, no state, is never migrated). ``StorageError``
        naming the instance and the versions for a version newer than the code's, or a
        migration that raises.

        >>> from durable_jobs import Jobs, Task
        >>> job = Task.make(state=dict, event=int, on_event=print, execute=print,
        ...                 state_version=3, migrate_state=lambda d, v: {**d, f"v{v + 1}": 1})
        >>> codec = Codec(Jobs(t=job)["t"])
        >>> codec.upgrade_state({"n": 0}, 1)
        {'n': 0, 'v2': 1, 'v3': 1}
        >>> codec.upgrade_state({"n": 0}, 4, instance="task:t:u")
        Traceback (most recent call last):
        ...
        durable_jobs._errors.StorageError: instance task:t:u: stored state version 4 of 't' is newer than its definition's state_version 3 (written by newer code)
        """
        return self._states.upgrade(data, version, _where(instance))[0]

    def upgrade_event(
        self, data: Any, version: int, *, instance: str = "?", event_id: str | None = None
    ) -> Any:
        """``data``, a WorkerPool event in its JSON form as written under event
        ``version``, in the JSON form of this pool's ``event_version``: ``migrate_event``
        is applied once per version in between. ``StorageError`` naming the shard and the
        event for a version newer than the code's, or a migration that raises.

        >>> from durable_jobs import Jobs, WorkerPool
        >>> pool = WorkerPool.make(event=dict, concurrency=1, execute=print, event_version=2,
        ...                        migrate_event=lambda d, v: {"to": d["email"]})
        >>> codec = Codec(Jobs(mail=pool)["mail"])
        >>> codec.upgrade_event({"email": "a@b.c"}, 1)
        {'to': 'a@b.c'}
        >>> codec.upgrade_event({"to": "a@b.c"}, 3, instance="workerPool:mail:0", event_id="e1")
        Traceback (most recent call last):
        ...
        durable_jobs._errors.StorageError: instance workerPool:mail:0, event 'e1': stored event version 3 of 'mail' is newer than its definition's event_version 2 (written by newer code)
        """
        return self._events.upgrade(data, version, _where(instance, event_id))[0]

    # ------------------------------------------------------------- queue rows
    def encode_item(self, item: QueueItem[Any]) -> str:
        """A WorkerPool's pending or delayed event row as stored text (its event version
        recorded above 1).

        >>> from durable_jobs import Instant, Jobs, WorkerPool
        >>> codec = Codec(Jobs(p=WorkerPool.make(event=str, concurrency=1, execute=print))["p"])
        >>> item = QueueItem("e1", "hi", priority=0, seq=0, enqueued_at=Instant(5))
        >>> codec.encode_item(item)
        '{"event_id":"e1","event":"hi","priority":0,"seq":0,"enqueued_at":5,"partition_key":null,"due_at":null}'
        >>> codec.decode_item(codec.encode_item(item)) == item
        True
        """
        data: dict[str, Any] = self.converter.unstructure(item, self.item_type)
        if self.event_version > 1:
            data[EVENT_VERSION_KEY] = self.event_version
        return _compact(data)

    def decode_item(
        self, text: str | bytes, *, instance: str = "?", event_id: str | None = None
    ) -> QueueItem[Any]:
        """The row ``encode_item`` gave, of this or an older event version (upgraded);
        ``StorageError`` naming the shard and the event when it cannot be read."""
        where = _where(instance, event_id)
        note = ""
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise TypeError(f"expected an object, got {type(data).__name__}")
            version = data.pop(EVENT_VERSION_KEY, 1)
            if "event" in data:
                data["event"], note = self._events.upgrade(data["event"], version, where)
            item: QueueItem[Any] = self.converter.structure(data, self.item_type)
        except StorageError:
            raise
        except Exception as error:
            raise StorageError(
                f"{where}: stored queued event{note} cannot be read ({_describe(error)})"
            ) from None
        return item

    # ---------------------------------------------------------------- inputs
    def encode_input(self, value: inp.Input) -> dict[str, Any]:
        data: dict[str, Any] = self.converter.unstructure(value, inp.Input)
        return data

    def decode_input(self, data: dict[str, Any]) -> inp.Input:
        with self._reading("input"):
            value: inp.Input = self.converter.structure(data, inp.Input)  # type: ignore[arg-type]
            return self._typed_input(value)
        raise AssertionError("unreachable")  # pragma: no cover - _reading re-raises

    def _typed_input(self, value: inp.Input) -> inp.Input:
        structure = self.converter.structure
        if isinstance(value, inp.ContinuousStart):
            return attrs.evolve(value, input=structure(value.input, self.state_type))
        if isinstance(value, inp.DebounceAdd | inp.TaskSend | inp.PoolEnqueue):
            return attrs.evolve(value, event=structure(value.event, self.event_type))
        if isinstance(value, inp.PoolEnqueueMany):
            events = tuple(
                attrs.evolve(one, event=structure(one.event, self.event_type))
                for one in value.events
            )
            return attrs.evolve(value, events=events)
        if isinstance(value, inp.UserCodeSucceeded) and value.state_set:
            return attrs.evolve(value, state=structure(value.state, self.state_type))
        return value

    # ---------------------------------------------------------------- telemetry
    def encode_event(self, event: tel.TelemetryEvent) -> dict[str, Any]:
        data: dict[str, Any] = self.converter.unstructure(event, tel.TelemetryEvent)
        if isinstance(event, tel.JobStarted) and self.state_version > 1:
            data[STATE_VERSION_KEY] = self.state_version  # its input is a state
        return data

    def decode_event(self, data: dict[str, Any]) -> tel.TelemetryEvent:
        with self._reading("telemetry event"):
            return self._decode_event(data)
        raise AssertionError("unreachable")  # pragma: no cover - _reading re-raises

    def _decode_event(self, data: dict[str, Any]) -> tel.TelemetryEvent:
        version = data.get(STATE_VERSION_KEY, 1)
        if STATE_VERSION_KEY in data:
            data = {k: v for k, v in data.items() if k != STATE_VERSION_KEY}
        event: tel.TelemetryEvent = self.converter.structure(
            data,
            tel.TelemetryEvent,  # type: ignore[arg-type]
        )
        if isinstance(event, tel.JobStarted):
            state, _ = self._states.upgrade(event.input, version, _where(event.instance_id))
            return attrs.evolve(event, input=self.converter.structure(state, self.state_type))
        return event

    # ---------------------------------------------------------------- dead letters
    def payload_type(self) -> Any:
        # A Task may fail before any handler set a state: its dead letter holds None.
        return Optional[self.state_type]  # noqa: UP045 - a runtime type, not an annotation

    def encode_dead_letter(self, record: res.DeadLetter[Any]) -> dict[str, Any]:
        data: dict[str, Any] = self.converter.unstructure(record, res.DeadLetter[Any])
        data["payload"] = self.converter.unstructure(record.payload, self.payload_type())
        versions = self._payloads
        if versions.current > 1:  # its payload is a state, or a pool's event
            data[versions.key] = versions.current
        return data

    def decode_dead_letter(self, data: dict[str, Any]) -> res.DeadLetter[Any]:
        note = where = ""
        versions = self._payloads
        try:
            version = data.get(versions.key, 1)
            if versions.key in data:
                data = {k: v for k, v in data.items() if k != versions.key}
            record = self.converter.structure(data, res.DeadLetter[Any])
            where = _where(record.instance_id, record.id if self.is_pool else None)
            payload, note = versions.upgrade(data["payload"], version, where)
            payload = self.converter.structure(payload, self.payload_type())
        except StorageError:
            raise
        except Exception as error:
            about = f"{where}: " if where else ""
            raise StorageError(
                f"{about}dead letter of {self.definition.name!r}{note} cannot be read "
                f"({_describe(error)})"
            ) from None
        return attrs.evolve(record, payload=payload)

    # ---------------------------------------------------------------- commands
    def encode_command(self, command: cmd.Command) -> dict[str, Any]:
        data: dict[str, Any] = self.converter.unstructure(command, cmd.Command)
        match command:
            case cmd.Persist():
                data["snapshot"] = self.converter.unstructure(command.snapshot, self.snapshot_type)
            case cmd.Emit():
                data["event"] = self.encode_event(command.event)
            case cmd.RecordDeadLetter():
                data["record"] = self.encode_dead_letter(command.record)
            case cmd.PutQueueItem() | cmd.ReleaseQueueItem():
                data["item"] = self.converter.unstructure(command.item, self.item_type)
            case cmd.RunUserCode():
                payload = command.payload
                body = self.converter.unstructure(payload, self._payload_types[type(payload)])
                data["payload"] = {**body, "tag": TAGS[type(payload)]}
        return data

    def decode_command(self, data: dict[str, Any]) -> cmd.Command:
        with self._reading("command"):
            return self._decode_command(data)
        raise AssertionError("unreachable")  # pragma: no cover - _reading re-raises

    def _decode_command(self, data: dict[str, Any]) -> cmd.Command:
        command: cmd.Command = self.converter.structure(data, cmd.Command)  # type: ignore[arg-type]
        structure = self.converter.structure
        match command:
            case cmd.Persist():
                return cmd.Persist(structure(data["snapshot"], self.snapshot_type))
            case cmd.Emit():
                return cmd.Emit(self.decode_event(data["event"]))
            case cmd.RecordDeadLetter():
                return cmd.RecordDeadLetter(self.decode_dead_letter(data["record"]))
            case cmd.PutQueueItem():
                return cmd.PutQueueItem(structure(data["item"], self.item_type))
            case cmd.ReleaseQueueItem():
                return cmd.ReleaseQueueItem(structure(data["item"], self.item_type))
            case cmd.PutFinished():
                return cmd.PutFinished(structure(data["record"], FinishedEvent))
            case cmd.DeleteFinished():
                return cmd.DeleteFinished(structure(data["records"], tuple[FinishedEvent, ...]))
            case cmd.RunUserCode():
                body = dict(data["payload"])
                cls = _PAYLOAD_TAGS[body.pop("tag")]
                payload = structure(body, self._payload_types[cls])
                return attrs.evolve(command, payload=payload)
        return command

    # ------------------------------------------------------------------- plans
    def encode_plan(self, plan: CommitPlan[Any]) -> dict[str, Any]:
        """A commit plan as JSON-ready data, with every user value typed.

        >>> from durable_jobs import Debounce, Jobs, Instant
        >>> from durable_jobs.protocol import DebounceAdd, decide, plan_of
        >>> job = Jobs(b=Debounce.make(event=int, execute=print, flush_after="1 s"))["b"]
        >>> codec = Codec(job)
        >>> transition = decide(job, None, DebounceAdd("u", 1), Instant(0)).unwrap()
        >>> plan, _, _ = plan_of(InstanceKey("debounce", "b", "u"), None, transition)
        >>> codec.decode_plan(json.loads(json.dumps(codec.encode_plan(plan)))) == plan
        True
        """
        unstructure = self.converter.unstructure
        return {
            "key": unstructure(plan.key),
            "expected_version": plan.expected_version,
            "write": plan.write,
            "snapshot": None
            if plan.snapshot is None
            else unstructure(plan.snapshot, self.snapshot_type),
            "alarm_changed": plan.alarm_changed,
            "alarm_at": plan.alarm_at,
            "starts_run": plan.starts_run,
            "queue": [self.encode_command(change) for change in plan.queue],
            "telemetry": [self.encode_event(event) for event in plan.telemetry],
            "dead_letters": [self.encode_dead_letter(record) for record in plan.dead_letters],
        }

    def decode_plan(self, data: dict[str, Any]) -> CommitPlan[Any]:
        """The plan ``encode_plan`` gave; ``StorageError`` for data that is not one, or
        whose parts disagree (a put without a snapshot, a snapshot of another instance,
        a key of another job)."""
        with self._reading("commit plan"):
            if not isinstance(data, dict) or set(data) != _PLAN_FIELDS:
                raise TypeError(f"expected an object with the fields {sorted(_PLAN_FIELDS)}")
            for field in ("queue", "telemetry", "dead_letters"):
                if not isinstance(data[field], list):
                    raise TypeError(f"{field} must be an array")
            structure = self.converter.structure
            key = structure(data["key"], InstanceKey)
            if (key.job_type, key.job_name) != (self.definition.job_type, self.definition.name):
                raise TypeError(f"the plan is for {key.instance_id}, another job")
            queue = tuple(self.decode_command(change) for change in data["queue"])
            if not all(isinstance(change, _QUEUE_CHANGES) for change in queue):
                raise TypeError("a plan's queue holds only queue-row commands")
            write = data["write"]
            if write not in ("keep", "put", "delete"):
                raise TypeError(f"write must be keep, put or delete, got {write!r}")
            snapshot = (
                None
                if data["snapshot"] is None
                else structure(data["snapshot"], self.snapshot_type)
            )
            if (write == "put") != (snapshot is not None):
                raise TypeError("a put carries a snapshot, and only a put does")
            if snapshot is not None and snapshot.key != key:
                raise TypeError(
                    f"the snapshot is of {snapshot.key.instance_id}, not {key.instance_id}"
                )
            return CommitPlan(
                key=key,
                expected_version=_optional_int(data["expected_version"]),
                write=write,
                snapshot=snapshot,
                alarm_changed=structure(data["alarm_changed"], bool),
                alarm_at=_optional_int(data["alarm_at"]),
                starts_run=structure(data["starts_run"], bool),
                queue=queue,  # type: ignore[arg-type]
                telemetry=tuple(self.decode_event(event) for event in data["telemetry"]),
                dead_letters=tuple(
                    self.decode_dead_letter(record) for record in data["dead_letters"]
                ),
            )
        raise AssertionError("unreachable")  # pragma: no cover - _reading re-raises

    @contextmanager
    def _reading(self, what: str) -> Iterator[None]:
        """Turn a failure to read stored or sent data into ``StorageError``."""
        try:
            yield
        except StorageError:
            raise
        except Exception as error:
            raise StorageError(
                f"{what} of {self.definition.name!r} cannot be read ({_describe(error)})"
            ) from None


_PLAN_FIELDS: Final = frozenset(
    {
        "key",
        "expected_version",
        "write",
        "snapshot",
        "alarm_changed",
        "alarm_at",
        "starts_run",
        "queue",
        "telemetry",
        "dead_letters",
    }
)


def _optional_int(value: Any) -> Any:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise TypeError(f"expected an int or null, got {value!r}")
    return value


_QUEUE_CHANGES: Final = (
    cmd.PutQueueItem,
    cmd.ReleaseQueueItem,
    cmd.DeleteQueueItem,
    cmd.TakeQueueItem,
    cmd.ClearQueue,
    cmd.PutFinished,
    cmd.DeleteFinished,
)
