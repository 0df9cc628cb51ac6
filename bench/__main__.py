"""``python -m bench`` (``make bench``): Weir's speed, cost and footprint, each figure beside the
goal of issue 14 and beside the minimal pipeline's bound measured in the same invocation.

How to read the table: one row per scenario, measure and size; per setup the value, ✓ or ✗ for
its goal, and ``x bound`` (value / the minimal pipeline's same figure: for tasks/s higher is
better, for ms lower is better). ``postgres`` is production-shaped: ``weir api`` and ``weir
worker`` as two processes on PostgreSQL + RabbitMQ; ``sqlite`` is ``weir standalone``, one
process on SQLite + the in-process queue. ``cpu_ms_per_task`` counts every CPU tick of those
processes and their children over the run (``bench/process_usage.py``), divided by the tasks:
it is what a task costs the service, idle loops and the bench's own polling included.
``scale-*`` rows show the cost per task at each size; ``cpu_growth`` is the largest size's cost
over the cheapest smaller size's (the smallest carries a run's fixed cost, spread over few
tasks), and a note below the table names every series that is not flat. Absolute
numbers on a shared 2-core machine move from run to run; ratios to the bound move much less.
The JSON (``bench/results/<timestamp>.json``, or ``--output``) has every figure with its goal,
bound and ratio, the bound's own figures, and the machine and commit.

Exits non-zero when a setup could not run or a scenario failed (a run that did not succeed, or
did not finish within ``--timeout``). ``python -m bench api-lists [--help]`` and
``python -m bench dashboard-pages [--help]`` are the REST-list and dashboard benchmarks.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from bench.figures import Figure, judge
from bench.profiling import Profiler
from bench.progress import SuiteProgress
from bench.report import (
    RESULTS,
    default_path,
    environment,
    growth_notes,
    print_figures,
    print_profiles,
    write_json,
)
from bench.scenarios import SCENARIOS
from bench.session import Sizes
from bench.setups import SETUPS
from bench.suite import Outcome, SuiteConfig, run_suite
from weir.runtime import configure_logging

console = Console(width=None if sys.stdout.isatty() else 160)

_BACKENDS = {"sqlite": ["sqlite"], "postgres": ["postgres"], "all": ["postgres", "sqlite"]}


def _sizes(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(",") if part.strip())


def _scenarios(text: str) -> list[str]:
    wanted = [name.strip() for name in text.split(",") if name.strip()]
    unknown = sorted(set(wanted) - set(SCENARIOS))
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown {unknown}: choose from {', '.join(SCENARIOS)}")
    return [name for name in SCENARIOS if name in wanted]  # always in the suite's order


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    defaults = Sizes()
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--backend", choices=sorted(_BACKENDS), default="all")
    add(
        "--only",
        type=_scenarios,
        default=list(SCENARIOS),
        metavar="LIST",
        help=f"comma-separated scenarios: {','.join(SCENARIOS)}",
    )
    add("--width", type=int, default=defaults.width, help="tasks in the fan-outs (async, sync)")
    add("--length", type=int, default=defaults.length, help="tasks in the chain")
    add("--triggers", type=int, default=defaults.triggers, help="runs of the trigger scenario")
    add("--runs", type=int, default=defaults.runs, help="runs triggered together (runs)")
    add("--run-tasks", type=int, default=defaults.run_tasks, help="tasks in that small DAG")
    add("--scale-fanouts", type=_sizes, default=defaults.scale_fanouts, metavar="N,N,…")
    add("--scale-runs", type=_sizes, default=defaults.scale_runs, metavar="N,N,…")
    add("--memory-width", type=int, default=defaults.memory_width, help="fan-out for memory")
    add("--idle-dags", type=int, default=defaults.idle_dags, help="scheduled DAGs loaded")
    add("--idle-seconds", type=float, default=defaults.idle_seconds)
    add("--warmup", type=int, default=defaults.warmup, help="unmeasured runs (headline DAGs)")
    add("--repeat", type=int, default=defaults.repeat, help="measured runs (headline DAGs)")
    add("--concurrency", type=int, default=16, help="WEIR_WORKER_CONCURRENCY")
    add("--timeout", type=float, default=900.0, help="seconds a run (or set of runs) may take")
    add("--no-bound", action="store_true", help="skip the minimal pipeline (bench/bound.py)")
    add("--output", type=Path, default=None, help="the JSON file (default: bench/results/)")
    add("--profile", action="store_true", help="cProfile every Weir process (slows it down)")
    return parser.parse_args(argv)


def _config(
    args: argparse.Namespace, profiler: Profiler, checkpoint: Callable[[Outcome], object]
) -> SuiteConfig:
    sizes = Sizes(
        width=args.width,
        length=args.length,
        triggers=args.triggers,
        runs=args.runs,
        run_tasks=args.run_tasks,
        scale_fanouts=args.scale_fanouts,
        scale_runs=args.scale_runs,
        memory_width=args.memory_width,
        idle_dags=args.idle_dags,
        idle_seconds=args.idle_seconds,
        warmup=args.warmup,
        repeat=args.repeat,
    )
    return SuiteConfig(
        setups=_BACKENDS[args.backend],
        scenarios=args.only,
        sizes=sizes,
        timeout=args.timeout,
        concurrency=args.concurrency,
        with_bound=not args.no_bound,
        profiler=profiler,
        checkpoint=checkpoint,
    )


def _caption(args: argparse.Namespace) -> str:
    setups = "; ".join(f"{name}: {SETUPS[name].label}" for name in _BACKENDS[args.backend])
    return (
        f"{setups}. No-op tasks; worker concurrency {args.concurrency}; headline scenarios "
        f"after {args.warmup} warm-up run(s), median of {args.repeat}; scale sizes run once, "
        "cold. Bound: the minimal pipeline on PostgreSQL + RabbitMQ in this invocation."
        + (" PROFILED: cProfile slows everything." if args.profile else "")
    )


@dataclass
class _ResultFile:
    """The JSON file: rewritten after every scenario (``"complete": false``) and at the end."""

    args: argparse.Namespace
    setups: list[str]
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    clock: float = field(default_factory=time.monotonic)

    @property
    def path(self) -> Path:
        output: Path | None = self.args.output
        return output or default_path(self.started)

    def write(self, outcome: Outcome, *, complete: bool) -> tuple[list[Figure], list[str]]:
        figures = judge(outcome.figures, outcome.bound)
        notes = [*outcome.notes, *growth_notes(figures)]
        config = {k: list(v) if isinstance(v, tuple) else v for k, v in vars(self.args).items()}
        meta: dict[str, Any] = {
            "date": self.started.isoformat(),
            "complete": complete,
            "duration_s": time.monotonic() - self.clock,
            **environment(),
            "load_average": os.getloadavg(),
            "bench_cpu_s": time.process_time(),  # the bench's own, not counted in any figure
            "setups": {name: SETUPS[name].label for name in self.setups},
            "config": {**config, "output": str(self.args.output) if self.args.output else None},
            "errors": outcome.errors,
        }
        write_json(self.path, meta, outcome.bound, figures, notes)
        return figures, notes


def _run_bench(args: argparse.Namespace) -> int:
    results = _ResultFile(args, _BACKENDS[args.backend])
    profile_dir = RESULTS / f"{results.started:%Y%m%dT%H%M%SZ}-profile" if args.profile else None
    config = _config(args, Profiler(profile_dir), lambda o: results.write(o, complete=False))
    outcome = Outcome()
    with SuiteProgress(console, config.steps) as progress:
        asyncio.run(run_suite(config, progress, outcome))
    figures, notes = results.write(outcome, complete=not outcome.interrupted)
    print_figures(console, figures, config.setups, _caption(args))
    for note in notes:
        console.print(f"[yellow]note:[/] {note}")
    for error in outcome.errors:
        console.print(f"[red]not measured: {error}[/]")
    if profile_dir is not None:
        print_profiles(console, profile_dir)
    took = time.monotonic() - results.clock
    console.print(f"results: {results.path}\nthe whole bench took {took:.1f} s")
    return 1 if outcome.errors else 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["api-lists"]:
        from bench import api_lists

        return api_lists.main(argv[1:])
    if argv[:1] == ["dashboard-pages"]:
        from bench import dashboard_pages

        return dashboard_pages.main(argv[1:])
    configure_logging("WARNING")
    return _run_bench(parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
