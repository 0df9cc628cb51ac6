"""Dynamic task mapping without a database: what ``.partial().expand()`` builds and refuses, how a
mapped instance gets its element, and what the planner decides for mapped tasks (expand the
placeholder once its rule is met; read all instances as one state downstream)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from app.db.models import DagVersion
from app.scheduler import progress
from app.scheduler.mapping import aggregate_state
from app.scheduler.versions import DagStructure, MapSpec
from weir import dag, task
from weir.errors import DagDefinitionError
from weir.states import TaskState
from weir.task import MAP_ELEMENT_INPUT

T = TaskState


@task
def listing() -> list[int]:
    return [1, 2, 3]


@task
def double(x: int, factor: int = 2) -> int:
    return x * factor


@task
def total(values: list[int]) -> int:
    return sum(values)


def _structure(built: Any) -> DagStructure:
    serialized = json.loads(json.dumps(built.to_dict()))
    version = DagVersion(id=1, dag_id=built.dag_id, file_hash="0", serialized=serialized)
    return DagStructure.from_version(version, "mapped.py")


def _mapped_dag() -> Any:
    @dag
    def mapped() -> None:
        total(double.partial(factor=3).expand(x=listing()))

    return mapped()


def test_expand_over_an_upstream_serializes_the_source_and_wires_it() -> None:
    built = _mapped_dag()
    serialized = {t["task_id"]: t for t in built.to_dict()["tasks"]}

    assert serialized["double"]["mapped"] == {"arg": "x", "source": "listing", "literal": None}
    assert serialized["double"]["upstream"] == ["listing"]
    assert serialized["double"]["inputs"] == []  # the element travels on its own, not the list
    assert serialized["total"]["inputs"] == ["double"]
    assert "mapped" not in serialized["listing"]  # unmapped DAGs keep their serialized form
    assert _structure(built).tasks["double"].mapped == MapSpec("x", "listing", None)


def test_expand_over_a_literal_list_needs_no_upstream() -> None:
    @dag
    def literal() -> None:
        double.expand(x=(1, 2))

    serialized = literal().to_dict()["tasks"][0]
    assert serialized["mapped"] == {"arg": "x", "source": None, "literal": [1, 2]}
    assert serialized["upstream"] == []


def test_a_mapped_instance_receives_its_element_and_the_fixed_arguments() -> None:
    mapped = _mapped_dag().tasks["double"]
    assert mapped.resolve_arguments({MAP_ELEMENT_INPUT: 7}) == ((), {"factor": 3, "x": 7})


@pytest.mark.parametrize(
    ("build", "says"),
    [
        (lambda: double.expand(), "exactly one keyword argument"),
        (lambda: double.expand(x=[1], factor=[2]), "exactly one keyword argument"),
        (lambda: double.partial(x=1).expand(x=[2]), "given to both"),
        (lambda: double.expand(y=[1]), "unexpected keyword argument 'y'"),
        (lambda: double.expand(x=5), "not int"),
        (lambda: double.expand(x=[object()]), "literal list of JSON values"),
        (lambda: task.branch(lambda: "a").expand(x=[1]), "cannot be mapped"),
    ],
)
def test_bad_expansions_are_refused_with_how_to_fix(build: Any, says: str) -> None:
    @dag
    def bad() -> None:
        build()

    with pytest.raises(DagDefinitionError, match=says):
        bad()


def test_expand_outside_a_dag_is_refused() -> None:
    with pytest.raises(DagDefinitionError, match="outside a DAG"):
        double.expand(x=[1])


@pytest.mark.parametrize(
    ("states", "seen"),
    [
        ([T.SUCCESS, T.RUNNING, T.FAILED], T.RUNNING),
        ([T.SUCCESS, T.UP_FOR_RETRY], T.UP_FOR_RETRY),
        ([T.SUCCESS, T.FAILED, T.SKIPPED], T.FAILED),
        ([T.UPSTREAM_FAILED, T.SUCCESS], T.UPSTREAM_FAILED),
        ([T.SUCCESS, T.SKIPPED], T.SUCCESS),
        ([T.SKIPPED, T.SKIPPED], T.SKIPPED),
        ([T.SUCCESS], T.SUCCESS),
    ],
)
def test_downstream_tasks_see_all_instances_as_one_state(
    states: list[TaskState], seen: TaskState
) -> None:
    assert aggregate_state(states) == seen


def _plan(instances: dict[str, list[tuple[int, TaskState, int]]]) -> progress.Plan:
    run = progress._Run(7, "manual__1", _structure(_mapped_dag()))
    plan = progress.Plan()
    groups = {
        task_id: [progress._Instance(ti, state, 1, index) for ti, state, index in group]
        for task_id, group in instances.items()
    }
    progress._plan_run(run, groups, {}, plan)
    return plan


def test_the_placeholder_is_expanded_once_its_source_succeeded_not_scheduled() -> None:
    plan = _plan(
        {
            "listing": [(1, T.SUCCESS, -1)],
            "double": [(2, T.NONE, -1)],
            "total": [(3, T.NONE, -1)],
        }
    )
    assert [e.task_instance_id for e in plan.to_expand] == [2]
    assert plan.to_schedule == [] and plan.finished == {}


def test_expanded_instances_are_scheduled_and_the_downstream_waits_for_all() -> None:
    plan = _plan(
        {
            "listing": [(1, T.SUCCESS, -1)],
            "double": [(2, T.SUCCESS, 0), (4, T.NONE, 1), (5, T.RUNNING, 2)],
            "total": [(3, T.NONE, -1)],
        }
    )
    assert plan.to_expand == [] and plan.to_schedule == [4]


def test_one_failed_instance_fails_the_downstream_and_the_run() -> None:
    plan = _plan(
        {
            "listing": [(1, T.SUCCESS, -1)],
            "double": [(2, T.SUCCESS, 0), (4, T.FAILED, 1), (5, T.SUCCESS, 2)],
            "total": [(3, T.NONE, -1)],
        }
    )
    assert plan.to_upstream_fail == [3]
    assert plan.finished == {7: "failed"}


def test_a_failed_source_fails_the_placeholder_without_expanding_it() -> None:
    plan = _plan(
        {
            "listing": [(1, T.FAILED, -1)],
            "double": [(2, T.NONE, -1)],
            "total": [(3, T.NONE, -1)],
        }
    )
    assert plan.to_expand == [] and plan.to_upstream_fail == [2, 3]
