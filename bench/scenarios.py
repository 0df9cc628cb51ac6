"""Run one DAG shape on a running stack: a warm-up run, then ``repeat`` measured runs.

A run's wall time is from just before the trigger request to the run's ``end_date`` as the
service recorded it, so how often the bench polls for the end adds nothing to it; the bench polls
gently (every 100 ms) because with an in-process worker it shares the event loop it measures.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bench.dags import DagShape
from bench.metrics import Gap, Summary, gaps, parse_time, summarize
from tests.support.stack import Stack

__all__ = ["BenchError", "RunMeasurement", "ScenarioResult", "measure", "publish_dags"]

_POLL_INTERVAL = 0.1


class BenchError(Exception):
    """A run failed or did not finish: the numbers would mean nothing."""


@dataclass(frozen=True)
class RunMeasurement:
    run_id: str
    wall_s: float
    gaps: list[Gap]


@dataclass
class ScenarioResult:
    """The measured runs of one shape on one setup; summaries are over all of them."""

    setup: str
    shape: DagShape
    warmup_s: float
    runs: list[RunMeasurement] = field(default_factory=list)

    @property
    def wall_s(self) -> float:
        """The median wall time of the measured runs."""
        return statistics.median(r.wall_s for r in self.runs)

    @property
    def tasks_per_s(self) -> float:
        return self.shape.task_count / self.wall_s

    def _pooled(self, part: str) -> Summary:
        return summarize([getattr(g, part) for r in self.runs for g in r.gaps])

    @property
    def gap(self) -> Summary:
        """End of the upstream → start of the task, pooled over every measured run."""
        return self._pooled("total_ms")

    @property
    def queue(self) -> Summary:
        """End of the upstream → ``queued_at`` (scheduler + outbox)."""
        return self._pooled("queue_ms")

    @property
    def claim(self) -> Summary:
        """``queued_at`` → start (relay + broker + the worker's claim)."""
        return self._pooled("claim_ms")


async def publish_dags(stack: Stack, shapes: Sequence[DagShape]) -> None:
    """Write every DAG file, then wait until the service knows each DAG."""
    for shape in shapes:
        stack.write_dag(f"{shape.dag_id}.py", shape.source)
    await asyncio.gather(*(stack.wait_for_dag(s.dag_id, timeout=60) for s in shapes))


async def measure(
    stack: Stack, setup: str, shape: DagShape, *, repeat: int, timeout: float
) -> ScenarioResult:
    """One warm-up run (imports, caches, connection pools), then ``repeat`` measured runs."""
    started = time.monotonic()
    await run_once(stack, shape, timeout)
    result = ScenarioResult(setup, shape, warmup_s=time.monotonic() - started)
    for _ in range(repeat):
        result.runs.append(await run_once(stack, shape, timeout))
    return result


async def run_once(stack: Stack, shape: DagShape, timeout: float) -> RunMeasurement:
    """Trigger ``shape`` and measure the run once it has succeeded."""
    triggered = datetime.now(UTC)
    run_id = await stack.trigger(shape.dag_id)
    run = await _wait_finished(stack, shape.dag_id, run_id, timeout)
    if run["state"] != "success":
        raise BenchError(f"run {run_id} of {shape.dag_id} ended {run['state']}, not success")
    task_instances = await stack.task_instances(shape.dag_id, run_id)
    wall_s = (parse_time(run["end_date"]) - triggered).total_seconds()
    return RunMeasurement(run_id, wall_s, gaps(task_instances, shape.upstreams))


async def _wait_finished(stack: Stack, dag_id: str, run_id: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = await stack.client.get(f"/api/v1/dags/{dag_id}/runs/{run_id}")
        response.raise_for_status()
        run: dict[str, Any] = response.json()
        if run["state"] in ("success", "failed"):
            return run
        await asyncio.sleep(_POLL_INTERVAL)
    raise BenchError(f"run {run_id} of {dag_id} did not finish within {timeout:.0f} s")
