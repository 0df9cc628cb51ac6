"""The named scenarios of ``make bench``, each turning measured runs into figures.

``fanout`` and ``fanout-sync`` (async and plain ``def`` no-op tasks), ``chain`` and ``trigger``
are the headline figures: each runs ``warmup`` unmeasured runs of its DAG first. ``runs`` (many
runs of a small DAG triggered together) and ``scale`` (fan-outs and concurrent runs of growing
size) run each size once, cold; a size measured by an earlier scenario in the same setup is not run
again (``memory`` reads the peaks of the largest fan-out, which ``scale`` runs too). ``idle`` loads
many scheduled DAGs and so comes last.
"""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from bench import dags
from bench.dags import DagShape, TaskKind
from bench.figures import Figure
from bench.measure import RunSample, idle_cpu, measure_run, measure_runs, trigger_latencies
from bench.metrics import percentile
from bench.process_usage import MemoryPeaks, watch_memory
from bench.progress import SuiteProgress
from bench.setups import Deployment
from bench.weir_client import BenchError

__all__ = ["SCENARIOS", "Bench", "Sizes", "shapes_for"]

_SETTLE_S = 2.0


@dataclass(frozen=True)
class Sizes:
    width: int = 500
    length: int = 50
    triggers: int = 20
    runs: int = 100
    run_tasks: int = 10
    scale_fanouts: tuple[int, ...] = (100, 1_000, 10_000)
    scale_runs: tuple[int, ...] = (1, 100, 1_000)
    memory_width: int = 10_000
    idle_dags: int = 10_000
    idle_seconds: float = 20.0
    warmup: int = 1
    repeat: int = 1


@dataclass
class Bench:
    """One setup's measuring session: what every scenario needs, and what they share."""

    deployment: Deployment
    sizes: Sizes
    timeout: float
    progress: SuiteProgress
    figures: list[Figure] = field(default_factory=list)
    fanouts: dict[tuple[TaskKind, int], tuple[RunSample, MemoryPeaks]] = field(default_factory=dict)
    concurrent: dict[int, RunSample] = field(default_factory=dict)

    @property
    def setup(self) -> str:
        return self.deployment.setup.name

    def add(self, scenario: str, metric: str, value: float, unit: str, size: int | None) -> None:
        self.figures.append(Figure(scenario, self.setup, metric, value, unit, size))

    def add_throughput(self, scenario: str, samples: Sequence[RunSample], size: int) -> None:
        self.add(scenario, "tasks_per_s", _median(s.tasks_per_s for s in samples), "tasks/s", size)
        self.add(
            scenario, "cpu_ms_per_task", _median(s.cpu_ms_per_task for s in samples), "ms", size
        )

    async def fanout(self, kind: TaskKind, width: int) -> tuple[RunSample, MemoryPeaks]:
        """One measured run of the fan-out, with the memory peaks during it (run once)."""
        if (kind, width) not in self.fanouts:
            shape = dags.fanout(width, kind)
            with self.progress.step(f"{self.setup}: fan-out of {width} ({kind})") as step:
                async with watch_memory(self.deployment.pids) as peaks:
                    sample = await measure_run(
                        self.deployment, shape, timeout=self.timeout, step=step
                    )
            self.fanouts[kind, width] = sample, peaks
        return self.fanouts[kind, width]

    async def runs(self, count: int) -> RunSample:
        """``count`` runs of the small DAG triggered together (run once)."""
        if count not in self.concurrent:
            shape = dags.small(self.sizes.run_tasks)
            with self.progress.step(f"{self.setup}: {count} concurrent runs") as step:
                self.concurrent[count] = await measure_runs(
                    self.deployment, shape, count, timeout=self.timeout, step=step
                )
        return self.concurrent[count]

    async def warm_up(self, shape: DagShape) -> None:
        for _ in range(self.sizes.warmup):
            with self.progress.step(f"{self.setup}: warm-up {shape.dag_id}"):
                await measure_run(self.deployment, shape, timeout=self.timeout)


def _median(values: Iterable[float]) -> float:
    return statistics.median(values)


async def _headline_fanout(bench: Bench, kind: TaskKind, scenario: str) -> None:
    width = bench.sizes.width
    await bench.warm_up(dags.fanout(width, kind))
    samples = [(await bench.fanout(kind, width))[0]]
    for _ in range(bench.sizes.repeat - 1):
        bench.fanouts.pop((kind, width))
        samples.append((await bench.fanout(kind, width))[0])
    bench.add_throughput(scenario, samples, width)


async def fanout(bench: Bench) -> None:
    await _headline_fanout(bench, "async", "fanout")


async def fanout_sync(bench: Bench) -> None:
    await _headline_fanout(bench, "sync", "fanout-sync")


async def chain(bench: Bench) -> None:
    shape = dags.chain(bench.sizes.length, "async")
    await bench.warm_up(shape)
    samples: list[RunSample] = []
    for number in range(bench.sizes.repeat):
        with bench.progress.step(
            f"{bench.setup}: chain of {shape.task_count} #{number + 1}"
        ) as step:
            sample = await measure_run(
                bench.deployment, shape, timeout=bench.timeout, with_gaps=True, step=step
            )
        samples.append(sample)
    size = bench.sizes.length
    for metric, part, q in (
        ("hop_p50_ms", "total_ms", 50),
        ("hop_p95_ms", "total_ms", 95),
        ("sched_p50_ms", "queue_ms", 50),
        ("delivery_p50_ms", "claim_ms", 50),
    ):
        pooled = [getattr(gap, part) for s in samples for gap in s.gaps]
        bench.add("chain", metric, percentile(pooled, q), "ms", size)
    bench.add("chain", "cpu_ms_per_task", _median(s.cpu_ms_per_task for s in samples), "ms", size)


