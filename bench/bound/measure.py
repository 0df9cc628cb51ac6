"""What the minimal core does on this machine right now: a fan-out's throughput and CPU per task,
a chain's hop, and trigger latency, all measured in this one process (scheduler side, worker
side and the measurement share one event loop; PostgreSQL and RabbitMQ are the servers named).
"""

from __future__ import annotations

import asyncio
import logging
import math
import statistics
import time
import uuid
from dataclasses import asdict, dataclass

import aio_pika

from bench.bound.pipeline import Pipeline, open_pipeline
from bench.bound.scratch import scratch_database, scratch_queue
from bench.bound.statements import HOPS_MS
from bench.metrics import percentile

__all__ = ["BoundResult", "measure_bound"]

logger = logging.getLogger(__name__)

RUN_TIMEOUT = 120.0
"""Seconds any one measured run may take before the measurement fails instead of hanging."""

WARMUP_TASKS = 50
"""A small fan-out first, not measured: connections, prepared statements and the queue warm up."""

FANOUT_REPEATS = 3
"""Measured fan-outs; the median is reported, so that one run disturbed by a neighbour on a
shared machine does not become the yardstick."""


@dataclass(frozen=True)
class BoundResult:
    """The minimal core's figures; Weir's are read as ratios to these."""

    fanout_tasks: int
    fanout_tasks_per_s: float
    """Tasks / (first queueing statement sent → last success committed); median of the runs."""
    cpu_ms_per_task: float
    """CPU time of this process over the same interval (all of both sides), per task; median."""
    hop_p50_ms: float
    hop_p95_ms: float
    """Chain: a task's ``started_at`` - its upstream's ``ended_at`` (server clock)."""
    trigger_p50_ms: float
    """Trigger statement sent → its task's claim committed, sequential triggers."""

    def as_dict(self) -> dict[str, float]:
        return {name: float(value) for name, value in asdict(self).items()}


async def measure_bound(
    database_url: str, amqp_url: str, *, fanout: int = 500, chain: int = 50, triggers: int = 20
) -> BoundResult:
    """Measure on a scratch database and queue of its own, created here and removed at the end.

    ``database_url`` (SQLAlchemy form) names the PostgreSQL server; ``amqp_url`` the RabbitMQ.
    """
    if min(fanout, chain, triggers) < 1 or chain < 2:
        raise ValueError("fanout and triggers must be at least 1, chain at least 2")
    name = f"weir_bound_{uuid.uuid4().hex[:12]}"
    logger.info("Bound: scratch database and queue %s", name, extra={"scratch_name": name})
    broker = await aio_pika.connect(amqp_url)
    try:
        async with (
            scratch_database(database_url, name) as dsn,
            scratch_queue(broker, name) as queue,
            open_pipeline(dsn, broker, queue) as pipeline,
        ):
            await _fanout(pipeline, min(fanout, WARMUP_TASKS))
            fanouts = [await _fanout(pipeline, fanout) for _ in range(FANOUT_REPEATS)]
            hops = await _chain_hops_ms(pipeline, chain)
            trigger_ms = [await _trigger_ms(pipeline) for _ in range(triggers)]
    finally:
        await broker.close()
    return BoundResult(
        fanout_tasks=fanout,
        fanout_tasks_per_s=statistics.median(tasks_per_s for tasks_per_s, _ in fanouts),
        cpu_ms_per_task=statistics.median(cpu_ms for _, cpu_ms in fanouts),
        hop_p50_ms=percentile(hops, 50),
        hop_p95_ms=percentile(hops, 95),
        trigger_p50_ms=percentile(trigger_ms, 50),
    )


async def _fanout(pipeline: Pipeline, tasks: int) -> tuple[float, float]:
    """Tasks per second and CPU milliseconds per task of one run of ``tasks`` parallel tasks."""
    run_id = await pipeline.create_run(tasks)
    cpu_start, start = time.process_time(), time.perf_counter()
    queued = await pipeline.queue_roots(run_id)
    async with asyncio.timeout(RUN_TIMEOUT):
        end = await pipeline.tally.until_done(run_id, tasks)
    cpu = time.process_time() - cpu_start
    if queued != tasks:
        raise RuntimeError(f"Queued {queued} of the fan-out's {tasks} tasks")
    return tasks / (end - start), cpu * 1000.0 / tasks


async def _chain_hops_ms(pipeline: Pipeline, tasks: int) -> list[float]:
    """Every hop of one chain of ``tasks``, in milliseconds."""
    run_id = await pipeline.create_run(tasks, is_chain=True)
    await pipeline.queue_roots(run_id)
    async with asyncio.timeout(RUN_TIMEOUT):
        await pipeline.tally.until_done(run_id, tasks)
    hops = [float(row["hop_ms"]) for row in await pipeline.fetch(HOPS_MS, run_id)]
    if len(hops) != tasks - 1 or not all(math.isfinite(hop) for hop in hops):
        raise RuntimeError(f"The chain of {tasks} recorded {len(hops)} hops: {hops}")
    return hops


async def _trigger_ms(pipeline: Pipeline) -> float:
    """Trigger → running of one one-task run, waiting for its success before returning."""
    start = time.perf_counter()
    run_id, task_id = await pipeline.trigger()
    async with asyncio.timeout(RUN_TIMEOUT):
        running_at = await pipeline.tally.until_running(task_id)
        await pipeline.tally.until_done(run_id, 1)
    return (running_at - start) * 1000.0
