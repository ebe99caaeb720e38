"""A user who installs the package finds it with mypy --strict.

The package is installed the two ways the README names, each into a fresh environment
of its own: a regular install (what ``pip install durable-jobs`` does: it must ship
every module and ``py.typed``) and an editable install in setuptools' ``strict`` mode
(a tree of links that mypy can follow; the default editable mode maps ``durable_jobs``
to ``core/`` with an import hook, which mypy does not run). Then mypy checks a user's
module from outside the repository: it must find ``durable_jobs``, accept the right
values and refuse a wrong one. The environments get this environment's own packages
(attrs, cattrs, …) through a ``.pth`` line; the build backend comes from the package
index, as for any install.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

from tests.test_static import ROOT

USER_CODE = """\
import attrs
from durable_jobs import Continuous, ContinuousContext, Jobs
from durable_jobs.interpreters.memory import MemoryInterpreter
from durable_jobs.interpreters.sqlite import SqliteInterpreter


@attrs.frozen
class Counter:
    count: int


def tick(ctx: ContinuousContext[Counter]) -> None:
    ctx.update_state(lambda s: Counter(s.count + 1))


ticker = Continuous.make(state=Counter, schedule=Continuous.every("1 minute"), execute=tick)
client = MemoryInterpreter(Jobs(ticker=ticker)).client()
client.continuous(ticker).start(id="u", input=Counter(0))
durable = SqliteInterpreter(Jobs(ticker=ticker), "jobs.db")
durable.client().continuous(ticker).start(id="u", input="not a Counter")
"""
WRONG_LINE = (
    USER_CODE.splitlines().index(
        'durable.client().continuous(ticker).start(id="u", input="not a Counter")'
    )
    + 1
)


@pytest.mark.parametrize(
    "options",
    [["."], ["-e", ".", "--config-settings", "editable_mode=strict"]],
    ids=["regular", "editable-strict"],
)
def test_mypy_finds_the_installed_package(tmp_path: Path, options: list[str]) -> None:
    env_dir = tmp_path / "env"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    purelib = Path(
        sysconfig.get_paths(vars={"base": str(env_dir), "platbase": str(env_dir)})["purelib"]
    )
    # ``pip --python`` installs into that environment only (``--prefix`` would first
    # uninstall the package from the environment running the tests).
    install = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "-q",
            "--no-deps",
            *options,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    (purelib / "test-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    user = tmp_path / "user"
    user.mkdir()
    (user / "app.py").write_text(USER_CODE)
    checked = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            "--python-executable",
            str(python),
            "app.py",
        ],
        cwd=user,
        env={key: value for key, value in os.environ.items() if key != "MYPYPATH"},
        capture_output=True,
        text=True,
        check=False,
    )
    errors = [line for line in checked.stdout.splitlines() if ": error:" in line]
    assert len(errors) == 1, checked.stdout
    assert errors[0].startswith(f'app.py:{WRONG_LINE}: error: Argument "input"'), checked.stdout
