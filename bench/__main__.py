"""``python -m bench``: run every selected scenario on every selected setup, print the table, and
write the JSON file. Exits non-zero when a setup could not run or a run failed.

``python -m bench api-lists [--help]`` measures the REST lists on 100,000 runs instead
(``bench.api_lists``); ``python -m bench dashboard-pages [--help]`` the dashboard's pages with
1,000 DAGs and 100,000 task instances (``bench.dashboard_pages``)."""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from bench import dags
from bench.dags import DagShape, TaskKind
from bench.profiling import Profiler
from bench.report import RESULTS, environment, print_profiles, print_table, write_json
from bench.scenarios import BenchError, ScenarioResult, measure, publish_dags
from bench.setups import SETUPS, Setup, running
from weir.runtime import configure_logging

console = Console(width=None if sys.stdout.isatty() else 132)

_BACKENDS = {
    "sqlite": ["sqlite"],
    "postgres": ["postgres", "postgres-inproc"],
    "all": ["sqlite", "postgres", "postgres-inproc"],
}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        epilog="python -m bench api-lists --help, python -m bench dashboard-pages --help: the "
        "REST lists and dashboard pages benchmarks' own options.",
    )
    parser.add_argument("--backend", choices=sorted(_BACKENDS), default="all")
    parser.add_argument(
        "--postgres-worker",
        choices=["process", "in-process", "both"],
        default="both",
        help="run the postgres worker as a `weir worker` process, in the API's loop, or both",
    )
    parser.add_argument("--repeat", type=int, default=3, help="measured runs after one warm-up")
    parser.add_argument("--dags", default="fanout,chain", help="comma-separated: fanout,chain")
    parser.add_argument("--sync", action="store_true", help="also measure plain `def` tasks")
    parser.add_argument("--width", type=int, default=200, help="no-op tasks in the fan-out")
    parser.add_argument("--length", type=int, default=50, help="no-op tasks in the chain")
    parser.add_argument("--concurrency", type=int, default=16, help="worker_concurrency")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per run")
    parser.add_argument("--profile", action="store_true", help="cProfile (slows everything)")
    return parser.parse_args(argv)


def select_setups(args: argparse.Namespace) -> list[Setup]:
    names = _BACKENDS[args.backend]
    if args.postgres_worker == "process":
        names = [n for n in names if n != "postgres-inproc"]
    elif args.postgres_worker == "in-process":
        names = [n for n in names if n != "postgres"]
    return [SETUPS[n] for n in names]


def select_shapes(args: argparse.Namespace) -> list[DagShape]:
    kinds: list[TaskKind] = ["async", "sync"] if args.sync else ["async"]
    makers = {
        "fanout": lambda k: dags.fanout(args.width, k),
        "chain": lambda k: dags.chain(args.length, k),
    }
    wanted = [name.strip() for name in args.dags.split(",") if name.strip()]
    unknown = set(wanted) - set(makers)
    if unknown:
        raise SystemExit(f"unknown DAG(s) {sorted(unknown)}: choose from {sorted(makers)}")
    return [makers[name](kind) for kind in kinds for name in wanted]


class Tally:
    """What the bench measured, and what it could not (a setup that did not start, a failed run)."""

    def __init__(self) -> None:
        self.results: list[ScenarioResult] = []
        self.errors: list[str] = []

    def fail(self, what: str, error: BaseException) -> None:
        console.print(f"[red]{what}: {error}[/]")
        self.errors.append(f"{what}: {error!r}")


async def bench_setup(
    setup: Setup,
    shapes: Sequence[DagShape],
    args: argparse.Namespace,
    profiler: Profiler,
    tally: Tally,
) -> None:
    """Boot ``setup`` once and measure every shape on it; a failed shape does not stop the rest."""
    with tempfile.TemporaryDirectory(prefix=f"weir-bench-{setup.name}-") as tmp:
        prefix = profiler.worker_prefix(setup.name)
        async with running(
            setup, Path(tmp), concurrency=args.concurrency, python_prefix=prefix
        ) as stack:
            await publish_dags(stack, shapes)
            with profiler.bench_process(setup.name):
                for shape in shapes:
                    try:
                        result = await measure(
                            stack, setup.name, shape, repeat=args.repeat, timeout=args.timeout
                        )
                    except BenchError as error:
                        tally.fail(f"{setup.name} {shape.name} ({shape.kind})", error)
                        continue
                    console.print(
                        f"{setup.name:<16} {shape.name:<7} {shape.kind:<5} "
                        f"wall {result.wall_s:6.2f} s  {result.tasks_per_s:7.1f} tasks/s  "
                        f"gap p50 {result.gap.p50:6.1f} ms  (warm-up {result.warmup_s:.2f} s)"
                    )
                    tally.results.append(result)


async def bench(args: argparse.Namespace, profiler: Profiler) -> Tally:
    shapes = select_shapes(args)
    tally = Tally()
    for setup in select_setups(args):
        try:
            await bench_setup(setup, shapes, args, profiler, tally)
        except (Exception, pytest.skip.Exception) as error:
            tally.fail(setup.name, error)
    return tally


def _caption(args: argparse.Namespace) -> str:
    kinds = "async def no-op tasks (run on the worker's event loop)"
    if args.sync:
        kinds += "; sync = plain def tasks (the worker's process pool)"
    return (
        f"{kinds}. Median of {args.repeat} runs after 1 warm-up; worker_concurrency "
        f"{args.concurrency}. gap = task start - upstream end, pooled over the runs; "
        "sched = upstream end -> queued_at (scheduler + outbox); deliv = queued_at -> start "
        "(relay + broker + claim). Fan-out gaps include waiting for a free worker slot."
        + (" PROFILED: cProfile slows everything." if args.profile else "")
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["api-lists"]:
        from bench import api_lists

        return api_lists.main(argv[1:])
    if argv[:1] == ["dashboard-pages"]:
        from bench import dashboard_pages

        return dashboard_pages.main(argv[1:])
    args = parse_args(argv)
    configure_logging("WARNING")
    started, clock = datetime.now(UTC), time.monotonic()
    profile_dir = (
        RESULTS / f"{started.strftime('%Y%m%dT%H%M%SZ')}-profile" if args.profile else None
    )
    profiler = Profiler(profile_dir)
    tally = asyncio.run(bench(args, profiler))
    results, errors = tally.results, tally.errors
    duration = time.monotonic() - clock
    print_table(console, results, _caption(args))
    for error in errors:
        console.print(f"[red]not measured: {error}[/]")
    meta: dict[str, Any] = {
        "started_at": started.isoformat(),
        "duration_s": duration,
        "environment": environment(),
        "config": dict(vars(args)),
        "errors": errors,
    }
    path = write_json(started, meta, results)
    if profile_dir is not None:
        print_profiles(console, profile_dir)
    console.print(f"results: {path}\nthe whole bench took {duration:.1f} s")
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
