"""Sync tasks run in a pool of processes, so a CPU-bound or blocking task never stalls the event
loop (and with it the heartbeats and logs of every other attempt).

The pool uses the ``forkserver`` start method (forking a process that runs an event loop and
threads is unsafe) and is created on first use with one process per worker slot. Each child
imports DAG files itself (cached per process), calls the function with the run context set, and
sends what the task prints and logs back over one ``multiprocessing`` queue, tagged with the
attempt's key. A thread in the parent drains that queue into the right attempt's log with
``call_soon_threadsafe``. A child ends each attempt with an end marker, which the parent awaits
before returning, so the log is complete before the finish report.

Children ignore SIGINT and SIGTERM (a Ctrl-C or a systemd stop reaches the whole process group):
the worker decides when they stop. An attempt that is cancelled while its function runs cannot be
interrupted without breaking the pool for the others: its process runs on and the result is
dropped. Closing the pool while such a call still runs kills the pool's processes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import itertools
import logging
import multiprocessing
import signal
import threading
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from weir.messages import ClaimAccepted
from workers import capture
from workers.capture import LogSink
from workers.dag_cache import DagCache
from workers.identity import attempt_label
from workers.invocation import invoke
from workers.outcome import Outcome

if TYPE_CHECKING:
    from multiprocessing.queues import Queue

__all__ = ["SyncCall", "TaskProcessPool"]

logger = logging.getLogger(__name__)

END_MARKER_TIMEOUT = 5.0
_keys = itertools.count()

# (attempt key, "log" or "end", text); None stops the drain thread.
_Item = tuple[str, str, str | None]
_LogQueue: TypeAlias = "Queue[_Item | None]"


@dataclasses.dataclass(frozen=True, slots=True)
class SyncCall:
    """What a pool process needs to run one attempt (it is pickled to the child)."""

    key: str
    dags_folder: Path
    claim: ClaimAccepted

    @classmethod
    def create(cls, dags_folder: Path, claim: ClaimAccepted) -> SyncCall:
        return cls(f"{claim.task_instance_id}.{claim.attempt}.{next(_keys)}", dags_folder, claim)


@dataclasses.dataclass(eq=False)
class _Route:
    sink: LogSink
    ended: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)


class TaskProcessPool:
    """The worker's process pool for sync tasks (use it from one event loop)."""

    def __init__(self, max_workers: int) -> None:
        self._max_workers = max_workers
        self._executor: concurrent.futures.ProcessPoolExecutor | None = None
        self._queue: _LogQueue | None = None
        self._drainer: threading.Thread | None = None
        self._routes: dict[str, _Route] = {}
        self._in_flight: set[concurrent.futures.Future[Outcome]] = set()

    async def run(self, call: SyncCall, sink: LogSink) -> Outcome:
        """Run the call in a pool process, its output going to ``sink``."""
        executor = self._started()
        route = self._routes[call.key] = _Route(sink)
        try:
            future = executor.submit(_run_in_child, call)
            self._in_flight.add(future)
            future.add_done_callback(self._in_flight.discard)
            outcome = await asyncio.wrap_future(future)
            await self._await_end(route, call)
            return outcome
        except BrokenProcessPool:
            self._discard(executor)
            return Outcome.failed(
                "The process running this task died before it returned: it was killed (by the "
                "out-of-memory killer?), crashed in native code or called os._exit(). The pool "
                "is replaced; tasks that ran in it at the time fail the same way."
            )
        finally:
            del self._routes[call.key]

    async def aclose(self) -> None:
        """Stop the processes (killing those still running abandoned calls) and the drain thread."""
        if self._executor is not None:
            executor, self._executor = self._executor, None
            if self._in_flight:
                _kill_workers(executor)
            await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)
        if self._drainer is not None and self._queue is not None:
            self._queue.put(None)
            await asyncio.to_thread(self._drainer.join)
            self._queue.close()
            self._queue.join_thread()
            self._drainer = self._queue = None

    def _started(self) -> concurrent.futures.ProcessPoolExecutor:
        context = multiprocessing.get_context("forkserver")
        if self._queue is None:
            self._queue = context.Queue()
            self._drainer = threading.Thread(
                target=self._drain,
                args=(self._queue, asyncio.get_running_loop()),
                name="weir-pool-logs",
                daemon=True,
            )
            self._drainer.start()
        if self._executor is None:
            self._executor = concurrent.futures.ProcessPoolExecutor(
                self._max_workers,
                mp_context=context,
                initializer=_init_child,
                initargs=(self._queue,),
            )
        return self._executor

    def _discard(self, executor: concurrent.futures.ProcessPoolExecutor) -> None:
        if self._executor is executor:
            self._executor = None
            executor.shutdown(wait=False, cancel_futures=True)

    def _drain(self, queue: _LogQueue, loop: asyncio.AbstractEventLoop) -> None:
        """The drain thread: hand each item to the event loop until the ``None`` sentinel."""
        while (item := queue.get()) is not None:
            try:
                loop.call_soon_threadsafe(self._dispatch, *item)
            except RuntimeError:  # the loop is closed: nobody is left to read logs
                return

    def _dispatch(self, key: str, kind: str, text: str | None) -> None:
        route = self._routes.get(key)
        if route is None:  # the attempt was abandoned; its late output has nowhere to go
            return
        if kind == "end":
            route.ended.set()
        elif text:
            route.sink.write(text)

    async def _await_end(self, route: _Route, call: SyncCall) -> None:
        try:
            async with asyncio.timeout(END_MARKER_TIMEOUT):
                await route.ended.wait()
        except TimeoutError:
            logger.warning(
                "%s: the end of the task's output did not arrive within %g s; the log may miss "
                "its last lines",
                attempt_label(call.claim),
                END_MARKER_TIMEOUT,
            )


