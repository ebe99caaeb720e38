"""The ``durable-jobs`` command line, run as subprocesses: demo, worker, inspect, errors."""

from __future__ import annotations

import importlib
import io
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from contextlib import closing
from importlib.metadata import version
from pathlib import Path
from types import ModuleType

import attrs
import pytest
from rich.console import Console

from durable_jobs.interpreters.cli import main
from durable_jobs.interpreters.inspection import show
from durable_jobs.interpreters.sqlite import SCHEMA, SqliteInterpreter
from durable_jobs.interpreters.sqlite.schema import open_read_only, read_database
from tests.sqlite.schema1 import TO_SCHEMA_1

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

CLI = [sys.executable, "-m", "durable_jobs.interpreters.cli"]


def _env(*path: Path) -> dict[str, str]:
    """The environment of a CLI run: ``path`` first on ``PYTHONPATH``, and no ``COLUMNS``.

    Without ``COLUMNS`` rich lays tables out at the CLI's fixed pipe width, so rows do
    not wrap. (A library in this process, such as readline, may have put ``COLUMNS`` in
    the process environment behind ``os.environ``'s back; passing ``env`` drops it.)
    """
    env = {name: value for name, value in os.environ.items() if name != "COLUMNS"}
    pythonpath = [*map(str, path), *filter(None, [os.environ.get("PYTHONPATH")])]
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(pythonpath)
    return env


def _run(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=cwd,
        env=_env() if env is None else env,
    )


# --------------------------------------------------------------------------------- demo


@pytest.fixture(scope="module")
def demo() -> subprocess.CompletedProcess[str]:
    return _run("demo")


def test_demo_exits_zero(demo: subprocess.CompletedProcess[str]) -> None:
    assert demo.returncode == 0, demo.stderr
    assert demo.stderr == ""


def test_demo_covers_the_four_job_types(demo: subprocess.CompletedProcess[str]) -> None:
    out = demo.stdout
    for heading in (
        "Continuous job 'sampler'",
        "Debounce job 'batcher'",
        "Task job 'orders'",
        "WorkerPool 'mailer'",
    ):
        assert heading in out


def test_demo_shows_a_retry(demo: subprocess.CompletedProcess[str]) -> None:
    out = demo.stdout
    assert (
        "execute attempt 1 failed (TimeoutError: sensor did not answer); retry as attempt 2" in out
    )
    assert "execute run 2, attempt 2: sample taken" in out


def test_demo_shows_flushes_with_their_reason(demo: subprocess.CompletedProcess[str]) -> None:
    out = demo.stdout
    assert "debounce.flushed batcher/inbox-a: 3 event(s), reason maxEvents" in out
    assert "debounce.flushed batcher/inbox-b: 2 event(s), reason flushAfter" in out
    assert "debounce.flushed batcher/inbox-c: 1 event(s), reason manual" in out


def test_demo_shows_a_dead_letter(demo: subprocess.CompletedProcess[str]) -> None:
    out = demo.stdout
    assert "job.deadLettered batcher/inbox-d" in out
    assert "dead letter: batcher/inbox-d, payload=Batch(events=('poison', 'd2'))" in out


def test_demo_shows_task_schedule_and_on_idle(demo: subprocess.CompletedProcess[str]) -> None:
    out = demo.stdout
    assert "task.scheduled orders/order-7" in out
    assert "execute #1: reminder 1 sent" in out
    assert "on_idle (after execute)" in out
    assert "on_idle (after onEvent)" in out


def test_demo_prints_progress_and_a_telemetry_summary(
    demo: subprocess.CompletedProcess[str],
) -> None:
    out = demo.stdout
    assert "advancing the virtual clock by 30 minutes" in out
    assert "[00:05:00] +5 minutes:" in out
    summary = out.split("Summary", 1)[1]
    assert "38 telemetry events in the file, by type:" in summary
    assert "job.executed            18" in summary
    for name in ("job.executed", "job.failed", "debounce.flushed", "task.scheduled"):
        assert name in summary
    assert "pool 'mailer': 2 event(s) processed, 1 dead-lettered, 0 pending." in summary
    assert "2 dead letter(s); 3 instance(s) still stored." in summary


def _pool_part(demo: subprocess.CompletedProcess[str]) -> str:
    return demo.stdout.split("WorkerPool 'mailer'", 1)[1].split("Summary", 1)[0]


