"""The states of DAG runs and task instances, and the one table of allowed transitions.

Pure: no I/O. Every state write in the service goes through ``check_transition`` before its
compare-and-set UPDATE, so the table below is the whole truth about what may follow what.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "DAG_RUN_TRANSITIONS",
    "FINISHED_DAG_RUN_STATES",
    "TASK_TRANSITIONS",
    "TERMINAL_TASK_STATES",
    "DagRunState",
    "IllegalTransition",
    "TaskState",
    "check_transition",
    "is_allowed",
]


class DagRunState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"


class TaskState(StrEnum):
    NONE = "none"
    SCHEDULED = "scheduled"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    UP_FOR_RETRY = "up_for_retry"
    UP_FOR_RESCHEDULE = "up_for_reschedule"
    SKIPPED = "skipped"
    UPSTREAM_FAILED = "upstream_failed"


T = TaskState
TASK_TRANSITIONS: dict[TaskState, frozenset[TaskState]] = {
    # Dependencies met -> scheduled; an upstream failed or was skipped -> terminal without running.
    T.NONE: frozenset({T.SCHEDULED, T.UPSTREAM_FAILED, T.SKIPPED, T.SUCCESS, T.FAILED}),
    # Queued together with its outbox row; a user may still mark it or clear it.
    T.SCHEDULED: frozenset({T.QUEUED, T.NONE, T.SUCCESS, T.FAILED}),
    # A worker claims it (-> running); a user may mark or clear it.
    T.QUEUED: frozenset({T.RUNNING, T.NONE, T.SUCCESS, T.FAILED}),
    # The worker reports, the lease lapses (zombie), or the worker hands back an unstarted claim
    # (-> scheduled, same attempt, queued again through the outbox). A sensor's poke that is not
    # done yet -> up_for_reschedule; a sensor past its timeout with soft_fail -> skipped.
    T.RUNNING: frozenset(
        {T.SUCCESS, T.FAILED, T.UP_FOR_RETRY, T.UP_FOR_RESCHEDULE, T.SKIPPED, T.SCHEDULED, T.NONE}
    ),
    # After the backoff the next attempt is scheduled; a user may clear or mark it.
    T.UP_FOR_RETRY: frozenset({T.SCHEDULED, T.NONE, T.SUCCESS, T.FAILED}),
    # At the next poke time the sensor's next attempt is scheduled; a user may clear or mark it.
    T.UP_FOR_RESCHEDULE: frozenset({T.SCHEDULED, T.NONE, T.SUCCESS, T.FAILED}),
    # Terminal states leave only by a user's clear or mark.
    T.SUCCESS: frozenset({T.NONE, T.FAILED}),
    T.FAILED: frozenset({T.NONE, T.SUCCESS}),
    T.SKIPPED: frozenset({T.NONE, T.SUCCESS, T.FAILED}),
    T.UPSTREAM_FAILED: frozenset({T.NONE, T.SUCCESS, T.FAILED}),
}
del T

R = DagRunState
DAG_RUN_TRANSITIONS: dict[DagRunState, frozenset[DagRunState]] = {
    R.QUEUED: frozenset({R.RUNNING, R.SUCCESS, R.FAILED}),
    R.RUNNING: frozenset({R.SUCCESS, R.FAILED}),
    # A user's mark, or clearing a task of a finished run, reopens or flips it.
    R.SUCCESS: frozenset({R.FAILED, R.QUEUED}),
    R.FAILED: frozenset({R.SUCCESS, R.QUEUED}),
}
del R

TERMINAL_TASK_STATES: frozenset[TaskState] = frozenset(
    {TaskState.SUCCESS, TaskState.FAILED, TaskState.SKIPPED, TaskState.UPSTREAM_FAILED}
)
FINISHED_DAG_RUN_STATES: frozenset[DagRunState] = frozenset(
    {DagRunState.SUCCESS, DagRunState.FAILED}
)


class IllegalTransition(ValueError):
    """A state change the transition table does not allow."""

    def __init__(self, kind: str, source: str, target: str) -> None:
        super().__init__(f"{kind} cannot go from {source!r} to {target!r}")
        self.kind, self.source, self.target = kind, source, target


def is_allowed(source: TaskState | DagRunState, target: TaskState | DagRunState) -> bool:
    """Whether the table allows ``source -> target`` (both of the same enum)."""
    if isinstance(source, TaskState) and isinstance(target, TaskState):
        return target in TASK_TRANSITIONS[source]
    if isinstance(source, DagRunState) and isinstance(target, DagRunState):
        return target in DAG_RUN_TRANSITIONS[source]
    return False


def check_transition(source: TaskState | DagRunState, target: TaskState | DagRunState) -> None:
    """Raise ``IllegalTransition`` unless the table allows ``source -> target``."""
    if not is_allowed(source, target):
        kind = "task instance" if isinstance(source, TaskState) else "DAG run"
        raise IllegalTransition(kind, str(source), str(target))
