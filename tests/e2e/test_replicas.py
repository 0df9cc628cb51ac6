"""Invariant 4 with real processes: two ``weir api`` replicas on one PostgreSQL database and two
workers; 50 runs triggered through both replicas run every task exactly once."""

from __future__ import annotations

import asyncio
import secrets
import textwrap
import uuid
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.support.databases import create_postgres_database, drop_postgres_database
from tests.support.processes import is_serving, spawn, weir_env
from tests.support.services import rabbitmq_url, require_rabbitmq
from tests.support.stack import free_port, wait_until

pytestmark = pytest.mark.postgres

COUNTED = """
    import os
    from pathlib import Path

    from weir import dag, get_current_context, task

    EFFECTS = Path(__file__).parent.parent / "effects.log"

    def mark() -> None:
        context = get_current_context()
        line = f"{context.run_id} {context.task_id} {context.attempt}\\n".encode()
        fd = os.open(EFFECTS, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            os.write(fd, line)  # one write with O_APPEND: lines from processes never interleave
        finally:
            os.close(fd)

    @dag
    def counted():
        @task
        def first() -> None:
            mark()

        @task
        async def left(_: None) -> None:
            mark()

        @task
        def right(_: None) -> None:
            mark()

        start = first()
        left(start)
        right(start)

    counted()
"""


async def test_two_replicas_run_every_task_exactly_once(tmp_path: Path) -> None:
    await require_rabbitmq(rabbitmq_url())
    database_url = await create_postgres_database()
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "counted.py").write_text(textwrap.dedent(COUNTED))
    token = f"weir_{secrets.token_urlsafe(16)}"
    ports = [free_port(), free_port()]
    common = {
        "database_url": database_url,
        "broker_url": rabbitmq_url(),
        "broker_namespace": f"test-{uuid.uuid4().hex[:10]}",
        "dags_folder": dags,
        "secret_key": secrets.token_urlsafe(32),
        "bootstrap_admin_token": token,
    }
    logs = tmp_path / "logs"
    try:
        with (
            spawn("api-1", ["api", "--port", str(ports[0])], weir_env(**common), logs),
            spawn("api-2", ["api", "--port", str(ports[1])], weir_env(**common), logs),
        ):
            urls = [f"http://127.0.0.1:{port}" for port in ports]
            for url in urls:
                await wait_until(lambda url=url: asyncio.to_thread(is_serving, url), timeout=30)
            worker_envs = [weir_env(**common, api_url=url, worker_concurrency=4) for url in urls]
            with (
                spawn("worker-1", ["worker"], worker_envs[0], logs),
                spawn("worker-2", ["worker"], worker_envs[1], logs),
            ):
                run_ids = await _trigger_through_both(urls, token, 50)
                await _wait_all_succeed(urls[0], token, run_ids)
    finally:
        await drop_postgres_database(database_url)
        await _delete_queues(str(common["broker_namespace"]))

    lines = (tmp_path / "effects.log").read_text().splitlines()
    counts = Counter(tuple(line.split()[:2]) for line in lines)
    expected = {(run_id, task) for run_id in run_ids for task in ("first", "left", "right")}
    assert set(counts) == expected
    assert all(n == 1 for n in counts.values()), counts.most_common(3)
    assert len(lines) == 150


async def _delete_queues(namespace: str) -> None:
    from weir.broker.rabbitmq import RabbitMQBroker

    broker = RabbitMQBroker(rabbitmq_url(), namespace=namespace)
    await broker.connect()
    try:
        await broker.delete_namespace(["default"])
    finally:
        await broker.close()


async def _trigger_through_both(urls: list[str], token: str, count: int) -> list[str]:
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(headers=headers, timeout=30) as client:

        async def dag_known() -> bool:
            answers = [await client.get(f"{url}/api/v1/dags/counted") for url in urls]
            return all(a.status_code == 200 for a in answers)

        await wait_until(dag_known, timeout=30)
        responses = await asyncio.gather(
            *(
                client.post(f"{urls[i % 2]}/api/v1/dags/counted/runs", json={"conf": {"i": i}})
                for i in range(count)
            )
        )
    assert all(r.status_code == 201 for r in responses), [r.text for r in responses][:3]
    return [r.json()["run_id"] for r in responses]


async def _wait_all_succeed(url: str, token: str, run_ids: list[str]) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(headers=headers, timeout=30) as client:

        async def all_finished() -> bool:
            response = await client.get(f"{url}/api/v1/dags/counted/runs", params={"limit": 100})
            states = {r["run_id"]: r["state"] for r in response.json()["dag_runs"]}
            return all(states.get(run_id) in ("success", "failed") for run_id in run_ids)

        await wait_until(all_finished, timeout=120, interval=0.2)
        response = await client.get(f"{url}/api/v1/dags/counted/runs", params={"limit": 100})
        states = Counter(r["state"] for r in response.json()["dag_runs"])
        assert states == {"success": len(run_ids)}