def test_demo_pool_pauses_then_takes_events_by_priority(
    demo: subprocess.CompletedProcess[str],
) -> None:
    out = _pool_part(demo)
    assert "client.worker_pool('mailer').pause()\n" in out
    assert "shard 0 paused, pending=2" in out
    assert "shard 1 paused, pending=1" in out
    assert (
        "priority=10)\n             -> shard 0, position=0, created=False, duplicate=False" in out
    )
    assert "resumed=True" in out
    runs = [line for line in out.splitlines() if "user code | execute " in line]
    assert [line.split("execute ", 1)[1].split(" ", 1)[0] for line in runs] == [
        "invoice-1",
        "promo-1",
        "welcome-1",
        "promo-1",
    ]
    assert "(priority 10, attempt 1): sent 'Invoice'" in out
    assert "on_empty: shard 0 has no work left, processed=2" in out


def test_demo_pool_answers_a_duplicate_and_cancels(demo: subprocess.CompletedProcess[str]) -> None:
    out = _pool_part(demo)
    assert "(sent again)\n             -> shard 0, position=1, created=False, duplicate=True" in out
    assert "partition_key='acme'" in out
    assert "'Spring promo'))   (routed by its id)\n             -> shard 1" in out
    assert "cancel('report-1')\n             -> cancelled=True, reason=cancelled" in out
    assert "cancel('promo-1')\n             -> cancelled=False, reason=already_processing" in out
    assert "cancel('invoice-1')\n             -> cancelled=False, reason=already_completed" in out
    assert "Weekly report'" not in out.split("resume()", 1)[1]  # the cancelled event never ran


def test_demo_pool_retries_then_dead_letters(demo: subprocess.CompletedProcess[str]) -> None:
    out = _pool_part(demo)
    assert (
        "job.failed mailer/promo-1: execute attempt 1 failed "
        "(ConnectionError: no route to bob@nowhere.invalid); retry as attempt 2 at 02:33:00"
    ) in out
    assert "execute promo-1 on shard 1 (priority 0, attempt 2)" in out
    assert "job.retryExhausted mailer/promo-1: gave up after 2 attempt(s)" in out
    assert "job.deadLettered mailer/promo-1" in out
    assert "on_dead_letter promo-1 after 2 attempt(s) (ConnectionError:" in out
    assert "on_empty: shard 1 has no work left, processed=0" in out
    assert "dead letter: mailer/promo-1, payload=Mail(to='bob@nowhere.invalid'" in out
    assert (
        "pool status: total_processed=2, total_dead_lettered=1, total_pending=0, "
        "active_instances=2, paused_instances=0"
    ) in out


