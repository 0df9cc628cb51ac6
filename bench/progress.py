"""What the bench shows while it runs: one bar for the whole suite, one for the current step
(tasks or runs done, as the service reports them), and a line per finished step."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

__all__ = ["Step", "SuiteProgress"]


class Step:
    """The current step's bar: ``update(done, total)`` as the service reports progress."""

    def __init__(self, progress: Progress, task: TaskID) -> None:
        self._progress, self._task = progress, task

    def update(self, done: int, total: int | None = None) -> None:
        self._progress.update(self._task, completed=done, total=total)


class SuiteProgress:
    """A rich ``Progress`` over ``steps`` steps (a setup's start, its scenarios, the bound); use
    as a context manager."""

    def __init__(self, console: Console, steps: int) -> None:
        self.console = console
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
            refresh_per_second=2,  # the bench shares the machine with what it measures
        )
        self._suite = self._progress.add_task("bench", total=steps)

    def __enter__(self) -> SuiteProgress:
        self._progress.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._progress.stop()

    def advance(self) -> None:
        """One of the suite's steps was skipped: count it as done."""
        self._progress.advance(self._suite)

    def log(self, text: str) -> None:
        self._progress.console.print(text)

    @contextlib.contextmanager
    def step(
        self, description: str, total: int | None = None, *, advances: bool = False
    ) -> Iterator[Step]:
        """A step shown while it runs; the suite's bar advances when it ends if ``advances``
        (one of the ``steps`` the suite was made with), however it ends."""
        task = self._progress.add_task(f"  {description}", total=total)
        try:
            yield Step(self._progress, task)
        finally:
            self._progress.remove_task(task)
            if advances:
                self._progress.advance(self._suite)
