"""Side by side: read Weir's figures from its bench JSON and join them with Airflow's.

Weir's bench writes a top-level ``figures`` list of ``bench.figures.Figure`` dicts (``scenario``,
``setup``, ``metric``, ``value``, ``unit``, ``bound``, …). With ``--backend postgres`` there may
be more than one setup per figure; the one compared is ``postgres`` (``weir api`` + ``weir
worker`` on PostgreSQL and RabbitMQ, the shape closest to Airflow's api-server + scheduler +
LocalExecutor on PostgreSQL), else the first listed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bench.figures import Figure

__all__ = [
    "COMPARED",
    "PREFERRED_SETUP",
    "Row",
    "WeirResultError",
    "compare",
    "is_lower_better",
    "weir_figures",
]

PREFERRED_SETUP = "postgres"

COMPARED = (
    ("fanout", "tasks_per_s"),
    ("fanout", "cpu_ms_per_task"),
    ("chain", "hop_p50_ms"),
    ("chain", "hop_p95_ms"),
    ("chain", "cpu_ms_per_task"),
    ("trigger", "trigger_p50_ms"),
    ("trigger", "trigger_p95_ms"),
)
"""The rows of the comparison, in reading order: what both benches measure the same way."""

_LABELS = {
    "tasks_per_s": "tasks/s",
    "hop_p50_ms": "hop p50",
    "hop_p95_ms": "hop p95",
    "trigger_p50_ms": "trigger → running p50",
    "trigger_p95_ms": "trigger → running p95",
    "cpu_ms_per_task": "CPU per task",
}


class WeirResultError(ValueError):
    """Weir's bench JSON is not in the shape this comparison reads."""


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _figure(raw: Mapping[str, Any]) -> Figure:
    try:
        value = raw["value"]
        return Figure(
            scenario=str(raw["scenario"]),
            setup=str(raw.get("setup") or ""),
            metric=str(raw["metric"]),
            value=math.nan if value is None else float(value),
            unit=str(raw.get("unit") or ""),
            size=raw.get("size"),
            bound=_optional_float(raw.get("bound")),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise WeirResultError(f"a figure without scenario, metric and value: {raw!r}") from error


def weir_figures(document: Mapping[str, Any]) -> list[Figure]:
    """Weir's compared figures: one per (scenario, metric), the postgres setup's first."""
    raw = document.get("figures")
    if not isinstance(raw, list):
        raise WeirResultError("Weir's bench JSON has no top-level 'figures' list")
    chosen: dict[tuple[str, str], Figure] = {}
    for figure in map(_figure, raw):
        key = (figure.scenario, figure.metric)
        if key not in COMPARED:
            continue
        if key not in chosen or (
            figure.setup == PREFERRED_SETUP and chosen[key].setup != PREFERRED_SETUP
        ):
            chosen[key] = figure
    return list(chosen.values())


def is_lower_better(metric: str) -> bool:
    """Latencies and costs (milliseconds) are better lower; rates are better higher."""
    return metric.endswith("_ms") or metric.endswith("_ms_per_task")


@dataclass(frozen=True)
class Row:
    """One line of the comparison: a scenario's metric on both sides."""

    scenario: str
    metric: str
    unit: str
    airflow: float | None
    weir: float | None
    bound: float | None = None
    """The minimal pipeline's figure (``bench.bound``), when Weir's bench measured it."""

    @property
    def label(self) -> str:
        return f"{self.scenario}: {_LABELS.get(self.metric, self.metric)}"

    @property
    def ratio(self) -> float | None:
        """Weir / Airflow (None when a side is missing, or Airflow's figure is zero)."""
        if self.airflow is None or self.weir is None:
            return None
        if not (math.isfinite(self.airflow) and math.isfinite(self.weir)) or not self.airflow:
            return None
        return self.weir / self.airflow

    @property
    def is_weir_better(self) -> bool | None:
        ratio = self.ratio
        if ratio is None:
            return None
        return ratio < 1 if is_lower_better(self.metric) else ratio > 1


def compare(airflow: Sequence[Figure], weir: Sequence[Figure]) -> list[Row]:
    """A row for every compared (scenario, metric) that either side measured."""
    by_side = [{(f.scenario, f.metric): f for f in side} for side in (airflow, weir)]
    rows = []
    for scenario, metric in COMPARED:
        a, w = by_side[0].get((scenario, metric)), by_side[1].get((scenario, metric))
        if a is None and w is None:
            continue
        unit = next(f.unit for f in (a, w) if f is not None)
        rows.append(
            Row(
                scenario,
                metric,
                unit,
                airflow=a.value if a else None,
                weir=w.value if w else None,
                bound=w.bound if w else None,
            )
        )
    return rows
