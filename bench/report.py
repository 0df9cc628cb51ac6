"""What the bench shows and keeps: a rich table of every figure beside its goal and the bound, and
a JSON file (``bench/results/<timestamp>.json`` unless ``--output``) that other tools read.

The JSON's contract: ``{"meta": {...}, "bound": {...} | null, "figures": [Figure.as_dict(), ...],
"definitions": {...}, "notes": [...]}``; see ``bench.figures.Figure`` for a figure's fields.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.figures import GROWTH_LIMIT, Figure
from bench.profiling import hotspots, time_by_package

__all__ = [
    "DEFINITIONS",
    "RESULTS",
    "environment",
    "growth_notes",
    "print_figures",
    "print_profiles",
    "write_json",
]

RESULTS = Path(__file__).resolve().parent / "results"

DEFINITIONS = {
    "tasks_per_s": "tasks in the run(s) / (latest end_date written by the service - the moment "
    "just before the first trigger request)",
    "cpu_ms_per_task": "utime + stime of every Weir process tree of the setup (API, worker and "
    "their children, bench/process_usage.py) over the run, / tasks",
    "hop_ms": "chain: a task's start_date - its upstream's end_date (service clock), pooled",
    "sched_p50_ms": "chain: upstream end_date -> queued_at (scheduler, outbox)",
    "delivery_p50_ms": "chain: queued_at -> start_date (relay, broker, worker claim)",
    "trigger_ms": "the moment just before POST .../runs -> the task's start_date, runs one by one",
    "cpu_growth": "cpu_ms_per_task at the largest size / the lowest at a smaller size (1 = flat)",
    "rss_mb": "peak VmRSS (MiB) of the process during the fan-out (VmHWM reset at its start)",
    "pss_mb_children": "peak of the process's descendants' PSS summed (MiB): the fork server and "
    "sync-task processes (worker), the DAG processor's parse processes (API)",
    "load_s": "idle: from writing the scheduled DAGs' files to the API listing all of them",
    "idle_cpu_percent": "CPU of the API's process tree (standalone: the whole process) over the "
    "idle window / wall time, in % of one core, with the scheduled DAGs loaded",
    "ratio_to_bound": "value / the minimal pipeline's figure in the same invocation "
    "(throughput: higher is better; latency and CPU: lower is better)",
}


def _number(value: float) -> str:
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"


def _cell(figure: Figure | None) -> str:
    if figure is None:
        return ""
    mark = {True: " [green]✓[/]", False: " [red]✗[/]", None: ""}[figure.met]
    return f"{_number(figure.value)} {figure.unit}{mark}"


def _ratio(figure: Figure | None) -> str:
    if figure is None or figure.ratio_to_bound is None:
        return ""
    return f"{figure.ratio_to_bound:.2f}x"


def print_figures(
    console: Console, figures: Sequence[Figure], setups: Sequence[str], caption: str
) -> None:
    """One row per scenario, measure and size; a value and its ratio to the bound per setup."""
    table = Table(
        title="Weir bench: each figure beside its goal (✓ met, ✗ not met)", caption=caption
    )
    for name, justify in (("scenario", "left"), ("measure", "left"), ("size", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    table.add_column("goal")
    table.add_column("bound", justify="right")
    for setup in setups:
        table.add_column(setup, justify="right")
        table.add_column("x bound", justify="right")
    for (scenario, metric, size), by_setup in _rows(figures):
        first = next(iter(by_setup.values()))
        bound = "" if first.bound is None else f"{_number(first.bound)}"
        cells: list[str] = []
        for setup in setups:
            cells += [_cell(by_setup.get(setup)), _ratio(by_setup.get(setup))]
        size_text = "" if size is None else f"{size:,}"
        table.add_row(scenario, metric, size_text, first.goal or "", bound, *cells)
    console.print(table)


def _rows(
    figures: Sequence[Figure],
) -> list[tuple[tuple[str, str, int | None], dict[str, Figure]]]:
    """Figures by (scenario, metric, size) then setup; scenarios in the order first measured."""
    by_scenario: dict[str, dict[tuple[str, str, int | None], dict[str, Figure]]] = {}
    for f in figures:
        rows = by_scenario.setdefault(f.scenario, {})
        rows.setdefault((f.scenario, f.metric, f.size), {})[f.setup] = f
    return [row for rows in by_scenario.values() for row in rows.items()]


def growth_notes(figures: Sequence[Figure]) -> list[str]:
    """A sentence for every scale series whose cost per task grew with its size."""
    notes: list[str] = []
    for figure in figures:
        if figure.metric == "cpu_growth" and figure.value > GROWTH_LIMIT:
            notes.append(
                f"{figure.setup} {figure.scenario}: CPU per task grows with size "
                f"({figure.value:.1f}x at {figure.size:,} vs the cheapest smaller size; flat is 1x)"
            )
    return notes


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


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, check=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _ram_gb() -> float | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    except (ValueError, OSError):
        return None


def environment() -> dict[str, Any]:
    """Where the numbers were measured: they mean little without it."""
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": None if status is None else bool(status),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "machine": {"cpu_model": _cpu_model(), "cores": os.cpu_count(), "ram_gb": _ram_gb()},
    }


def write_json(
    path: Path,
    meta: Mapping[str, Any],
    bound: Mapping[str, float] | None,
    figures: Sequence[Figure],
    notes: Sequence[str],
) -> Path:
    """Write the JSON document (see the module docstring) and return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "meta": dict(meta),
        "bound": dict(bound) if bound is not None else None,
        "figures": [figure.as_dict() for figure in figures],
        "definitions": DEFINITIONS,
        "notes": list(notes),
    }
    path.write_text(json.dumps(document, indent=2, allow_nan=False, ensure_ascii=False) + "\n")
    return path


def default_path(started: datetime) -> Path:
    return RESULTS / f"{started.strftime('%Y%m%dT%H%M%SZ')}.json"
