"""mypy --strict and ruff stay clean on core, interpreters and tests.

mypy cannot follow setuptools' editable-install import hook, so the check lays the
package out as it is installed (``durable_jobs`` → ``core/``, ``durable_jobs/interpreters``
→ ``interpreters/``) with symlinks in a temporary folder and points ``MYPYPATH`` at it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _layout(tmp: Path) -> Path:
    package = tmp / "durable_jobs"
    package.mkdir()
    for item in (ROOT / "core").iterdir():
        if item.name != "__pycache__":
            (package / item.name).symlink_to(item)
    (package / "interpreters").symlink_to(ROOT / "interpreters")
    return tmp


def run_mypy(layout: Path, targets: list[str]) -> subprocess.CompletedProcess[str]:
    """``mypy --strict`` (the project's settings) on ``targets``, with the package found
    in ``layout`` (from ``_layout``)."""
    if shutil.which("mypy") is None and not _has_module("mypy"):
        pytest.fail("mypy is not installed; install the dev extra: pip install -e '.[dev]'")
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            "--config-file",
            str(ROOT / "pyproject.toml"),
            *targets,
        ],
        cwd=layout,
        env={**os.environ, "MYPYPATH": str(layout)},
        capture_output=True,
        text=True,
        check=False,
    )


def test_mypy_strict_is_clean(tmp_path: Path) -> None:
    result = run_mypy(_layout(tmp_path), ["durable_jobs", str(ROOT / "tests")])
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_is_clean() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "core", "interpreters", "tests"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None
