"""Pure arithmetic on task-instance timestamps: hand-off gaps and their percentiles.

A task's *gap* is ``start_date - max(end_date of its upstreams)``: how long a ready task waited.
It splits at ``queued_at`` into the service's part (scheduler and outbox: the upstream's finish
is seen, the task queued in the same transaction as its outbox row) and the delivery part (relay,
broker, the worker's claim over the execution API). Every timestamp is written by the service's
clock, so the worker's host clock plays no part.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

__all__ = ["Gap", "Summary", "gaps", "parse_time", "percentile", "summarize"]


@dataclass(frozen=True)
class Gap:
    """One ready task's wait, in milliseconds, split at ``queued_at``."""

    task_id: str
    total_ms: float
    queue_ms: float
    claim_ms: float


@dataclass(frozen=True)
class Summary:
    """p50, p95 and max of a sample, in the sample's unit."""

    count: int
    p50: float
    p95: float
    max: float


def parse_time(value: str) -> datetime:
    """An ISO timestamp from the REST API, as an aware UTC datetime."""
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _ms(later: datetime, earlier: datetime) -> float:
    return (later - earlier).total_seconds() * 1000.0


def gaps(
    task_instances: Mapping[str, Mapping[str, Any]], upstreams: Mapping[str, Sequence[str]]
) -> list[Gap]:
    """The gap of every task that has upstreams (roots wait for the run, not for a task)."""
    found: list[Gap] = []
    for task_id, parents in upstreams.items():
        if not parents:
            continue
        ti = task_instances[task_id]
        ready = max(parse_time(task_instances[p]["end_date"]) for p in parents)
        queued, started = parse_time(ti["queued_at"]), parse_time(ti["start_date"])
        found.append(Gap(task_id, _ms(started, ready), _ms(queued, ready), _ms(started, queued)))
    return found


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0 to 100) with linear interpolation, as ``numpy.percentile``."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarize(values: Sequence[float]) -> Summary:
    return Summary(
        len(values),
        percentile(values, 50),
        percentile(values, 95),
        max(values, default=math.nan),
    )
