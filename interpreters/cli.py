"""The ``durable-jobs`` command line: ``demo``, ``worker`` and ``inspect``.

Theory of operation: ``main(argv)`` runs the click group ``cli`` in non-standalone mode,
so it returns an exit status instead of exiting, and turns the library's setup errors
into one line on stderr. Three commands:

* ``demo [--db PATH]`` registers a Continuous, a Debounce, a Task and a WorkerPool job on
  a ``SqliteInterpreter`` with a ``ManualClock`` (a temporary file unless ``--db`` names
  a new one; the virtual clock keeps the demo instant and its output the same on every
  run), drives them through the public client API and narrates what happens, step by
  step: the user code's own view (each hook prints a line), the results of client calls
  and the telemetry committed after each step. At the end it closes the interpreter,
  opens the file again with a new one and reads the state, the dead letters and the
  telemetry back from it, then counts the telemetry in a table.
* ``worker MODULE:JOBS --db PATH`` runs ``worker.serve``: due work of the registry, until
  SIGTERM or SIGINT (serve's handlers stop it; it finishes the steps in flight and the
  command exits 0).
* ``inspect --db PATH [--jobs MODULE:JOBS]`` prints the instances, the queue depth of each
  worker pool shard and the dead letters of a database, read-only.

Decisions:

* Errors. A bad ``MODULE:JOBS``, a missing database or folder, a file that is not a
  durable-jobs database, an invalid setting (``WorkerSetupError``, ``StorageError``,
  ``DefinitionError``, the CLI's own ``CliError``): one line ``error: ...`` on stderr,
  no traceback, exit 2 (the command could not start). Any other ``DurableJobsError``
  reaching the top is one line too, exit 1. Usage mistakes (an unknown command, an
  option value click or ``parse_duration`` rejects) are reported by click: the usage
  and an error, exit 2. Anything else keeps its traceback, since it is a bug or an
  exception raised while importing the user's module, and the traceback is the useful
  part.
* Output. Narration goes through rich's ``Console.out`` (no markup, no highlighting, no
  wrapping) and tables through rich, with no outer edges. On a terminal rich adds colour
  and fits tables to its width; in a file or pipe they are plain text (box drawing, or
  ASCII when the encoding needs it) ``PIPE_WIDTH`` columns wide (``COLUMNS`` overrides),
  with the padding at line ends stripped. ``worker`` reports on stderr: a line when it
  starts and one when it stops; on a terminal a spinner instead of the first line.
* ``worker`` checks before it announces itself: it loads the registry and opens (so
  creates) the database once, so a setup problem is the single error line; then
  ``serve`` loads and opens them again and runs.
* ``inspect`` never writes the database: the file is opened with ``mode=ro`` and a
  missing file is an error, not a new database. (As with any reader of a WAL database,
  SQLite may leave the ``-wal``/``-shm`` companion files next to it; the next writer
  uses and removes them.) Without ``--jobs`` it shows the stored JSON. The status
  words are the client's (``running``; ``debouncing``/``idle``; ``active``/``idle``;
  ``paused``/``processing``/``idle``), read from the stored snapshot's fields, with the
  next attempt number when a retry is pending. With ``--jobs`` each row is also decoded
  through its job's ``Codec``: states and payloads are shown as the user's types, and a
  row that this code cannot read is shown as unreadable, as a worker would find it.
  ``--limit`` bounds each table (newest dead letters first).

The CLI holds no job semantics. The demo's hooks are ordinary user code, and apart from
a few short explanatory notes, everything printed about retries, flushes, schedules,
queues and dead letters is read back from a client result, a telemetry event, a
dead-letter record or a stored row that the core produced.

>>> _status("workerPool", {"paused": False, "current": None, "queued": 3})
'processing'
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager, closing, nullcontext
from datetime import UTC, datetime, timedelta
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Final, TypeVar, assert_never

import attrs
import click
from rich import box
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from durable_jobs import (
    Backoff,
    Continuous,
    ContinuousContext,
    DeadLetter,
    Debounce,
    DebounceContext,
    DebounceEventContext,
    DebounceFlushed,
    DebounceStarted,
    DefinitionError,
    DurableJobsError,
    ErrorInfo,
    Instant,
    JobDeadLettered,
    JobExecuted,
    JobFailed,
    JobRetryExhausted,
    Jobs,
    JobStarted,
    JobTerminated,
    PoolContext,
    PoolDeadLetterContext,
    PoolEmptyContext,
    PoolStatusResult,
    Retry,
    StorageError,
    Task,
    TaskContext,
    TaskScheduled,
    TelemetryEvent,
    WorkerPool,
)
from durable_jobs.interpreters.clock import ManualClock
from durable_jobs.interpreters.sqlite import SCHEMA, SYNCHRONOUS, SqliteInterpreter
from durable_jobs.interpreters.worker import WorkerSetupError, load_jobs, serve
from durable_jobs.protocol import Codec, parse_duration, to_datetime

__all__ = ["CliError", "cli", "main", "run_demo"]

Write = Callable[[str], None]


class CliError(click.ClickException):
    """A command cannot start: printed as one ``error: ...`` line; exit status 2."""

    exit_code = 2

    def show(self, file: Any = None) -> None:
        _error(self.message)


def _error(message: str) -> None:
    click.echo(f"error: {message}", err=True)


PIPE_WIDTH = 160
"""Table width when the output is not a terminal and ``COLUMNS`` is not set."""


def _console(*, stderr: bool = False) -> Console:
    """A rich console that prints text as given: no markup, emoji or highlighting.

    On a terminal, tables fit its width; in a file or a pipe they get ``PIPE_WIDTH``
    columns (rich's default of 80 would wrap most rows), unless ``COLUMNS`` says otherwise.
    """
    console = Console(stderr=stderr, markup=False, emoji=False, highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = PIPE_WIDTH
    return console


def _version() -> str:
    try:
        return version("durable-jobs")
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "unknown"


# ----------------------------------------------------------------------------- commands


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(_version(), prog_name="durable-jobs", message="%(prog)s %(version)s")
def cli() -> None:
    """Durable Continuous, Debounce, Task and WorkerPool jobs on a pure core."""


@cli.command(short_help="Walk through the four job types on a SQLite file.")
@click.option(
    "--db",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Run on this new SQLite file and keep it (default: a temporary file).",
)
def demo(db: Path | None) -> int:
    """Walk through the four job types on a SQLite file, on a virtual clock.

    A Continuous, a Debounce, a Task and a WorkerPool job run on the SQLite interpreter
    with a manual clock (instant and deterministic): a retried run, batch flushes with
    their reason, a scheduled execute and on_idle, dead letters, pool events taken by
    priority, a duplicate enqueue, pause, resume and cancel, on_empty. Then the file is
    opened again by a new interpreter, which reads the state back, and the telemetry
    stored in it is counted.
    """
    console = _console()
    if db is None:
        with tempfile.TemporaryDirectory(prefix="durable-jobs-demo-") as folder:
            return run_demo(Path(folder) / "demo.db", console, keep=False)
    if db.exists():
        raise CliError(f"{str(db)!r} already exists; the demo needs a new file")
    if not db.absolute().parent.is_dir():
        raise CliError(f"the folder of the database {str(db)!r} does not exist")
    return run_demo(db, console, keep=True)


@cli.command(short_help="Run the due work of MODULE:JOBS on a SQLite file.")
@click.argument("target", metavar="MODULE:JOBS")
@click.option(
    "--db",
    required=True,
    type=click.Path(path_type=Path),
    help="The SQLite file (created when missing; its folder must exist).",
)
@click.option(
    "--synchronous",
    type=click.Choice(SYNCHRONOUS, case_sensitive=False),
    default="FULL",
    show_default=True,
    help="SQLite's synchronous setting: FULL survives power loss, NORMAL a process crash.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="How many instances run at once.",
)
@click.option(
    "--lease",
    metavar="DURATION",
    default="30 seconds",
    show_default=True,
    callback=lambda _ctx, _param, value: _duration_option(value),
    help=(
        "How long a run may take before it is treated as interrupted (its worker presumed "
        "dead) and retried; keep it above the longest run."
    ),
)
def worker(target: str, db: Path, synchronous: str, workers: int, lease: str) -> int:
    """Run the due work of the Jobs registry MODULE:JOBS on a SQLite file.

    MODULE is imported as with `python -m` (the current folder is on the path); JOBS is
    the name of its durable_jobs.Jobs registry. The worker runs until SIGTERM or SIGINT
    (Ctrl-C), finishes the steps in flight and exits 0.
    """
    jobs = load_jobs(target)
    if db.is_dir():
        raise CliError(f"{str(db)!r} is a folder, not a database file")
    if not db.absolute().parent.is_dir():
        raise CliError(f"the folder of the database {str(db)!r} does not exist")
    with SqliteInterpreter(jobs, db, synchronous=synchronous, lease=lease):
        pass  # the database opens (or is created) and the options are valid
    console = _console(stderr=True)
    names = ", ".join(jobs)
    announce = (
        f"durable-jobs worker: serving {target} ({names}) on {db} with {workers} worker(s); "
        "SIGTERM or Ctrl-C stops it"
    )
    _configure_logging(console)
    running: AbstractContextManager[object] = nullcontext()
    if console.is_terminal:
        running = console.status(announce)  # a spinner while it serves
    else:
        console.out(announce)
    with running:
        code = serve(target, db, synchronous=synchronous, workers=workers, lease=lease)
    console.out("durable-jobs worker: stopped")
    return code


def _duration_option(value: str) -> str:
    """A ``--lease`` value that ``parse_duration`` reads, or a usage error."""
    try:
        parse_duration(value, what="lease")
    except DefinitionError as error:
        raise click.BadParameter(str(error).removeprefix("lease: ")) from None
    return value


def _configure_logging(console: Console) -> None:
    """Show the library's error log (an unreadable row, a failed step) on stderr."""
    if logging.getLogger().handlers:
        return  # the user's module configured logging itself
    if console.is_terminal:
        handler: logging.Handler = RichHandler(console=console, show_path=False)
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)


