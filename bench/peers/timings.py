"""The arithmetic that turns an orchestrator's task-instance timestamps into the figures of Weir's
bench (``bench.figures.Figure``, same scenario and metric names), so the comparison is a join.

Every timestamp comes from the orchestrator's own records, except the trigger time, which the bench
takes just before it sends the trigger request (same host, same clock).
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from bench.figures import Figure
from bench.metrics import percentile

__all__ = [
    "AIRFLOW_SETUP",
    "TaskTimes",
    "chain_figures",
    "cpu_figure",
    "fanout_figures",
    "hops_ms",
    "trigger_figures",
]

AIRFLOW_SETUP = "airflow"


@dataclass(frozen=True)
class TaskTimes:
    """When one task instance ran, as the orchestrator recorded it."""

    task_id: str
    start: datetime
    end: datetime


def _ms(later: datetime, earlier: datetime) -> float:
    return (later - earlier).total_seconds() * 1000.0


def hops_ms(tasks: Mapping[str, TaskTimes], order: Sequence[str]) -> list[float]:
    """Each hand-off of a chain: the start of a task minus the end of the one before it."""
    pairs = itertools.pairwise(order)
    return [_ms(tasks[later].start, tasks[earlier].end) for earlier, later in pairs]


def _figure(scenario: str, metric: str, value: float, unit: str, size: int) -> Figure:
    return Figure(scenario, AIRFLOW_SETUP, metric, value, unit, size=size)


def fanout_figures(task_count: int, walls_s: Sequence[float], *, width: int) -> list[Figure]:
    """Tasks per second from the trigger to the run's end, on the median measured run."""
    rate = task_count / statistics.median(walls_s)
    return [_figure("fanout", "tasks_per_s", rate, "tasks/s", width)]


def chain_figures(hops: Sequence[float], *, length: int) -> list[Figure]:
    """The hand-off latency, pooled over every measured run's hops."""
    return [
        _figure("chain", "hop_p50_ms", percentile(hops, 50), "ms", length),
        _figure("chain", "hop_p95_ms", percentile(hops, 95), "ms", length),
    ]


def trigger_figures(latencies_ms: Sequence[float]) -> list[Figure]:
    """Trigger request sent → the task started, over sequential triggers."""
    count = len(latencies_ms)
    return [
        _figure("trigger", "trigger_p50_ms", percentile(latencies_ms, 50), "ms", count),
        _figure("trigger", "trigger_p95_ms", percentile(latencies_ms, 95), "ms", count),
    ]


def cpu_figure(scenario: str, cpu_s: float, tasks: int, *, size: int) -> Figure:
    """CPU of the orchestrator's processes over the measured runs, per task run."""
    return _figure(scenario, "cpu_ms_per_task", cpu_s * 1000.0 / tasks, "ms", size)
