"""Sync tasks run in processes of their own, so a CPU-bound or blocking task never stalls the
event loop (and with it the heartbeats and logs of every other attempt).

Each running sync attempt has one child process to itself, started with the ``forkserver``
method (forking a process that runs an event loop and threads is unsafe), and kept for the next
attempt when this one ends normally: a child imports DAG files once (cached per process) and
serves attempts one after the other, never more than the worker's concurrency at once. Parent and
child talk over one private pipe: the call goes down; the task's output (tagged ``log``) and then
the outcome come back, in order, so the log is complete when the outcome arrives. A thread of the
parent's per running attempt waits on that pipe.

An attempt that is stopped (its ``timeout`` passed, its heartbeat was refused, or the worker
abandons it) cannot be interrupted inside Python code, so its child is killed, with the process
group the child leads (whatever the task started), and the next attempt gets a fresh child. Each
child's group is registered with the worker's reaper (``reaper.py``), which kills it should the
worker itself be killed. A child that dies is noticed at once by its process sentinel, even when
something it started still holds its end of the pipe. Since
nothing is shared between children, killing one never harms the attempts of the others (a
``ProcessPoolExecutor`` would break as a whole, and a shared ``multiprocessing.Queue`` can be left
locked by a killed writer).

Children ignore SIGINT and SIGTERM (a Ctrl-C or a systemd stop reaches the whole process group):
the worker decides when they stop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable
from contextlib import suppress
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from weir.errors import WeirError
from weir.messages import ClaimAccepted
from weir.resources import Resource, ResourceKind, ResourceSource, current_resources, use_resources
from workers import capture
from workers.capture import LogSink
from workers.dag_cache import DagCache
from workers.invocation import invoke
from workers.outcome import Outcome
from workers.reaper import ProcessGroupReaper

__all__ = ["SyncCall", "TaskProcessPool"]

_PRELOAD = ["workers.process_pool"]
"""Imported once by the fork server, so each child starts with Weir and its libraries loaded
(starting four children at once took 2.6 s without it, 1.1 s with it, on a loaded machine)."""

logger = logging.getLogger(__name__)

DIED = (
    "The process running this task died before it returned: it was killed (by the out-of-memory "
    "killer?), crashed in native code or called os._exit(). The next task gets a new process."
)


@dataclasses.dataclass(frozen=True, slots=True)
class SyncCall:
    """What a child process needs to run one attempt (it is pickled to the child)."""

    dags_folder: Path
    claim: ClaimAccepted

    @classmethod
    def create(cls, dags_folder: Path, claim: ClaimAccepted) -> SyncCall:
        return cls(dags_folder, claim)


class _Child:
    """One child process and the parent's end of its pipe; used by one attempt at a time.

    ``serve`` runs in a thread of the parent; ``kill`` may be called from the event loop at any
    moment, even while ``serve`` is still starting the process.
    """

    def __init__(self, reaper: ProcessGroupReaper) -> None:
        self._reaper = reaper
        self._lock = threading.Lock()
        self._process: multiprocessing.process.BaseProcess | None = None
        self._conn: Connection | None = None
        self._killed = False

    @property
    def is_usable(self) -> bool:
        with self._lock:
            alive = self._process is not None and self._process.is_alive()
            return alive and not self._killed

    def serve(
        self, call: SyncCall, deliver: Callable[[str], None], resources: ResourceSource | None
    ) -> Outcome | None:
        """Run one call (starting the process first if needed), handing each piece of its output
        to ``deliver`` and answering its requests for connections and variables from
        ``resources``; None if the process died."""
        try:
            conn = self._conn or self.start()
            conn.send(call)
            while True:
                kind, payload = self._receive(conn)
                if kind == "log":
                    deliver(payload)
                elif kind == "fetch":
                    conn.send(_answer(resources, *payload))
                else:
                    outcome: Outcome = payload
                    return outcome
        except (EOFError, OSError):
            # Closed here, by the only thread reading it: closing it under a blocked reader
            # would free its descriptor number for reuse while the read still uses it.
            self._close_pipe()
            return None

    def _receive(self, conn: Connection) -> Any:
        """The child's next message; EOFError as soon as the child is dead, even if something
        it started keeps the pipe open."""
        process = self._process
        assert process is not None
        if not conn.poll() and conn not in wait([conn, process.sentinel]) and not conn.poll():
            raise EOFError("the task's process died")
        return conn.recv()

    def kill(self) -> None:
        """Kill the child and what it started; the thread in ``serve`` then returns None."""
        with self._lock:
            self._killed = True
            process = self._process
        if process is None or process.pid is None:
            return
        if process.exitcode is None:  # not reaped, so its pid is still its process group's
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
        with suppress(ValueError):
            process.kill()
        self._reaper.forget(process.pid)

    def stop(self) -> None:
        """End an idle child: closing the pipe makes it return (blocking; call from a thread)."""
        process = self._process
        self._close_pipe()
        if process is not None:
            process.join(timeout=5)
            if process.is_alive():
                self.kill()
                process.join()
            if process.pid is not None:
                self._reaper.forget(process.pid)

    def start(self) -> Connection:
        """Start the process and wait until it is ready for a call (blocking)."""
        conn = self._start()
        kind, _ = self._receive(conn)
        if kind != "ready":
            raise EOFError(f"the task's process said {kind!r} before it was ready")
        return conn

    def _start(self) -> Connection:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(_PRELOAD)  # no effect once the fork server runs
        parent_end, child_end = context.Pipe()
        process = context.Process(target=_child_main, args=(child_end,), name="weir-sync-task")
        process.start()
        assert process.pid is not None
        self._reaper.watch(process.pid)  # the child leads its own group (``os.setsid``)
        child_end.close()  # the child holds its own copy: EOF here now means the child is gone
        with self._lock:
            self._process, self._conn = process, parent_end
            killed = self._killed
        if killed:  # stopped while starting
            self.kill()
            raise EOFError
        return parent_end

    def _close_pipe(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with suppress(OSError):
                conn.close()


def _answer(resources: ResourceSource | None, kind: ResourceKind, name: str) -> tuple[str, Any]:
    """The reply to a child's ``fetch``: ("found", the resource or None) or ("error", why)."""
    if resources is None:
        return "error", "This worker gives tasks no connections or variables here."
    try:
        return "found", resources.fetch(kind, name)
    except Exception as exc:  # the child raises it in the task, which may handle it
        return "error", f"Could not fetch {kind} {name!r}: {exc}"


