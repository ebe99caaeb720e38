"""MkDocs hook: let mkdocstrings read the package as it is installed.

The repository keeps the package in two folders (``core/`` is ``durable_jobs``,
``interpreters/`` is ``durable_jobs.interpreters``), which setuptools maps at install
time. griffe, which reads the sources for mkdocstrings, looks for a folder named like
the package; this hook lays one out with links in a temporary folder when the site is
built, and points the Python handler's ``paths`` at it. It also fences the ``>>>``
examples of docstrings as code (``DoctestFences``), since docstrings are Markdown here.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from markdown import Extension
from markdown.preprocessors import Preprocessor
from mkdocs.plugins import event_priority

ROOT = Path(__file__).resolve().parent.parent


def _layout() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="durable-jobs-api-"))
    package = folder / "durable_jobs"
    package.mkdir()
    for item in (ROOT / "core").iterdir():
        if item.name != "__pycache__":
            (package / item.name).symlink_to(item)
    (package / "interpreters").symlink_to(ROOT / "interpreters")
    return folder


@event_priority(100)  # before mkdocstrings reads its handlers' configuration
def on_config(config: Any) -> Any:
    handlers = config["plugins"]["mkdocstrings"].config["handlers"]
    handlers.setdefault("python", {})["paths"] = [str(_layout())]
    config["markdown_extensions"].append(DoctestFences())
    return config


class _DoctestFences(Preprocessor):
    """Fence each ``>>>`` example of a docstring as ``pycon`` code, so that its output
    (``[1, 2]``, quotes, ``#``) is shown as code, not read as Markdown."""

    def run(self, lines: list[str]) -> list[str]:
        out: list[str] = []
        fenced = in_example = False
        for line in lines:
            stripped = line.strip()
            if stripped.startswith(("```", "~~~")) and not in_example:
                fenced = not fenced
            elif not fenced and not in_example and stripped.startswith(">>>"):
                in_example = True
                out.append("```pycon")
            elif in_example and not stripped:
                in_example = False
                out.append("```")
            out.append(line)
        if in_example:
            out.append("```")
        return out


class DoctestFences(Extension):
    def extendMarkdown(self, md: Any) -> None:  # noqa: N802 - Python-Markdown's name
        md.preprocessors.register(_DoctestFences(md), "durable_jobs_doctests", 27)
