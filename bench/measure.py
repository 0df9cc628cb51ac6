"""Measure runs on a running Weir: wall time from the service's own timestamps, CPU of its
processes from ``/proc`` over the same window, and the hand-off gaps of a chain.

The CPU window opens just before the first trigger request and closes when the bench sees the
last run finished (at most one poll, ``poll_interval``, after its ``end_date``); it covers every
Weir process of the setup (``process_usage`` says what a process's CPU includes), the requests
the bench makes meanwhile among them. Reading task instances for the gaps happens after the
window has closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bench.dags import DagShape
from bench.metrics import Gap, gaps, parse_time
from bench.process_usage import tree_cpu_seconds
from bench.progress import Step
from bench.setups import Deployment
from bench.weir_client import BenchError, poll_interval

__all__ = [
    "CpuUsage",
    "RunSample",
    "idle_cpu",
    "measure_cpu",
    "measure_run",
    "measure_runs",
    "trigger_latencies",
]

_PROGRESS_INTERVAL = 1.0


@dataclass
class CpuUsage:
    """CPU seconds per role (``api``, ``worker``, ``standalone``) over a window."""

    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def total_s(self) -> float:
        return sum(self.seconds.values())


@contextlib.contextmanager
def measure_cpu(pids: Mapping[str, int]) -> Iterator[CpuUsage]:
    """The CPU each process tree used during the block (filled in when it ends)."""
    usage = CpuUsage()
    before = {role: tree_cpu_seconds(pid) for role, pid in pids.items()}
    try:
        yield usage
    finally:
        usage.seconds = {role: tree_cpu_seconds(pid) - before[role] for role, pid in pids.items()}


@dataclass(frozen=True)
class RunSample:
    """One measured run (or one set of runs triggered together)."""

    tasks: int
    wall_s: float
    cpu: CpuUsage
    gaps: list[Gap] = field(default_factory=list)

    @property
    def tasks_per_s(self) -> float:
        return self.tasks / self.wall_s

    @property
    def cpu_ms_per_task(self) -> float:
        return self.cpu.total_s * 1000.0 / self.tasks


@contextlib.asynccontextmanager
async def _reporting(
    step: Step | None, count: AsyncIterator[int], total: int
) -> AsyncIterator[None]:
    """Report ``count``'s values to ``step`` every second while the block runs."""
    if step is None:
        yield
        return

    async def report() -> None:
        async for done in count:
            step.update(done, total)

    reporter = asyncio.create_task(report())
    try:
        yield
    finally:
        reporter.cancel()
        with contextlib.suppress(asyncio.CancelledError, BenchError, OSError):
            await reporter


async def _finished_tasks(deployment: Deployment, dag_id: str, run_id: str) -> AsyncIterator[int]:
    while True:
        await asyncio.sleep(_PROGRESS_INTERVAL)
        yield await deployment.client.count_tasks(dag_id, run_id, ["success", "failed"])


async def measure_run(
    deployment: Deployment,
    shape: DagShape,
    *,
    timeout: float,
    with_gaps: bool = False,
    step: Step | None = None,
) -> RunSample:
    """Trigger one run of ``shape`` and measure it once it has succeeded."""
    client = deployment.client
    with measure_cpu(deployment.pids) as cpu:
        triggered = datetime.now(UTC)
        run_id = await client.trigger(shape.dag_id)
        progress = _finished_tasks(deployment, shape.dag_id, run_id)
        async with _reporting(step, progress, shape.task_count):
            run = await client.wait_for_run(
                shape.dag_id, run_id, timeout, on_poll=lambda _: deployment.check_alive()
            )
    wall_s = (parse_time(run["end_date"]) - triggered).total_seconds()
    found: list[Gap] = []
    if with_gaps:
        found = gaps(await client.task_instances(shape.dag_id, run_id), shape.upstreams)
    return RunSample(shape.task_count, wall_s, cpu, found)


async def _finished_runs(deployment: Deployment, dag_id: str, total: int) -> AsyncIterator[int]:
    """The runs of ``dag_id`` not yet finished, counted down from ``total``."""
    started = time.monotonic()
    while True:
        deployment.check_alive()
        unfinished = await deployment.client.count_runs(dag_id, ["queued", "running"])
        yield total - unfinished
        await asyncio.sleep(poll_interval(time.monotonic() - started))


async def measure_runs(
    deployment: Deployment,
    shape: DagShape,
    count: int,
    *,
    timeout: float,
    step: Step | None = None,
) -> RunSample:
    """Trigger ``count`` runs of ``shape`` at once and measure them until the last has finished.

    The DAG must have no other unfinished run: what is waited for is "no run of it left"."""
    client = deployment.client
    deadline = time.monotonic() + timeout
    with measure_cpu(deployment.pids) as cpu:
        triggered = datetime.now(UTC)
        run_ids = await asyncio.gather(*(client.trigger(shape.dag_id) for _ in range(count)))
        async for done in _finished_runs(deployment, shape.dag_id, count):
            if step is not None:
                step.update(done, count)
            if done >= count:
                break
            if time.monotonic() > deadline:
                raise BenchError(
                    f"{count - done} of {count} runs of {shape.dag_id} still unfinished after "
                    f"{timeout:.0f} s; give them longer with --timeout, or lower the sizes"
                )
    runs = await client.runs(shape.dag_id)
    mine = [runs[run_id] for run_id in run_ids]
    failed = [r["run_id"] for r in mine if r["state"] != "success"]
    if failed:
        raise BenchError(f"{len(failed)} runs of {shape.dag_id} did not succeed: {failed[:5]}")
    ended = max(parse_time(r["end_date"]) for r in mine)
    return RunSample(shape.task_count * count, (ended - triggered).total_seconds(), cpu)


async def trigger_latencies(
    deployment: Deployment, shape: DagShape, count: int, *, timeout: float, step: Step | None
) -> list[float]:
    """Milliseconds from sending a trigger request to the first task's ``start_date``, for
    ``count`` runs triggered one after the other (each once the previous one has finished)."""
    client = deployment.client
    latencies: list[float] = []
    for number in range(count):
        sent = datetime.now(UTC)
        run_id = await client.trigger(shape.dag_id)
        await client.wait_for_run(
            shape.dag_id, run_id, timeout, on_poll=lambda _: deployment.check_alive()
        )
        tasks = await client.task_instances(shape.dag_id, run_id)
        started = min(parse_time(t["start_date"]) for t in tasks.values())
        latencies.append((started - sent).total_seconds() * 1000.0)
        if step is not None:
            step.update(number + 1, count)
    return latencies


async def idle_cpu(deployment: Deployment, seconds: float) -> dict[str, float]:
    """Percent of one core each process tree used while the bench sent nothing for ``seconds``."""
    started = time.monotonic()
    with measure_cpu(deployment.pids) as cpu:
        await asyncio.sleep(seconds)
    elapsed = time.monotonic() - started
    deployment.check_alive()
    return {role: 100.0 * used / elapsed for role, used in cpu.seconds.items()}