def _kill_workers(executor: concurrent.futures.ProcessPoolExecutor) -> None:
    """Kill the pool's processes: some still run calls nobody waits for any more. (Python 3.14
    has ``ProcessPoolExecutor.kill_workers()``; this is the same thing, by hand.)"""
    processes = dict(getattr(executor, "_processes", None) or {})
    executor.shutdown(wait=False, cancel_futures=True)
    for process in processes.values():
        try:
            if process.is_alive():
                process.kill()
        except (ValueError, ProcessLookupError):  # already gone
            continue


# --- In the pool's processes -------------------------------------------------------------------

_child_queue: _LogQueue | None = None
_child_caches: dict[Path, DagCache] = {}


def _init_child(queue: _LogQueue) -> None:
    global _child_queue
    _child_queue = queue
    for signum in (signal.SIGINT, signal.SIGTERM):
        # A handler, not SIG_IGN: an ignored disposition would be inherited by the processes
        # the task starts, and a handler is reset on exec.
        signal.signal(signum, _ignore_signal)
    capture.install()
    logging.getLogger().setLevel(logging.INFO)


def _ignore_signal(signum: int, frame: object) -> None:
    return None


def _run_in_child(call: SyncCall) -> Outcome:
    """Import the task and call it, with everything it prints and logs sent to the parent."""
    assert _child_queue is not None, "the pool's initializer sets the queue"
    sink = _QueueSink(call.key, _child_queue)
    capture.set_process_sink(sink)
    try:
        with capture.capture_into(sink):
            try:
                cache = _child_caches.setdefault(call.dags_folder, DagCache(call.dags_folder))
                task = cache.load_task(call.claim)
            except BaseException as exc:  # a DAG file calling sys.exit() is a failure too
                return Outcome.from_exception(exc)
            return invoke(task, call.claim)
    finally:
        capture.set_process_sink(None)
        sink.close()


class _QueueSink:
    """Buffers a child's output by line and puts it on the queue (threads may write too)."""

    FLUSH_CHARS = 8192

    def __init__(self, key: str, queue: _LogQueue) -> None:
        self._key = key
        self._queue = queue
        self._lock = threading.Lock()
        self._buffer: list[str] = []
        self._size = 0

    def write(self, text: str) -> None:
        with self._lock:
            self._buffer.append(text)
            self._size += len(text)
            if "\n" in text or self._size >= self.FLUSH_CHARS:
                self._flush()

    def close(self) -> None:
        with self._lock:
            self._flush()
            self._queue.put((self._key, "end", None))

    def _flush(self) -> None:
        if self._buffer:
            self._queue.put((self._key, "log", "".join(self._buffer)))
            self._buffer.clear()
            self._size = 0
