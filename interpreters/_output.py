"""Readable output for the command line: a rich console and plain tables.

Theory of operation: narration goes through rich's ``Console.out`` (no markup, no
highlighting, no wrapping) and tables through rich, with no outer edges. On a terminal
rich adds colour and fits tables to its width; in a file or pipe they are plain text
(box drawing, or ASCII when the encoding needs it) ``PIPE_WIDTH`` columns wide
(``COLUMNS`` overrides), with the padding at line ends stripped.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Final

from rich import box
from rich.console import Console
from rich.table import Table

__all__ = ["PIPE_WIDTH", "Write", "console", "print_table", "short", "table"]

Write = Callable[[str], None]

PIPE_WIDTH: Final = 160
"""Table width when the output is not a terminal and ``COLUMNS`` is not set."""


def console(*, stderr: bool = False) -> Console:
    """A rich console that prints text as given: no markup, emoji or highlighting.

    On a terminal, tables fit its width; in a file or a pipe they get ``PIPE_WIDTH``
    columns (rich's default of 80 would wrap most rows), unless ``COLUMNS`` says otherwise.
    """
    made = Console(stderr=stderr, markup=False, emoji=False, highlight=False)
    if not made.is_terminal and "COLUMNS" not in os.environ:
        made.width = PIPE_WIDTH
    return made


def short(text: str, width: int = 60) -> str:
    """``text`` cut to ``width`` characters, with an ellipsis when cut.

    >>> short("abcdef", 4)
    'abc…'
    """
    return text if len(text) <= width else text[: width - 1] + "…"


def table(*columns: str, right: tuple[str, ...] = (), wrap: tuple[str, ...] = ()) -> Table:
    """A rich table without outer edges: plain aligned text when not on a terminal.

    Only the ``wrap`` columns (free text) wrap when the table is too wide; the others
    (names, ids, times, counts) stay on one line and are cut with an ellipsis.
    """
    made = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for name in columns:
        made.add_column(
            name,
            justify="right" if name in right else "left",
            no_wrap=name not in wrap,
            overflow="fold" if name in wrap else "ellipsis",
        )
    return made


def print_table(out: Console, rows: Table) -> None:
    """Print ``rows``; outside a terminal, without the padding at the ends of lines."""
    if out.is_terminal:
        out.print(rows)
        return
    with out.capture() as captured:
        out.print(rows)
    for line in captured.get().splitlines():
        out.out(line.rstrip())
