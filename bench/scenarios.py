"""The named scenarios of ``make bench``, each turning measured runs into figures.

``fanout`` and ``fanout-sync`` (async and plain ``def`` no-op tasks), ``chain`` and ``trigger``
are the headline figures: each runs ``warmup`` unmeasured runs of its DAG first. ``runs`` (many
runs of a small DAG triggered together) and ``scale`` (fan-outs and concurrent runs of growing
size) run each size once, cold; a size measured by an earlier scenario in the same setup is not run
again (``memory`` reads the peaks of the largest fan-out, which ``scale`` runs too). ``idle`` loads
many scheduled DAGs and so comes last.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from bench import dags
from bench.dags import DagShape, TaskKind
from bench.idle import idle
from bench.measure import RunSample, measure_run, trigger_latencies
from bench.metrics import percentile
from bench.session import Bench, Sizes, median

__all__ = ["SCENARIOS", "shapes_for"]


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
    bench.add("chain", "cpu_ms_per_task", median(s.cpu_ms_per_task for s in samples), "ms", size)


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
    """Throughput and cost per task at each size, and how much the cost grew from the cheapest
    size to the largest (flat is 1x)."""
    for size, sample in sized:
        bench.add_throughput(scenario, [sample], size)
    if len(sized) > 1:
        *smaller, (largest_size, largest) = sorted(sized, key=lambda pair: pair[0])
        cheapest = min(sample.cpu_ms_per_task for _, sample in smaller)
        growth = largest.cpu_ms_per_task / cheapest
        bench.add(scenario, "cpu_growth", growth, "x", largest_size)


async def memory(bench: Bench) -> None:
    width = bench.sizes.memory_width
    _, peaks = await bench.fanout("async", width)
    for role, mb in sorted(peaks.process_mb.items()):
        bench.add("memory", f"rss_mb_{role}", mb, "MB", width)
        if peaks.children_mb.get(role):
            bench.add("memory", f"pss_mb_{role}_children", peaks.children_mb[role], "MB", width)


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
