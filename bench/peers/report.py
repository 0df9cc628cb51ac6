"""What ``make bench-peers`` shows and keeps: one table, Airflow beside Weir, and a JSON file
``bench/results/peers-<timestamp>.json`` with every figure, the raw numbers and Airflow's
settings."""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.peers.compare import Row, is_lower_better

__all__ = ["RESULTS", "environment", "format_value", "print_table", "table", "write_json"]

RESULTS = Path(__file__).resolve().parents[1] / "results"


def format_value(value: float | None, unit: str) -> str:
    """A figure as it reads in the table: ``—`` when not measured."""
    if value is None or math.isnan(value):
        return "—"
    digits = 0 if abs(value) >= 100 else 1
    return f"{value:,.{digits}f} {unit}".strip()


def _ratio(row: Row) -> str:
    ratio = row.ratio
    if ratio is None:
        return "—"
    colour = "green" if row.is_weir_better else "red"
    return f"[{colour}]{ratio:.2f}[/]"


def table(rows: Sequence[Row], *, airflow_label: str, weir_label: str, caption: str) -> Table:
    """Shape | Airflow | Weir | Weir/Airflow (and the bound, when Weir's bench measured it)."""
    with_bound = any(row.bound is not None for row in rows)
    result = Table(title="Weir and Apache Airflow on the same shapes, same machine, one run")
    result.caption = caption
    result.add_column("shape")
    result.add_column(airflow_label, justify="right")
    result.add_column(weir_label, justify="right")
    result.add_column("Weir/Airflow", justify="right")
    if with_bound:
        result.add_column("bound (minimal pipeline)", justify="right")
    for row in rows:
        better = "lower" if is_lower_better(row.metric) else "higher"
        cells = [
            f"{row.label} [dim]({better} is better)[/]",
            format_value(row.airflow, row.unit),
            format_value(row.weir, row.unit),
            _ratio(row),
        ]
        if with_bound:
            cells.append(format_value(row.bound, row.unit))
        result.add_row(*cells)
    return result


def print_table(console: Console, rows: Sequence[Row], **labels: str) -> None:
    console.print(table(rows, **labels))


def _git_commit() -> str | None:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def environment() -> dict[str, Any]:
    """Where the numbers were measured: they mean little without it."""
    return {
        "git_commit": _git_commit(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }


def write_json(path: Path, document: Mapping[str, Any], rows: Sequence[Row]) -> None:
    """The document, with the comparison rows and NaN as ``null``, at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    comparison = [{**asdict(row), "ratio_weir_to_airflow": row.ratio} for row in rows]
    full = _finite({**document, "comparison": comparison})
    path.write_text(json.dumps(full, indent=2, allow_nan=False, default=_jsonable) + "\n")


def _finite(value: Any) -> Any:
    """``value`` with every NaN (a percentile of nothing) as ``null``, which JSON can hold."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, Mapping):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def _jsonable(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON: {value!r}")
