"""Every ``>>>`` example in the package runs, and at least one exists per public module."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
from types import ModuleType

import pytest

import durable_jobs
import durable_jobs.interpreters


def _modules() -> list[str]:
    names = ["durable_jobs", "durable_jobs.interpreters"]
    for package in (durable_jobs, durable_jobs.interpreters):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if (
                not info.name.startswith("durable_jobs.interpreters")
                or package is durable_jobs.interpreters
            ):
                names.append(info.name)
    return sorted(set(names))


@pytest.mark.parametrize("name", _modules())
def test_doctests_pass(name: str) -> None:
    module: ModuleType = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, f"{result.failed} doctest(s) failed in {name}"


def test_doctests_exist() -> None:
    attempted = sum(doctest.testmod(importlib.import_module(n)).attempted for n in _modules())
    assert attempted >= 40
