"""Several batches in flight: a report never waits behind a batch in flight while a send slot is
free, claims and log text wait for the batch in flight or ride with a report, no more than
``MAX_IN_FLIGHT`` batches are in flight, and what is made ready in one turn of the event loop
travels together.

The service is stood in for at the transport edge (``httpx.MockTransport``) by one that holds
each batch until the test lets it go, so "in flight" is a state the test can look at.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.unit.test_worker_batching import FAST, BatchService, accept
from weir.messages import ClaimAccepted, ClaimRequest, FinishAccepted, FinishRequest
from workers.batching import MAX_IN_FLIGHT
from workers.client import ExecutionClient, RetryBudget

WAIT = 2.0
"""Seconds a test waits for something that should happen within a few turns of the loop."""


class HeldService:
    """Answers every item as accepted, but holds each batch until ``let_go`` is called."""

    def __init__(self) -> None:
        self.batches: list[list[dict[str, Any]]] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self._gates: list[asyncio.Event] = []
        self._arrived = asyncio.Condition()

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        items = json.loads(request.content)["items"]
        gate = asyncio.Event()
        async with self._arrived:
            self.batches.append(items)
            self._gates.append(gate)
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            self._arrived.notify_all()
        try:
            await gate.wait()
        finally:
            self.in_flight -= 1
        return httpx.Response(200, json={"answers": [accept(item) for item in items]})

    async def arrived(self, count: int) -> None:
        """Until ``count`` batches have arrived."""
        async with asyncio.timeout(WAIT), self._arrived:
            await self._arrived.wait_for(lambda: len(self.batches) >= count)

    def let_go(self, index: int) -> None:
        self._gates[index].set()

    def let_all_go(self) -> None:
        for gate in self._gates:
            gate.set()


@pytest.fixture
async def service() -> AsyncIterator[HeldService]:
    held = HeldService()
    yield held
    held.let_all_go()


@pytest.fixture
async def client(service: HeldService) -> AsyncIterator[ExecutionClient]:
    async with (
        httpx.AsyncClient(transport=httpx.MockTransport(service)) as http,
        ExecutionClient("http://weir.test", http, budget=FAST) as execution,
    ):
        yield execution


def claim(client: ExecutionClient, ti_id: int) -> asyncio.Task[ClaimAccepted]:
    """A claim, as the consumer makes one: in a task of its own."""
    request = ClaimRequest(attempt=1, worker="h:1")
    return asyncio.create_task(client.claim(ti_id, f"tok{ti_id}", request))


def finish(client: ExecutionClient, ti_id: int) -> asyncio.Task[FinishAccepted]:
    """A report, in a task of its own (as each attempt makes one)."""
    report = FinishRequest(attempt=1, state="success")
    return asyncio.create_task(client.finish(ti_id, f"tok{ti_id}", report))


async def turns(count: int = 10) -> None:
    """Turns of the event loop enough for a batch to be sent, were it allowed."""
    for _ in range(count):
        await asyncio.sleep(0)


async def test_a_report_goes_at_once_while_another_batch_is_in_flight(
    service: HeldService, client: ExecutionClient
) -> None:
    claims = [claim(client, i) for i in range(3)]
    await service.arrived(1)  # the claims' batch, held by the service

    async with asyncio.timeout(WAIT):  # one batch in flight at a time would wait forever here
        finishing = finish(client, 9)
        await service.arrived(2)
        service.let_go(1)
        finished = await finishing

    assert finished.state == "success"
    assert not any(task.done() for task in claims)  # the first batch is still in flight
    assert [len(batch) for batch in service.batches] == [3, 1]
    service.let_go(0)
    assert [accepted.task_id for accepted in await asyncio.gather(*claims)] == ["t0", "t1", "t2"]


async def test_several_batches_are_in_flight_but_never_more_than_the_bound(
    service: HeldService, client: ExecutionClient
) -> None:
    reports = []
    for i in range(MAX_IN_FLIGHT):  # one report per batch: each waits until the last arrived
        reports.append(finish(client, i))
        await service.arrived(i + 1)
    waiting = [finish(client, i) for i in range(10, 13)]
    await turns()

    assert service.in_flight == MAX_IN_FLIGHT
    assert len(service.batches) == MAX_IN_FLIGHT
    service.let_go(2)  # a slot frees: everything that waited goes, together
    await service.arrived(MAX_IN_FLIGHT + 1)
    assert [item["task_instance_id"] for item in service.batches[-1]] == [10, 11, 12]

    service.let_all_go()
    await asyncio.gather(*reports, *waiting)
    assert service.most_in_flight == MAX_IN_FLIGHT
    assert client.batches_sent == MAX_IN_FLIGHT + 1


async def test_claims_wait_for_the_batch_in_flight_and_then_go_together(
    service: HeldService, client: ExecutionClient
) -> None:
    first = claim(client, 0)
    await service.arrived(1)
    later = []
    for i in range(1, 4):  # one at a time, as a refilled prefetch delivers them
        later.append(claim(client, i))
        await turns()

    assert len(service.batches) == 1  # a free slot is for reports; claims can wait
    service.let_go(0)
    await service.arrived(2)
    service.let_go(1)
    async with asyncio.timeout(WAIT):
        await asyncio.gather(first, *later)
    assert [[item["task_instance_id"] for item in batch] for batch in service.batches] == [
        [0],
        [1, 2, 3],
    ]


async def test_a_report_takes_what_waits_and_what_was_made_ready_with_it(
    service: HeldService, client: ExecutionClient
) -> None:
    first = claim(client, 0)
    await service.arrived(1)
    waited = claim(client, 1)
    await turns()

    # As the consumer does with a prefetch: one task per message, all created in one turn.
    burst = [claim(client, i) for i in range(2, 18)]
    report = finish(client, 99)
    await service.arrived(2)
    service.let_go(1)
    async with asyncio.timeout(WAIT):
        await asyncio.gather(waited, *burst, report)

    assert [len(batch) for batch in service.batches] == [1, 18]
    assert [item["kind"] for item in service.batches[1]] == ["claim"] * 17 + ["finish"]
    assert not first.done()


async def test_closing_the_client_cancels_the_calls_in_flight(service: HeldService) -> None:
    async with httpx.AsyncClient(transport=httpx.MockTransport(service)) as http:
        client = ExecutionClient("http://weir.test", http, budget=FAST)
        in_flight = claim(client, 1)
        await service.arrived(1)
        await client.aclose()

        with pytest.raises(asyncio.CancelledError):
            async with asyncio.timeout(WAIT):  # not left waiting for an answer that never comes
                await in_flight


async def test_no_batch_starts_while_a_failed_one_backs_off() -> None:
    service = BatchService(accept, httpx.Response(503))
    budget = RetryBudget(claim=WAIT, first_wait=0.3, max_wait=0.3)  # a backoff of 0.3-0.6 s
    async with (
        httpx.AsyncClient(transport=httpx.MockTransport(service)) as http,
        ExecutionClient("http://weir.test", http, budget=budget) as client,
    ):
        first = claim(client, 1)
        await turns()  # the first batch is sent and refused; its sender backs off
        assert len(service.batches) == 1
        second = claim(client, 2)  # a slot is free, but the service is struggling: it waits

        async with asyncio.timeout(WAIT):
            await asyncio.gather(first, second)
    sent = [[item["task_instance_id"] for item in batch] for batch in service.batches]
    assert sent == [[1], [1, 2]]
