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


def test_demo_covers_the_three_job_types(demo: subprocess.CompletedProcess[str]) -> None:
    out = demo.stdout
    for heading in ("Continuous job 'sampler'", "Debounce job 'batcher'", "Task job 'orders'"):
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
    assert "1 dead letter(s)" in summary


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
