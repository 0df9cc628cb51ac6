"""``python -m bench.peers`` (``make bench-peers``): Apache Airflow 3 and Weir on the same shapes
(fan-out, chain, trigger latency), on the same PostgreSQL server, one after the other in one
invocation, printed side by side and written to ``bench/results/peers-<timestamp>.json``.

Airflow is installed by pip from the package registry into ``bench/.peers/airflow-venv`` on first
use (pinned by ``bench/peers/requirements-airflow.txt``) and runs from ``bench/.peers/airflow-home``
with the LocalExecutor on a database of its own, created and dropped here. Weir is measured by its
own bench (``python -m bench``) as a subprocess. Exits non-zero when either side was not measured.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from bench.figures import Figure
from bench.peers.airflow_config import DAGS_FOLDER, AirflowLayout, tuned_settings
from bench.peers.airflow_run import airflow_url, running_airflow
from bench.peers.airflow_shapes import (
    Measured,
    measure_chain,
    measure_fanout,
    measure_trigger,
    warm_up,
)
from bench.peers.compare import PREFERRED_SETUP, compare
from bench.peers.install import ensure_airflow
from bench.peers.report import RESULTS, environment, print_table, write_json
from bench.peers.weir_side import read_weir_result, run_weir_bench, weir_bench_command
from tests.support.services import postgres_dsn
from tests.support.stack import free_port

console = Console(width=None if sys.stdout.isatty() else 132)

PEERS = Path(__file__).resolve().parents[1] / ".peers"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.peers", description=__doc__)
    parser.add_argument("--side", choices=["both", "airflow", "weir"], default="both")
    parser.add_argument("--width", type=int, default=200, help="no-op tasks in the fan-out")
    parser.add_argument("--length", type=int, default=50, help="no-op tasks in the chain")
    parser.add_argument("--fanout-runs", type=int, default=2, help="Airflow's measured fan-outs")
    parser.add_argument("--chain-runs", type=int, default=1, help="Airflow's measured chains")
    parser.add_argument("--triggers", type=int, default=10, help="Airflow's sequential triggers")
    parser.add_argument(
        "--parallelism", type=int, default=16, help="Airflow's LocalExecutor processes"
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per Airflow run")
    parser.add_argument(
        "--weir-timeout", type=float, default=900.0, help="seconds for Weir's whole bench"
    )
    return parser.parse_args(argv)


def _progress() -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )


def _layout(args: argparse.Namespace) -> AirflowLayout:
    return AirflowLayout(
        venv=PEERS / "airflow-venv",
        home=PEERS / "airflow-home",
        dags_folder=DAGS_FOLDER,
        database_url=airflow_url(postgres_dsn()),
        port=free_port(),
        log_ports=(free_port(), free_port()),
        width=args.width,
        length=args.length,
        parallelism=args.parallelism,
        secret=secrets.token_urlsafe(64),
    )


async def bench_airflow(layout: AirflowLayout, args: argparse.Namespace) -> dict[str, Measured]:
    """Start Airflow, measure the three shapes, stop it; the figures and raw numbers by shape
    (each shape's raw numbers include the seconds it took, warm-up included)."""
    with _progress() as progress:
        starting = progress.add_task("Airflow: migrate, start 4 components, parse DAGs", total=1)
        clock = time.monotonic()
        async with running_airflow(layout, postgres_dsn()) as airflow:
            progress.update(starting, completed=1)
            _report(progress.console, "started", clock, [])
            clock = time.monotonic()
            shapes = {"warm-up": await warm_up(airflow, timeout=args.timeout)}
            shapes["warm-up"].raw["seconds"] = _report(progress.console, "warm-up", clock, [])
            for name, runs in (
                ("fanout", args.fanout_runs),
                ("chain", args.chain_runs),
                ("trigger", args.triggers),
            ):
                task = progress.add_task(f"Airflow {name}", total=runs)
                clock = time.monotonic()
                shapes[name] = await _MEASURES[name](
                    airflow,
                    runs,
                    timeout=args.timeout,
                    advance=lambda t=task: progress.advance(t),
                )
                shapes[name].raw["seconds"] = _report(
                    progress.console, name, clock, shapes[name].figures
                )
        return shapes


_MEASURES = {"fanout": measure_fanout, "chain": measure_chain, "trigger": measure_trigger}


def _report(console: Console, what: str, clock: float, figures: Sequence[Figure]) -> float:
    """One line per phase, as Weir's bench prints them, so a log shows progress too."""
    seconds = time.monotonic() - clock
    shown = ", ".join(f"{f.metric} {f.value:,.1f} {f.unit}" for f in figures)
    console.print(f"airflow   {what:<12} ({seconds:5.1f} s) {shown}")
    return seconds


def bench_weir(args: argparse.Namespace, command: Sequence[str], output: Path) -> list[Figure]:
    """Weir's own bench on the same sizes, its last output line as progress; its figures."""
    log = output.with_suffix(".log")
    with _progress() as progress:
        task = progress.add_task("Weir's bench", total=None)

        def show(line: str) -> None:
            progress.update(task, description=f"Weir's bench: [dim]{line[:80]}[/]")

        code = asyncio.run(run_weir_bench(command, log, timeout=args.weir_timeout, on_line=show))
    return read_weir_result(output, code, log)


def _caption(args: argparse.Namespace, version: str | None) -> str:
    return (
        f"Airflow {version or '—'}: LocalExecutor, PostgreSQL, scheduler_idle_sleep_time 0.05 s, "
        f"parallelism {args.parallelism}; after one warm-up fan-out of {2 * args.parallelism}: "
        f"fan-out of {args.width} (+ start and end) and chain of {args.length} no-op "
        f"PythonOperators, fan-out the median of {args.fanout_runs} runs, chain hops pooled over "
        f"{args.chain_runs}; trigger: p50 of {args.triggers} sequential triggers of a 1-task DAG, "
        "request sent -> "
        "task start_date. hop = task start - upstream end. CPU = utime + "
        "stime of Airflow's process trees (api-server, scheduler with its LocalExecutor workers "
        "and task processes, dag-processor, triggerer) over the measured runs, per task; "
        f"PostgreSQL's own CPU is not counted. Weir: `python -m bench`, setup {PREFERRED_SETUP}. "
        "Settings and reasons in the JSON."
    )


@dataclass
class Side:
    """One orchestrator's part of the comparison: its figures, what the JSON keeps of it, and
    why it was not measured (if it was not)."""

    label: str
    figures: list[Figure] = field(default_factory=list)
    record: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def fail(self, error: BaseException) -> None:
        """One side failing still shows the other."""
        console.print(f"[red]{self.label} not measured: {error}[/]")
        self.error = repr(error)


def airflow_side(args: argparse.Namespace) -> Side:
    layout = _layout(args)
    side = Side("Airflow")
    try:
        version = ensure_airflow(layout.venv, console)
        side.label = f"Airflow {version}"
        shapes = asyncio.run(bench_airflow(layout, args))
    except Exception as error:
        side.fail(error)
        return side
    side.figures = [f for measured in shapes.values() for f in measured.figures]
    side.record = {
        "version": version,
        "settings": [vars(s) for s in tuned_settings(args.width, args.parallelism)],
        "figures": [f.as_dict() for f in side.figures],
        "raw": {name: measured.raw for name, measured in shapes.items()},
    }
    return side


def weir_side(args: argparse.Namespace, stamp: str) -> Side:
    RESULTS.mkdir(exist_ok=True)
    output = RESULTS / f"peers-{stamp}-weir.json"
    command = weir_bench_command(output, width=args.width, length=args.length)
    side = Side("Weir", record={"command": command, "result": output})
    try:
        side.figures = bench_weir(args, command, output)
    except Exception as error:
        side.fail(error)
    side.record["figures"] = [f.as_dict() for f in side.figures]
    return side


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started, clock = datetime.now(UTC), time.monotonic()
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    airflow = airflow_side(args) if args.side in ("both", "airflow") else Side("Airflow")
    weir = weir_side(args, stamp) if args.side in ("both", "weir") else Side("Weir")
    rows = compare(airflow.figures, weir.figures)
    caption = _caption(args, airflow.record.get("version"))
    print_table(console, rows, airflow_label=airflow.label, weir_label=weir.label, caption=caption)
    errors = [f"{side.label}: {side.error}" for side in (airflow, weir) if side.error]
    document: dict[str, Any] = {
        "started_at": started,
        "environment": environment(),
        "config": vars(args),
        "airflow": airflow.record,
        "weir": weir.record,
        "errors": errors,
        "duration_s": time.monotonic() - clock,
    }
    path = RESULTS / f"peers-{stamp}.json"
    write_json(path, document, rows)
    console.print(f"results: {path}\nthe whole comparison took {time.monotonic() - clock:.0f} s")
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
