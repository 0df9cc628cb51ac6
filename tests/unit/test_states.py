"""The transition table, walked pair by pair (trigger rules: test_trigger_rules.py)."""

from __future__ import annotations

import itertools

import pytest

from weir.states import (
    DAG_RUN_TRANSITIONS,
    TASK_TRANSITIONS,
    TERMINAL_TASK_STATES,
    DagRunState,
    IllegalTransition,
    TaskState,
    check_transition,
    is_allowed,
)

T = TaskState

ALLOWED_TASK_MOVES = {
    (T.NONE, T.SCHEDULED), (T.NONE, T.UPSTREAM_FAILED), (T.NONE, T.SKIPPED),
    (T.NONE, T.SUCCESS), (T.NONE, T.FAILED),
    (T.SCHEDULED, T.QUEUED), (T.SCHEDULED, T.NONE), (T.SCHEDULED, T.SUCCESS),
    (T.SCHEDULED, T.FAILED),
    (T.QUEUED, T.RUNNING), (T.QUEUED, T.NONE), (T.QUEUED, T.SUCCESS), (T.QUEUED, T.FAILED),
    (T.RUNNING, T.SUCCESS), (T.RUNNING, T.FAILED), (T.RUNNING, T.UP_FOR_RETRY),
    (T.RUNNING, T.SCHEDULED), (T.RUNNING, T.NONE), (T.RUNNING, T.UP_FOR_RESCHEDULE),
    (T.RUNNING, T.SKIPPED),
    (T.UP_FOR_RETRY, T.SCHEDULED), (T.UP_FOR_RETRY, T.NONE), (T.UP_FOR_RETRY, T.SUCCESS),
    (T.UP_FOR_RETRY, T.FAILED),
    (T.UP_FOR_RESCHEDULE, T.SCHEDULED), (T.UP_FOR_RESCHEDULE, T.NONE),
    (T.UP_FOR_RESCHEDULE, T.SUCCESS), (T.UP_FOR_RESCHEDULE, T.FAILED),
    (T.SUCCESS, T.NONE), (T.SUCCESS, T.FAILED),
    (T.FAILED, T.NONE), (T.FAILED, T.SUCCESS),
    (T.SKIPPED, T.NONE), (T.SKIPPED, T.SUCCESS), (T.SKIPPED, T.FAILED),
    (T.UPSTREAM_FAILED, T.NONE), (T.UPSTREAM_FAILED, T.SUCCESS), (T.UPSTREAM_FAILED, T.FAILED),
}  # fmt: skip


@pytest.mark.parametrize(("source", "target"), list(itertools.product(TaskState, TaskState)))
def test_every_task_state_pair(source: TaskState, target: TaskState) -> None:
    allowed = (source, target) in ALLOWED_TASK_MOVES
    assert is_allowed(source, target) is allowed
    if allowed:
        check_transition(source, target)
    else:
        with pytest.raises(IllegalTransition):
            check_transition(source, target)


def test_every_task_state_has_a_row() -> None:
    assert set(TASK_TRANSITIONS) == set(TaskState)
    assert set(DAG_RUN_TRANSITIONS) == set(DagRunState)


def test_a_task_only_runs_after_it_was_queued() -> None:
    sources = {s for s in TaskState if is_allowed(s, T.RUNNING)}
    assert sources == {T.QUEUED}


def test_terminal_states_leave_only_by_a_users_clear_or_mark() -> None:
    for state in TERMINAL_TASK_STATES:
        assert TASK_TRANSITIONS[state] <= {T.NONE, T.SUCCESS, T.FAILED}


def test_mixing_enums_is_never_allowed() -> None:
    assert not is_allowed(T.NONE, DagRunState.RUNNING)
