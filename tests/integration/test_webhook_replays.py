"""Replays and floods of webhook calls: the timestamped style signs the delivery id, so a captured
call cannot start a second run under a new id; forged calls are recorded, but only the newest
``WEIR_WEBHOOK_REJECTED_KEPT`` rejected deliveries per hook are kept."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from tests.integration.test_webhooks import (
    ORDERS,
    create_hook,
    deliver,
    github_headers,
    runs_of,
    timestamped_headers,
)
from tests.support.stack import Stack, start_stack

KEPT = 10


async def _count(stack: Stack, hook_id: str, verdict: str) -> int:
    response = await stack.client.get(
        f"/api/v1/webhooks/{hook_id}/deliveries", params={"verdict": verdict, "limit": 1}
    )
    assert response.status_code == 200, response.text
    total: int = response.json()["total"]
    return total


async def test_a_captured_timestamped_call_does_not_replay_under_a_new_id(stack: Stack) -> None:
    stack.write_dag("orders.py", ORDERS)
    await stack.wait_for_dag("orders")
    hook = await create_hook(stack, name="stamped", signature="timestamped")
    body = json.dumps({"order_id": 1}).encode()
    captured = timestamped_headers(hook["secret"], body, int(time.time()), "order-1")

    first = await deliver(stack, "orders.stamped", body, captured)
    assert first.status_code == 202, first.text
    replayed = await deliver(stack, "orders.stamped", body, {**captured, "X-Weir-Delivery": "new"})
    assert replayed.status_code == 401, replayed.text
    assert "does not match" in replayed.json()["detail"]
    unnamed = {k: v for k, v in captured.items() if k != "X-Weir-Delivery"}
    missing = await deliver(stack, "orders.stamped", body, unnamed)
    assert missing.status_code == 401 and "x-weir-delivery" in missing.json()["detail"]
    again = await deliver(stack, "orders.stamped", body, captured)
    assert (again.status_code, again.json()["verdict"]) == (200, "duplicate")
    assert len(await runs_of(stack, "orders")) == 1


async def test_forged_calls_keep_only_the_newest_rejected_deliveries(
    backend: str, tmp_path: Path
) -> None:
    async with start_stack(backend, tmp_path, webhook_rejected_kept=KEPT) as stack:
        stack.write_dag("orders.py", ORDERS)
        await stack.wait_for_dag("orders")
        hook = await create_hook(stack, name="shop")
        body = json.dumps({"order_id": 2}).encode()
        genuine_headers = github_headers(hook["secret"], body, "g")
        assert (await deliver(stack, "orders.shop", body, genuine_headers)).status_code == 202

        forged = github_headers("not the secret", body)
        answers = await asyncio.gather(
            *(deliver(stack, "orders.shop", body, forged) for _ in range(3 * KEPT))
        )
        assert {a.status_code for a in answers} == {401}
        # Concurrent calls each trim what had committed when they ran; the next one trims the
        # rest. Replays of a verified call are rejected deliveries too, bounded the same way.
        assert (await deliver(stack, "orders.shop", body, genuine_headers)).status_code == 200

        assert await _count(stack, "orders.shop", "bad_signature") == KEPT - 1
        assert await _count(stack, "orders.shop", "duplicate") == 1
        assert await _count(stack, "orders.shop", "accepted") == 1  # never trimmed
