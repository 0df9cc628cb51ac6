"""The ways the bench runs a Weir: a backend, and where its worker runs.

Every setup boots the API (uvicorn, scheduler, outbox relay, DAG processor) in the bench's own
event loop through the test harness. The worker runs either in that loop too (as ``weir
standalone`` does, and the only choice with SQLite's in-process queue) or as a separate
``weir worker`` process, as in production, so that the API and the worker do not share a loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tests.support.processes import weir_env
from tests.support.stack import Stack, start_stack

__all__ = ["SETUPS", "Setup", "running"]

WorkerPlace = Literal["in-process", "process"]


@dataclass(frozen=True)
class Setup:
    name: str
    backend: Literal["sqlite", "postgres"]
    worker: WorkerPlace

    @property
    def label(self) -> str:
        broker = "in-process queue" if self.backend == "sqlite" else "RabbitMQ"
        where = "worker in the API's loop" if self.worker == "in-process" else "worker process"
        return f"{self.backend} + {broker}, {where}"


SETUPS = {
    setup.name: setup
    for setup in (
        Setup("sqlite", "sqlite", "in-process"),
        Setup("postgres", "postgres", "process"),
        Setup("postgres-inproc", "postgres", "in-process"),
    )
}


@contextlib.asynccontextmanager
async def running(
    setup: Setup, workdir: Path, *, concurrency: int, python_prefix: tuple[str, ...] = ()
) -> AsyncIterator[Stack]:
    """A running Weir for ``setup``; ``python_prefix`` goes before ``-m weir`` (e.g. cProfile)."""
    overrides = {"log_level": "WARNING", "worker_concurrency": concurrency}
    in_process = setup.worker == "in-process"
    async with start_stack(
        setup.backend, workdir, workers=1 if in_process else 0, **overrides
    ) as stack:
        if in_process:
            yield stack
        else:
            async with _worker_process(stack, workdir / "worker.log", python_prefix):
                yield stack


@contextlib.asynccontextmanager
async def _worker_process(
    stack: Stack, log: Path, python_prefix: tuple[str, ...]
) -> AsyncIterator[None]:
    """``weir worker`` against ``stack``; stopped with SIGTERM (it drains, then exits).

    Waited for asynchronously: a stopping worker may still call the API, which runs in this loop.
    """
    s = stack.settings
    env = weir_env(
        broker_url=s.broker_url,
        broker_namespace=s.broker_namespace,
        api_url=s.api_url,
        dags_folder=s.dags_folder,
        worker_concurrency=s.worker_concurrency,
        log_level=s.log_level,
    )
    with log.open("wb") as sink:
        process = await asyncio.create_subprocess_exec(
            sys.executable, *python_prefix, "-m", "weir", "worker",
            env=env, stdout=sink, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
    try:
        yield
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(30):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()
