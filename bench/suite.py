"""The whole suite: the bound first, then every selected setup booted once with every selected
scenario run on it in order. A failed scenario is recorded and the next one runs; a setup that
cannot start, or whose processes died, is recorded and the next setup runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bench.bound_run import is_bound_available, measure_bound_figures
from bench.dags import DagShape
from bench.figures import Figure
from bench.measure import measure_run
from bench.profiling import Profiler
from bench.progress import SuiteProgress
from bench.scenarios import SCENARIOS, shapes_for
from bench.session import Bench, Sizes
from bench.setups import SETUPS, Deployment, Setup, running

__all__ = ["Outcome", "SuiteConfig", "run_suite"]

_LOAD_TIMEOUT = 120.0


@dataclass(frozen=True)
class SuiteConfig:
    setups: list[str]
    scenarios: list[str]
    sizes: Sizes
    timeout: float
    concurrency: int
    with_bound: bool
    profiler: Profiler
    checkpoint: Callable[[Outcome], object] = lambda outcome: None
    """Called after the bound and after every scenario, so a long run that is stopped half-way
    (or killed) has kept what it measured."""

    @property
    def steps(self) -> int:
        """What the suite's progress bar counts: each setup's start and scenarios, the bound."""
        return len(self.setups) * (1 + len(self.scenarios)) + int(self.with_bound)


@dataclass
class Outcome:
    figures: list[Figure] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    bound: Mapping[str, float] | None = None
    interrupted: bool = False

    def fail(self, progress: SuiteProgress, what: str, error: BaseException) -> None:
        progress.log(f"[red]{what}: {error}[/]")
        self.errors.append(f"{what}: {error!r}")


async def run_suite(config: SuiteConfig, progress: SuiteProgress, outcome: Outcome) -> None:
    """Fill ``outcome``; on SIGTERM stop what runs (its Weir stopped, its database dropped) and
    say so in ``outcome`` instead of dying with processes and databases left behind."""
    main = asyncio.current_task()
    assert main is not None
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, main.cancel)
    try:
        await _run_all(config, progress, outcome)
    except asyncio.CancelledError:
        outcome.interrupted = True
        outcome.errors.append("interrupted by SIGTERM: only the figures before it were measured")
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


async def _run_all(config: SuiteConfig, progress: SuiteProgress, outcome: Outcome) -> None:
    if config.with_bound:
        await _measure_bound(config.sizes, progress, outcome)
        config.checkpoint(outcome)
    for name in config.setups:
        await _bench_setup(SETUPS[name], config, progress, outcome)


async def _measure_bound(sizes: Sizes, progress: SuiteProgress, outcome: Outcome) -> None:
    if not is_bound_available():
        outcome.notes.append("bound not measured: bench/bound.py is not in this tree yet")
        progress.advance()
        return
    with progress.step("bound: the minimal pipeline (asyncpg + aio-pika)", advances=True):
        try:
            outcome.bound = await measure_bound_figures(
                fanout=sizes.width, chain=sizes.length, triggers=sizes.triggers
            )
        except (Exception, pytest.skip.Exception) as error:
            outcome.fail(progress, "bound", error)
            return
    shown = ", ".join(f"{k} {v:,.1f}" for k, v in outcome.bound.items())
    progress.log(f"bound: {shown}")


async def _bench_setup(
    setup: Setup, config: SuiteConfig, progress: SuiteProgress, outcome: Outcome
) -> None:
    """Boot ``setup``, run every scenario on it; its working folder (logs, DAGs, the SQLite
    file) is kept when something failed, so the processes' logs can be read."""
    workdir = Path(tempfile.mkdtemp(prefix=f"weir-bench-{setup.name}-"))
    failures = len(outcome.errors)
    try:
        async with contextlib.AsyncExitStack() as stack:
            started = time.monotonic()
            shapes = shapes_for(config.scenarios, config.sizes)
            with progress.step(f"{setup.name}: starting {setup.label}", advances=True):
                deployment = await stack.enter_async_context(
                    running(
                        setup,
                        workdir,
                        concurrency=config.concurrency,
                        dag_files={shape.file_name: shape.source for shape in shapes},
                        prefixes=config.profiler.prefixes(setup.name),
                    )
                )
                await _prepare(deployment, shapes, config)
            progress.log(f"{setup.name:<9} started      ({time.monotonic() - started:5.1f} s)")
            bench = Bench(
                deployment,
                config.sizes,
                config.timeout,
                progress,
                figures=outcome.figures,
                notes=outcome.notes,
            )
            await _run_scenarios(bench, config, progress, outcome)
    except (Exception, pytest.skip.Exception) as error:
        outcome.fail(progress, setup.name, error)
        config.checkpoint(outcome)
    finally:
        if len(outcome.errors) > failures:
            progress.log(f"[yellow]{setup.name}: logs and files kept in {workdir}[/]")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


async def _prepare(deployment: Deployment, shapes: list[DagShape], config: SuiteConfig) -> None:
    """Wait until every DAG is loaded, then (unless ``--warmup 0``) one run end to end: the worker
    is subscribed, its process pool started, every connection pool open."""
    await deployment.client.wait_for_dags([s.dag_id for s in shapes], timeout=_LOAD_TIMEOUT)
    if config.sizes.warmup > 0:
        await measure_run(deployment, shapes[0], timeout=config.timeout)


async def _run_scenarios(
    bench: Bench, config: SuiteConfig, progress: SuiteProgress, outcome: Outcome
) -> None:
    for name in config.scenarios:
        before, started = len(bench.figures), time.monotonic()
        with progress.step(f"{bench.setup}: {name}", advances=True):
            try:
                await SCENARIOS[name](bench)
            except Exception as error:
                outcome.fail(progress, f"{bench.setup} {name}", error)
                config.checkpoint(outcome)
                bench.deployment.check_alive()  # a dead process ends the setup
                continue
        config.checkpoint(outcome)
        shown = ", ".join(
            f"{f.metric}{'' if f.size is None else f'@{f.size:,}'} {f.value:,.2f} {f.unit}"
            for f in bench.figures[before:]
        )
        took = time.monotonic() - started
        progress.log(f"{bench.setup:<9} {name:<12} ({took:5.1f} s) {shown}")
