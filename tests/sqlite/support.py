"""Helpers shared by the SQLite tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from durable_jobs.interpreters.sqlite import SqliteInterpreter


def count_claims(db: SqliteInterpreter) -> Callable[[], int]:
    """Count the claims ``db``'s worker makes from now on (a spinning worker makes
    thousands a second)."""
    claims = 0
    claim_due = db._sql.claim_due

    def counted(*args: Any) -> Any:
        nonlocal claims
        claims += 1
        return claim_due(*args)

    db._sql.claim_due = counted  # type: ignore[method-assign,assignment]
    return lambda: claims
