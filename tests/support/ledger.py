"""A ledger of side effects: what tasks really did, written by the tasks themselves.

Chaos tests judge Weir by what happened outside it, not only by what its API says. Every task of
a chaos DAG appends a ``start`` line when it begins and an ``end`` line when its side effect is
done, to one file opened with ``O_APPEND`` and written with one ``write`` per line, so lines from
concurrent processes (workers, their pool children, shell commands) never interleave::

    start|end <dag_id> <run_id> <task_id> <attempt> <pid> <unix time>

``MARK_SOURCE`` is the Python half, pasted into DAG files (a DAG file cannot import the tests);
``shell_mark`` is the shell half. ``Ledger.tally`` counts, per task instance:

- lost: expected, but never ended;
- doubled: ended more than once (a side effect done twice);
- stuck: its newest attempt started and never ended (a run that hangs).
"""

from __future__ import annotations

import dataclasses
import shlex
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path

__all__ = ["MARK_SOURCE", "Entry", "Ledger", "Tally", "TaskKey", "shell_mark"]

TaskKey = tuple[str, str, str]
"""(dag_id, run_id, task_id): one task instance."""

MARK_SOURCE = '''
import os as _os
import time as _time

from weir import get_current_context as _context


def mark(event: str) -> None:
    """Append one ledger line in one write (O_APPEND: concurrent lines never interleave)."""
    c = _context()
    line = (
        f"{event} {c.dag_id} {c.run_id} {c.task_id} {c.attempt} {_os.getpid()} "
        f"{_time.time():.6f}\\n"
    )
    fd = _os.open(LEDGER, _os.O_WRONLY | _os.O_APPEND | _os.O_CREAT, 0o644)
    try:
        _os.write(fd, line.encode())
    finally:
        _os.close(fd)
'''
"""Defines ``mark(event)``; the DAG file defines ``LEDGER`` (the file's absolute path) first."""


def shell_mark(event: str, ledger: Path) -> str:
    """A shell command appending one ledger line (``echo`` with ``>>``: one O_APPEND write)."""
    fields = "$WEIR_DAG_ID $WEIR_RUN_ID $WEIR_TASK_ID $WEIR_ATTEMPT $$ $(date +%s.%N)"
    return f'echo "{event} {fields}" >> {shlex.quote(str(ledger))}'


@dataclasses.dataclass(frozen=True)
class Entry:
    event: str
    dag_id: str
    run_id: str
    task_id: str
    attempt: int
    pid: int
    at: float

    @property
    def key(self) -> TaskKey:
        return (self.dag_id, self.run_id, self.task_id)


@dataclasses.dataclass(frozen=True)
class Tally:
    expected: int
    completed: int
    lost: list[TaskKey]
    doubled: dict[TaskKey, int]
    stuck: list[TaskKey]
    abandoned_attempts: int
    """Attempts that started and never ended while a later attempt of theirs did (the work of a
    killed worker, done again): expected under faults, reported as a figure."""

    @property
    def is_clean(self) -> bool:
        return not (self.lost or self.doubled or self.stuck)

    def figures(self) -> dict[str, int]:
        return {
            "expected": self.expected,
            "completed": self.completed,
            "lost": len(self.lost),
            "doubled": len(self.doubled),
            "stuck": len(self.stuck),
            "abandoned_attempts": self.abandoned_attempts,
        }

    def __str__(self) -> str:
        figures = ", ".join(f"{name} {value}" for name, value in self.figures().items())
        examples = f"lost {self.lost[:3]}, doubled {list(self.doubled.items())[:3]}, "
        return f"{figures} ({examples}stuck {self.stuck[:3]})"


class Ledger:
    """The ledger file of one test."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def entries(self) -> list[Entry]:
        if not self.path.exists():
            return []
        return [_parse(line) for line in self.path.read_text().splitlines() if line.strip()]

    def started(self) -> list[Entry]:
        return [e for e in self.entries() if e.event == "start"]

    def ended(self) -> list[Entry]:
        return [e for e in self.entries() if e.event == "end"]

    def tally(self, expected: Iterable[TaskKey]) -> Tally:
        """Count lost, doubled and stuck task instances among ``expected``."""
        wanted = set(expected)
        entries = self.entries()
        ends = Counter(e.key for e in entries if e.event == "end")
        attempts: dict[TaskKey, dict[int, set[str]]] = defaultdict(lambda: defaultdict(set))
        for entry in entries:
            attempts[entry.key][entry.attempt].add(entry.event)
        stuck = [
            key for key, seen in attempts.items() if "end" not in seen[max(seen)] and key in wanted
        ]
        abandoned = sum(
            1
            for seen in attempts.values()
            for attempt, events in seen.items()
            if events == {"start"} and attempt < max(seen)
        )
        unexpected = set(ends) - wanted
        if unexpected:
            raise AssertionError(f"the ledger has tasks no test expected: {sorted(unexpected)[:3]}")
        return Tally(
            expected=len(wanted),
            completed=sum(1 for key in wanted if ends[key] == 1),
            lost=sorted(key for key in wanted if ends[key] == 0),
            doubled={key: n for key, n in ends.items() if n > 1},
            stuck=sorted(stuck),
            abandoned_attempts=abandoned,
        )


def _parse(line: str) -> Entry:
    event, dag_id, run_id, task_id, attempt, pid, at = line.split()
    return Entry(event, dag_id, run_id, task_id, int(attempt), int(pid), float(at))
