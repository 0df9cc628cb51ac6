"""ExecutionClient at the transport edge: what it sends, which answers it retries, how it fails,
on the one-item endpoints (``coalesce=False``; the batch path is ``test_worker_batching``).

The service is stood in for by ``httpx.MockTransport`` (a transport-level fake, not a fake of our
own components); the service's real behaviour is covered by the integration tests.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import httpx
import pytest

from weir.messages import ClaimRequest, FinishRequest, HeartbeatRequest, LogAppend
from workers.client import AttemptRefused, ExecutionApiError, ExecutionClient, RetryBudget

FAST = RetryBudget(
    claim=0.5, heartbeat=0.5, logs=0.5, finish=0.5, release=0.5, first_wait=0.01, max_wait=0.02
)

CLAIMED = {
    "task_instance_id": 5,
    "attempt": 2,
    "dag_id": "d",
    "run_id": "r",
    "task_id": "t",
    "fileloc": "d.py",
    "file_hash": "0" * 64,
    "kind": "python",
    "inputs": {"up": [1]},
    "conf": {},
    "logical_date": datetime(2026, 1, 1, tzinfo=UTC).isoformat(),
    "heartbeat_interval": 5.0,
    "lease_seconds": 30.0,
}

MakeClient = Callable[["Service"], ExecutionClient]


class Service:
    """Answers requests from a script of responses (the last one repeats) and records them."""

    def __init__(self, *answers: httpx.Response | type[Exception]) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, type):
            raise answer("connection refused", request=request)  # type: ignore[call-arg]
        return answer


@pytest.fixture
async def make_client() -> AsyncIterator[MakeClient]:
    clients: list[httpx.AsyncClient] = []

    def make(service: Service) -> ExecutionClient:
        http = httpx.AsyncClient(transport=httpx.MockTransport(service))
        clients.append(http)
        return ExecutionClient("http://weir.test/", http, budget=FAST, coalesce=False)

    yield make
    for http in clients:
        await http.aclose()


def problem(status: int, detail: str) -> httpx.Response:
    return httpx.Response(status, json={"title": "Conflict", "status": status, "detail": detail})


async def test_claim_posts_the_body_with_the_attempt_token(make_client: MakeClient) -> None:
    service = Service(httpx.Response(200, json=CLAIMED))

    accepted = await make_client(service).claim(5, "tok", ClaimRequest(attempt=2, worker="h:1"))

    assert accepted.inputs == {"up": [1]}
    (request,) = service.requests
    assert request.method == "POST"
    assert str(request.url) == "http://weir.test/execution/v1/task-instances/5/claim"
    assert request.headers["authorization"] == "Bearer tok"
    assert json.loads(request.content) == {"attempt": 2, "worker": "h:1"}


async def test_transient_failures_are_retried(make_client: MakeClient) -> None:
    service = Service(
        httpx.ConnectError,
        httpx.Response(503),
        httpx.Response(429),
        httpx.Response(200, json={"state": "success"}),
    )
    body = FinishRequest(attempt=2, state="success", result={"rows": 3})

    accepted = await make_client(service).finish(5, "tok", body)

    assert accepted.state == "success"
    assert len(service.requests) == 4
    assert json.loads(service.requests[-1].content)["result"] == {"rows": 3}


@pytest.mark.parametrize("status", [401, 404, 409])
async def test_a_refusal_raises_attempt_refused_at_once(
    make_client: MakeClient, status: int
) -> None:
    service = Service(problem(status, "Attempt 2 of task instance 5 cannot heartbeat"))

    with pytest.raises(AttemptRefused) as refused:
        await make_client(service).heartbeat(5, "tok", HeartbeatRequest(attempt=2))

    assert refused.value.status_code == status
    assert refused.value.detail == "Attempt 2 of task instance 5 cannot heartbeat"
    assert len(service.requests) == 1


async def test_a_client_error_is_not_retried(make_client: MakeClient) -> None:
    service = Service(problem(422, "attempt must be >= 1"))

    with pytest.raises(ExecutionApiError, match="422: attempt must be >= 1") as failed:
        await make_client(service).append_log(5, "tok", LogAppend(attempt=2, data="x\n"))

    assert not isinstance(failed.value, AttemptRefused)
    assert len(service.requests) == 1


async def test_retries_stop_after_the_budget(make_client: MakeClient) -> None:
    service = Service(httpx.Response(502))

    with pytest.raises(ExecutionApiError, match=r"kept failing for 0\.5 s"):
        await make_client(service).append_log(5, "tok", LogAppend(attempt=2, data="x\n"))

    assert len(service.requests) > 2


async def test_an_unexpected_body_is_an_error(make_client: MakeClient) -> None:
    service = Service(httpx.Response(200, json={"nope": True}))

    with pytest.raises(ExecutionApiError, match="not a HeartbeatAccepted"):
        await make_client(service).heartbeat(5, "tok", HeartbeatRequest(attempt=2))


async def test_the_client_closes_the_http_client_it_created() -> None:
    async with ExecutionClient("http://weir.test") as client:
        http = client._http
    assert http.is_closed


async def test_failover_sends_each_try_to_the_replica_in_use() -> None:
    seen: list[str] = []

    def serve(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        if request.url.host == "down.test":
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(204)

    async with httpx.AsyncClient(transport=httpx.MockTransport(serve)) as http:
        client = ExecutionClient(
            "http://down.test,http://up.test/prefix", http, budget=FAST, coalesce=False
        )
        await client.append_log(5, "tok", LogAppend(attempt=2, data="x\n"))
        await client.append_log(5, "tok", LogAppend(attempt=2, data="y\n"))

    assert seen == [
        "http://down.test/execution/v1/task-instances/5/logs",
        "http://up.test/prefix/execution/v1/task-instances/5/logs",
        "http://up.test/prefix/execution/v1/task-instances/5/logs",
    ]


def test_an_empty_api_url_is_refused_with_the_fix() -> None:
    with pytest.raises(ValueError, match="WEIR_API_URL is empty"):
        ExecutionClient(" , ")
