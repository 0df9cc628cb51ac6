"""Trigger rules: whether a task may run given its upstreams' states. Pure.

Issue 2 ships ``all_success`` (the default); the other Airflow rules extend ``decide``.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from weir.states import TaskState

__all__ = ["Decision", "decide"]


class Decision(StrEnum):
    WAIT = "wait"
    RUN = "run"
    SKIP = "skip"
    UPSTREAM_FAILED = "upstream_failed"


def decide(upstream_states: Iterable[TaskState]) -> Decision:
    """``all_success``: run when every upstream succeeded; fail at once if one failed; skip if one
    was skipped (and none failed); wait otherwise."""
    states = list(upstream_states)
    if any(s in (TaskState.FAILED, TaskState.UPSTREAM_FAILED) for s in states):
        return Decision.UPSTREAM_FAILED
    if all(s is TaskState.SUCCESS for s in states):
        return Decision.RUN
    if any(s is TaskState.SKIPPED for s in states) and all(
        s in (TaskState.SUCCESS, TaskState.SKIPPED) for s in states
    ):
        return Decision.SKIP
    return Decision.WAIT
