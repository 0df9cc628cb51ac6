"""One setup's measuring session: the sizes, the running deployment, the figures made so far,
and the runs several scenarios share (a fan-out or a set of concurrent runs of one size is run
once per setup, whichever scenario asks first)."""

from __future__ import annotations

import contextlib
import statistics
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from bench import dags
from bench.dags import DagShape, TaskKind
from bench.figures import Figure
from bench.measure import RunSample, measure_run, measure_runs
from bench.process_usage import MemoryPeaks, watch_memory
from bench.progress import SuiteProgress
from bench.setups import Deployment

__all__ = ["Bench", "Sizes", "median"]


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
    """One setup's measuring session: what every scenario needs, and what they share.

    ``figures`` and ``notes`` may be the suite's own lists, which then grow as figures are made.
    A fan-out or set of runs that failed is remembered as failed: a later scenario asking for the
    same size fails at once instead of spending another ``timeout`` on it."""

    deployment: Deployment
    sizes: Sizes
    timeout: float
    progress: SuiteProgress
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    fanouts: dict[tuple[TaskKind, int], tuple[RunSample, MemoryPeaks]] = field(default_factory=dict)
    concurrent: dict[int, RunSample] = field(default_factory=dict)
    failed: dict[tuple[str, int], Exception] = field(default_factory=dict)

    @property
    def setup(self) -> str:
        return self.deployment.setup.name

    def add(self, scenario: str, metric: str, value: float, unit: str, size: int | None) -> None:
        self.figures.append(Figure(scenario, self.setup, metric, value, unit, size))

    def add_throughput(self, scenario: str, samples: Sequence[RunSample], size: int) -> None:
        self.add(scenario, "tasks_per_s", median(s.tasks_per_s for s in samples), "tasks/s", size)
        self.add(
            scenario, "cpu_ms_per_task", median(s.cpu_ms_per_task for s in samples), "ms", size
        )

    async def fanout(self, kind: TaskKind, width: int) -> tuple[RunSample, MemoryPeaks]:
        """One measured run of the fan-out, with the memory peaks during it (run once)."""
        if (kind, width) not in self.fanouts:
            shape = dags.fanout(width, kind)
            with (
                self.progress.step(f"{self.setup}: fan-out of {width} ({kind})") as step,
                self._remembering_failure(f"fanout-{kind}", width),
            ):
                async with watch_memory(self.deployment.pids) as peaks:
                    sample = await measure_run(
                        self.deployment, shape, timeout=self.timeout, step=step
                    )
            self.fanouts[kind, width] = sample, peaks
            self._log(f"fan-out of {width:,} ({kind})", sample)
        return self.fanouts[kind, width]

    async def runs(self, count: int) -> RunSample:
        """``count`` runs of the small DAG triggered together (run once)."""
        if count not in self.concurrent:
            shape = dags.small(self.sizes.run_tasks)
            with (
                self.progress.step(f"{self.setup}: {count} concurrent runs") as step,
                self._remembering_failure("runs", count),
            ):
                self.concurrent[count] = await measure_runs(
                    self.deployment, shape, count, timeout=self.timeout, step=step
                )
            self._log(f"{count:,} runs of {shape.task_count} tasks", sample=self.concurrent[count])
        return self.concurrent[count]

    @contextlib.contextmanager
    def _remembering_failure(self, what: str, size: int) -> Iterator[None]:
        if (what, size) in self.failed:
            raise self.failed[what, size]
        try:
            yield
        except Exception as error:
            self.failed[what, size] = error
            raise

    def _log(self, what: str, sample: RunSample) -> None:
        """A line as soon as a (long) measurement is done, before its scenario ends."""
        self.progress.log(
            f"[dim]{self.setup:<9} {what}: {sample.tasks_per_s:,.1f} tasks/s, "
            f"{sample.cpu_ms_per_task:,.1f} ms CPU/task, {sample.wall_s:,.1f} s[/]"
        )

    async def warm_up(self, shape: DagShape) -> None:
        for _ in range(self.sizes.warmup):
            with self.progress.step(f"{self.setup}: warm-up {shape.dag_id}"):
                await measure_run(self.deployment, shape, timeout=self.timeout)


def median(values: Iterable[float]) -> float:
    return statistics.median(values)
