"""The worker's coalescing path at the transport edge: calls ready together travel in one
``POST /execution/v1/batch``, each answered on its own, retried within its own budget.

The service is stood in for by ``httpx.MockTransport`` (a transport-level fake, not a fake of our
own components); the real batch endpoint is covered by ``tests/integration/test_execution_batch``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from weir.messages import ClaimRequest, FinishRequest, LogAppend
from workers.client import (
    AttemptRefused,
    BodyTooLarge,
    ExecutionApiError,
    ExecutionClient,
    RetryBudget,
)

FAST = RetryBudget(
    claim=0.5, heartbeat=0.5, logs=0.5, finish=0.5, release=0.5, first_wait=0.01, max_wait=0.02
)


def claimed(ti_id: int) -> dict[str, Any]:
    return {
        "task_instance_id": ti_id,
        "attempt": 1,
        "dag_id": "d",
        "run_id": "r",
        "task_id": f"t{ti_id}",
        "fileloc": "d.py",
        "file_hash": "0" * 64,
        "kind": "python",
        "logical_date": datetime(2026, 1, 1, tzinfo=UTC).isoformat(),
        "heartbeat_interval": 2.0,
        "lease_seconds": 8.0,
    }


Answer = Callable[[dict[str, Any]], dict[str, Any]]


class BatchService:
    """Answers each item with ``answer(item)``; ``failures`` first answers (or raises) these."""

    def __init__(self, answer: Answer, *failures: httpx.Response | type[Exception]) -> None:
        self.answer = answer
        self.failures = list(failures)
        self.batches: list[list[dict[str, Any]]] = []
        self.paths: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        items = json.loads(request.content)["items"]
        self.batches.append(items)
        if self.failures:
            failure = self.failures.pop(0)
            if isinstance(failure, type):
                raise failure("connection refused", request=request)  # type: ignore[call-arg]
            return failure
        return httpx.Response(200, json={"answers": [self.answer(item) for item in items]})


def accept(item: dict[str, Any]) -> dict[str, Any]:
    if item["kind"] == "claim":
        return {"status": 200, "claim": claimed(item["task_instance_id"])}
    if item["kind"] == "finish":
        return {"status": 200, "finish": {"state": "success"}}
    return {"status": 200}


MakeClient = Callable[[BatchService], ExecutionClient]


@pytest.fixture
async def make_client() -> AsyncIterator[MakeClient]:
    made: list[tuple[httpx.AsyncClient, ExecutionClient]] = []

    def make(service: BatchService) -> ExecutionClient:
        http = httpx.AsyncClient(transport=httpx.MockTransport(service))
        client = ExecutionClient("http://weir.test/", http, budget=FAST)
        made.append((http, client))
        return client

    yield make
    for http, client in made:
        await client.aclose()
        await http.aclose()


async def test_calls_ready_together_share_one_request(make_client: MakeClient) -> None:
    service = BatchService(accept)
    client = make_client(service)

    claims = [client.claim(i, f"tok{i}", ClaimRequest(attempt=1, worker="h:1")) for i in range(5)]
    finish = client.finish(9, "tok9", FinishRequest(attempt=1, state="success", result=3))
    log = client.append_log(9, "tok9", LogAppend(attempt=1, data="x\n"))
    *accepted, finished, _ = await asyncio.gather(*claims, finish, log)

    assert [a.task_id for a in accepted] == [f"t{i}" for i in range(5)]
    assert finished.state == "success"
    assert service.paths == ["/execution/v1/batch"]
    (batch,) = service.batches
    assert [item["kind"] for item in batch] == ["claim"] * 5 + ["finish", "log"]
    assert batch[0] == {
        "attempt": 1,
        "worker": "h:1",
        "kind": "claim",
        "task_instance_id": 0,
        "token": "tok0",
    }
    assert batch[5]["result"] == 3


async def test_a_lone_call_goes_out_at_once_without_waiting_for_company(
    make_client: MakeClient,
) -> None:
    service = BatchService(accept)
    client = make_client(service)

    async with asyncio.timeout(0.5):
        await client.finish(1, "t", FinishRequest(attempt=1, state="success"))
    await client.finish(2, "t", FinishRequest(attempt=1, state="success"))

    assert [len(batch) for batch in service.batches] == [1, 1]


async def test_each_item_is_refused_on_its_own(make_client: MakeClient) -> None:
    def answer(item: dict[str, Any]) -> dict[str, Any]:
        if item["task_instance_id"] == 2:
            return {"status": 409, "detail": "not the current attempt"}
        return accept(item)

    client = make_client(BatchService(answer))
    results = await asyncio.gather(
        *(client.claim(i, "t", ClaimRequest(attempt=1, worker="h:1")) for i in (1, 2, 3)),
        return_exceptions=True,
    )

    assert isinstance(results[1], AttemptRefused)
    assert results[1].status_code == 409 and "not the current" in results[1].detail
    assert [getattr(r, "task_id", None) for r in (results[0], results[2])] == ["t1", "t3"]


async def test_transient_failures_are_retried_in_one_batch(make_client: MakeClient) -> None:
    service = BatchService(accept, httpx.ConnectError, httpx.Response(503))
    client = make_client(service)

    finished = await client.finish(1, "t", FinishRequest(attempt=1, state="success"))

    assert finished.state == "success"
    assert len(service.batches) == 3


async def test_an_item_fails_once_its_budget_is_spent(make_client: MakeClient) -> None:
    service = BatchService(accept, *([httpx.Response(503)] * 1000))
    client = make_client(service)

    with pytest.raises(ExecutionApiError, match=r"kept failing for 0\.5 s"):
        await client.finish(1, "t", FinishRequest(attempt=1, state="success"))


async def test_a_batch_too_large_is_split_so_only_the_large_item_fails(
    make_client: MakeClient,
) -> None:
    def serve(request: httpx.Request) -> httpx.Response:
        items = json.loads(request.content)["items"]
        if len(request.content) > 2000:
            return httpx.Response(413, json={"detail": "body over the limit"})
        return httpx.Response(200, json={"answers": [accept(item) for item in items]})

    http = httpx.AsyncClient(transport=httpx.MockTransport(serve))
    client = ExecutionClient("http://weir.test/", http, budget=FAST)
    try:
        small = client.finish(1, "t", FinishRequest(attempt=1, state="success", result="s"))
        large = client.finish(2, "t", FinishRequest(attempt=1, state="success", result="x" * 3000))
        results = await asyncio.gather(small, large, return_exceptions=True)
    finally:
        await client.aclose()
        await http.aclose()

    assert getattr(results[0], "state", None) == "success"
    assert isinstance(results[1], BodyTooLarge)


async def test_a_client_error_fails_the_batch_without_retrying(make_client: MakeClient) -> None:
    service = BatchService(accept, httpx.Response(422, json={"detail": "bad item"}))
    client = make_client(service)

    with pytest.raises(ExecutionApiError, match="422"):
        await client.finish(1, "t", FinishRequest(attempt=1, state="success"))
    assert len(service.batches) == 1


async def test_an_unexpected_error_fails_its_batch_and_the_sender_carries_on(
    make_client: MakeClient,
) -> None:
    calls = 0

    def serve(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("a bug in a transport")
        items = json.loads(request.content)["items"]
        return httpx.Response(200, json={"answers": [accept(item) for item in items]})

    http = httpx.AsyncClient(transport=httpx.MockTransport(serve))
    client = ExecutionClient("http://weir.test/", http, budget=FAST)
    try:
        with pytest.raises(ExecutionApiError, match="a bug in a transport"):
            await client.finish(1, "t", FinishRequest(attempt=1, state="success"))
        finished = await client.finish(2, "t", FinishRequest(attempt=1, state="success"))
    finally:
        await client.aclose()
        await http.aclose()
    assert finished.state == "success"