@dataclasses.dataclass(eq=False)
class _Delivery:
    """Brings a child's output from the pipe's thread to the event loop, in the order it came
    (the outcome follows the same way, so the log is complete before the attempt returns)."""

    sink: LogSink
    loop: asyncio.AbstractEventLoop
    is_open: bool = True

    def deliver(self, text: str) -> None:
        with suppress(RuntimeError):  # the loop closed: nobody is left to read the log
            self.loop.call_soon_threadsafe(self._write, text)

    def _write(self, text: str) -> None:
        if self.is_open:
            self.sink.write(text)


class TaskProcessPool:
    """The worker's child processes for sync tasks (use it from one event loop)."""

    def __init__(self, max_workers: int, reaper: ProcessGroupReaper) -> None:
        self._reaper = reaper
        self._idle: list[_Child] = []
        self._busy: set[_Child] = set()
        self._threads = concurrent.futures.ThreadPoolExecutor(
            max_workers, thread_name_prefix="weir-sync-task"
        )

    async def run(self, call: SyncCall, sink: LogSink) -> Outcome:
        """Run the call in a child process, its output going to ``sink``. Cancelling the caller
        kills the child (the task cannot be interrupted otherwise) and frees its slot."""
        child = self._take_child()
        self._busy.add(child)
        delivery = _Delivery(sink, asyncio.get_running_loop())
        resources = current_resources.get()  # the attempt's, set by the attempt handler
        outcome: Outcome | None = None
        try:
            outcome = await delivery.loop.run_in_executor(
                self._threads, child.serve, call, delivery.deliver, resources
            )
        finally:
            delivery.is_open = False  # late output of a stopped attempt has nowhere to go
            self._busy.discard(child)
            if outcome is not None and child.is_usable:
                self._idle.append(child)
            else:
                child.kill()
        return outcome if outcome is not None else Outcome.failed(DIED)

    async def warm(self) -> None:
        """Start the fork server and one idle child before the first sync task, so that no
        task's ``timeout`` pays for them (under load that took a second)."""
        child = _Child(self._reaper)
        try:
            await asyncio.to_thread(child.start)
        except (EOFError, OSError) as exc:
            child.kill()
            logger.warning("Could not start a process for sync tasks ahead of time (%s)", exc)
            return
        self._idle.append(child)

    def _take_child(self) -> _Child:
        """An idle child still alive (one killed while idle is dropped), or a new one."""
        while self._idle:
            child = self._idle.pop()
            if child.is_usable:
                return child
            child.kill()
        return _Child(self._reaper)

    async def aclose(self) -> None:
        """Kill children still running abandoned calls, end the idle ones, stop the threads."""
        for child in list(self._busy):
            child.kill()
        idle, self._idle = self._idle, []
        await asyncio.gather(*(asyncio.to_thread(child.stop) for child in idle))
        await asyncio.to_thread(self._threads.shutdown, wait=True)


