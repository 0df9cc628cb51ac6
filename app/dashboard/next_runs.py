"""The next scheduled runs of a DAG, for people: the interval the scheduler has planned (kept on
the ``dag`` row) followed by the ones ``weir.schedule`` says come after it. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from weir.schedule import Interval, next_interval

__all__ = ["upcoming_intervals"]


def upcoming_intervals(
    options: Mapping[str, Any], planned: Interval | None, now: datetime, count: int = 5
) -> list[Interval]:
    """Up to ``count`` intervals starting with ``planned`` (None: nothing is planned, as for a
    manual-only DAG or an ended schedule). Each following one starts where the previous ended,
    as the scheduler will create them (``catchup`` does not matter: they lie in the future)."""
    found: list[Interval] = []
    current = planned
    while current is not None and len(found) < count:
        found.append(current)
        following = next_interval(options, current.end, now, catchup=True)
        if following is None or following.start <= current.start:
            break  # ``@once``, an end date, or a series that stopped moving
        current = following
    return found