def test_demo_in_process_prints_the_same(
    demo: subprocess.CompletedProcess[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo"]) == 0
    assert capsys.readouterr().out == demo.stdout


def test_demo_reads_the_state_back_from_the_file(demo: subprocess.CompletedProcess[str]) -> None:
    out = demo.stdout.split("6. The state is in the file", 1)[1].split("Summary", 1)[0]
    assert "a new SqliteInterpreter opens a temporary file" in out
    assert "task('orders').get_state('order-7') -> Order(status='paid', reminders=2)" in out
    assert "status() -> shard 0 idle, pending=0, processed=2, dead=0; shard 1 idle" in out
    assert "dead letter read back: batcher/inbox-d, payload=Batch(events=('poison', 'd2'))" in out
    assert "dead letter read back: mailer/promo-1, payload=Mail(to='bob@nowhere.invalid'" in out
    assert (
        "the instances table holds 3 row(s): workerPool mailer/0, workerPool mailer/1, "
        "task orders/order-7"
    ) in out


def test_demo_keeps_its_file_with_db(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    result = _run("demo", "--db", str(db))
    assert result.returncode == 0, result.stderr
    assert f"on the SQLite interpreter, in {db}." in result.stdout
    assert f"The file stays: durable-jobs inspect --db {db}" in result.stdout
    assert db.is_file()
    shown = _run("inspect", "--db", str(db))
    assert shown.returncode == 0, shown.stderr
    assert "3 instance(s), 0 queued event(s), 0 delayed, 2 dead letter(s), 38 telemetry" in (
        shown.stdout
    )
    assert "order-7" in shown.stdout
    assert "ValueError: downstream rejected the batch" in shown.stdout


def test_demo_refuses_an_existing_file(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    db.write_bytes(b"mine")
    result = _run("demo", "--db", str(db))
    _assert_one_line_error(result, f"error: '{db}' already exists; the demo needs a new file")
    assert db.read_bytes() == b"mine"


# ------------------------------------------------------------------------------- worker

JOBS_MODULE = '''
"""A registry for the CLI tests: a pool that logs each event it sends to a file."""

from pathlib import Path

from durable_jobs import Jobs, Retry, WorkerPool

LOG = Path(__file__).with_name("sent.log")


def send(ctx):
    if ctx.event == "bad":
        raise ValueError("cannot send bad")
    with LOG.open("a") as log:
        log.write(f"sent {ctx.event}\\n")


def dead(event, error, ctx):
    with LOG.open("a") as log:
        log.write(f"dead {event}\\n")


mailer = WorkerPool.make(
    event=str, concurrency=2, execute=send, retry=Retry(max_attempts=1), on_dead_letter=dead
)
JOBS = Jobs(mailer=mailer)
'''

EVENTS = [f"m{i}" for i in range(12)]
WAIT_S = 10.0


@attrs.frozen
class JobsModule:
    """A jobs module written into ``folder``, and how a subprocess imports it."""

    folder: Path
    name: str
    module: ModuleType

    @property
    def target(self) -> str:
        return f"{self.name}:JOBS"

    @property
    def env(self) -> dict[str, str]:
        return _env(self.folder)

    def log(self) -> list[str]:
        log = self.folder / "sent.log"
        return log.read_text().splitlines() if log.exists() else []


def _jobs_module(folder: Path) -> JobsModule:
    name = f"cli_jobs_{uuid.uuid4().hex[:8]}"
    (folder / f"{name}.py").write_text(JOBS_MODULE)
    sys.path.insert(0, str(folder))
    try:
        module = importlib.import_module(name)
    finally:
        sys.path.remove(str(folder))
    return JobsModule(folder, name, module)


@pytest.fixture
def jobs_module(tmp_path: Path) -> JobsModule:
    return _jobs_module(tmp_path)


@attrs.frozen
class Served:
    jobs: JobsModule
    db: Path
    returncode: int
    stdout: str
    stderr: str
    waited_s: float


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Served:
    """Enqueue events from this process, serve them with `durable-jobs worker`, SIGTERM it."""
    jobs = _jobs_module(tmp_path_factory.mktemp("worker"))
    db = jobs.folder / "jobs.db"
    with SqliteInterpreter(jobs.module.JOBS, db) as interpreter:
        pool = interpreter.client().worker_pool(jobs.module.mailer)
        for event in [*EVENTS, "bad"]:
            pool.enqueue(id=event, event=event)
    expected = len(EVENTS) + 1
    process = subprocess.Popen(
        [*CLI, "worker", jobs.target, "--db", "jobs.db", "--workers", "4"],
        cwd=jobs.folder,
        env=jobs.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    started = time.monotonic()
    try:
        while len(jobs.log()) < expected and time.monotonic() - started < WAIT_S:
            time.sleep(0.05)
        waited = time.monotonic() - started
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=10)
    finally:
        if process.poll() is None:  # pragma: no cover - only when the worker hangs
            process.kill()
            process.communicate()
    return Served(jobs, db, process.returncode, stdout, stderr, waited)


def test_worker_processes_every_event_once(served: Served) -> None:
    log = served.jobs.log()
    assert sorted(log) == sorted([*(f"sent {e}" for e in EVENTS), "dead bad"]), served.stderr
    assert len(log) == len(set(log))


def test_worker_exits_zero_on_sigterm(served: Served) -> None:
    assert served.returncode == 0, served.stderr
    assert "Traceback" not in served.stderr
    lines = served.stderr.splitlines()
    assert lines[0].startswith(f"durable-jobs worker: serving {served.jobs.target} (mailer) on")
    assert lines[-1] == "durable-jobs worker: stopped"
    assert served.waited_s < WAIT_S


def test_worker_exits_zero_on_sigint(jobs_module: JobsModule) -> None:
    process = subprocess.Popen(
        [*CLI, "worker", jobs_module.target, "--db", "idle.db", "--synchronous", "normal"],
        cwd=jobs_module.folder,
        env=jobs_module.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        assert "serving" in process.stderr.readline()  # the worker is up (or this times out)
        time.sleep(0.2)  # inside run_forever, with serve's handlers installed
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=10)
    finally:
        if process.poll() is None:  # pragma: no cover - only when the worker hangs
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr
    assert stderr.strip().endswith("durable-jobs worker: stopped")
    assert (jobs_module.folder / "idle.db").is_file()


# ------------------------------------------------------------------------------ inspect


def test_inspect_shows_instances_pool_depths_and_dead_letters(served: Served) -> None:
    result = _run("inspect", "--db", str(served.db))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert (
        f"{served.db}: schema {SCHEMA}, 2 instance(s), 0 queued event(s), 0 delayed, "
        "1 dead letter(s)" in out
    )
    instances = out.split("Instances (2)", 1)[1].split("Worker pool shards", 1)[0]
    rows = [line.split() for line in instances.splitlines() if line.startswith("workerPool")]
    assert [row[:4] for row in rows] == [
        ["workerPool", "mailer", "0", "idle"],
        ["workerPool", "mailer", "1", "idle"],
    ]
    shards = out.split("Worker pool shards (2)", 1)[1].split("Dead letters", 1)[0]
    processed = [line.split() for line in shards.splitlines() if line.startswith("mailer")]
    assert [row[:5] for row in processed] == [  # nothing queued or delayed
        ["mailer", "0", "idle", "0", "0"],
        ["mailer", "1", "idle", "0", "0"],
    ]
    assert sum(int(row[6]) for row in processed) == len(EVENTS)  # processed
    assert sum(int(row[7]) for row in processed) == 1  # dead-lettered
    dead = out.split("Dead letters (1)", 1)[1]
    assert "mailer   bad   ValueError: cannot send bad" in dead
    assert dead.rstrip().endswith('"bad"')  # the payload as stored (JSON)


def test_inspect_with_jobs_decodes_the_rows(served: Served) -> None:
    result = _run(
        "inspect",
        "--db",
        str(served.db),
        "--jobs",
        served.jobs.target,
        cwd=served.jobs.folder,
        env=served.jobs.env,
    )
    assert result.returncode == 0, result.stderr
    assert "state (decoded)" in result.stdout
    assert result.stdout.rstrip().endswith("'bad'")  # the payload as the job's type: a str


def test_inspect_shows_pending_work_and_limits_rows(jobs_module: JobsModule) -> None:
    db = jobs_module.folder / "pending.db"
    with SqliteInterpreter(jobs_module.module.JOBS, db) as interpreter:
        pool = interpreter.client().worker_pool(jobs_module.module.mailer)
        pool.pause()
        for event in EVENTS:
            pool.enqueue(id=event, event=event)
        pool.enqueue(id="later", event="later", delay="1 hour", partition_key="a")
    result = _run("inspect", "--db", str(db), "--limit", "1")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "2 instance(s), 12 queued event(s), 1 delayed, 0 dead letter(s)" in out
    assert "Instances (2, showing 1 (--limit))" in out
    assert "Worker pool shards (2, showing 1 (--limit))" in out
    assert "mailer   0       paused        6" in out
    assert "Dead letters: none" in out


def test_inspect_reads_a_schema_1_file_without_migrating_it(jobs_module: JobsModule) -> None:
    db = jobs_module.folder / "old.db"
    with SqliteInterpreter(jobs_module.module.JOBS, db) as interpreter:
        pool = interpreter.client().worker_pool(jobs_module.module.mailer)
        pool.pause()
        for event in EVENTS:
            pool.enqueue(id=event, event=event)
    raw = sqlite3.connect(db)
    raw.executescript(TO_SCHEMA_1)
    raw.close()
    result = _run("inspect", "--db", str(db))
    assert result.returncode == 0, result.stderr
    assert f"{db}: schema 1, 2 instance(s), 12 queued event(s)" in result.stdout
    assert "mailer   0       paused        6" in result.stdout


def test_inspect_does_not_write_the_database(served: Served) -> None:
    before = served.db.read_bytes()
    assert _run("inspect", "--db", str(served.db)).returncode == 0
    assert served.db.read_bytes() == before


# ------------------------------------------------------------------------------- errors


def _assert_one_line_error(result: subprocess.CompletedProcess[str], expected: str) -> None:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [expected], result.stderr
    assert "Traceback" not in result.stderr
    assert result.returncode == 2


def test_worker_reports_a_module_that_does_not_import(tmp_path: Path) -> None:
    result = _run("worker", "nosuch:JOBS", "--db", "x.db", cwd=tmp_path)
    _assert_one_line_error(result, "error: cannot import module 'nosuch'")
    assert not (tmp_path / "x.db").exists()


def test_worker_reports_a_missing_registry(jobs_module: JobsModule) -> None:
    result = _run(
        "worker",
        f"{jobs_module.name}:NOPE",
        "--db",
        "x.db",
        cwd=jobs_module.folder,
        env=jobs_module.env,
    )
    _assert_one_line_error(result, f"error: module '{jobs_module.name}' has no attribute 'NOPE'")


def test_worker_reports_a_target_without_a_colon(tmp_path: Path) -> None:
    result = _run("worker", "myapp.jobs", "--db", "x.db", cwd=tmp_path)
    _assert_one_line_error(
        result, "error: expected MODULE:JOBS (e.g. myapp.jobs:JOBS), got 'myapp.jobs'"
    )


def test_worker_reports_a_missing_database_folder(jobs_module: JobsModule) -> None:
    db = jobs_module.folder / "missing" / "x.db"
    result = _run(
        "worker", jobs_module.target, "--db", str(db), cwd=jobs_module.folder, env=jobs_module.env
    )
    _assert_one_line_error(result, f"error: the folder of the database '{db}' does not exist")


def test_worker_reports_a_file_that_is_not_a_database(jobs_module: JobsModule) -> None:
    (jobs_module.folder / "notes.txt").write_text("not a database, but long enough to check\n" * 50)
    result = _run(
        "worker",
        jobs_module.target,
        "--db",
        "notes.txt",
        cwd=jobs_module.folder,
        env=jobs_module.env,
    )
    _assert_one_line_error(
        result, "error: cannot open the database 'notes.txt': file is not a database"
    )


def test_worker_rejects_a_bad_lease(jobs_module: JobsModule) -> None:
    result = _run(
        "worker",
        jobs_module.target,
        "--db",
        "x.db",
        "--lease",
        "soon",
        cwd=jobs_module.folder,
        env=jobs_module.env,
    )
    assert result.returncode == 2
    assert "Invalid value for '--lease': cannot read 'soon'" in result.stderr
    assert not (jobs_module.folder / "x.db").exists()


def test_inspect_reports_a_missing_database(tmp_path: Path) -> None:
    result = _run("inspect", "--db", "/nonexistent/x.db")
    _assert_one_line_error(result, "error: no database at '/nonexistent/x.db'")
    missing = tmp_path / "x.db"
    _assert_one_line_error(
        _run("inspect", "--db", str(missing)), f"error: no database at '{missing}'"
    )
    assert not missing.exists()


def test_inspect_reports_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not a database, but long enough to check\n" * 50)
    result = _run("inspect", "--db", str(text))
    _assert_one_line_error(result, f"error: cannot read '{text}': file is not a database")


def test_inspect_reports_another_sqlite_database(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    with closing(sqlite3.connect(other)) as db:
        db.execute("CREATE TABLE t (x)")
        db.commit()
    before = other.read_bytes()
    result = _run("inspect", "--db", str(other))
    _assert_one_line_error(result, f"error: '{other}' is not a durable-jobs database")
    assert other.read_bytes() == before


def test_inspect_reports_a_folder(tmp_path: Path) -> None:
    result = _run("inspect", "--db", str(tmp_path))
    _assert_one_line_error(result, f"error: '{tmp_path}' is a folder, not a database file")


# ------------------------------------------------------------- bad rows, hostile text


def _pending_pool(jobs_module: JobsModule, name: str) -> Path:
    """A database of the jobs module with events on both shards of the pool."""
    db = jobs_module.folder / name
    with SqliteInterpreter(jobs_module.module.JOBS, db) as interpreter:
        pool = interpreter.client().worker_pool(jobs_module.module.mailer)
        for event in EVENTS:
            pool.enqueue(id=event, event=event)
    return db


def _execute(db: Path, *statements: str) -> None:
    with closing(sqlite3.connect(db)) as raw:
        for statement in statements:
            raw.execute(statement)
        raw.commit()


def _serve_briefly(
    jobs_module: JobsModule, db: Path, *options: str, until: int = 0
) -> tuple[int, str]:
    """Run `durable-jobs worker` until ``until`` events are logged (or a few seconds),
    then SIGTERM it; its exit status and stderr."""
    process = subprocess.Popen(
        [*CLI, "worker", jobs_module.target, "--db", str(db), *options],
        cwd=jobs_module.folder,
        env=jobs_module.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        started = time.monotonic()
        while process.poll() is None and time.monotonic() - started < WAIT_S:
            if until and len(jobs_module.log()) >= until:
                break
            time.sleep(0.05)
            if not until and time.monotonic() - started > 1.5:
                break
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=10)
    finally:
        if process.poll() is None:  # pragma: no cover - only when the worker hangs
            process.kill()
            process.communicate()
    return process.returncode, stderr


def test_worker_reports_a_bad_row_escaped_and_serves_the_others(jobs_module: JobsModule) -> None:
    """An alarm that is not a time once crashed the worker at every start (exit 1)."""
    db = _pending_pool(jobs_module, "bad.db")
    _execute(
        db,
        "UPDATE instances SET alarm_at = 'soon', instance_id = instance_id || char(27) ||"
        " ']0;pwned' || char(7) WHERE user_id = '0'",
    )
    with closing(sqlite3.connect(db)) as raw:
        healthy = raw.execute(
            "SELECT COUNT(*) FROM pool_events WHERE instance_id = 'workerPool:mailer:1'"
        ).fetchone()[0]
    assert 0 < healthy < len(EVENTS)
    code, stderr = _serve_briefly(jobs_module, db, until=healthy)
    assert code == 0, stderr
    assert "Traceback" not in stderr
    assert len(jobs_module.log()) == healthy  # the other shard's events were sent
    assert "skipping workerPool:mailer:0\\x1b]0;pwned\\x07 for now" in stderr
    assert "stored alarm_at 'soon' is not a time" in stderr
    _assert_no_control(stderr)


def test_worker_refuses_another_programs_database_unless_asked(jobs_module: JobsModule) -> None:
    other = jobs_module.folder / "theirs.db"
    _execute(other, "CREATE TABLE invoices (id INTEGER PRIMARY KEY)")
    before = other.read_bytes()
    result = _run(
        "worker",
        jobs_module.target,
        "--db",
        str(other),
        cwd=jobs_module.folder,
        env=jobs_module.env,
    )
    _assert_one_line_error(
        result,
        f"error: '{other}' is not a durable-jobs database (it holds other tables: invoices); "
        "to add the durable-jobs tables to it, pass add_schema=True "
        "(durable-jobs worker --add-schema)",
    )
    assert other.read_bytes() == before  # no tables added, not switched to WAL
    code, stderr = _serve_briefly(jobs_module, other, "--add-schema")
    assert code == 0, stderr
    with closing(sqlite3.connect(other)) as raw:
        tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"invoices", "instances", "schema_info"} <= tables
    assert _run("inspect", "--db", str(other)).returncode == 0


def test_inspect_shows_unreadable_rows_instead_of_a_traceback(jobs_module: JobsModule) -> None:
    db = _pending_pool(jobs_module, "damaged.db")
    _execute(
        db,
        "UPDATE instances SET version = 'abc', alarm_at = 'soon' WHERE user_id = '0'",
        "UPDATE instances SET running = 1, lease_until = 4611686018427387904, snapshot = '{'"
        " WHERE user_id = '1'",
        "INSERT INTO dead_letters (job_name, record) VALUES ('mailer', 'garbage')",
    )
    for extra in ((), ("--jobs", jobs_module.target)):
        result = _run(
            "inspect", "--db", str(db), *extra, cwd=jobs_module.folder, env=jobs_module.env
        )
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr
        out = result.stdout
        assert "unreadable: 'soon'" in out  # the alarm
        assert "unreadable: 'abc'" in out  # the version
        if not extra:  # (with --jobs the lease column wraps)
            assert f"running, lease unreadable: {2**62}" in out
        instances = [line.split()[:4] for line in out.splitlines() if line.startswith("workerP")]
        assert ["workerPool", "mailer", "1", "unreadable"] in instances  # its snapshot
        assert "unreadable record" in out.split("Dead letters (1)", 1)[1]


def test_inspect_reports_garbage_in_schema_info_on_one_line(jobs_module: JobsModule) -> None:
    db = _pending_pool(jobs_module, "schema.db")
    _execute(db, "UPDATE schema_info SET value = 'abc' WHERE name = 'schema'")
    _assert_one_line_error(
        _run("inspect", "--db", str(db)),
        f"error: cannot read '{db}': schema_info: schema 'abc' is not an integer",
    )


HOSTILE = {
    "clear": "\x1b[2J",
    "title": "\x1b]0;title\x07",
    "return": "\r",
    "nul": "\x00",
    "markup": "[bold]x[/bold]",
}
ESCAPED = {
    "clear": "\\x1b[2J",
    "title": "\\x1b]0;title\\x07",
    "return": "\\r",
    "nul": "\\x00",
    "markup": "[bold]x[/bold]",
}


def _hostile_database(jobs_module: JobsModule) -> Path:
    """Rows whose job name, ids and error message hold control characters and markup."""
    db = _pending_pool(jobs_module, "hostile.db")
    nasty = "".join(HOSTILE.values())
    record = json.dumps(
        {
            "job_name": "mailer",
            "id": f"id{nasty}",
            "error": {"type": "ValueError", "message": f"boom{nasty}"},
            "attempts": 1,
            "failed_at": "2026-01-01T00:00:00+00:00",
            "payload": nasty,
        }
    )
    with closing(sqlite3.connect(db)) as raw:
        raw.execute("UPDATE instances SET user_id = ?, job_name = ?", (f"u{nasty}", f"n{nasty}"))
        raw.execute("INSERT INTO dead_letters (job_name, record) VALUES (?, ?)", (nasty, record))
        raw.commit()
    return db


def _assert_no_control(text: str) -> None:
    controls = sorted({f"{ord(c):#x}" for c in text if ord(c) < 0x20 and c != "\n"})
    assert controls == [], text


def test_inspect_escapes_control_characters_from_the_database(jobs_module: JobsModule) -> None:
    db = _hostile_database(jobs_module)
    for extra in ((), ("--jobs", jobs_module.target)):
        result = _run(
            "inspect", "--db", str(db), *extra, cwd=jobs_module.folder, env=jobs_module.env
        )
        assert result.returncode == 0, result.stderr
        _assert_no_control(result.stdout)
        for name, escaped in ESCAPED.items():
            assert escaped in result.stdout, name


def test_inspect_on_a_terminal_prints_styles_but_no_data_as_control_or_markup(
    jobs_module: JobsModule,
) -> None:
    db = _hostile_database(jobs_module)
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=400)  # markup on, as by default
    with closing(open_read_only(db)) as connection:
        show(read_database(connection, db, 50), jobs_module.module.JOBS, console)
    shown = re.sub(r"\x1b\[[0-9;]*m", "", screen.getvalue())  # rich's own colours
    _assert_no_control(shown)
    assert "u\\x1b[2J\\x1b]0;title\\x07\\r\\x00[bold]x[/bold]" in shown  # an id, escaped
    assert "boom\\x1b[2J" in shown  # an error message


# ----------------------------------------------------------------- help, version, usage


def test_help_lists_the_commands() -> None:
    result = _run("--help")
    assert result.returncode == 0
    for command in ("demo", "worker", "inspect"):
        assert f"  {command} " in result.stdout


def test_worker_help_explains_the_signals() -> None:
    result = _run("worker", "--help")
    assert result.returncode == 0
    assert "SIGTERM or SIGINT" in result.stdout
    assert "--synchronous" in result.stdout


def test_version_prints_the_package_version() -> None:
    result = _run("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"durable-jobs {version('durable-jobs')}"


def test_unknown_command_fails() -> None:
    result = _run("nope")
    assert result.returncode == 2
    assert "No such command 'nope'" in result.stderr


def test_main_returns_the_exit_status(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert main(["inspect", "--db", "/nonexistent/x.db"]) == 2
    assert main([]) == 2  # click shows the usage
    assert "no database at" in capsys.readouterr().err
