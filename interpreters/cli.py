"""The ``durable-jobs`` command line: ``demo``, ``worker`` and ``inspect``.

Theory of operation: ``main(argv)`` runs the click group ``cli`` in non-standalone mode,
so it returns an exit status instead of exiting, and turns the library's setup errors
into one line on stderr. The commands are thin: the demo scenario is ``demo.run_demo``,
the worker is ``worker.serve``, and ``inspect`` reads a file with
``sqlite.schema.read_database`` and prints it with ``inspection.show``.

* ``demo [--db PATH]``: the four job types on a SQLite file with a virtual clock (a
  temporary file unless ``--db`` names a new one), narrated step by step.
* ``worker MODULE:JOBS --db PATH``: due work of the registry, until SIGTERM or SIGINT
  (the steps in flight finish; exit 0).
* ``inspect --db PATH [--jobs MODULE:JOBS]``: the instances, the queue depth of each
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
* ``worker`` reports on stderr: a line when it starts and one when it stops; on a
  terminal a spinner instead of the first line. It checks before it announces itself:
  it loads the registry and opens (so creates) the database once, so a setup problem is
  the single error line; then ``serve`` loads and opens them again and runs.
* ``worker`` refuses a SQLite file that holds another program's tables (it would add
  its own and switch the file to WAL), as ``inspect`` does, unless ``--add-schema``
  asks for it; a missing or empty file is created as before.
* Nothing from a database reaches the terminal raw: ``inspect``'s tables, the error
  line and the worker's log messages (which name instances) go through
  ``_output.printable``, so an id holding ``ESC[2J`` is shown escaped, not obeyed.
* Trust: ``MODULE:JOBS`` is imported and run as code (like ``python -m``); the database
  file is trusted for integrity (a damaged row is reported, never run as code) but not
  for what it shows on a terminal.
* ``inspect`` never writes the database: the file is opened with ``mode=ro`` and a
  missing file is an error, not a new database. (As with any reader of a WAL database,
  SQLite may leave the ``-wal``/``-shm`` companion files next to it; the next writer
  uses and removes them.) ``--limit`` bounds each table (newest dead letters first).
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from contextlib import AbstractContextManager, closing, nullcontext
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.logging import RichHandler

from durable_jobs import DefinitionError, DurableJobsError, StorageError
from durable_jobs.interpreters import _output as output
from durable_jobs.interpreters.demo import run_demo
from durable_jobs.interpreters.inspection import show
from durable_jobs.interpreters.sqlite import SYNCHRONOUS, SqliteInterpreter
from durable_jobs.interpreters.sqlite.schema import open_read_only, read_database
from durable_jobs.interpreters.worker import WorkerSetupError, load_jobs, serve
from durable_jobs.protocol import parse_duration

__all__ = ["CliError", "cli", "main"]


class CliError(click.ClickException):
    """A command cannot start: printed as one ``error: ...`` line; exit status 2."""

    exit_code = 2

    def show(self, file: Any = None) -> None:
        _error(self.message)


def _error(message: str) -> None:
    click.echo(f"error: {output.printable(message)}", err=True)


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
    console = output.console()
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
    callback=lambda _ctx, param, value: _duration_option(param, value),
    help=(
        "How long a run stays this worker's without a renewal: the worker renews it every "
        "third of it while the run goes on; a run seen unrenewed this long (its worker "
        "died) is treated as interrupted and retried."
    ),
)
@click.option(
    "--busy-timeout",
    metavar="DURATION",
    default="30 seconds",
    show_default=True,
    callback=lambda _ctx, param, value: _duration_option(param, value),
    help=(
        "How long a write waits for another connection's lock before it gives up and is "
        "tried again (a warning is logged each time)."
    ),
)
@click.option(
    "--add-schema",
    is_flag=True,
    help=(
        "Add the durable-jobs tables to a SQLite file that already holds another "
        "program's tables (refused without it)."
    ),
)
def worker(
    target: str,
    db: Path,
    synchronous: str,
    workers: int,
    lease: str,
    busy_timeout: str,
    add_schema: bool,
) -> int:
    """Run the due work of the Jobs registry MODULE:JOBS on a SQLite file.

    MODULE is imported as with `python -m` (the current folder is on the path); JOBS is
    the name of its durable_jobs.Jobs registry: both are trusted, the module runs as
    code. The worker runs until SIGTERM or SIGINT (Ctrl-C), finishes the steps in
    flight and exits 0.
    """
    jobs = load_jobs(target)
    if db.is_dir():
        raise CliError(f"{str(db)!r} is a folder, not a database file")
    if not db.absolute().parent.is_dir():
        raise CliError(f"the folder of the database {str(db)!r} does not exist")
    with SqliteInterpreter(
        jobs,
        db,
        synchronous=synchronous,
        lease=lease,
        busy_timeout=busy_timeout,
        add_schema=add_schema,
    ):
        pass  # the database opens (or is created) and the options are valid
    console = output.console(stderr=True)
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
        code = serve(
            target,
            db,
            synchronous=synchronous,
            workers=workers,
            lease=lease,
            busy_timeout=busy_timeout,
            add_schema=add_schema,
        )
    console.out("durable-jobs worker: stopped")
    return code


def _duration_option(param: click.Parameter, value: str) -> str:
    """A duration option's value that ``parse_duration`` reads, or a usage error."""
    try:
        parse_duration(value, what="option")
    except DefinitionError as error:
        raise click.BadParameter(str(error).removeprefix("option: ")) from None
    return value


class _Printable(logging.Filter):
    """Escapes the control characters of a log message (it may name a stored id)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = output.printable(record.getMessage()), None
        return True


def _configure_logging(console: Console) -> None:
    """Show the library's error log (an unreadable row, a failed step) on stderr."""
    library = logging.getLogger("durable_jobs")
    if not any(isinstance(f, _Printable) for f in library.filters):
        library.addFilter(_Printable())  # whichever handler prints it, the user's too
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
    with closing(open_read_only(db)) as connection:
        view = read_database(connection, db, limit)
    show(view, jobs, output.console())
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


if __name__ == "__main__":
    raise SystemExit(main())