@cli.command(short_help="Show instances, pool queues and dead letters.")
@click.option(
    "--db",
    required=True,
    type=click.Path(path_type=Path),
    help="The SQLite file to read (opened read-only).",
)
@click.option(
    "--jobs",
    "target",
    metavar="MODULE:JOBS",
    default=None,
    help="Also decode the rows with this registry's types.",
)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=50,
    show_default=True,
    help="At most this many rows per table.",
)
def inspect(db: Path, target: str | None, limit: int) -> int:
    """Show the instances, pool queue depths and dead letters of a SQLite file.

    The file is opened read-only; a worker may be running on it. Times are UTC.
    """
    jobs = load_jobs(target) if target is not None else None
    with closing(_open_read_only(db)) as connection:
        view = _read(connection, db, limit)
    _show(view, jobs, _console())
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the command line; the exit status."""
    try:
        result = cli.main(args=argv, prog_name="durable-jobs", standalone_mode=False)
    except click.ClickException as error:
        error.show()
        return error.exit_code
    except click.Abort:
        click.echo("Aborted!", err=True)
        return 1
    except (WorkerSetupError, StorageError, DefinitionError) as error:
        _error(str(error))
        return 2
    except DurableJobsError as error:
        _error(str(error))
        return 1
    except BrokenPipeError:  # e.g. `durable-jobs inspect ... | head`
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    return result if isinstance(result, int) else 0


# ------------------------------------------------------------------------------ inspect


@attrs.frozen
class StoredInstance:
    """One row of ``instances``, its snapshot parsed from JSON."""

    instance_id: str
    job_name: str
    job_type: str
    id: str
    snapshot_text: str
    snapshot: dict[str, Any]
    version: int
    alarm_at: int | None
    running: bool
    lease_until: int | None


@attrs.frozen
class Shard:
    """A worker pool shard and how many rows its queue holds."""

    job_name: str
    id: str
    snapshot: dict[str, Any]
    queued_rows: int


@attrs.frozen
class StoredDeadLetter:
    job_name: str
    record: dict[str, Any]


@attrs.frozen
class DatabaseView:
    """What ``inspect`` read, with the full counts next to the limited rows."""

    path: Path
    schema: int
    instances: list[StoredInstance]
    instance_count: int
    shards: list[Shard]
    shard_count: int
    dead_letters: list[StoredDeadLetter]
    dead_letter_count: int
    queued_count: int
    telemetry_count: int


def _open_read_only(path: Path) -> sqlite3.Connection:
    """Open ``path`` read-only; a one-line ``CliError`` if it is not a durable-jobs database."""
    if not path.exists():
        raise CliError(f"no database at {str(path)!r}")
    if path.is_dir():
        raise CliError(f"{str(path)!r} is a folder, not a database file")
    uri = f"{path.resolve().as_uri()}?mode=ro"
    try:
        connection = sqlite3.connect(uri, uri=True)
    except sqlite3.Error as error:
        raise CliError(f"cannot read {str(path)!r}: {error}") from None
    try:
        tables = {
            row[0]
            for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
    except sqlite3.Error as error:
        connection.close()
        raise CliError(f"cannot read {str(path)!r}: {error}") from None
    needed = {"schema_info", "instances", "dead_letters", "telemetry"}
    if not needed <= tables or not tables & {"pool_events", "queue_items"}:
        connection.close()
        raise CliError(f"{str(path)!r} is not a durable-jobs database")
    return connection


_QUEUED_PER_SHARD: Final = (
    "SELECT i.job_name, i.user_id, i.snapshot, (SELECT COUNT(*) FROM pool_events q "
    "WHERE q.instance_id = i.instance_id AND q.state = 0) "
    "FROM instances i WHERE i.job_type = 'workerPool' "
    "ORDER BY i.job_name, length(i.user_id), i.user_id LIMIT ?"
)
_QUEUED_PER_SHARD_V1: Final = (
    "SELECT i.job_name, i.user_id, i.snapshot, "
    "(SELECT COUNT(*) FROM queue_items q WHERE q.instance_id = i.instance_id) "
    "FROM instances i WHERE i.job_type = 'workerPool' "
    "ORDER BY i.job_name, length(i.user_id), i.user_id LIMIT ?"
)


def _read(connection: sqlite3.Connection, path: Path, limit: int) -> DatabaseView:
    try:
        return _query(connection, path, limit)
    except sqlite3.Error as error:
        raise CliError(f"cannot read {str(path)!r}: {error}") from None


def _query(db: sqlite3.Connection, path: Path, limit: int) -> DatabaseView:
    def count(sql: str) -> int:
        return int(db.execute(sql).fetchone()[0])

    row = db.execute("SELECT value FROM schema_info WHERE name = 'schema'").fetchone()
    schema = int(row[0]) if row else 0
    if schema > SCHEMA:
        raise CliError(
            f"{str(path)!r} has schema {schema}, newer than this library understands ({SCHEMA})"
        )
    # Schema 3 keeps pending events in pool_events (state 0); inspect reads older files as
    # they are (it never writes, so it never migrates).
    legacy = schema < 3
    per_shard = _QUEUED_PER_SHARD_V1 if legacy else _QUEUED_PER_SHARD
    instances = [
        StoredInstance(
            instance_id=instance_id,
            job_name=job_name,
            job_type=job_type,
            id=user_id,
            snapshot_text=text,
            snapshot=_snapshot_fields(text),
            version=int(version_),
            alarm_at=alarm_at,
            running=bool(running),
            lease_until=lease_until,
        )
        for instance_id, job_name, job_type, user_id, text, version_, alarm_at, running, lease_until in db.execute(
            "SELECT instance_id, job_name, job_type, user_id, snapshot, version, alarm_at, "
            "running, lease_until FROM instances ORDER BY job_name, length(user_id), user_id "
            "LIMIT ?",
            (limit,),
        )
    ]
    shards = [
        Shard(job_name, user_id, _snapshot_fields(text), int(queued))
        for job_name, user_id, text, queued in db.execute(per_shard, (limit,))
    ]
    dead = [
        StoredDeadLetter(job_name, _json_object(text))
        for job_name, text in reversed(
            db.execute(
                "SELECT job_name, record FROM dead_letters ORDER BY id DESC LIMIT ?", (limit,)
            ).fetchall()
        )
    ]
    return DatabaseView(
        path=path,
        schema=schema,
        instances=instances,
        instance_count=count("SELECT COUNT(*) FROM instances"),
        shards=shards,
        shard_count=count("SELECT COUNT(*) FROM instances WHERE job_type = 'workerPool'"),
        dead_letters=dead,
        dead_letter_count=count("SELECT COUNT(*) FROM dead_letters"),
        queued_count=count(
            "SELECT COUNT(*) FROM queue_items"
            if legacy
            else "SELECT COUNT(*) FROM pool_events WHERE state = 0"
        ),
        telemetry_count=count("SELECT COUNT(*) FROM telemetry"),
    )


def _json_object(text: str) -> dict[str, Any]:
    """A stored JSON object; ``{}`` when the text is not one (shown as ``?``)."""
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _snapshot_fields(text: str) -> dict[str, Any]:
    snapshot = _json_object(text).get("snapshot")
    return snapshot if isinstance(snapshot, dict) else {}


def _status(job_type: str, snapshot: dict[str, Any]) -> str:
    """The client's status word for a stored snapshot, plus a pending retry's attempt.

    >>> _status("debounce", {"event_count": 2, "attempts": {"attempt": 2, "retry_at": 5}})
    'debouncing, 2 event(s), attempt 2 due'
    >>> _status("task", {"scheduled_at": None})
    'idle'
    """
    if not snapshot:
        return "?"
    match job_type:
        case "continuous":
            word = "running"
        case "debounce":
            events = snapshot.get("event_count") or 0
            word = f"debouncing, {events} event(s)" if events else "idle"
        case "task":
            word = "active" if snapshot.get("scheduled_at") is not None else "idle"
        case "workerPool":
            busy = snapshot.get("current") is not None or (snapshot.get("queued") or 0) > 0
            word = "paused" if snapshot.get("paused") else "processing" if busy else "idle"
        case _:
            word = "?"
    attempts = snapshot.get("attempts")
    if isinstance(attempts, dict) and attempts.get("retry_at") is not None:
        word += f", attempt {attempts.get('attempt')} due"
    return word


def _when(millis: int | None) -> str:
    """An epoch-milliseconds instant as ``YYYY-MM-DD HH:MM:SS`` (UTC); ``-`` for none."""
    if millis is None:
        return "-"
    return to_datetime(Instant(millis)).strftime("%Y-%m-%d %H:%M:%S")


def _iso_time(value: object) -> str:
    """A stored ISO time as ``YYYY-MM-DD HH:MM:SS`` in UTC; other values as they are."""
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _lease(instance: StoredInstance, now: int) -> str:
    if not instance.running:
        return "-"
    if instance.lease_until is None:  # pragma: no cover - a running row always has a lease
        return "running"
    expired = " (expired)" if instance.lease_until <= now else ""
    return f"running, lease until {_when(instance.lease_until)}{expired}"


def _short(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _table(*columns: str, right: tuple[str, ...] = (), wrap: tuple[str, ...] = ()) -> Table:
    """A rich table without outer edges: plain aligned text when not on a terminal.

    Only the ``wrap`` columns (free text) wrap when the table is too wide; the others
    (names, ids, times, counts) stay on one line and are cut with an ellipsis.
    """
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for name in columns:
        table.add_column(
            name,
            justify="right" if name in right else "left",
            no_wrap=name not in wrap,
            overflow="fold" if name in wrap else "ellipsis",
        )
    return table


def _section(console: Console, title: str, table: Table, shown: int, total: int) -> None:
    """A title with the row count, then the table (or ``none``)."""
    console.out("")
    if not total:
        console.out(f"{title}: none")
        return
    limited = "" if shown >= total else f", showing {shown} (--limit)"
    console.out(f"{title} ({total}{limited})")
    _print_table(console, table)


def _print_table(console: Console, table: Table) -> None:
    """Print ``table``; outside a terminal, without the padding at the ends of lines."""
    if console.is_terminal:
        console.print(table)
        return
    with console.capture() as captured:
        console.print(table)
    for line in captured.get().splitlines():
        console.out(line.rstrip())


def _show(view: DatabaseView, jobs: Jobs | None, console: Console) -> None:
    """Print ``view`` as three tables; with ``jobs``, decode rows with its codecs."""
    codecs = {name: Codec(definition) for name, definition in jobs.items()} if jobs else {}
    console.out(
        f"{view.path}: schema {view.schema}, {view.instance_count} instance(s), "
        f"{view.queued_count} queued event(s), {view.dead_letter_count} dead letter(s), "
        f"{view.telemetry_count} telemetry event(s). Times are UTC."
    )

    columns = ["type", "job", "id", "status", "next alarm", "version", "running / lease"]
    if jobs is not None:
        columns.append("state (decoded)")
    table = _table(*columns, right=("version",), wrap=("running / lease", "state (decoded)"))
    now = time.time_ns() // 1_000_000
    for instance in view.instances:
        row = [
            instance.job_type,
            instance.job_name,
            instance.id,
            _status(instance.job_type, instance.snapshot),
            _when(instance.alarm_at),
            str(instance.version),
            _lease(instance, now),
        ]
        if jobs is not None:
            row.append(_decoded_state(instance, codecs))
        table.add_row(*row)
    _section(console, "Instances", table, len(view.instances), view.instance_count)

    table = _table(
        "pool",
        "shard",
        "status",
        "queued",
        "current",
        "processed",
        "dead-lettered",
        right=("queued", "processed", "dead-lettered"),
    )
    for shard in view.shards:
        current = shard.snapshot.get("current")
        table.add_row(
            shard.job_name,
            shard.id,
            _status("workerPool", shard.snapshot),
            str(shard.queued_rows),
            str(current.get("event_id", "?")) if isinstance(current, dict) else "-",
            str(shard.snapshot.get("processed_count", "?")),
            str(shard.snapshot.get("dead_lettered_count", "?")),
        )
    _section(console, "Worker pool shards", table, len(view.shards), view.shard_count)

    table = _table(
        "job",
        "id",
        "error",
        "attempts",
        "failed at",
        "payload",
        right=("attempts",),
        wrap=("error", "payload"),
    )
    for letter in view.dead_letters:
        record = letter.record
        error = record.get("error")
        error = error if isinstance(error, dict) else {}
        failed_at = _iso_time(record.get("failed_at"))
        table.add_row(
            letter.job_name,
            str(record.get("id", "?")),
            f"{error.get('type', '?')}: {error.get('message', '?')}",
            str(record.get("attempts", "?")),
            failed_at,
            _payload(letter, codecs, decode=jobs is not None),
        )
    title = (
        "Dead letters"
        if len(view.dead_letters) >= view.dead_letter_count
        else "Dead letters, newest"
    )
    _section(console, title, table, len(view.dead_letters), view.dead_letter_count)


def _decoded_state(instance: StoredInstance, codecs: dict[str, Codec]) -> str:
    codec = codecs.get(instance.job_name)
    if codec is None or codec.definition.job_type != instance.job_type:
        return f"(no {instance.job_type} job {instance.job_name!r} in the registry)"
    try:
        snapshot = codec.decode_snapshot(instance.snapshot_text, instance=instance.instance_id)
    except StorageError as error:
        return _short(f"unreadable: {error}")
    if instance.job_type == "workerPool":
        return "-"  # a shard has no state; its events are in the queue
    return _short(repr(snapshot.state))


def _payload(letter: StoredDeadLetter, codecs: dict[str, Codec], *, decode: bool) -> str:
    if not decode:
        return _short(json.dumps(letter.record.get("payload"), separators=(",", ":")), 40)
    codec = codecs.get(letter.job_name)
    if codec is None:
        return f"(no job {letter.job_name!r} in the registry)"
    try:
        return _short(repr(codec.decode_dead_letter(letter.record).payload))
    except StorageError as error:
        return _short(f"unreadable: {error}")


# ---------------------------------------------------------------------- demo narration

R = TypeVar("R")
STAMP = " " * len("[00:00:00] ")


def _clock(value: datetime) -> str:
    """``HH:MM:SS`` of the virtual clock, with milliseconds when there are any."""
    text = value.strftime("%H:%M:%S")
    millis = value.microsecond // 1000
    return f"{text}.{millis:03d}" if millis else text


def _at(value: datetime | None) -> str:
    return "-" if value is None else _clock(value)


def _describe(event: TelemetryEvent) -> str:
    """One readable line for a telemetry event."""
    who = f"{event.job_name}/{event.id}"
    match event:
        case JobStarted():
            return f"{event.type} {who}, input={event.input!r}"
        case JobExecuted():
            counted = event.hook == "execute" and event.job_type != "workerPool"
            run = f"run {event.run_count}, " if counted and event.run_count else ""
            return f"{event.type} {who}: {event.hook} succeeded ({run}attempt {event.attempt})"
        case JobFailed():
            then = (
                f"retry as attempt {event.next_attempt} at {_clock(to_datetime(event.retry_at))}"
                if event.will_retry and event.retry_at is not None
                else "no retry left"
            )
            return (
                f"{event.type} {who}: {event.hook} attempt {event.attempt} failed "
                f"({event.error.type}: {event.error.message}); {then}"
            )
        case JobRetryExhausted():
            return f"{event.type} {who}: gave up after {event.attempts} attempt(s), reason {event.reason}"
        case JobDeadLettered():
            return f"{event.type} {who}: payload kept after {event.attempts} attempt(s)"
        case JobTerminated():
            return f"{event.type} {who}, reason={event.reason!r}"
        case DebounceStarted():
            return f"{event.type} {who}: new batch, flush at {_clock(to_datetime(event.flush_at))}"
        case DebounceFlushed():
            return (
                f"{event.type} {who}: {event.event_count} event(s), reason {event.reason}, "
                f"batch age {event.duration_ms / 1000:g} s"
            )
        case TaskScheduled():
            return (
                f"{event.type} {who}: execute at {_clock(to_datetime(event.scheduled_at))} "
                f"(set by {event.trigger})"
            )
        case _:  # pragma: no cover - the union is closed
            assert_never(event)


class Narrator:
    """Prints lines stamped with the virtual clock, and the telemetry not yet shown."""

    def __init__(self, write: Write) -> None:
        self.write = write
        self._sim: SqliteInterpreter | None = None
        self._shown = 0

    @property
    def sim(self) -> SqliteInterpreter:
        if self._sim is None:  # pragma: no cover - run_demo watches before narrating
            raise RuntimeError("Narrator.watch(sim) was not called")
        return self._sim

    def watch(self, sim: SqliteInterpreter) -> None:
        """Narrate ``sim``: stamp lines with its clock and show its telemetry."""
        self._sim = sim
        self._shown = len(sim.telemetry)

    def heading(self, text: str) -> None:
        self.write("")
        self.write(text)
        self.write("=" * len(text))

    def say(self, text: str) -> None:
        """A line stamped with the virtual clock."""
        self.write(f"[{_clock(self.sim.now())}] {text}")

    def user(self, text: str) -> None:
        """A line printed by the demo's user code."""
        self.say(f"  user code | {text}")

    def note(self, text: str) -> None:
        self.write(f"{STAMP}{text}")

    def telemetry(self) -> None:
        """Print the telemetry events committed since the last call."""
        for event in self.sim.telemetry[self._shown :]:
            self.note(f"  telemetry | {_describe(event)}")
        self._shown = len(self.sim.telemetry)

    def call(self, what: str, action: Callable[[], R], summary: Callable[[R], str]) -> R:
        """Make one client call: announce it, run it, show its telemetry and result."""
        self.say(f"client.{what}")
        result = action()
        self.telemetry()
        self.note(f"  -> {summary(result)}")
        return result

    def advance(self, total: str, step: str, report: Callable[[], str]) -> None:
        """Move the virtual clock by ``total`` in ``step``s, reporting after each step."""
        end = self.sim.now() + _duration(total)
        self.say(f"advancing the virtual clock by {total}, {step} at a time")
        while self.sim.now() < end:
            self.sim.advance(min(_duration(step), end - self.sim.now()))
            self.telemetry()
            self.say(f"+{step}: {report()}")


