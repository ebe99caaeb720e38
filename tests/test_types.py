"""The types catch users' mistakes: mypy --strict on small user programs.

Each snippet is a user's module. A line ending in ``# error: <words>`` must be reported
by ``mypy --strict`` with a message containing those words; every other line must be
clean. So a wrong input type, event type or state type is an error under the type
checker, while typed values, the explicit ``Unstructured`` JSON path and clients looked
up by name keep type-checking.
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.test_static import _layout, run_mypy

PRELUDE = """\
from typing import Any

import attrs

from durable_jobs import (
    Continuous, ContinuousContext, Debounce, DebounceContext, Enqueue, Jobs, PoolContext,
    Task, TaskContext, Unstructured, WorkerPool,
)
from durable_jobs.interpreters.memory import MemoryInterpreter


@attrs.frozen
class Counter:
    count: int


@attrs.frozen
class Mail:
    to: str


def tick(ctx: ContinuousContext[Counter]) -> None:
    ctx.update_state(lambda s: Counter(s.count + 1))


def send(ctx: PoolContext[Mail]) -> None:
    print(ctx.event.to)


def flush(ctx: DebounceContext[int]) -> None:
    print(ctx.state + 1)


def handle(ctx: TaskContext[Counter, int]) -> None:
    ctx.set_state(Counter(ctx.event))


ticker = Continuous.make(state=Counter, schedule=Continuous.every("1 minute"), execute=tick)
mails = WorkerPool.make(event=Mail, concurrency=2, execute=send)
clicks = Debounce.make(event=int, execute=flush, flush_after="1 minute")
orders = Task.make(state=Counter, event=int, on_event=handle, execute=handle)
client = MemoryInterpreter(Jobs(ticker=ticker, mails=mails, clicks=clicks, orders=orders)).client()
"""

SNIPPETS = {
    "wrong_values": """
client.continuous(ticker).start(id="u", input="not a Counter")  # error: "input"
client.worker_pool(mails).enqueue(id="m", event=123)  # error: "event"
client.debounce(clicks).add(id="c", event="one")  # error: "event"
client.task(orders).send(id="o", event=Counter(1))  # error: "event"
client.worker_pool(mails).enqueue_many([Enqueue("m", 5)])  # error: "Enqueue" has incompatible type "int"
text: str = client.continuous(ticker).get_state("u")  # error: Incompatible types
client.continuous(mails)  # error: "continuous"
""",
    "right_values": """
client.continuous(ticker).start(id="u", input=Counter(0))
client.continuous(ticker).start(id="v", input=Unstructured({"count": 0}))
client.worker_pool(mails).enqueue(id="m", event=Mail("ada@acme.test"))
client.worker_pool(mails).enqueue(id="n", event=Unstructured({"to": "bob@acme.test"}))
client.worker_pool(mails).enqueue_many([Enqueue("o", Mail("eve@acme.test"))])
client.debounce(clicks).add(id="c", event=1)
client.task(orders).send(id="o", event=3)
state: Counter | None = client.continuous(ticker).get_state("u")
batch: int | None = client.debounce(clicks).get_state("c")
by_name: Any = client.continuous("ticker").start(id="w", input={"count": 1})
""",
}

_LINE = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+): error: (?P<message>.*)$")


def test_mypy_strict_refuses_wrong_values_and_accepts_right_ones(tmp_path: Path) -> None:
    layout = _layout(tmp_path)
    users = tmp_path / "users"
    users.mkdir()
    expected: dict[tuple[str, int], str] = {}
    offset = PRELUDE.count("\n")
    for name, body in SNIPPETS.items():
        (users / f"{name}.py").write_text(PRELUDE + body)
        for number, line in enumerate(body.splitlines(), start=offset + 1):
            if "# error: " in line:
                expected[(f"{name}.py", number)] = line.split("# error: ", 1)[1]
    result = run_mypy(layout, sorted(str(path) for path in users.iterdir()))
    found: dict[tuple[str, int], list[str]] = {}
    for line in result.stdout.splitlines():
        match = _LINE.match(line)
        if match:
            where = (Path(match["file"]).name, int(match["line"]))
            found.setdefault(where, []).append(match["message"])
    unexpected = {where: messages for where, messages in found.items() if where not in expected}
    assert not unexpected, result.stdout
    for where, words in expected.items():
        messages = found.get(where, [])
        assert any(words in message for message in messages), (where, words, result.stdout)
