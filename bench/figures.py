"""Figures: one measured number each, with the goal issue 14 sets for it, whether it is met, and
its ratio to the minimal pipeline's bound measured in the same invocation.

A ``Figure`` is the unit of the JSON output that other tools read (``make bench-peers``): keep
its fields and the metric names stable. Goals are judged once every figure is in (``judge``),
because one goal compares two figures: plain ``def`` tasks against async ones.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

__all__ = ["BOUND_OF", "GROWTH_LIMIT", "Figure", "Goal", "goal_of", "judge"]

GROWTH_LIMIT = 1.5
"""The CPU per task of the largest size may be at most this many times the cheapest smaller size's
("flat": work per task must not grow with the size of its run or the number of runs)."""

BOUND_OF = {
    "tasks_per_s": "fanout_tasks_per_s",
    "cpu_ms_per_task": "cpu_ms_per_task",
    "hop_p50_ms": "hop_p50_ms",
    "hop_p95_ms": "hop_p95_ms",
    "trigger_p50_ms": "trigger_p50_ms",
}
"""Which of the bound's figures (``BoundResult.as_dict()``) each metric is compared with."""


@dataclass(frozen=True)
class Figure:
    scenario: str
    setup: str
    metric: str
    value: float
    unit: str
    size: int | None = None
    goal: str | None = None
    met: bool | None = None
    bound: float | None = None
    ratio_to_bound: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Goal:
    """``text`` as printed; ``passes(value, reference)`` where ``reference`` is what ``of``
    names: ``None`` for the value alone, ``"bound"`` for the bound's figure, or a
    ``(scenario, metric)`` measured on the same setup."""

    text: str
    passes: Callable[[float, float | None], bool]
    of: str | tuple[str, str] | None = None


def _at_most(limit: float) -> Callable[[float, float | None], bool]:
    return lambda value, _: value <= limit


def _share_of(share: float) -> Callable[[float, float | None], bool]:
    return lambda value, reference: reference is not None and value >= share * reference


_CPU = Goal("≤ 2 ms", _at_most(2.0))

_GOALS: dict[tuple[str, str], Goal] = {
    ("fanout", "tasks_per_s"): Goal("≥ 50 % of the bound", _share_of(0.5), "bound"),
    ("fanout-sync", "tasks_per_s"): Goal(
        "≥ 50 % of async fan-out", _share_of(0.5), ("fanout", "tasks_per_s")
    ),
    ("chain", "hop_p50_ms"): Goal("≤ 5 ms", _at_most(5.0)),
    ("chain", "hop_p95_ms"): Goal("≤ 20 ms", _at_most(20.0)),
    ("trigger", "trigger_p50_ms"): Goal("≤ 10 ms", _at_most(10.0)),
    ("memory", "rss_mb_api"): Goal("≤ 150 MB", _at_most(150.0)),
    ("memory", "rss_mb_worker"): Goal("≤ 100 MB", _at_most(100.0)),
    ("memory", "rss_mb_standalone"): Goal("≤ 250 MB (API + worker)", _at_most(250.0)),
    ("idle", "idle_cpu_percent"): Goal("< 2 %", lambda value, _: value < 2.0),
    ("scale-fanout", "cpu_growth"): Goal(f"≤ {GROWTH_LIMIT}x (flat)", _at_most(GROWTH_LIMIT)),
    ("scale-runs", "cpu_growth"): Goal(f"≤ {GROWTH_LIMIT}x (flat)", _at_most(GROWTH_LIMIT)),
}


def goal_of(scenario: str, metric: str) -> Goal | None:
    """The goal of a figure: its own, or the one every CPU-per-task figure shares."""
    if metric == "cpu_ms_per_task":
        return _CPU
    return _GOALS.get((scenario, metric))


def _reference(
    figure: Figure, goal: Goal, figures: Sequence[Figure], bound: float | None
) -> float | None:
    if goal.of is None:
        return None
    if goal.of == "bound":
        return bound
    scenario, metric = goal.of
    for other in figures:
        if (other.setup, other.scenario, other.metric) == (figure.setup, scenario, metric):
            return other.value
    return None


def judge(figures: Sequence[Figure], bound: Mapping[str, float] | None) -> list[Figure]:
    """Every figure with its goal, whether it is met (None when what it is judged against was
    not measured), the bound's matching figure, and its ratio to that figure."""
    judged: list[Figure] = []
    for figure in figures:
        bound_key = BOUND_OF.get(figure.metric)
        bound_value = bound.get(bound_key) if bound and bound_key else None
        ratio = _ratio(figure.value, bound_value)
        goal = goal_of(figure.scenario, figure.metric)
        met: bool | None = None
        if goal is not None:
            reference = _reference(figure, goal, figures, bound_value)
            if goal.of is None or reference is not None:
                met = goal.passes(figure.value, reference)
        judged.append(
            replace(
                figure,
                goal=goal.text if goal else None,
                met=met,
                bound=bound_value,
                ratio_to_bound=ratio,
            )
        )
    return judged


def _ratio(value: float, bound: float | None) -> float | None:
    if bound is None or not math.isfinite(bound) or bound == 0:
        return None
    return value / bound
