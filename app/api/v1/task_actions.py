"""Clearing and marking task instances: ``POST …/runs/{run_id}/clear`` (a set),
``POST …/tasks/{task_id}/clear`` and ``PATCH …/tasks/{task_id}`` (``state``: success or failed).

The use cases live in ``app.scheduler.clearing`` and ``app.scheduler.marking``; these routes
check the input, record the action in the audit log and wake the scheduler.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from app.api.deps import Service, Session
from app.api.problems import PROBLEM_RESPONSES
from app.api.v1.dags import NO_NUL, IdPath
from app.api.v1.runs import get_run
from app.audit import record
from app.auth import Operator, Principal
from app.db.models import DagRun, TaskInstance
from app.scheduler.clearing import ClearRequest, clear_task_instances
from app.scheduler.marking import mark_task
from app.scheduler.wakeup import wake_scheduler
from weir.errors import NotFound
from weir.states import TaskState

__all__ = ["TaskClear", "TaskInstanceChange", "TaskInstanceChanges", "TaskMark", "TasksClear"]

router = APIRouter(tags=["tasks"], responses=PROBLEM_RESPONSES)
RUN = "/api/v1/dags/{dag_id}/runs/{run_id}"
TaskIdItem = Annotated[str, Field(min_length=1, max_length=250, pattern=NO_NUL)]
MapIndex = Annotated[
    int | None, Query(ge=-1, le=1_000_000, description="One instance of a mapped task.")
]


class TaskClear(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"include_downstream": True}]}
    )

    include_downstream: bool = Field(False, description="Clear every task downstream too.")
    only_failed: bool = Field(False, description="Only instances that failed (or upstream_failed).")
    dry_run: bool = Field(False, description="Answer what would be cleared; change nothing.")


class TasksClear(TaskClear):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"task_ids": None, "only_failed": True}]},
    )

    task_ids: list[TaskIdItem] | None = Field(
        None, max_length=1000, description="The tasks to clear; null for all of them."
    )


class TaskMark(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"state": "success"}]}
    )

    state: Literal["success", "failed"]
    include_downstream: bool = Field(False, description="Mark every task downstream too.")


class TaskInstanceChange(BaseModel):
    task_id: str
    map_index: int
    attempt: int = Field(description="Its latest attempt; the next run of it is attempt + 1.")
    previous_state: TaskState
    state: TaskState = Field(description="Its state now (or after the change, for a dry run).")


class TaskInstanceChanges(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "task_instances": [
                        {
                            "task_id": "load",
                            "map_index": -1,
                            "attempt": 1,
                            "previous_state": "failed",
                            "state": "none",
                        }
                    ],
                    "total": 1,
                    "dry_run": False,
                }
            ]
        }
    )

    task_instances: list[TaskInstanceChange]
    total: int
    dry_run: bool = False


def _changes(
    rows: list[tuple[TaskInstance, TaskState]], state: TaskState, dry_run: bool
) -> TaskInstanceChanges:
    """The answer: each instance with the state it had and the state it has now."""
    changes = [
        TaskInstanceChange(
            task_id=ti.task_id, map_index=ti.map_index, attempt=ti.attempt,
            previous_state=previous, state=state,
        )
        for ti, previous in rows
    ]  # fmt: skip
    return TaskInstanceChanges(task_instances=changes, total=len(changes), dry_run=dry_run)


async def _clear(
    session: Session,
    service: Service,
    principal: Principal,
    run: DagRun,
    request: ClearRequest,
) -> TaskInstanceChanges:
    now = service.clock.now()
    structure = await service.versions.get(session, run.version_id)
    cleared = await clear_task_instances(session, run, structure, request, principal.username, now)
    if cleared and not request.dry_run:
        tasks = sorted({ti.task_id for ti in cleared})
        detail = {"task_ids": tasks, "task_instances": len(cleared)}
        await record(session, principal, "task_instance.clear", f"{run.dag_id}/{run.run_id}",
                     now, detail=detail)  # fmt: skip
        await wake_scheduler(session)
    rows = [(ti, TaskState(ti.state)) for ti in cleared]
    return _changes(rows, TaskState.NONE, request.dry_run)


@router.post(f"{RUN}/clear", operation_id="runs-clear")
async def clear_run_tasks(
    dag_id: IdPath,
    run_id: IdPath,
    body: TasksClear,
    session: Session,
    service: Service,
    principal: Operator,
) -> TaskInstanceChanges:
    """Clear a set of the run's tasks (all of them when ``task_ids`` is null) so they run again,
    each as its next attempt with its retries renewed. A finished run is reopened; a mapped task
    is expanded again from its source's new output."""
    run = await get_run(session, dag_id, run_id)
    request = ClearRequest(
        task_ids=frozenset(body.task_ids) if body.task_ids is not None else None,
        only_failed=body.only_failed,
        include_downstream=body.include_downstream,
        dry_run=body.dry_run,
    )
    return await _clear(session, service, principal, run, request)


@router.post(f"{RUN}/tasks/{{task_id}}/clear", operation_id="tasks-clear")
async def clear_task(
    dag_id: IdPath,
    run_id: IdPath,
    task_id: IdPath,
    body: TaskClear,
    session: Session,
    service: Service,
    principal: Operator,
    map_index: MapIndex = None,
) -> TaskInstanceChanges:
    """Clear one task (every instance of a mapped one, or the one ``map_index`` names), and
    with ``include_downstream`` everything after it. A running attempt is abandoned: its
    worker's later reports are refused."""
    run = await get_run(session, dag_id, run_id)
    structure = await service.versions.get(session, run.version_id)
    if task_id not in structure.tasks:
        raise NotFound(f"Run {run_id!r} of DAG {dag_id!r} has no task {task_id!r}.")
    request = ClearRequest(
        task_ids=frozenset([task_id]), only_failed=body.only_failed,
        include_downstream=body.include_downstream, map_index=map_index, dry_run=body.dry_run,
    )  # fmt: skip
    return await _clear(session, service, principal, run, request)


@router.patch(f"{RUN}/tasks/{{task_id}}", operation_id="tasks-mark")
async def mark_task_instance(
    dag_id: IdPath,
    run_id: IdPath,
    task_id: IdPath,
    body: TaskMark,
    session: Session,
    service: Service,
    principal: Operator,
    map_index: MapIndex = None,
) -> TaskInstanceChanges:
    """Mark a task (and, optionally, everything downstream of it) success or failed. A running
    attempt ends there (its worker's later reports are refused). No callback runs."""
    run = await get_run(session, dag_id, run_id)
    structure = await service.versions.get(session, run.version_id)
    if task_id not in structure.tasks:
        raise NotFound(f"Run {run_id!r} of DAG {dag_id!r} has no task {task_id!r}.")
    now = service.clock.now()
    target = TaskState(body.state)
    changed = await mark_task(
        session, run, structure, task_id, target=target, map_index=map_index,
        include_downstream=body.include_downstream, actor=principal.username, now=now,
    )  # fmt: skip
    if changed:
        detail = {"task_id": task_id, "state": body.state, "task_instances": len(changed)}
        await record(session, principal, "task_instance.mark", f"{dag_id}/{run_id}", now,
                     detail=detail)  # fmt: skip
        await wake_scheduler(session)
    return _changes(changed, target, False)