async def trigger(bench: Bench) -> None:
    shape, count = dags.single(), bench.sizes.triggers
    await bench.warm_up(shape)
    with bench.progress.step(f"{bench.setup}: {count} triggers", total=count) as step:
        latencies = await trigger_latencies(
            bench.deployment, shape, count, timeout=bench.timeout, step=step
        )
    bench.add("trigger", "trigger_p50_ms", percentile(latencies, 50), "ms", count)
    bench.add("trigger", "trigger_p95_ms", percentile(latencies, 95), "ms", count)


async def runs(bench: Bench) -> None:
    count = bench.sizes.runs
    bench.add_throughput("runs", [await bench.runs(count)], count)


async def scale(bench: Bench) -> None:
    fanouts = [(w, (await bench.fanout("async", w))[0]) for w in bench.sizes.scale_fanouts]
    _add_scale(bench, "scale-fanout", fanouts)
    _add_scale(bench, "scale-runs", [(n, await bench.runs(n)) for n in bench.sizes.scale_runs])


def _add_scale(bench: Bench, scenario: str, sized: Sequence[tuple[int, RunSample]]) -> None:
    """Throughput and cost per task at each size, and how much the cost grew from the smallest
    size to the largest (flat is 1x)."""
    for size, sample in sized:
        bench.add_throughput(scenario, [sample], size)
    if len(sized) > 1:
        (_, smallest), (largest_size, largest) = min(sized), max(sized)
        growth = largest.cpu_ms_per_task / smallest.cpu_ms_per_task
        bench.add(scenario, "cpu_growth", growth, "x", largest_size)


async def memory(bench: Bench) -> None:
    width = bench.sizes.memory_width
    _, peaks = await bench.fanout("async", width)
    for role, mb in sorted(peaks.process_mb.items()):
        bench.add("memory", f"rss_mb_{role}", mb, "MB", width)
        if peaks.children_mb.get(role):
            bench.add("memory", f"pss_mb_{role}_children", peaks.children_mb[role], "MB", width)


async def idle(bench: Bench) -> None:
    """Load ``idle_dags`` scheduled DAGs (none due for a day), then measure quiet CPU."""
    count, client = bench.sizes.idle_dags, bench.deployment.client
    start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=2)
    before = await client.count_dags()
    with bench.progress.step(f"{bench.setup}: loading {count} scheduled DAGs", total=count) as step:
        for name, source in dags.scheduled_dag_files(count, start).items():
            bench.deployment.write_dag(name, source)
        await _wait_loaded(bench, before + count, step.update)
    with bench.progress.step(f"{bench.setup}: idle {bench.sizes.idle_seconds:g} s"):
        await asyncio.sleep(_SETTLE_S)
        percent = await idle_cpu(bench.deployment, bench.sizes.idle_seconds)
    if await client.count_runs("bench_idle_00000", ["queued", "running", "success", "failed"]):
        raise BenchError("an idle DAG ran: the idle figure measured work, not idleness")
    for role, value in percent.items():
        metric = (
            "idle_cpu_percent" if role == bench.deployment.api_role else f"idle_cpu_percent_{role}"
        )
        bench.add("idle", metric, value, "%", count)


async def _wait_loaded(bench: Bench, expected: int, report: Callable[[int, int], None]) -> None:
    deadline = datetime.now(UTC) + timedelta(seconds=bench.timeout)
    total = bench.sizes.idle_dags
    while (known := await bench.deployment.client.count_dags()) < expected:
        report(known - (expected - total), total)
        bench.deployment.check_alive()
        if datetime.now(UTC) > deadline:
            raise BenchError(
                f"only {known} of {expected} DAGs loaded within {bench.timeout:.0f} s; "
                "lower --idle-dags or raise --timeout"
            )
        await asyncio.sleep(1.0)


SCENARIOS: dict[str, Callable[[Bench], Awaitable[None]]] = {
    "fanout": fanout,
    "fanout-sync": fanout_sync,
    "chain": chain,
    "trigger": trigger,
    "runs": runs,
    "scale": scale,
    "memory": memory,
    "idle": idle,
}
"""In the order they run: ``idle`` last, since its thousands of DAGs stay loaded."""


def shapes_for(names: Sequence[str], sizes: Sizes) -> list[DagShape]:
    """Every DAG the selected scenarios trigger, to publish before the first is measured."""
    wanted = {s.dag_id: s for s in [dags.single(), *_shapes_of(names, sizes)]}
    return list(wanted.values())


def _shapes_of(names: Sequence[str], sizes: Sizes) -> list[DagShape]:
    shapes: list[DagShape] = []
    if "fanout" in names:
        shapes.append(dags.fanout(sizes.width, "async"))
    if "fanout-sync" in names:
        shapes.append(dags.fanout(sizes.width, "sync"))
    if "chain" in names:
        shapes.append(dags.chain(sizes.length, "async"))
    if "runs" in names or "scale" in names:
        shapes.append(dags.small(sizes.run_tasks))
    if "scale" in names:
        shapes.extend(dags.fanout(w, "async") for w in sizes.scale_fanouts)
    if "memory" in names:
        shapes.append(dags.fanout(sizes.memory_width, "async"))
    return shapes
