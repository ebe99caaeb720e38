"""The README and the docs site: every Python example runs and prints what it says.

How a page is checked (the convention the pages are written in):

* Each ```` ```python ```` block of a page runs, top to bottom, in a fresh namespace, in
  a temporary folder shared by the page's blocks. A block whose fence carries a title
  (```` ```python title="mail_jobs.py" ````) is a file the reader saves: it is written
  to that folder under that name instead (and the folder is importable).
* A top-level statement that prints is checked against the comment that states its
  output: the comment at the end of the statement's last line, or, when there is none,
  the comment lines right below it (one per printed line). A statement that prints and
  states nothing is not checked; a comment on a statement that prints nothing is prose.
  A compound statement (``with``, ``try``, ``if``) that prints is checked against what
  its inner statements state, in order, so inside one every comment after a statement
  states output.
* ``mkdocs build --strict`` builds the site (every page in the navigation, the API pages
  from the docstrings, every link resolved) without a warning.

A page that states no output at all is suspicious: the test counts the checked
statements and expects each page with Python examples to check at least one.
"""

from __future__ import annotations

import ast
import contextlib
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])
_FENCE = re.compile(r"^```python(?P<info>[^\n]*)\n(?P<code>.*?)^```\s*$", re.M | re.S)
_TITLE = re.compile(r'title="(?P<name>[^"]+)"')


def _blocks(page: Path) -> list[tuple[str | None, str, int]]:
    """(file name or None, code, line number of the code) of each Python block."""
    text = page.read_text()
    found = []
    for match in _FENCE.finditer(text):
        title = _TITLE.search(match["info"])
        line = text[: match.start("code")].count("\n") + 1
        found.append((title["name"] if title else None, match["code"], line))
    return found


def _stated(lines: list[str], node: ast.stmt) -> list[str] | None:
    """The output a statement's comments state, or ``None`` when they state none."""
    last = lines[node.end_lineno - 1] if node.end_lineno else ""
    tokens = list(_comments(last))
    if tokens:
        return [tokens[-1]]
    below: list[str] = []
    for line in lines[node.end_lineno or 0 :]:
        stripped = line.strip()
        if not stripped.startswith("#"):
            break
        below.append(stripped[1:].strip() if stripped != "#" else "")
    return below or None


def _stated_within(lines: list[str], node: ast.stmt) -> list[str]:
    """What a statement states it prints; for a compound one, what its inner statements
    state, in source order."""
    inner = [
        child
        for child in ast.walk(node)
        if isinstance(child, ast.stmt) and child is not node and not _compound(child)
    ]
    if not _compound(node):
        return _stated(lines, node) or []
    stated: list[str] = []
    for child in sorted(inner, key=lambda child: child.lineno):
        stated += _stated(lines, child) or []
    return stated


def _compound(node: ast.stmt) -> bool:
    return isinstance(node, ast.With | ast.Try | ast.If | ast.For | ast.While)


def _comments(line: str) -> list[str]:
    """The comment at the end of a code line (outside strings), as a list of 0 or 1."""
    import tokenize

    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(line).readline))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return []
    return [t.string[1:].strip() for t in tokens if t.type == tokenize.COMMENT]


def _run_block(code: str, where: str, namespace: dict[str, object]) -> int:
    """Run ``code`` statement by statement; the number of outputs checked."""
    tree = ast.parse(code, filename=where)
    lines = code.splitlines()
    checked = 0
    for node in tree.body:
        module = ast.Module(body=[node], type_ignores=[])
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(module, where, "exec"), namespace)  # noqa: S102 - the docs' own code
        printed = out.getvalue().splitlines()
        if not printed:
            continue
        stated = _stated_within(lines, node)
        if not stated:
            continue
        assert printed == stated, f"{where}:{node.lineno}: printed {printed}, says {stated}"
        checked += 1
    return checked


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_the_examples_of_a_page_run_and_print_what_they_say(
    page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocks = _blocks(page)
    if not blocks:
        return  # a page of prose and tables only
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    checked = 0
    for name, code, line in blocks:
        where = f"{page.relative_to(ROOT)}:{line}"
        if name is not None:
            (tmp_path / name).write_text(code)
            continue
        checked += _run_block(code, where, {"__name__": "__docs__"})
    for module in [m for m in sys.modules if (tmp_path / f"{m}.py").exists()]:
        del sys.modules[module]  # a page's own files do not leak into the next page
    assert checked >= 1, f"{page.name}: no example states its output"


def test_the_site_builds_without_a_warning(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        env={**os.environ, "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "index.html").is_file()
    assert (tmp_path / "api" / "user" / "index.html").is_file()