# --- In the child processes --------------------------------------------------------------------

_child_caches: dict[Path, DagCache] = {}


def _child_main(conn: Connection) -> None:
    """Serve calls until the parent closes the pipe."""
    os.setsid()  # lead a process group, so that killing the attempt kills what it started
    for signum in (signal.SIGINT, signal.SIGTERM):
        # A handler, not SIG_IGN: an ignored disposition would be inherited by the processes
        # the task starts, and a handler is reset on exec.
        signal.signal(signum, _ignore_signal)
    capture.install()
    logging.getLogger().setLevel(logging.INFO)
    try:
        conn.send(("ready", None))
    except OSError:  # the parent is gone
        return
    while True:
        try:
            call: SyncCall = conn.recv()
        except (EOFError, OSError):
            return
        sink = _PipeSink(conn)
        outcome = _run_call(call, sink)
        try:
            sink.finish(outcome)
        except OSError:  # the parent is gone
            return


def _ignore_signal(signum: int, frame: object) -> None:
    return None


def _run_call(call: SyncCall, sink: _PipeSink) -> Outcome:
    """Import the task and call it, with everything it prints and logs sent to the parent."""
    capture.set_process_sink(sink)
    try:
        with capture.capture_into(sink), use_resources(_PipeResources(sink)):
            try:
                task = _child_cache(call.dags_folder).load_task(call.claim)
            except BaseException as exc:  # a DAG file calling sys.exit() is a failure too
                return Outcome.from_exception(exc)
            return invoke(task, call.claim)
    finally:
        capture.set_process_sink(None)


def _child_cache(dags_folder: Path) -> DagCache:
    cache = _child_caches.get(dags_folder)
    if cache is None:
        cache = _child_caches[dags_folder] = DagCache(dags_folder)
    return cache


class _PipeSink:
    """Buffers a child's output by line and sends it up the pipe (threads may write too); after
    ``finish`` has sent the outcome, what a thread the task left behind writes is dropped."""

    FLUSH_CHARS = 8192

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._lock = threading.Lock()
        self._asking = threading.Lock()  # one question on the pipe at a time
        self._buffer: list[str] = []
        self._size = 0
        self._finished = False

    def write(self, text: str) -> None:
        with self._lock:
            if self._finished:
                return
            self._buffer.append(text)
            self._size += len(text)
            if "\n" in text or self._size >= self.FLUSH_CHARS:
                self._flush()

    def finish(self, outcome: Outcome) -> None:
        with self._lock:
            self._flush()
            self._finished = True
            self._send(("result", outcome))

    def ask(self, kind: ResourceKind, name: str) -> Resource | None:
        """Ask the parent for a connection or variable. The parent registers its secrets with the
        attempt's log masker before it answers, so the output sent after this is masked."""
        with self._asking:
            with self._lock:
                if self._finished:
                    raise WeirError("The task has ended; its connections are no longer available.")
                self._send(("fetch", (kind, name)))
            try:
                reply, value = self._conn.recv()
            except (EOFError, OSError) as exc:
                raise WeirError("The worker is gone; cannot fetch connections.") from exc
        if reply == "error":
            raise WeirError(value)
        found: Resource | None = value
        return found

    def _flush(self) -> None:
        if self._buffer:
            self._send(("log", "".join(self._buffer)))
            self._buffer.clear()
            self._size = 0

    def _send(self, item: tuple[str, Any]) -> None:
        self._conn.send(item)


class _PipeResources:
    """A pool child's ``weir.resources`` source: every question goes to the worker's process."""

    def __init__(self, sink: _PipeSink) -> None:
        self._sink = sink

    def fetch(self, kind: ResourceKind, name: str) -> Resource | None:
        return self._sink.ask(kind, name)

    async def afetch(self, kind: ResourceKind, name: str) -> Resource | None:
        return await asyncio.to_thread(self._sink.ask, kind, name)
