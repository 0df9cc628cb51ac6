"""Two and three ``weir api`` replicas, one SIGKILLed mid-pass. DESIGN.md invariant 4: replicas
coordinate only through the database (``SKIP LOCKED``, unique keys, compare-and-set), so losing
one mid-transaction, mid-publish or mid-schedule leaves the others to finish every piece of work
exactly once.

Runs are triggered through every replica, the victim included, so it holds scheduling, relay and
request work of its own when it dies. Each worker knows every replica (``WEIR_API_URL`` with
commas); one starts with the victim, so it must fail over to the next.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.chaos.cluster import Cluster
from tests.chaos.dags import LOAD_TASKS, load_dag
from tests.chaos.load import DAG_ID, RUNS
from tests.chaos.verdict import judge
from tests.support.stack import wait_until

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(240)]


@pytest.mark.parametrize("replicas", [2, 3])
async def test_a_replica_killed_mid_pass_leaves_the_others_to_finish_everything_once(
    cluster: Cluster, replicas: int, figures: dict[str, Any]
) -> None:
    cluster.write_dag(f"{DAG_ID}.py", load_dag(cluster.ledger.path, DAG_ID))
    victim, *survivors = await cluster.start_apis(replicas)
    urls = [replica.url for replica in (victim, *survivors)]
    cluster.start_worker(urls, concurrency=4)  # talks to the victim until it dies
    cluster.start_worker(urls[1:] + urls[:1], concurrency=4)
    await cluster.wait_for_dag(DAG_ID)
    await cluster.wait_for_consumers(2)
    started = time.monotonic()
    run_ids = await cluster.trigger(DAG_ID, RUNS)

    async def mid_pass() -> bool:
        return len(cluster.ledger.ended()) >= len(run_ids) * len(LOAD_TASKS) // 3

    await wait_until(mid_pass, timeout=120, interval=0.05)
    ended_at_kill = len(cluster.ledger.ended())
    killed = cluster.kill(victim.process)
    await cluster.wait_for_runs(DAG_ID, run_ids, timeout=180)
    done = time.monotonic()

    figures.update(await judge(cluster, DAG_ID, run_ids, LOAD_TASKS))
    figures.update(
        replicas=replicas,
        task_ends_before_kill=ended_at_kill,
        seconds_from_kill_to_done=round(done - killed, 1),
        load_seconds=round(done - started, 1),
    )
    for process in [*(r.process for r in survivors), *cluster.workers]:
        assert process.process.poll() is None, f"{process.name} died:\n{process.output()[-3000:]}"
