"""Runs one claimed attempt, whatever its kind, and turns how it ended into an ``Outcome``.

Every process group a runner starts is registered with the worker's reaper, so none outlives the
worker (``reaper.py``).

- sync Python callables: in the process pool (``process_pool.py``);
- async Python callables: awaited in the worker's event loop, output captured per attempt
  through the contextvar-routed streams of ``capture.py``;
- shell tasks: an asyncio subprocess (``shell.py``).

A runner never raises for a failure of the task (or of finding it): it returns a failed outcome
with the traceback. Cancellation propagates: it is how the worker stops an attempt. An async task
that blocks the event loop stalls every attempt on the worker, heartbeats included; blocking work
belongs in a sync task.

The task's ``timeout`` (``claim.timeout``, seconds from the start of the attempt, the DAG file's
import included) is enforced here by cancelling the run: an async task is cancelled at its next
``await``, a shell task's process group is terminated, and a sync task's pool process is killed
and replaced. The attempt then fails with "timed out after N s" and is retried like any failure.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from weir.dag import Dag
from weir.messages import ClaimAccepted, TaskKind
from weir.task import Task
from workers.capture import LogSink, capture_into, log_line
from workers.dag_cache import DagCache
from workers.invocation import invoke_in_loop
from workers.outcome import Outcome
from workers.process_pool import SyncCall, TaskProcessPool
from workers.reaper import ProcessGroupReaper
from workers.shell import run_shell

__all__ = ["Runner"]


class Runner:
    """The worker's runners; ``aclose`` shuts the process pool down."""

    def __init__(self, dags_folder: Path, concurrency: int) -> None:
        self._dags_folder = dags_folder.resolve()  # pool processes may not share our cwd
        self._dags = DagCache(self._dags_folder)
        self._reaper = ProcessGroupReaper()
        self._pool = TaskProcessPool(max_workers=concurrency, reaper=self._reaper)

    async def run(self, claim: ClaimAccepted, log: LogSink) -> Outcome:
        """Run the attempt the claim describes; what it prints and logs goes to ``log``."""
        if claim.timeout is None:
            return await self._run(claim, log)
        try:
            async with asyncio.timeout(claim.timeout):
                return await self._run(claim, log)
        except TimeoutError:
            # The runners turn the task's own TimeoutErrors into outcomes: this one is ours.
            error = f"The attempt timed out after {claim.timeout:g} s (the task's timeout)."
            log.write(log_line(logging.ERROR, f"{error} It was stopped."))
            return Outcome.failed(error)

    async def _run(self, claim: ClaimAccepted, log: LogSink) -> Outcome:
        try:
            with capture_into(log):  # what the DAG file prints when first imported
                task = await self._load(claim)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # an import error, sys.exit() in the file, a missing task
            return Outcome.from_exception(exc)
        if task.kind is TaskKind.SHELL:
            return await run_shell(task, claim, log, self._reaper)
        if task.is_async:
            with capture_into(log):
                return await invoke_in_loop(task, claim)
        return await self._pool.run(SyncCall.create(self._dags_folder, claim), log)

    async def warm(self) -> None:
        """Start what a first sync task would otherwise wait for (see ``TaskProcessPool.warm``)."""
        await self._pool.warm()

    async def aclose(self) -> None:
        await self._pool.aclose()
        await asyncio.to_thread(self._reaper.close)

    async def load_task(self, claim: ClaimAccepted) -> Task:
        """The claimed task from the cached import (``workers.callbacks`` needs its options)."""
        return await self._load(claim)

    async def load_dags(self, fileloc: str, file_hash: str, label: str) -> dict[str, Dag]:
        """A file's DAGs from the same cache (for DAG callbacks), imported off the event loop."""
        cached = self._dags.cached_dags(fileloc, file_hash)
        if cached is not None:
            return cached
        return await asyncio.to_thread(self._dags.load_dags, fileloc, file_hash, label)

    async def _load(self, claim: ClaimAccepted) -> Task:
        cached = self._dags.cached_task(claim)
        if cached is not None:
            return cached
        # A DAG file's top-level code may be slow: keep it off the event loop.
        return await asyncio.to_thread(self._dags.load_task, claim)
