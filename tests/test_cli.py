"""The ``durable-jobs`` command line: ``demo`` runs and narrates, bad commands fail."""

from __future__ import annotations

import subprocess
import sys

import pytest
from durable_jobs.interpreters.cli import main

CLI = [sys.executable, "-m", "durable_jobs.interpreters.cli"]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120, check=False)


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


def test_unknown_subcommand_fails() -> None:
    result = _run("nope")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


def test_no_subcommand_fails() -> None:
    with pytest.raises(SystemExit) as exit_:
        main([])
    assert exit_.value.code == 2


def test_help_lists_demo(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    assert "demo" in capsys.readouterr().out
