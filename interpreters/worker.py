"""Running a worker process for a user's job registry on a SQLite file.

Theory of operation: ``load_jobs("package.module:JOBS")`` imports the module and returns
its ``Jobs`` registry (a clear ``WorkerSetupError`` for a bad path, a missing attribute or
something that is not a registry). ``serve`` opens the database, installs handlers so
SIGTERM and SIGINT close the interpreter (the worker finishes the steps it is in and
exits; an attempt cut short is recovered by the next worker as interrupted), and runs
``run_forever``. The ``durable-jobs worker`` command calls ``serve``; so can a user's own
entry point. The module named is imported and run: it is trusted code, like the target
of ``python -m``.
"""

from __future__ import annotations

import importlib
import signal
import sys
from pathlib import Path
from types import FrameType

from durable_jobs import DurableJobsError, Jobs
from durable_jobs.interpreters.clock import Clock
from durable_jobs.interpreters.sqlite import SqliteInterpreter

__all__ = ["WorkerSetupError", "load_jobs", "serve"]


class WorkerSetupError(DurableJobsError):
    """The worker cannot start: a bad ``MODULE:JOBS`` path or database path."""


def load_jobs(target: str) -> Jobs:
    """The ``Jobs`` registry named by ``"package.module:ATTRIBUTE"``.

    >>> load_jobs("no_such_module_here:JOBS")
    Traceback (most recent call last):
    ...
    durable_jobs.interpreters.worker.WorkerSetupError: cannot import module 'no_such_module_here'
    """
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise WorkerSetupError(f"expected MODULE:JOBS (e.g. myapp.jobs:JOBS), got {target!r}")
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")  # like `python -m`: modules of the current folder import
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        if error.name is not None and module_name.startswith(error.name):
            raise WorkerSetupError(f"cannot import module {module_name!r}") from None
        raise
    jobs = getattr(module, attribute, None)
    if jobs is None:
        raise WorkerSetupError(f"module {module_name!r} has no attribute {attribute!r}")
    if not isinstance(jobs, Jobs):
        raise WorkerSetupError(
            f"{target} is {type(jobs).__name__}, not a durable_jobs.Jobs registry"
        )
    return jobs


def serve(
    target: str,
    db: str | Path,
    *,
    synchronous: str = "FULL",
    workers: int = 8,
    lease: str = "30 seconds",
    busy_timeout: str = "30 seconds",
    add_schema: bool = False,
    clock: Clock | None = None,
) -> int:
    """Run a worker for ``target`` on ``db`` until SIGTERM/SIGINT; the exit status.
    ``add_schema`` lets it add its tables to a file holding another program's; the
    other options are ``SqliteInterpreter``'s (``clock`` for tests and simulations)."""
    jobs = load_jobs(target)
    path = Path(db)
    if not path.parent.is_dir():
        raise WorkerSetupError(f"the folder of the database {str(path)!r} does not exist")
    interpreter = SqliteInterpreter(
        jobs,
        path,
        clock=clock,
        synchronous=synchronous,
        lease=lease,
        busy_timeout=busy_timeout,
        add_schema=add_schema,
    )

    def stop(signum: int, frame: FrameType | None) -> None:
        interpreter.stop()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        interpreter.run_forever(workers=workers)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        interpreter.close()
    return 0
