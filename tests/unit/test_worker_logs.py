"""Log shipping and the lease, against the execution API stood in for at the transport edge."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest

from weir.messages import ClaimAccepted, TaskKind, TaskMessage
from workers.client import ExecutionClient, RetryBudget
from workers.heartbeat import LeaseKeeper
from workers.logs import AttemptLog

MESSAGE = TaskMessage(
    task_instance_id=5, attempt=2, dag_id="d", run_id="r", task_id="t", queue="default", token="k"
)
CLAIM = ClaimAccepted(
    task_instance_id=5,
    attempt=2,
    dag_id="d",
    run_id="r",
    task_id="t",
    fileloc="d.py",
    file_hash="0" * 64,
    kind=TaskKind.PYTHON,
    logical_date=datetime(2026, 1, 1, tzinfo=UTC),
    heartbeat_interval=0.01,
    lease_seconds=30.0,
)


class LogService:
    """Accepts log appends (the worker's batches); answers each item ``status``; holds the
    first request until ``release`` is set."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.bodies: list[str] = []
        self.received = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        items = json.loads(request.content)["items"]
        assert request.url.path == "/execution/v1/batch"
        assert all(item["kind"] == "log" for item in items)
        self.bodies.append("".join(item["data"] for item in items))
        self.received.set()
        if len(self.bodies) == 1:
            await self.release.wait()
        answers = [{"status": self.status, "detail": "refused"} for _ in items]
        return httpx.Response(200, json={"answers": answers})


@pytest.fixture
async def http() -> AsyncIterator[list[httpx.AsyncClient]]:
    clients: list[httpx.AsyncClient] = []
    yield clients
    for client in clients:
        await client.aclose()


def client_for(
    clients: list[httpx.AsyncClient], handler: httpx.AsyncBaseTransport
) -> ExecutionClient:
    clients.append(httpx.AsyncClient(transport=handler))
    fast = RetryBudget(logs=0.1, heartbeat=0.1, first_wait=0.01, max_wait=0.01)
    return ExecutionClient("http://weir.test", clients[-1], budget=fast)


async def test_lines_written_during_a_request_go_out_together(
    http: list[httpx.AsyncClient],
) -> None:
    service = LogService()
    log = AttemptLog(client_for(http, httpx.MockTransport(service)), MESSAGE)

    async with log.shipping():
        log.write("first\n")
        await service.received.wait()  # the first request is in flight, and held
        for n in range(100):
            log.write(f"line {n}\n")
        service.release.set()

    assert service.bodies == ["first\n", "".join(f"line {n}\n" for n in range(100))]


async def test_a_refused_log_is_dropped_without_raising(http: list[httpx.AsyncClient]) -> None:
    service = LogService(status=409)
    service.release.set()
    log = AttemptLog(client_for(http, httpx.MockTransport(service)), MESSAGE)

    async with log.shipping():
        log.write("fenced\n")
        await service.received.wait()
        log.write("never sent\n")

    assert service.bodies == ["fenced\n"]


async def test_a_refused_heartbeat_cancels_the_attempt(http: list[httpx.AsyncClient]) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        beats = json.loads(request.content)["beats"]
        ids = [beat["task_instance_id"] for beat in beats]
        return httpx.Response(
            200, json={"lease_expires_at": "2026-01-01T00:00:00Z", "renewed": [], "refused": ids}
        )

    keeper = LeaseKeeper(client_for(http, httpx.MockTransport(refuse)))
    running = asyncio.create_task(asyncio.Event().wait())

    with keeper.hold(MESSAGE, CLAIM) as lease:
        lease.running = running
        await keeper.beat()

    assert lease.is_fenced
    with pytest.raises(asyncio.CancelledError):
        await running


async def test_one_request_renews_every_running_attempt(http: list[httpx.AsyncClient]) -> None:
    bodies: list[dict[str, object]] = []

    def renew(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        bodies.append(body)
        ids = [beat["task_instance_id"] for beat in body["beats"]]
        return httpx.Response(
            200, json={"lease_expires_at": "2026-01-01T00:00:00Z", "renewed": ids, "refused": []}
        )

    keeper = LeaseKeeper(client_for(http, httpx.MockTransport(renew)))
    other = MESSAGE.model_copy(update={"task_instance_id": 6, "token": "j"})
    first = asyncio.create_task(asyncio.Event().wait())
    second = asyncio.create_task(asyncio.Event().wait())

    with keeper.hold(MESSAGE, CLAIM) as one, keeper.hold(other, CLAIM) as two:
        one.running, two.running = first, second
        await keeper.beat()

    assert bodies == [
        {
            "beats": [
                {"task_instance_id": 5, "attempt": 2, "token": "k"},
                {"task_instance_id": 6, "attempt": 2, "token": "j"},
            ]
        }
    ]
    assert not one.is_fenced and not two.is_fenced
    assert not first.done() and not second.done()
    first.cancel()
    second.cancel()


async def test_a_short_attempts_log_rides_with_the_report(http: list[httpx.AsyncClient]) -> None:
    service = LogService()
    service.release.set()
    log = AttemptLog(client_for(http, httpx.MockTransport(service)), MESSAGE)

    async with log.shipping():
        log.write("started\n")
        log.write("done\n")

    assert service.bodies == []
    assert log.tail() == "started\ndone\n"
    assert log.tail() is None


async def test_a_long_attempts_log_is_shipped_while_it_runs(http: list[httpx.AsyncClient]) -> None:
    service = LogService()
    service.release.set()
    log = AttemptLog(client_for(http, httpx.MockTransport(service)), MESSAGE)

    async with log.shipping():
        log.write("working\n")
        await asyncio.wait_for(service.received.wait(), timeout=5)
        log.write("finishing\n")

    assert service.bodies == ["working\n"]
    assert log.tail() == "finishing\n"
