"""Planning a run in memory: what a branch's return value means, and how one scheduler pass
carries skips and failures to the end of the DAG (the database side is in
tests/integration/test_flow_control.py)."""

from __future__ import annotations

from typing import Any

import pytest

from app.db.models import DagVersion
from app.scheduler import progress
from app.scheduler.branches import read_choice
from app.scheduler.versions import DagStructure
from weir import dag, task
from weir.states import DagRunState, TaskState

T = TaskState


@task
def work() -> None:
    return None


@task.branch
def pick() -> str:
    return "left"


def _structure(built: Any) -> DagStructure:
    version = DagVersion(id=1, dag_id=built.dag_id, file_hash="0", serialized=built.to_dict())
    return DagStructure.from_version(version, "flow.py")


@pytest.fixture
def branching() -> DagStructure:
    """pick >> [left, right, join]; left >> join (none_failed); right >> after_right >> last."""

    @dag
    def branching() -> None:
        chooser = pick()
        left = work.override(task_id="left")()
        right = work.override(task_id="right")()
        join = work.override(task_id="join", trigger_rule="none_failed")()
        after_right = work.override(task_id="after_right")()
        last = work.override(task_id="last")()
        chooser >> [left, right, join]
        left >> join
        right >> after_right >> last

    return _structure(branching())


def test_unchosen_direct_downstream_tasks_are_skipped(branching: DagStructure) -> None:
    choice = read_choice(branching, "pick", "left")
    assert choice.error is None
    assert choice.skip == {"right"}  # join is downstream of left: followed through it


def test_a_list_chooses_several(branching: DagStructure) -> None:
    assert read_choice(branching, "pick", ["left", "right"]).skip == set()


def test_choosing_the_join_of_an_empty_branch_skips_only_the_other_paths(
    branching: DagStructure,
) -> None:
    assert read_choice(branching, "pick", "join").skip == {"left", "right"}


@pytest.mark.parametrize("nothing", [None, []])
def test_none_or_an_empty_list_skips_every_direct_downstream_task(
    branching: DagStructure, nothing: Any
) -> None:
    assert read_choice(branching, "pick", nothing).skip == {"left", "right", "join"}


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("nope", "chose ['nope'], not among its direct downstream tasks"),
        ("after_right", "chose ['after_right']"),  # in the DAG, but not a direct downstream task
        (["left", "nope"], "chose ['nope']"),
        (3, "returned 3; a branch task must return a task id, a list of task ids, or None"),
        ({"left": True}, "must return a task id"),
    ],
)
def test_an_invalid_choice_is_an_error_naming_the_valid_ones(
    branching: DagStructure, value: Any, says: str
) -> None:
    choice = read_choice(branching, "pick", value)
    assert choice.skip == set()
    assert choice.error is not None
    assert says in choice.error
    assert "['left', 'right', 'join']" in choice.error


def _instances(states: dict[str, TaskState]) -> dict[str, Any]:
    return {
        task_id: progress._Instance(number, state, 1 if state is not T.NONE else 0, -1)
        for number, (task_id, state) in enumerate(states.items(), start=1)
    }


def _plan(
    structure: DagStructure, states: dict[str, TaskState], choices: dict[str, Any]
) -> tuple[dict[str, str], progress.Plan]:
    instances = _instances(states)
    run = progress._Run(7, "manual__1", structure)
    plan = progress.Plan()
    by_id = {instances[task_id].id: value for task_id, value in choices.items()}
    progress._plan_run(run, {t: [i] for t, i in instances.items()}, by_id, plan)
    names = {instance.id: task_id for task_id, instance in instances.items()}
    decided = {names[i]: "scheduled" for i in plan.to_schedule}
    decided |= {names[i]: "skipped" for i in plan.to_skip}
    decided |= {names[i]: "upstream_failed" for i in plan.to_upstream_fail}
    return decided, plan


def test_a_branch_skip_cascades_to_the_end_in_one_pass(branching: DagStructure) -> None:
    states = dict.fromkeys(branching.tasks, T.NONE) | {"pick": T.SUCCESS}
    decided, plan = _plan(branching, states, {"pick": "left"})
    assert decided == {
        "left": "scheduled",
        "right": "skipped",
        "after_right": "skipped",
        "last": "skipped",
    }
    assert not plan.finished


def test_a_join_after_a_branch_runs_once_the_followed_path_is_done(
    branching: DagStructure,
) -> None:
    states = {"pick": T.SUCCESS, "left": T.SUCCESS, "join": T.NONE}
    states |= {"right": T.SKIPPED, "after_right": T.SKIPPED, "last": T.SKIPPED}
    decided, _ = _plan(branching, states, {"pick": "left"})
    assert decided == {"join": "scheduled"}


def test_an_invalid_choice_fails_the_branch_and_its_downstream_in_the_same_pass(
    branching: DagStructure,
) -> None:
    states = dict.fromkeys(branching.tasks, T.NONE) | {"pick": T.SUCCESS}
    decided, plan = _plan(branching, states, {"pick": "nope"})
    assert [b.task_id for b in plan.invalid_branches] == ["pick"]
    assert plan.invalid_branches[0].attempt == 1
    assert set(decided.values()) == {"upstream_failed"}
    assert len(decided) == len(branching.tasks) - 1
    assert plan.finished == {7: DagRunState.FAILED}


def test_a_failure_reaches_cleanup_and_alert_tasks_in_the_same_pass() -> None:
    @dag
    def rules() -> None:
        first = work.override(task_id="first")()
        second = work.override(task_id="second")()
        cleanup = work.override(task_id="cleanup", trigger_rule="all_done")()
        alert = work.override(task_id="alert", trigger_rule="one_failed")()
        first >> second
        second >> [cleanup, alert]

    structure = _structure(rules())
    states = dict.fromkeys(structure.tasks, T.NONE) | {"first": T.FAILED}
    decided, plan = _plan(structure, states, {})
    assert decided == {"second": "upstream_failed", "cleanup": "scheduled", "alert": "scheduled"}
    assert not plan.finished


def test_a_run_with_a_failure_fails_even_when_its_leaves_succeeded() -> None:
    @dag
    def leaves() -> None:
        first = work.override(task_id="first")()
        cleanup = work.override(task_id="cleanup", trigger_rule="all_done")()
        first >> cleanup

    structure = _structure(leaves())
    _, plan = _plan(structure, {"first": T.FAILED, "cleanup": T.SUCCESS}, {})
    assert plan.finished == {7: DagRunState.FAILED}


def test_a_branch_marked_success_without_running_chooses_nothing_and_skips_nothing(
    branching: DagStructure,
) -> None:
    states = dict.fromkeys(branching.tasks, T.NONE) | {"pick": T.SUCCESS}
    decided, plan = _plan(branching, states, {})  # no stored return value
    assert decided == {"left": "scheduled", "right": "scheduled"}
    assert not plan.invalid_branches