def _duration(text: str) -> timedelta:
    return timedelta(milliseconds=parse_duration(text))


# ------------------------------------------------------------------------ demo jobs


@attrs.frozen
class Reading:
    """The Continuous job's state: how many samples were taken."""

    samples: int


@attrs.frozen
class Batch:
    """The Debounce job's state: the events of one batch, in order."""

    events: tuple[str, ...] = ()


@attrs.frozen
class Order:
    """The Task job's state."""

    status: str
    reminders: int = 0


@attrs.frozen
class Mail:
    """The WorkerPool's event: one e-mail to send."""

    to: str
    subject: str


def _pool_report(status: PoolStatusResult) -> str:
    """One line per pool: each shard's status and counts."""
    return "; ".join(
        f"shard {shard.instance_index} {shard.status}, pending={shard.pending_count}, "
        f"processed={shard.processed_count}, dead={shard.dead_lettered_count}"
        + (f", current={shard.current_event_id}" if shard.current_event_id else "")
        for shard in status.instances
    )


MAX_REMINDERS = 2


def run_demo(path: Path, console: Console, *, keep: bool) -> int:
    """Run the demo on the new SQLite file ``path``, printing to ``console``; exit status 0.

    ``keep`` says the file outlives the demo (``--db``): its name is printed then.
    """

    def write(text: str) -> None:
        console.out(text)

    narrator = Narrator(write)
    user = narrator.user

    # Continuous: the second run's first attempt fails once, then its retry succeeds.
    def sample(ctx: ContinuousContext[Reading]) -> None:
        where = f"execute run {ctx.run_count}, attempt {ctx.attempt}"
        if ctx.run_count == 2 and ctx.attempt == 1:
            user(f"{where}: the sensor does not answer, raising TimeoutError")
            raise TimeoutError("sensor did not answer")
        ctx.update_state(lambda reading: Reading(reading.samples + 1))
        user(f"{where}: sample taken, samples={ctx.state.samples}")

    sampler = Continuous.make(
        state=Reading,
        schedule=Continuous.every("10 minutes"),
        execute=sample,
        retry=Retry(max_attempts=3, backoff=Backoff.constant("1 minute")),
    )

    # Debounce: events fold into a Batch; a batch holding "poison" can never be delivered.
    def fold(ctx: DebounceEventContext[str, Batch]) -> Batch:
        before = ctx.state if ctx.state is not None else Batch()
        return Batch((*before.events, ctx.event))

    def deliver(ctx: DebounceContext[Batch]) -> None:
        where = f"execute (flush_reason={ctx.flush_reason}, attempt {ctx.attempt})"
        if "poison" in ctx.state.events:
            user(f"{where}: cannot deliver {list(ctx.state.events)}, raising ValueError")
            raise ValueError("downstream rejected the batch")
        user(f"{where}: delivered {list(ctx.state.events)}")

    batcher = Debounce.make(
        event=str,
        state=Batch,
        on_event=fold,
        execute=deliver,
        flush_after="1 minute",
        max_events=3,
        retry=Retry(max_attempts=2, backoff=Backoff.constant("30 seconds"), jitter=False),
    )

    # Task: an order that sends reminders until it is paid (at most MAX_REMINDERS).
    def on_order_event(ctx: TaskContext[Order, str]) -> None:
        if ctx.event == "placed":
            ctx.set_state(Order("placed"))
            ctx.schedule("1 hour")
            user("on_event 'placed': state set, execute scheduled in 1 hour")
        elif ctx.event == "paid" and ctx.state is not None:
            ctx.set_state(attrs.evolve(ctx.state, status="paid"))
            ctx.cancel_schedule()
            user("on_event 'paid': state set, schedule cancelled")

    def remind(ctx: TaskContext[Order, str]) -> None:
        if ctx.state is None:
            return
        ctx.update_state(lambda order: attrs.evolve(order, reminders=order.reminders + 1))
        sent = ctx.state.reminders
        if sent < MAX_REMINDERS:
            ctx.schedule("1 hour")
            user(f"execute #{ctx.execute_count}: reminder {sent} sent, next one in 1 hour")
        else:
            user(f"execute #{ctx.execute_count}: reminder {sent} sent, that was the last")

    def idle(ctx: TaskContext[Order, str]) -> None:
        user(f"on_idle (after {ctx.idle_reason}): nothing scheduled, state={ctx.state}")

    orders = Task.make(
        state=Order, event=str, on_event=on_order_event, execute=remind, on_idle=idle
    )

    # WorkerPool: mail to an address ending in ".invalid" can never be delivered.
    def send_mail(ctx: PoolContext[Mail]) -> None:
        where = (
            f"execute {ctx.event_id} on shard {ctx.instance_index} "
            f"(priority {ctx.priority}, attempt {ctx.attempt})"
        )
        if ctx.event.to.endswith(".invalid"):
            user(f"{where}: no route to {ctx.event.to}, raising ConnectionError")
            raise ConnectionError(f"no route to {ctx.event.to}")
        user(f"{where}: sent {ctx.event.subject!r} to {ctx.event.to}")

    def mail_dead_lettered(event: Mail, error: ErrorInfo, ctx: PoolDeadLetterContext[Mail]) -> None:
        user(
            f"on_dead_letter {ctx.event_id} after {ctx.attempts} attempt(s) "
            f"({error.type}: {error.message}): telling the sender about {event.subject!r}"
        )

    def mail_empty(ctx: PoolEmptyContext) -> None:
        user(
            f"on_empty: shard {ctx.instance_index} has no work left, processed={ctx.processed_count}"
        )

    mailer = WorkerPool.make(
        event=Mail,
        concurrency=2,
        execute=send_mail,
        retry=Retry(max_attempts=2, backoff=Backoff.constant("1 minute"), jitter=False),
        on_dead_letter=mail_dead_lettered,
        on_empty=mail_empty,
    )

    jobs = Jobs(sampler=sampler, batcher=batcher, orders=orders, mailer=mailer)
    sim = SqliteInterpreter(jobs, path, clock=ManualClock())
    narrator.watch(sim)
    client = sim.client()
    where = str(path) if keep else "a temporary file"
    write(
        "durable-jobs demo: Continuous, Debounce, Task and WorkerPool jobs on the SQLite "
        f"interpreter, in {where}."
    )
    write(
        f"The virtual clock starts at {sim.now():%Y-%m-%d %H:%M} UTC and moves only when "
        "the demo advances it, so nothing waits for real time."
    )

    # ------------------------------------------------------------------ Continuous
    narrator.heading("1. Continuous job 'sampler': every 10 minutes, at most 3 attempts per run")
    sampling = client.continuous(sampler)
    narrator.call(
        "continuous('sampler').start(id='sensor-1', input=Reading(samples=0))",
        lambda: sampling.start(id="sensor-1", input=Reading(0)),
        lambda r: f"created={r.created}, status={r.status}",
    )

    def sampler_status() -> str:
        status = sampling.status("sensor-1")
        return (
            f"run_count={status.run_count}, next attempt={status.attempt}, "
            f"next run at {_at(status.next_run_at)}, state={sampling.get_state('sensor-1')}"
        )

    narrator.advance("30 minutes", "5 minutes", sampler_status)
    narrator.call(
        "continuous('sampler').terminate('sensor-1', reason='demo over')",
        lambda: sampling.terminate("sensor-1", reason="demo over"),
        lambda r: f"terminated={r.terminated}",
    )

    # -------------------------------------------------------------------- Debounce
    narrator.heading("2. Debounce job 'batcher': flush 1 minute after the first event, or at 3")
    batching = client.debounce(batcher)

    def add(id_: str, event: str, aside: str = "") -> None:
        narrator.call(
            f"debounce('batcher').add(id={id_!r}, event={event!r}){aside}",
            lambda: batching.add(id=id_, event=event),
            lambda r: (
                f"event_count={r.event_count}, will_flush_at={_at(r.will_flush_at)}, "
                f"retry_scheduled={r.retry_scheduled}"
            ),
        )

    for event in ("a1", "a2", "a3"):
        add("inbox-a", event)
    narrator.note(
        "  note: the third event reached max_events=3, so add() flushed the batch at once"
    )
    for event in ("b1", "b2"):
        add("inbox-b", event)

    def inbox(id_: str) -> Callable[[], str]:
        def report() -> str:
            status = batching.status(id_)
            if status.status == "not_found":
                return f"{id_} has no pending batch"
            return (
                f"{id_} is {status.status}, {status.event_count} event(s), "
                f"flush at {_at(status.will_flush_at)}"
            )

        return report

    narrator.advance("1 minute", "20 seconds", inbox("inbox-b"))
    add("inbox-c", "c1")
    narrator.call(
        "debounce('batcher').flush('inbox-c')",
        lambda: batching.flush("inbox-c"),
        lambda r: f"flushed={r.flushed}, reason={r.reason}",
    )

    # ----------------------------------------------------------------- dead letter
    narrator.heading("3. A batch that keeps failing ends in the dead-letter store")
    add("inbox-d", "poison")
    narrator.call(
        "debounce('batcher').flush('inbox-d')",
        lambda: batching.flush("inbox-d"),
        lambda r: f"flushed={r.flushed}, retry_scheduled={r.retry_scheduled}",
    )
    add("inbox-d", "d2", "   (during the retry backoff)")
    narrator.note(
        "  note: during a backoff an add only joins the batch; the pending retry will see it"
    )
    narrator.advance("1 minute", "30 seconds", inbox("inbox-d"))
    for letter in batching.dead_letters():
        narrator.say(
            f"dead letter: {letter.job_name}/{letter.id}, payload={letter.payload}, "
            f"attempts={letter.attempts}, error={letter.error.type}: {letter.error.message}"
        )

    # ------------------------------------------------------------------------ Task
    narrator.heading("4. Task job 'orders': events schedule execute; on_idle when nothing is due")
    ordering = client.task(orders)

    def order_status() -> str:
        status = ordering.status("order-7")
        return (
            f"status={status.status}, execute at {_at(status.scheduled_at)}, "
            f"execute_count={status.execute_count}, state={ordering.get_state('order-7')}"
        )

    narrator.call(
        "task('orders').send(id='order-7', event='placed')",
        lambda: ordering.send(id="order-7", event="placed"),
        lambda r: f"created={r.created}, scheduled_at={_at(r.scheduled_at)}",
    )
    narrator.advance("2 hours", "30 minutes", order_status)
    narrator.call(
        "task('orders').send(id='order-7', event='paid')",
        lambda: ordering.send(id="order-7", event="paid"),
        lambda r: f"created={r.created}, scheduled_at={_at(r.scheduled_at)}",
    )
    narrator.say(f"status: {order_status()}")

    # ------------------------------------------------------------------ WorkerPool
    narrator.heading(
        "5. WorkerPool 'mailer': 2 shards, one event at a time each, at most 2 attempts"
    )
    mailing = client.worker_pool(mailer)
    narrator.call(
        "worker_pool('mailer').pause()",
        mailing.pause,
        lambda r: f"paused={r.paused}",
    )
    narrator.note(
        "  note: paused before any event, so both shards are created paused and the "
        "events below wait"
    )

    def enqueue(
        id_: str, mail: Mail, partition_key: str | None = None, priority: int = 0, aside: str = ""
    ) -> None:
        options = "" if partition_key is None else f", partition_key={partition_key!r}"
        options += f", priority={priority}" if priority else ""
        narrator.call(
            f"worker_pool('mailer').enqueue(id={id_!r}, event=Mail({mail.to!r}, {mail.subject!r})"
            f"{options}){aside}",
            lambda: mailing.enqueue(
                id=id_, event=mail, partition_key=partition_key, priority=priority
            ),
            lambda r: (
                f"shard {r.instance_index}, position={r.position}, created={r.created}, "
                f"duplicate={r.duplicate}"
            ),
        )

    welcome = Mail("ada@acme.test", "Welcome")
    enqueue("welcome-1", welcome, partition_key="acme")
    enqueue("report-1", Mail("ada@acme.test", "Weekly report"), partition_key="acme")
    enqueue("invoice-1", Mail("ada@acme.test", "Invoice"), partition_key="acme", priority=10)
    enqueue("welcome-1", welcome, partition_key="acme", aside="   (sent again)")
    narrator.note(
        "  note: the same event id is answered duplicate=True and nothing is written; "
        "invoice-1 (priority 10) now runs first"
    )
    enqueue("promo-1", Mail("bob@nowhere.invalid", "Spring promo"), aside="   (routed by its id)")
    narrator.call(
        "worker_pool('mailer').cancel('report-1')",
        lambda: mailing.cancel("report-1"),
        lambda r: f"cancelled={r.cancelled}, reason={r.reason}",
    )
    narrator.say(f"status: {_pool_report(mailing.status())}")
    narrator.call(
        "worker_pool('mailer').resume()",
        mailing.resume,
        lambda r: f"resumed={r.resumed}",
    )
    narrator.advance("30 seconds", "15 seconds", lambda: _pool_report(mailing.status()))
    narrator.call(
        "worker_pool('mailer').cancel('promo-1')",
        lambda: mailing.cancel("promo-1"),
        lambda r: f"cancelled={r.cancelled}, reason={r.reason}",
    )
    narrator.note("  note: a failed event keeps its place at the head of its shard until its retry")
    narrator.advance("30 seconds", "15 seconds", lambda: _pool_report(mailing.status()))
    for kept in mailing.dead_letters():
        narrator.say(
            f"dead letter: {kept.job_name}/{kept.id}, payload={kept.payload}, "
            f"attempts={kept.attempts}, error={kept.error.type}: {kept.error.message}"
        )
    narrator.note("  note: a dead-lettered event counts in dead_lettered_count, not as processed")
    narrator.call(
        "worker_pool('mailer').cancel('invoice-1')",
        lambda: mailing.cancel("invoice-1"),
        lambda r: f"cancelled={r.cancelled}, reason={r.reason}",
    )
    pool = mailing.status()
    narrator.say(
        f"pool status: total_processed={pool.total_processed}, "
        f"total_dead_lettered={pool.total_dead_lettered}, total_pending={pool.total_pending}, "
        f"active_instances={pool.active_instances}, paused_instances={pool.paused_instances}"
    )

    # ------------------------------------------------------------------- the file
    narrator.heading("6. The state is in the file: a new interpreter opens it again")
    end = sim.now()
    sim.close()
    narrator.note(f"the interpreter is closed; a new SqliteInterpreter opens {where}")
    again = SqliteInterpreter(jobs, path, clock=ManualClock(end))
    narrator.watch(again)
    reopened = again.client()
    narrator.say(
        f"task('orders').get_state('order-7') -> {reopened.task(orders).get_state('order-7')}"
    )
    pool = reopened.worker_pool(mailer).status()
    narrator.say(f"worker_pool('mailer').status() -> {_pool_report(pool)}")
    dead: list[DeadLetter[Any]] = [
        *reopened.continuous(sampler).dead_letters(),
        *reopened.debounce(batcher).dead_letters(),
        *reopened.task(orders).dead_letters(),
        *reopened.worker_pool(mailer).dead_letters(),
    ]
    for record in dead:
        narrator.say(
            f"dead letter read back: {record.job_name}/{record.id}, payload={record.payload}, "
            f"error={record.error.type}"
        )
    stored = _stored_instances(path)
    narrator.say(
        f"the instances table holds {len(stored)} row(s): "
        + ", ".join(f"{job_type} {name}/{id_}" for job_type, name, id_ in stored)
    )
    telemetry = again.telemetry
    again.close()

    # --------------------------------------------------------------------- summary
    narrator.heading("Summary")
    counts = Counter(event.type for event in telemetry)
    write(f"{len(telemetry)} telemetry events in the file, by type:")
    table = _table("event type", "count", right=("count",))
    for name, count in sorted(counts.items()):
        table.add_row(name, str(count))
    _print_table(console, table)
    write(
        f"pool 'mailer': {pool.total_processed} event(s) processed, "
        f"{pool.total_dead_lettered} dead-lettered, {pool.total_pending} pending."
    )
    write(f"{len(dead)} dead letter(s); {len(stored)} instance(s) still stored.")
    if keep:
        write(f"The file stays: durable-jobs inspect --db {path}")
    return 0


def _stored_instances(path: Path) -> list[tuple[str, str, str]]:
    """``(job type, job name, id)`` of every row of ``path``'s instances table."""
    with closing(_open_read_only(path)) as db:
        rows = db.execute(
            "SELECT job_type, job_name, user_id FROM instances ORDER BY job_name, user_id"
        ).fetchall()
    return [(str(a), str(b), str(c)) for a, b, c in rows]


if __name__ == "__main__":
    raise SystemExit(main())
