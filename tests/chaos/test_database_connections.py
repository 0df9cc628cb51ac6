"""Every Weir connection to PostgreSQL terminated (``pg_terminate_backend``) twice a second during
a load: requests, scheduler steps, relay batches and listeners lose their session mid-statement.
DESIGN.md: each transaction is short and rolls back whole, the outbox republishes what it could
not delete, and the fences make every duplicate harmless; so nothing is lost, doubled or stuck."""

from __future__ import annotations

from typing import Any

import pytest

from tests.chaos.cluster import Cluster
from tests.chaos.dags import LOAD_TASKS
from tests.chaos.load import DAG_ID, inflict_until_done, start_load
from tests.chaos.verdict import judge
from tests.support.private_postgres import PrivatePostgres

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(240)]


async def test_terminating_every_weir_connection_again_and_again_loses_nothing(
    cluster: Cluster, private_postgres: PrivatePostgres, figures: dict[str, Any]
) -> None:
    run_ids = await start_load(cluster)

    async def terminate() -> int:
        return await private_postgres.terminate_backends(cluster.database_url)

    loop = await inflict_until_done(cluster, run_ids, terminate, every=0.5, limit=400)

    figures.update(await judge(cluster, DAG_ID, run_ids, LOAD_TASKS))
    figures.update(
        terminations=len(loop.results),
        connections_terminated=sum(loop.results),
        load_seconds=round(loop.load_seconds, 1),
        seconds_from_last_termination_to_done=round(loop.seconds_after_last_fault, 1),
    )
    assert len(loop.results) >= 5, f"the load ended before the faults meant anything: {figures}"
    assert sum(loop.results) > len(loop.results), figures  # they did hit Weir's connections
