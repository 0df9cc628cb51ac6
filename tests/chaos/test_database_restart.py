"""PostgreSQL restarted mid-load (``pg_ctl restart -m fast``: every session ends, the server is
gone for a moment). DESIGN.md: every state write is a compare-and-set in a short transaction, the
outbox makes wake-ups survive a crash, and the fences make every retry harmless; so the load
passes with nothing lost, doubled or stuck, and work resumes within seconds of each restart."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from tests.chaos.cluster import Cluster
from tests.chaos.dags import LOAD_TASKS
from tests.chaos.load import DAG_ID, first_end_after, inflict_until_done, start_load
from tests.chaos.verdict import judge
from tests.support.private_postgres import PrivatePostgres

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(240)]

RESTARTS = 3
"""Restarts per pass, two seconds apart: the 200-task load outlasts at least two of them."""


async def test_restarting_postgresql_mid_load_loses_nothing(
    cluster: Cluster, private_postgres: PrivatePostgres, figures: dict[str, Any]
) -> None:
    run_ids = await start_load(cluster)
    downtime: list[float] = []

    async def restart() -> None:
        stopped = time.monotonic()
        await asyncio.to_thread(private_postgres.restart)
        downtime.append(time.monotonic() - stopped)

    loop = await inflict_until_done(cluster, run_ids, restart, every=2.0, limit=RESTARTS)

    figures.update(await judge(cluster, DAG_ID, run_ids, LOAD_TASKS))
    stalls = first_end_after(cluster, loop.fault_moments)
    figures.update(
        restarts=len(loop.results),
        server_down_seconds=[round(d, 2) for d in downtime],
        seconds_to_first_task_end_after_each_restart=stalls,
        load_seconds=round(loop.load_seconds, 1),
        seconds_from_last_restart_to_done=round(loop.seconds_after_last_fault, 1),
    )
    assert len(loop.results) >= 2, f"the load ended before the faults meant anything: {figures}"
    assert max(stalls) < 15, f"work stalled after a restart: {figures}"
