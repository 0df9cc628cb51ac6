"""A whole Weir in the test's event loop: a real uvicorn server on a free port with its scheduler,
relay and DAG processor, and a real worker talking to it over HTTP, on either backend.

``sqlite``: a SQLite file and the in-process queue (what ``weir standalone`` runs).
``postgres``: a fresh PostgreSQL database and RabbitMQ queues in a namespace of the test's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import socket
import textwrap
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from app.db.engine import Database, create_database
from app.main import create_app
from tests.support.databases import (
    create_postgres_database,
    drop_postgres_database,
    sqlite_database_url,
)
from tests.support.services import rabbitmq_url, require_rabbitmq
from weir.broker import Broker
from weir.broker.memory import MemoryBroker
from weir.clock import Clock
from weir.config import Settings
from weir.runtime import QuietServer
from workers.main import Worker

__all__ = [
    "BACKENDS",
    "Stack",
    "free_port",
    "run_stack",
    "stack_settings",
    "start_stack",
    "wait_until",
]

BACKENDS = ("sqlite", "postgres")
FINISHED = {"success", "failed"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def wait_until(
    predicate: Callable[[], Awaitable[Any]], timeout: float = 30.0, interval: float = 0.02
) -> Any:
    """Poll ``predicate`` until it returns something truthy (tests only: production never polls)."""
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s (last value: {value!r})")
        await asyncio.sleep(interval)


@dataclass
class Stack:
    backend: str
    settings: Settings
    database: Database
    client: httpx.AsyncClient
    dags_folder: Path
    token: str
    app: Any = None
    workers: list[tuple[asyncio.Event, asyncio.Task[None]]] = field(default_factory=list)

    def write_dag(self, name: str, source: str) -> Path:
        path = self.dags_folder / name
        path.write_text(textwrap.dedent(source))
        return path

    async def wait_for_dag(self, dag_id: str, timeout: float = 30.0) -> dict[str, Any]:
        async def found() -> Any:
            response = await self.client.get(f"/api/v1/dags/{dag_id}")
            return response.json() if response.status_code == 200 else None

        result: dict[str, Any] = await wait_until(found, timeout)
        return result

    async def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        response = await self.client.post(f"/api/v1/dags/{dag_id}/runs", json={"conf": conf or {}})
        assert response.status_code == 201, response.text
        run_id: str = response.json()["run_id"]
        return run_id

    async def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 60.0) -> str:
        async def finished() -> str | None:
            response = await self.client.get(f"/api/v1/dags/{dag_id}/runs/{run_id}")
            assert response.status_code == 200, response.text
            state: str = response.json()["state"]
            return state if state in FINISHED else None

        state: str = await wait_until(finished, timeout)
        return state

    async def task_instances(self, dag_id: str, run_id: str) -> dict[str, dict[str, Any]]:
        """Every task instance of the run, page after page (a list answers 100 by default)."""
        found: dict[str, dict[str, Any]] = {}
        seen = 0
        while True:
            response = await self.client.get(
                f"/api/v1/dags/{dag_id}/runs/{run_id}/tasks",
                params={"limit": 1000, "offset": seen},
            )
            assert response.status_code == 200, response.text
            page = response.json()
            found.update((t["task_id"], t) for t in page["task_instances"])
            seen += len(page["task_instances"])
            if not page["task_instances"] or seen >= page["total"]:
                return found

    async def logs(self, dag_id: str, run_id: str, task_id: str, attempt: int | None = None) -> str:
        params: dict[str, Any] = {"format": "text"}
        if attempt is not None:
            params["attempt"] = attempt
        response = await self.client.get(
            f"/api/v1/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/logs", params=params
        )
        assert response.status_code == 200, response.text
        return response.text

    @contextlib.asynccontextmanager
    async def dashboard(self) -> AsyncIterator[httpx.AsyncClient]:
        """A client signed in to the dashboard as ``admin`` (a session cookie, like a browser)
        whose writes carry the session's CSRF token, as htmx sends it."""
        password = self.settings.bootstrap_admin_password
        assert password is not None
        async with httpx.AsyncClient(base_url=self.settings.api_url, timeout=30) as client:
            response = await client.post(
                "/login", data={"username": "admin", "password": password.get_secret_value()}
            )
            assert response.status_code == 303, response.text
            page = (await client.get("/")).text
            found = re.search(r'"X-CSRF-Token": "([0-9a-f]+)"', page)
            assert found is not None, page
            client.headers["X-CSRF-Token"] = found.group(1)
            yield client

    def worker_env(self, **settings: object) -> dict[str, str]:
        """The environment of a ``weir worker`` subprocess serving this stack."""
        from tests.support.processes import weir_env

        s = self.settings
        return weir_env(
            broker_url=s.broker_url,
            broker_namespace=s.broker_namespace,
            api_url=s.api_url,
            dags_folder=s.dags_folder,
            **settings,
        )

    def start_worker(self, broker: Broker, **overrides: Any) -> None:
        settings = self.settings.model_copy(update=overrides)
        stop = asyncio.Event()
        task = asyncio.create_task(Worker(settings, broker).run(stop), name="test-worker")
        self.workers.append((stop, task))


