"""Captures what a running task prints and logs into its attempt's log.

Installed once per process (``install`` is idempotent): ``sys.stdout`` and ``sys.stderr`` become
routing proxies and a handler joins the root logger. Both look up the log sink of the current
context, a contextvar that ``capture_into`` sets while a task runs, so two async tasks sharing the
event loop each get their own output, and tasks they spawn inherit it. Writes from any other
context pass through to the real stream; the worker's own ``workers.*`` log records are never
captured (the log buffer echoes task lines to them, which would loop).

In a process that runs one task at a time (a pool child), ``set_process_sink`` also catches writes
from threads the task started, which do not inherit contextvars.

Not captured: output written to file descriptors 1 and 2 directly (C extensions, ``os.write``,
child processes started without pipes), and bytes written to ``sys.stdout.buffer``.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Protocol, TextIO, cast

__all__ = ["LogSink", "capture_into", "install", "log_line", "set_process_sink"]

LOG_FORMAT = "[%(asctime)s] %(levelname)s %(name)s: %(message)s"
_formatter = logging.Formatter(LOG_FORMAT)


class LogSink(Protocol):
    """Where a task's output goes; ``write`` is called from the thread that printed."""

    def write(self, text: str) -> None: ...


_sink: ContextVar[LogSink | None] = ContextVar("weir_task_log_sink", default=None)
_process_sink: LogSink | None = None


def _current_sink() -> LogSink | None:
    sink = _sink.get()
    return sink if sink is not None else _process_sink


class _RoutedStream:
    """``sys.stdout``/``sys.stderr`` stand-in: the current task's log, else the real stream.
    Everything but writing is the real stream's (``encoding``, ``fileno``, ``isatty``, …)."""

    def __init__(self, fallback: TextIO) -> None:
        self._fallback = fallback

    def write(self, s: str) -> int:
        sink = _current_sink()
        if sink is None:
            return self._fallback.write(s)
        sink.write(s)
        return len(s)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self._fallback.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fallback, name)


class _RoutedHandler(logging.Handler):
    """Root handler: a task's log records go to its log, formatted as lines."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(_formatter)

    def emit(self, record: logging.LogRecord) -> None:
        sink = _current_sink()
        if sink is None or record.name == "workers" or record.name.startswith("workers."):
            return
        try:
            sink.write(self.format(record) + "\n")
        except Exception:
            self.handleError(record)


def install() -> None:
    """Route ``sys.stdout``, ``sys.stderr`` and root logging through the current sink (again, if
    something such as a test harness swapped the streams since)."""
    if sys.stdout is not None and not isinstance(sys.stdout, _RoutedStream):
        sys.stdout = _as_text_io(_RoutedStream(sys.stdout))
    if sys.stderr is not None and not isinstance(sys.stderr, _RoutedStream):
        sys.stderr = _as_text_io(_RoutedStream(sys.stderr))
    root = logging.getLogger()
    if not any(isinstance(handler, _RoutedHandler) for handler in root.handlers):
        root.addHandler(_RoutedHandler())


@contextmanager
def capture_into(sink: LogSink) -> Iterator[None]:
    """Send what the current context prints and logs to ``sink`` while the block runs."""
    install()
    token = _sink.set(sink)
    try:
        yield
    finally:
        _sink.reset(token)


def log_line(level: int, message: str) -> str:
    """A line in the format of captured records, for the worker's own notes in a task's log
    (written directly: two per task, and a log record costs several times more to build)."""
    global _stamp
    now = time.time()
    second, stamp = _stamp
    if int(now) != second:  # localtime() may stat /etc/localtime: once a second is enough
        second = int(now)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", _formatter.converter(second))
        _stamp = second, stamp
    level_name = logging.getLevelName(level)
    return f"[{stamp},{int(now % 1 * 1000):03d}] {level_name} weir.worker: {message}\n"


_stamp: tuple[int, str] = (-1, "")
"""The last second ``log_line`` formatted, and its text."""


def set_process_sink(sink: LogSink | None) -> None:
    """The sink for writes from contexts that set none (a single-task process only)."""
    global _process_sink
    _process_sink = sink


def _as_text_io(stream: _RoutedStream) -> TextIO:
    # The proxy implements the part of TextIO that code writing to sys.stdout uses.
    return cast(TextIO, stream)
