"""What the bench shows and keeps: a rich table on the terminal and a JSON file of every number
(per-run wall times and every gap included) under ``bench/results/``."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.metrics import Summary
from bench.profiling import hotspots, time_by_package
from bench.scenarios import ScenarioResult
from bench.setups import SETUPS

__all__ = ["environment", "print_profiles", "print_table", "write_json"]

RESULTS = Path(__file__).resolve().parent / "results"

DEFINITIONS = {
    "wall_s": "trigger request sent -> the run's end_date (written by the service)",
    "tasks_per_s": "tasks in the DAG / median wall_s",
    "gap_ms": "a task's start_date - the latest end_date of its upstreams (roots excluded)",
    "sched_ms": "upstream end_date -> queued_at: scheduler wake-up, queueing with its outbox row",
    "delivery_ms": "queued_at -> start_date: relay publish, broker, worker claim",
    "percentiles": "pooled over every measured run's gaps, linear interpolation",
}


def _ms(summary: Summary, parts: int = 3) -> str:
    """``p50 / p95 / max`` (or the first ``parts`` of them), in milliseconds."""
    return " / ".join(f"{v:.1f}" for v in (summary.p50, summary.p95, summary.max)[:parts])


def print_table(console: Console, results: Sequence[ScenarioResult], caption: str) -> None:
    table = Table(title="Weir bench: no-op tasks, median of the measured runs", caption=caption)
    table.add_column("setup")
    table.add_column("DAG")
    for name in ("tasks", "wall s", "tasks/s"):
        table.add_column(name, justify="right")
    table.add_column("gap ms\np50 / p95 / max", justify="right")
    table.add_column("sched ms\np50 / p95", justify="right")
    table.add_column("deliv ms\np50 / p95", justify="right")
    for r in results:
        table.add_row(
            r.setup,
            f"{r.shape.name} ({r.shape.kind})",
            str(r.shape.task_count),
            f"{r.wall_s:.2f}",
            f"{r.tasks_per_s:.1f}",
            _ms(r.gap),
            _ms(r.queue, 2),
            _ms(r.claim, 2),
        )
    console.print(table)
    for name, setup in SETUPS.items():
        if any(r.setup == name for r in results):
            console.print(f"  [bold]{name}[/]: {setup.label}")


def print_profiles(console: Console, directory: Path) -> None:
    """The top self-time functions and packages of every profile written this time."""
    for path in sorted(directory.glob("*.prof")):
        console.rule(f"profile {path.name}")
        packages = ", ".join(f"{name} {seconds:.2f}s" for name, seconds in time_by_package(path))
        console.print(f"self time by package: {packages}")
        table = Table("function", "calls", "self s", "cumulative s")
        for spot in hotspots(path):
            table.add_row(
                spot.function, str(spot.calls), f"{spot.self_s:.3f}", f"{spot.cumulative_s:.3f}"
            )
        console.print(table)


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def environment() -> dict[str, Any]:
    """Where the numbers were measured: they mean little without it."""
    return {
        "git_commit": _git_commit(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }


def _result_json(r: ScenarioResult) -> dict[str, Any]:
    return {
        "setup": r.setup,
        "setup_label": SETUPS[r.setup].label,
        "dag": r.shape.name,
        "task_kind": r.shape.kind,
        "dag_id": r.shape.dag_id,
        "tasks": r.shape.task_count,
        "warmup_s": r.warmup_s,
        "wall_s_median": r.wall_s,
        "tasks_per_s": r.tasks_per_s,
        "gap_ms": asdict(r.gap),
        "sched_ms": asdict(r.queue),
        "delivery_ms": asdict(r.claim),
        "runs": [
            {"run_id": m.run_id, "wall_s": m.wall_s, "gaps": [asdict(g) for g in m.gaps]}
            for m in r.runs
        ],
    }


def write_json(started: datetime, meta: dict[str, Any], results: Sequence[ScenarioResult]) -> Path:
    """Write ``bench/results/<timestamp>.json`` and return its path."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    document = {**meta, "definitions": DEFINITIONS, "results": [_result_json(r) for r in results]}
    path.write_text(json.dumps(document, indent=2, allow_nan=False) + "\n")
    return path
