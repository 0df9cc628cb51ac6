"""The ways the bench runs a Weir, each shaped as it runs in production: real ``weir`` processes
started from the command line and configured through ``WEIR_*`` variables, as an operator would.

``postgres``: ``weir api`` (REST and execution API, scheduler, outbox relay, DAG processor) and
``weir worker``, two processes, on a fresh PostgreSQL database and RabbitMQ queues of their own.
``sqlite``: ``weir standalone``, one process (API, scheduler and a worker), on a SQLite file and the
in-process queue: the embedded shape.

The bench talks to them over HTTP only and reads their CPU and memory from ``/proc``; nothing of
Weir runs in the bench's own process.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import httpx

from bench.weir_client import BenchError, WeirClient
from tests.support.databases import create_postgres_database, drop_postgres_database
from tests.support.processes import weir_env
from tests.support.services import rabbitmq_url, require_rabbitmq
from tests.support.stack import free_port

__all__ = ["SETUPS", "Deployment", "Setup", "running"]

_START_TIMEOUT = 90.0
_STOP_TIMEOUT = 30.0


@dataclass(frozen=True)
class Setup:
    name: str
    backend: Literal["sqlite", "postgres"]
    label: str


SETUPS = {
    setup.name: setup
    for setup in (
        Setup(
            "postgres", "postgres", "weir api + weir worker (2 processes), PostgreSQL + RabbitMQ"
        ),
        Setup("sqlite", "sqlite", "weir standalone (1 process), SQLite + in-process queue"),
    )
}


@dataclass
class Deployment:
    """A running Weir: its client, DAGs folder, and processes by role (``api`` and ``worker``,
    or ``standalone`` which is both)."""

    setup: Setup
    client: WeirClient
    dags_folder: Path
    processes: dict[str, asyncio.subprocess.Process] = field(default_factory=dict)
    logs: dict[str, Path] = field(default_factory=dict)

    @property
    def pids(self) -> dict[str, int]:
        return {role: process.pid for role, process in self.processes.items()}

    @property
    def api_role(self) -> str:
        return "api" if "api" in self.processes else "standalone"

    def write_dag(self, name: str, source: str) -> None:
        (self.dags_folder / name).write_text(source)

    def check_alive(self) -> None:
        """``BenchError`` with the end of its log if one of the processes has ended."""
        for role, process in self.processes.items():
            if process.returncode is not None:
                tail = self.logs[role].read_text(errors="replace")[-3000:]
                raise BenchError(f"weir {role} exited with {process.returncode}:\n{tail}")


@dataclass(frozen=True)
class _Start:
    """What the bench passes to every setup."""

    workdir: Path
    concurrency: int
    prefixes: Mapping[str, tuple[str, ...]]
    """Per role, Python arguments before ``-m weir`` (``-m cProfile -o …`` when profiling)."""
    dag_files: Mapping[str, str]

    def dags_folder(self) -> Path:
        """The DAGs folder, with the DAG files in it before any process starts: the API's first
        pass over the folder parses them while it is still starting."""
        folder = self.workdir / "dags"
        folder.mkdir(parents=True, exist_ok=True)
        for name, source in self.dag_files.items():
            (folder / name).write_text(source)
        return folder


@contextlib.asynccontextmanager
async def running(
    setup: Setup,
    workdir: Path,
    *,
    concurrency: int,
    dag_files: Mapping[str, str] | None = None,
    prefixes: Mapping[str, tuple[str, ...]] | None = None,
) -> AsyncIterator[Deployment]:
    """A running Weir for ``setup`` with ``dag_files`` (name → source) in its DAGs folder,
    stopped (and its database and queues deleted) afterwards."""
    start = _Start(workdir, concurrency, prefixes or {}, dag_files or {})
    starter = _postgres if setup.backend == "postgres" else _standalone
    async with starter(setup, start) as deployment:
        yield deployment


def _secrets() -> dict[str, str]:
    return {
        "secret_key": secrets.token_urlsafe(32),
        "bootstrap_admin_token": f"weir_bench_{secrets.token_urlsafe(16)}",
        "log_level": "WARNING",
    }


@contextlib.asynccontextmanager
async def _postgres(setup: Setup, start: _Start) -> AsyncIterator[Deployment]:
    await require_rabbitmq(rabbitmq_url())
    database_url = await create_postgres_database()
    namespace = f"bench-{uuid.uuid4().hex[:10]}"
    port, common = free_port(), _secrets()
    dags = start.dags_folder()
    api_env = weir_env(
        database_url=database_url,
        broker_url=rabbitmq_url(),
        broker_namespace=namespace,
        dags_folder=dags,
        **common,
    )
    worker_env = weir_env(
        broker_url=rabbitmq_url(),
        broker_namespace=namespace,
        api_url=f"http://127.0.0.1:{port}",
        dags_folder=dags,
        worker_concurrency=start.concurrency,
        log_level="WARNING",
    )
    client = WeirClient(f"http://127.0.0.1:{port}", common["bootstrap_admin_token"])
    deployment = Deployment(setup, client, dags)
    try:
        async with contextlib.AsyncExitStack() as stack:
            # Entered in this order, left in the reverse: the worker stops first, while the API
            # it hands unfinished work back to is still up. Both start at once (the worker needs
            # the API only once it has a task), which halves the wait on a busy machine.
            await stack.enter_async_context(
                _process(deployment, start, "api", ["api", "--port", str(port)], api_env)
            )
            await stack.enter_async_context(
                _process(deployment, start, "worker", ["worker"], worker_env)
            )
            await _wait_ready(deployment)
            yield deployment
    finally:
        await client.aclose()
        await _delete_queues(namespace)
        await drop_postgres_database(database_url)


@contextlib.asynccontextmanager
async def _standalone(setup: Setup, start: _Start) -> AsyncIterator[Deployment]:
    port, common = free_port(), _secrets()
    dags = start.dags_folder()
    env = weir_env(worker_concurrency=start.concurrency, **common)
    args = ["standalone", "--port", str(port), "--dags-folder", str(dags)]
    args += ["--data-dir", str(start.workdir / "data")]
    client = WeirClient(f"http://127.0.0.1:{port}", common["bootstrap_admin_token"])
    deployment = Deployment(setup, client, dags)
    try:
        async with _process(deployment, start, "standalone", args, env):
            await _wait_ready(deployment)
            yield deployment
    finally:
        await client.aclose()


@contextlib.asynccontextmanager
async def _process(
    deployment: Deployment, start: _Start, role: str, args: list[str], env: dict[str, str]
) -> AsyncIterator[None]:
    """``weir ARGS`` as ``role``; stopped with SIGTERM (it drains, then exits), killed if it
    lingers. Its output goes to ``<workdir>/logs/<role>.log``."""
    log = start.workdir / "logs" / f"{role}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    prefix = start.prefixes.get(role, ())
    with log.open("wb") as sink:
        command = [sys.executable, *prefix, "-m", "weir", *args]
        process = await asyncio.create_subprocess_exec(
            *command, env=env, stdout=sink, stderr=asyncio.subprocess.STDOUT
        )
    deployment.processes[role], deployment.logs[role] = process, log
    try:
        yield
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(_STOP_TIMEOUT):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()


async def _wait_ready(deployment: Deployment) -> None:
    """Until ``/health/ready`` answers 200 (the schema checked, the loops started)."""
    deadline = asyncio.get_running_loop().time() + _START_TIMEOUT
    while True:
        deployment.check_alive()
        with contextlib.suppress(httpx.TransportError):
            if (await deployment.client.http.get("/health/ready")).status_code == 200:
                return
        if asyncio.get_running_loop().time() > deadline:
            raise BenchError(f"{deployment.setup.name} did not start in {_START_TIMEOUT:.0f} s")
        await asyncio.sleep(0.2)


async def _delete_queues(namespace: str) -> None:
    from weir.broker.rabbitmq import RabbitMQBroker

    broker = RabbitMQBroker(rabbitmq_url(), namespace=namespace)
    with contextlib.suppress(Exception):
        await broker.connect()
        await broker.delete_namespace(["default"])
    await broker.close()
