"""``/api/v1/dags/{dag_id}/runs/{run_id}/tasks``: task instances of a run and their logs.

A mapped task has one instance per element (``map_index`` 0, 1, …; -1 for an unmapped task or a
mapped one not expanded yet): the list shows them all, and ``?map_index=`` picks one of them on
the single-instance routes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from app.api.deps import Service, Session
from app.api.problems import PROBLEM_RESPONSES
from app.api.v1.runs import get_run
from app.auth import Viewer
from app.db.models import AttemptLog, TaskInstance
from app.scheduler.reasons import BrokerView, explain
from weir.errors import NotFound
from weir.states import TaskState

__all__ = ["TaskInstancePublic", "TaskInstancesPublic", "router"]

router = APIRouter(
    prefix="/api/v1/dags/{dag_id}/runs/{run_id}/tasks", tags=["tasks"], responses=PROBLEM_RESPONSES
)


class TaskInstancePublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    task_id: str
    map_index: int = Field(
        description="The instance's index in a mapped task; -1 for an unmapped task."
    )
    state: TaskState
    attempt: int
    max_tries: int
    queue: str
    pool: str
    pool_slots: int
    priority_weight: int
    wait_code: str | None = Field(
        description="Why it is not running, as a stable code (null once it runs or ended)."
    )
    wait_reason: str | None = Field(description="The same in words: who or what it waits for.")
    worker: str | None
    queued_at: datetime | None
    start_date: datetime | None
    end_date: datetime | None
    next_retry_at: datetime | None


class TaskInstancesPublic(BaseModel):
    task_instances: list[TaskInstancePublic]
    total: int


def _broker_view(request: Request) -> BrokerView:
    view: BrokerView = request.app.state.loops.relay
    return view


BrokerStatus = Annotated[BrokerView, Depends(_broker_view)]


async def _public(
    session: Session, service: Service, broker: BrokerView, ti: TaskInstance
) -> TaskInstancePublic:
    """The task instance with its wait reason: the stored one, or computed now (``reasons``)."""
    public = TaskInstancePublic.model_validate(ti)
    reason = await explain(session, ti, service.versions, broker)
    public.wait_code, public.wait_reason = reason if reason else (None, None)
    return public


MapIndex = Annotated[
    int | None,
    Query(description="Which instance of a mapped task; not needed for an unmapped task."),
]


async def _get_task_instance(
    session: Session, dag_id: str, run_id: str, task_id: str, map_index: int | None
) -> TaskInstance:
    run = await get_run(session, dag_id, run_id)
    rows = (
        await session.scalars(
            select(TaskInstance)
            .where(TaskInstance.dag_run_id == run.id, TaskInstance.task_id == task_id)
            .order_by(TaskInstance.map_index)
        )
    ).all()
    if not rows:
        raise NotFound(f"Run {run_id!r} of DAG {dag_id!r} has no task {task_id!r}.")
    wanted = -1 if map_index is None and len(rows) == 1 else map_index
    found = [ti for ti in rows if ti.map_index == wanted]
    if not found:
        indexes = [ti.map_index for ti in rows]
        raise NotFound(
            f"Task {task_id!r} of run {run_id!r} has no instance with map_index {map_index}: it "
            f"has map indexes {indexes[0]}..{indexes[-1]}; pass ?map_index= with one of them."
        )
    return found[0]


@router.get("", operation_id="tasks-list")
async def list_task_instances(
    dag_id: str,
    run_id: str,
    session: Session,
    service: Service,
    broker: BrokerStatus,
    _token: Viewer,
) -> TaskInstancesPublic:
    run = await get_run(session, dag_id, run_id)
    rows = (
        await session.scalars(
            select(TaskInstance).where(TaskInstance.dag_run_id == run.id).order_by(TaskInstance.id)
        )
    ).all()
    return TaskInstancesPublic(
        task_instances=[await _public(session, service, broker, r) for r in rows], total=len(rows)
    )


@router.get("/{task_id}", operation_id="tasks-get")
async def read_task_instance(
    dag_id: str,
    run_id: str,
    task_id: str,
    session: Session,
    service: Service,
    broker: BrokerStatus,
    _token: Viewer,
    map_index: MapIndex = None,
) -> TaskInstancePublic:
    ti = await _get_task_instance(session, dag_id, run_id, task_id, map_index)
    return await _public(session, service, broker, ti)


@router.get(
    "/{task_id}/logs",
    operation_id="tasks-logs",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {}}}},
)
async def read_task_logs(
    dag_id: str,
    run_id: str,
    task_id: str,
    session: Session,
    _token: Viewer,
    attempt: int | None = None,
    map_index: MapIndex = None,
) -> PlainTextResponse:
    """The log of one attempt (the latest by default), as plain text."""
    ti = await _get_task_instance(session, dag_id, run_id, task_id, map_index)
    wanted = attempt if attempt is not None else ti.attempt
    chunks = await session.scalars(
        select(AttemptLog.data)
        .where(AttemptLog.task_instance_id == ti.id, AttemptLog.attempt == wanted)
        .order_by(AttemptLog.id)
    )
    return PlainTextResponse("".join(chunks))
