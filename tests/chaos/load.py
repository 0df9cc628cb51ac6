"""The standard chaos load: 50 runs of ``load_dag`` (200 tasks of all three kinds) on one or more
replicas and two workers, and a loop that inflicts a fault again and again while it runs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from tests.chaos.cluster import Cluster
from tests.chaos.dags import load_dag

__all__ = ["DAG_ID", "RUNS", "FaultLoop", "first_end_after", "inflict_until_done", "start_load"]

DAG_ID = "chaos_load"
RUNS = 50
"""50 runs of 4 tasks: a load of 200 tasks per pass."""


async def start_load(
    cluster: Cluster, runs: int = RUNS, replicas: int = 1, workers: int = 2
) -> list[str]:
    """Start the processes, wait until the workers consume, and trigger ``runs`` runs."""
    cluster.write_dag(f"{DAG_ID}.py", load_dag(cluster.ledger.path, DAG_ID))
    await cluster.start_apis(replicas)
    for _ in range(workers):
        cluster.start_worker(concurrency=4)
    await cluster.wait_for_dag(DAG_ID)
    await cluster.wait_for_consumers(workers)
    return await cluster.trigger(DAG_ID, runs)


@dataclass
class FaultLoop:
    """What a fault loop did: each fault's result, the load's length, and the time from the last
    fault to the end of the load (how long the system took to finish once left alone)."""

    results: list[Any]
    load_seconds: float
    seconds_after_last_fault: float
    fault_moments: list[float]


async def inflict_until_done(
    cluster: Cluster,
    run_ids: list[str],
    fault: Callable[[], Awaitable[Any]],
    every: float,
    limit: int,
) -> FaultLoop:
    """Inflict ``fault`` every ``every`` seconds (at most ``limit`` times) until the runs end."""
    started = time.monotonic()
    results: list[Any] = []
    moments: list[float] = []
    waiting = asyncio.create_task(cluster.wait_for_runs(DAG_ID, run_ids, timeout=180))
    while not waiting.done() and len(results) < limit:
        done, _ = await asyncio.wait({waiting}, timeout=every)
        if not done:
            results.append(await fault())
            moments.append(time.monotonic())
    await waiting
    ended = time.monotonic()
    last = moments[-1] if moments else started
    return FaultLoop(results, ended - started, ended - last, moments)


def first_end_after(cluster: Cluster, moments: list[float]) -> list[float]:
    """Seconds from each moment (``time.monotonic``) to the next ``end`` in the ledger: how long
    work stalled after a fault. The ledger holds wall-clock times, so the moments are converted."""
    offset = time.time() - time.monotonic()
    ends = sorted(e.at for e in cluster.ledger.ended())
    lags = []
    for moment in moments:
        later = [at for at in ends if at >= moment + offset]
        lags.append(round(later[0] - (moment + offset), 2) if later else float("inf"))
    return lags
