"""The SQLite interpreter: the embedded, durable default.

One SQLite file holds every instance, alarm, queue row, dead letter and telemetry event;
each step of a job is one transaction, user code runs between transactions, and
several worker processes can share the file (leases). The modules:

* ``schema``: the layout, its migrations, and the read-only view ``inspect`` shows;
* ``queue``: the SQL of WorkerPool queues;
* ``store``: ``SqliteStore``, the engine's store on one file;
* ``worker``: ``SqliteInterpreter``, the engine plus the worker (claims, leases,
  heartbeat, group commit, ``run_due`` and ``run_forever``).

>>> import tempfile, os
>>> from durable_jobs import Jobs, WorkerPool
>>> mail = WorkerPool.make(event=str, concurrency=1, execute=lambda ctx: None)
>>> with SqliteInterpreter(Jobs(mail=mail), os.path.join(tempfile.mkdtemp(), "j.db")) as db:
...     _ = db.client().worker_pool(mail).enqueue(id="m1", event="hi")
...     db.run_due()
1
"""

from durable_jobs.interpreters.sqlite.schema import MIGRATIONS, SCHEMA
from durable_jobs.interpreters.sqlite.store import SYNCHRONOUS, SqliteStore
from durable_jobs.interpreters.sqlite.worker import (
    BATCH,
    CHANGE_CHECK,
    GROUP_COMMIT,
    HOT_CHECK,
    HOT_FOR,
    SqliteInterpreter,
)

__all__ = [
    "BATCH",
    "CHANGE_CHECK",
    "GROUP_COMMIT",
    "HOT_CHECK",
    "HOT_FOR",
    "MIGRATIONS",
    "SCHEMA",
    "SYNCHRONOUS",
    "SqliteInterpreter",
    "SqliteStore",
]
