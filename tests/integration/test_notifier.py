"""The failure notifier is a durable outbox, on both backends: a summary written while the
receiver is down survives a restart of the service and arrives afterwards, and two replicas
sharing one database deliver it once.

The services here run without a worker: the DAG's run fails by its ``dagrun_timeout`` while its
task waits queued, which is enough for the scheduler to fail it and write the notification.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.db.engine import Database
from app.db.models import Notification
from app.notifications import ID_HEADER
from tests.support.databases import (
    create_postgres_database,
    drop_postgres_database,
    sqlite_database_url,
)
from tests.support.services import rabbitmq_url, require_rabbitmq
from tests.support.stack import Stack, free_port, run_stack, stack_settings, wait_until
from weir.config import Settings
from weir.runtime import QuietServer

SWEEP = 60.0  # the notifier must wake for its rows by itself, long before a sweep

DOOMED = """
    from weir import dag, task

    @dag(dagrun_timeout=1)
    def doomed():
        @task
        def never_runs() -> None:
            pass

        never_runs()

    doomed()
"""


@dataclass
class Receiver:
    """An endpoint that takes ``delay`` seconds to answer 204, counting requests in flight."""

    delay: float = 0.0
    requests: list[tuple[bytes, dict[str, str]]] = field(default_factory=list)
    in_flight: int = 0

    async def endpoint(self, request: Request) -> Response:
        self.in_flight += 1
        try:
            self.requests.append((await request.body(), dict(request.headers)))
            await asyncio.sleep(self.delay)
            return Response(status_code=204)
        finally:
            self.in_flight -= 1


@contextlib.asynccontextmanager
async def receiving(receiver: Receiver, port: int) -> AsyncIterator[None]:
    """Serve ``receiver`` on ``port`` (until then, connections to it are refused)."""
    app = Starlette(routes=[Route("/hook", receiver.endpoint, methods=["POST"])])
    server = QuietServer(app, "127.0.0.1", port, "warning")
    task = asyncio.create_task(server.serve())

    async def started() -> bool:
        return server.started

    try:
        await wait_until(started)
        yield
    finally:
        server.shutdown()
        await task


@contextlib.asynccontextmanager
async def database(backend: str, tmp_path: Path) -> AsyncIterator[str]:
    """A migrated database that outlives the services started on it."""
    if backend == "sqlite":
        yield await sqlite_database_url(tmp_path)
        return
    await require_rabbitmq(rabbitmq_url())
    url = await create_postgres_database()
    try:
        yield url
    finally:
        await drop_postgres_database(url)


def replica_settings(settings: Settings) -> Settings:
    """The same deployment on another port: a second replica."""
    port = free_port()
    return settings.model_copy(update={"port": port, "api_url": f"http://127.0.0.1:{port}"})


async def notifications(db: Database) -> list[Notification]:
    async with db.sessions() as session:
        return list((await session.scalars(select(Notification))).all())


async def fail_a_run(stack: Stack) -> str:
    stack.write_dag("doomed.py", DOOMED)
    await stack.wait_for_dag("doomed")
    run_id = await stack.trigger("doomed")
    assert await stack.wait_for_run("doomed", run_id, timeout=20) == "failed"
    return run_id


def check_summary(body: bytes, run_id: str) -> None:
    summary: dict[str, Any] = json.loads(body)
    assert summary["event"] == "dag_run.failed"
    assert (summary["dag_id"], summary["run_id"], summary["state"]) == ("doomed", run_id, "failed")
    assert [t["task_id"] for t in summary["failed_tasks"]] == ["never_runs"]


async def test_a_notification_survives_a_restart(backend: str, tmp_path: Path) -> None:
    receiver, port = Receiver(), free_port()
    async with database(backend, tmp_path) as url:
        settings = stack_settings(
            backend, tmp_path, url, free_port(),
            notify_url=f"http://127.0.0.1:{port}/hook", sweep_interval=SWEEP,
        )  # fmt: skip
        async with run_stack(backend, settings, workers=0) as first:
            run_id = await fail_a_run(first)

            async def refused() -> list[Notification] | None:
                rows = await notifications(first.database)
                return rows if rows and rows[0].last_error else None

            [row] = await wait_until(refused)
        assert row.attempts >= 1 and row.gave_up_at is None and not receiver.requests

        async with (
            receiving(receiver, port),
            run_stack(backend, replica_settings(settings), workers=0) as second,
        ):

            async def delivered() -> bool:
                return bool(receiver.requests) and not await notifications(second.database)

            await wait_until(delivered)
    [(body, headers)] = receiver.requests
    check_summary(body, run_id)
    assert headers[ID_HEADER.lower()] == str(row.id)


async def test_two_replicas_send_a_notification_once(backend: str, tmp_path: Path) -> None:
    receiver, port = Receiver(delay=0.5), free_port()
    async with database(backend, tmp_path) as url:
        settings = stack_settings(
            backend, tmp_path, url, free_port(),
            notify_url=f"http://127.0.0.1:{port}/hook", sweep_interval=1.0,
        )  # fmt: skip
        async with (
            run_stack(backend, settings, workers=0) as one,
            run_stack(backend, replica_settings(settings), workers=0),
        ):
            run_id = await fail_a_run(one)

            async def tried() -> bool:
                rows = await notifications(one.database)
                return bool(rows) and rows[0].attempts >= 2  # both replicas had a chance

            await wait_until(tried)
            async with receiving(receiver, port):

                async def delivered() -> bool:
                    return bool(receiver.requests) and not await notifications(one.database)

                await wait_until(delivered)

                async def quiet() -> bool:
                    return receiver.in_flight == 0

                await wait_until(quiet)
    [(body, _)] = receiver.requests
    check_summary(body, run_id)
