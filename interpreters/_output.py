"""Readable output for the command line: a rich console and plain tables.

Theory of operation: narration goes through rich's ``Console.out`` (no markup, no
highlighting, no wrapping) and tables through rich, with no outer edges. On a terminal
rich adds colour and fits tables to its width; in a file or pipe they are plain text
(box drawing, or ASCII when the encoding needs it) ``PIPE_WIDTH`` columns wide
(``COLUMNS`` overrides), with the padding at line ends stripped.

What comes from a database is data, never terminal control: ``printable`` writes every
control character as an escape (``ESC[2J`` would clear the screen, ``ESC]0;…BEL`` set
the window title, ``\\r`` overwrite the line, a bidi override reorder it), and table
cells go in as rich ``Text`` through ``add_row``, so a ``[bold]`` in an id is shown,
not interpreted as markup. Everything the CLI prints from a database goes through them.
A backslash is left as it is: the escapes are for a reader, not a round trip.
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Callable
from typing import Final

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

__all__ = [
    "PIPE_WIDTH",
    "Write",
    "add_row",
    "console",
    "print_table",
    "printable",
    "short",
    "table",
]

Write = Callable[[str], None]

PIPE_WIDTH: Final = 160
"""Table width when the output is not a terminal and ``COLUMNS`` is not set."""


_SHORT_ESCAPES: Final = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}
_BIDI: Final = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _escape(char: str) -> str:
    if char in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _is_control(char: str) -> bool:
    return unicodedata.category(char) in ("Cc", "Zl", "Zp") or char in _BIDI


_ESCAPES: Final = {
    code: _escape(chr(code))
    for code in (*range(0xA0), *map(ord, _BIDI), 0x2028, 0x2029)
    if _is_control(chr(code))
}


def printable(value: object) -> str:
    r"""``str(value)`` with every control character written as an escape: C0 and C1
    controls and DEL, line and paragraph separators, and bidirectional overrides.

    >>> printable("a\x1b[2Jb\x1b]0;title\x07\r\x00")
    'a\\x1b[2Jb\\x1b]0;title\\x07\\r\\x00'
    >>> printable("[bold]café[/bold] ✓")
    '[bold]café[/bold] ✓'
    """
    return str(value).translate(_ESCAPES)


def add_row(rows: Table, *cells: object) -> None:
    """Add a row of data: each cell escaped (``printable``) and taken as plain text."""
    rows.add_row(*(Text(printable(cell)) for cell in cells))


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
