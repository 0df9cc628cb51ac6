"""The RabbitMQ node restarted mid-load, twice. DESIGN.md: durable quorum queues, persistent
messages, publisher confirms, a robust connection that reconnects and restores its consumers, an
outbox that publishes again what was not confirmed, and fences that make a redelivery harmless;
so the load passes with nothing lost, doubled or stuck, and every process rides the restart out."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import pytest

from tests.chaos.cluster import Cluster
from tests.chaos.dags import LOAD_TASKS
from tests.chaos.load import DAG_ID, start_load
from tests.chaos.verdict import judge
from tests.support.private_rabbitmq import PrivateRabbitMQ
from tests.support.stack import wait_until

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(240)]

RESTARTS = 2
"""Restarts per pass, each after 40 more tasks have ended."""


async def test_restarting_rabbitmq_mid_load_loses_nothing(
    cluster: Cluster, private_rabbitmq: PrivateRabbitMQ, figures: dict[str, Any]
) -> None:
    run_ids = await start_load(cluster)
    restarts: list[dict[str, float]] = []
    started = time.monotonic()
    for _ in range(RESTARTS):
        await _wait_for_ends(cluster, len(cluster.ledger.ended()) + 40)
        stopped = time.monotonic()
        await asyncio.to_thread(private_rabbitmq.restart)
        back = time.monotonic()
        await _wait_for_ends(cluster, len(cluster.ledger.ended()) + 1, or_done=run_ids)
        restarts.append(
            {
                "node_down_seconds": round(back - stopped, 2),
                "seconds_to_next_task_end": round(time.monotonic() - back, 2),
            }
        )
    await cluster.wait_for_runs(DAG_ID, run_ids, timeout=180)

    figures.update(await judge(cluster, DAG_ID, run_ids, LOAD_TASKS))
    figures.update(restarts=restarts, load_seconds=round(time.monotonic() - started, 1))
    for process in [cluster.replicas[0].process, *cluster.workers]:
        assert process.process.poll() is None, f"{process.name} died:\n{process.output()[-3000:]}"
    assert all(r["seconds_to_next_task_end"] < 30 for r in restarts), figures


async def _wait_for_ends(cluster: Cluster, ends: int, or_done: Sequence[str] = ()) -> None:
    """Until the ledger holds ``ends`` ends (or every run of ``or_done`` has ended)."""

    async def progressed() -> bool:
        if len(cluster.ledger.ended()) >= ends:
            return True
        if or_done:
            states = await cluster.run_states(DAG_ID)
            return all(states.get(r) in ("success", "failed") for r in or_done)
        return False

    await wait_until(progressed, timeout=60, interval=0.1)