def stack_settings(
    backend: str, tmp_path: Path, database_url: str, port: int, **extra: Any
) -> Settings:
    dags = tmp_path / "dags"
    dags.mkdir(exist_ok=True)
    values: dict[str, Any] = {
        "database_url": database_url,
        "broker_url": rabbitmq_url() if backend == "postgres" else "memory://",
        "broker_namespace": f"test-{uuid.uuid4().hex[:10]}",
        "dags_folder": dags,
        "data_dir": tmp_path / "data",
        "api_url": f"http://127.0.0.1:{port}",
        "host": "127.0.0.1",
        "port": port,
        "secret_key": secrets.token_urlsafe(32),
        "bootstrap_admin_token": f"weir_test_{secrets.token_urlsafe(16)}",
        "bootstrap_admin_password": f"pw-{secrets.token_urlsafe(12)}",
        "worker_concurrency": 4,
        "worker_grace_period": 5.0,
        "dag_rescan_interval": 2.0,
        "log_level": "DEBUG",
    }
    values.update(extra)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@contextlib.asynccontextmanager
async def start_stack(
    backend: str,
    tmp_path: Path,
    *,
    workers: int = 1,
    clock: Clock | None = None,
    **overrides: Any,
) -> AsyncIterator[Stack]:
    """Boot a stack, yield it, and tear everything down (database and queues included).
    ``clock`` replaces the service's system clock (a test's ``MovableClock``)."""
    if backend == "postgres":
        await require_rabbitmq(rabbitmq_url())
        database_url = await create_postgres_database()
    else:
        database_url = await sqlite_database_url(tmp_path)
    port = free_port()
    settings = stack_settings(backend, tmp_path, database_url, port, **overrides)
    try:
        async with run_stack(backend, settings, workers, clock) as stack:
            yield stack
    finally:
        if backend == "postgres":
            await drop_postgres_database(database_url)


def _new_broker(settings: Settings) -> Broker:
    from weir.broker import create_broker

    return create_broker(settings)


@contextlib.asynccontextmanager
async def run_stack(
    backend: str, settings: Settings, workers: int, clock: Clock | None = None
) -> AsyncIterator[Stack]:
    database = create_database(settings.database_url)
    shared = MemoryBroker() if backend == "sqlite" else None
    service_broker = shared or _new_broker(settings)
    await service_broker.connect()
    app = create_app(settings, database, service_broker, clock=clock, manage_broker=False)
    server = QuietServer(
        app, settings.host, settings.port, "warning", on_shutdown=database.changes.close
    )
    serving = asyncio.create_task(server.serve())
    token = (
        settings.bootstrap_admin_token.get_secret_value() if settings.bootstrap_admin_token else ""
    )
    client = httpx.AsyncClient(
        base_url=settings.api_url, headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    stack = Stack(backend, settings, database, client, settings.dags_folder, token, app)
    worker_brokers: list[Broker] = []
    try:
        await wait_until(_started(server), timeout=15)
        for _ in range(workers):
            broker = shared or _new_broker(settings)
            if shared is None:
                await broker.connect()
                worker_brokers.append(broker)
            stack.start_worker(broker)
        yield stack
    finally:
        await _stop_workers(stack)
        server.shutdown()
        await asyncio.gather(serving, return_exceptions=True)
        await client.aclose()
        for broker in worker_brokers:
            await broker.close()
        await _delete_queues(service_broker)
        await service_broker.close()
        await database.dispose()


def _started(server: QuietServer) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return server.started

    return check


async def _stop_workers(stack: Stack) -> None:
    for stop, _ in stack.workers:
        stop.set()
    results = await asyncio.gather(*(task for _, task in stack.workers), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
            raise result


async def _delete_queues(broker: Broker) -> None:
    delete = getattr(broker, "delete_namespace", None)
    if delete is not None:
        with contextlib.suppress(Exception):
            await delete(["default"])
