"""A real ``weir api`` process serving a seeded database, for the benchmarks that read it
(``bench.api_lists``, ``bench.dashboard_pages``) and their smoke test.

The API runs with RabbitMQ under a namespace of its own (its queues are deleted afterwards) and
the benchmark's DAGs folder; its scheduler, relay and DAG processor run as in production but find
nothing to do on a seeded, finished history.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import sys
import uuid
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import httpx
from rich.console import Console

from tests.support.processes import is_serving, spawn, weir_env
from tests.support.services import rabbitmq_url, require_rabbitmq
from tests.support.stack import free_port, wait_until

__all__ = ["serving_api"]

console = Console(width=None if sys.stdout.isatty() else 140)


@contextlib.asynccontextmanager
async def serving_api(
    database_url: str, workdir: Path, extra_env: Mapping[str, object] | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """A ``weir api`` process on ``database_url`` and an admin (bootstrap token) client of it.

    Its DAGs folder is ``workdir / "dags"`` (created if missing; write DAG files there before
    serving), its log ``workdir / "logs" / "api.log"``. ``extra_env`` adds settings, named as
    ``Settings`` fields (``bootstrap_admin_password=…`` becomes ``WEIR_BOOTSTRAP_ADMIN_PASSWORD``).
    """
    await require_rabbitmq(rabbitmq_url())
    port, token = free_port(), f"weir_bench_{secrets.token_urlsafe(16)}"
    namespace = f"bench-{uuid.uuid4().hex[:10]}"
    (workdir / "dags").mkdir(parents=True, exist_ok=True)
    settings: dict[str, object] = {
        "database_url": database_url,
        "broker_url": rabbitmq_url(),
        "broker_namespace": namespace,
        "dags_folder": workdir / "dags",
        "secret_key": secrets.token_urlsafe(32),
        "bootstrap_admin_token": token,
        "log_level": "WARNING",
        **(extra_env or {}),
    }
    env = weir_env(**settings)
    url = f"http://127.0.0.1:{port}"
    try:
        with spawn("api", ["api", "--port", str(port)], env, workdir / "logs") as api:
            try:
                await wait_until(lambda: asyncio.to_thread(is_serving, url), 60, interval=0.2)
            except AssertionError:
                raise RuntimeError(f"weir api did not start:\n{api.output()[-3000:]}") from None
            headers = {"Authorization": f"Bearer {token}"}
            async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as client:
                yield client
            console.print(f"[dim]weir api log: {api.log}[/]")
    finally:
        await _delete_queues(namespace)


async def _delete_queues(namespace: str) -> None:
    from weir.broker.rabbitmq import RabbitMQBroker

    broker = RabbitMQBroker(rabbitmq_url(), namespace=namespace)
    with contextlib.suppress(Exception):
        await broker.connect()
        await broker.delete_namespace(["default"])
    await broker.close()
