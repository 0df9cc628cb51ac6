"""``/api/v1/dags/{dag_id}/runs/{run_id}/tasks``: task instances of a run, their attempts and logs.

A mapped task has one instance per element (``map_index`` 0, 1, …; -1 for an unmapped task or a
mapped one not expanded yet): the list shows them all, and ``?map_index=`` picks one of them on
the single-instance routes. Clearing and marking live in ``task_actions``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from app.api.deps import Service, Session
from app.api.pagination import Limit, Offset, OrderBy, Page, paginate
from app.api.problems import PROBLEM_RESPONSES
from app.api.v1 import task_actions
from app.api.v1.dags import NO_NUL, IdPath
from app.api.v1.runs import get_run
from app.api.v1.task_logs import DEFAULT_BYTES, LogSlice, as_text, read_log, wants_text
from app.auth import Viewer
from app.db.models import TaskAttempt, TaskInstance
from app.scheduler.reasons import BrokerView, explain
from weir.errors import NotFound
from weir.states import TaskState

__all__ = [
    "TaskAttemptPublic",
    "TaskInstanceDetail",
    "TaskInstancePublic",
    "TaskInstancesPublic",
    "get_task_instance",
    "router",
]

router = APIRouter(tags=["tasks"], responses=PROBLEM_RESPONSES)
instances = APIRouter(prefix="/api/v1/dags/{dag_id}/runs/{run_id}/tasks")

SORT_KEYS = {
    "id": TaskInstance.id,
    "task_id": TaskInstance.task_id,
    "map_index": TaskInstance.map_index,
    "state": TaskInstance.state,
    "start_date": TaskInstance.start_date,
    "end_date": TaskInstance.end_date,
    "priority_weight": TaskInstance.priority_weight,
}


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


class TaskAttemptPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    attempt: int
    state: TaskState = Field(description="How the attempt ended (running while it runs).")
    worker: str | None
    start_date: datetime | None
    end_date: datetime | None
    error: str | None


class TaskInstanceDetail(TaskInstancePublic):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "id": 7, "task_id": "extract", "map_index": -1, "state": "success",
                    "attempt": 2, "max_tries": 3, "queue": "default", "pool": "default_pool",
                    "pool_slots": 1, "priority_weight": 1, "wait_code": None,
                    "wait_reason": None, "worker": "host-1", "queued_at": None,
                    "start_date": "2026-01-02T06:00:31Z", "end_date": "2026-01-02T06:00:32Z",
                    "next_retry_at": None,
                    "attempts": [
                        {"attempt": 1, "state": "up_for_retry", "worker": "host-1",
                         "start_date": "2026-01-02T06:00:01Z",
                         "end_date": "2026-01-02T06:00:01Z", "error": "ConnectionError: …"},
                        {"attempt": 2, "state": "success", "worker": "host-1",
                         "start_date": "2026-01-02T06:00:31Z",
                         "end_date": "2026-01-02T06:00:32Z", "error": None},
                    ],
                }
            ]
        },
    )  # fmt: skip

    attempts: list[TaskAttemptPublic] = Field(description="Every attempt that started, in order.")


class TaskInstancesPublic(BaseModel):
    task_instances: list[TaskInstancePublic]
    total: int = Field(description="Instances matching the filters, on every page.")


async def _broker_view(request: Request) -> BrokerView:
    view: BrokerView = request.app.state.loops.relay
    return view


BrokerStatus = Annotated[BrokerView, Depends(_broker_view)]
MapIndex = Annotated[
    int | None,
    Query(
        ge=-1, le=1_000_000,
        description="Which instance of a mapped task; not needed for an unmapped task.",
    ),
]  # fmt: skip


async def _public(
    session: Session, service: Service, broker: BrokerView, ti: TaskInstance
) -> TaskInstancePublic:
    """The task instance with its wait reason: the stored one, or computed now (``reasons``).
    One or two queries per instance: lists are bounded by their page size."""
    public = TaskInstancePublic.model_validate(ti)
    reason = await explain(session, ti, service.versions, broker)
    public.wait_code, public.wait_reason = reason if reason else (None, None)
    return public


async def get_task_instance(
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


@instances.get("", operation_id="tasks-list")
async def list_task_instances(
    dag_id: IdPath,
    run_id: IdPath,
    session: Session,
    service: Service,
    broker: BrokerStatus,
    _token: Viewer,
    state: Annotated[list[TaskState] | None, Query(max_length=10)] = None,
    task_id: Annotated[str | None, Query(max_length=250, pattern=NO_NUL)] = None,
    map_index: Annotated[int | None, Query(ge=-1, le=1_000_000)] = None,
    limit: Limit = 100,
    offset: Offset = 0,
    order_by: OrderBy = None,
) -> TaskInstancesPublic:
    """The run's task instances, in creation order unless ``order_by`` says otherwise (id,
    task_id, map_index, state, start_date, end_date, priority_weight)."""
    run = await get_run(session, dag_id, run_id)
    statement = select(TaskInstance).where(TaskInstance.dag_run_id == run.id)
    if state:
        statement = statement.where(TaskInstance.state.in_(state))
    if task_id is not None:
        statement = statement.where(TaskInstance.task_id == task_id)
    if map_index is not None:
        statement = statement.where(TaskInstance.map_index == map_index)
    rows, total = await paginate(
        session, statement, Page(limit, offset, order_by),
        sort_keys=SORT_KEYS, default="id", tiebreak=TaskInstance.id,
    )  # fmt: skip
    listed = [await _public(session, service, broker, r) for r in rows]
    return TaskInstancesPublic(task_instances=listed, total=total)


@instances.get("/{task_id}", operation_id="tasks-get")
async def read_task_instance(
    dag_id: IdPath,
    run_id: IdPath,
    task_id: IdPath,
    session: Session,
    service: Service,
    broker: BrokerStatus,
    _token: Viewer,
    map_index: MapIndex = None,
) -> TaskInstanceDetail:
    """One task instance, with every attempt it made."""
    ti = await get_task_instance(session, dag_id, run_id, task_id, map_index)
    public = await _public(session, service, broker, ti)
    attempts = await session.scalars(
        select(TaskAttempt)
        .where(TaskAttempt.task_instance_id == ti.id)
        .order_by(TaskAttempt.attempt)
    )
    listed = [TaskAttemptPublic.model_validate(a) for a in attempts]
    return TaskInstanceDetail(**public.model_dump(), attempts=listed)


@instances.get(
    "/{task_id}/logs",
    operation_id="tasks-logs",
    response_model=LogSlice,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
async def read_task_logs(
    dag_id: IdPath,
    run_id: IdPath,
    task_id: IdPath,
    session: Session,
    _token: Viewer,
    attempt: Annotated[
        int | None, Query(ge=0, le=1_000_000, description="The current one when not given.")
    ] = None,
    offset: Annotated[int, Query(ge=0, le=1 << 40, description="First byte to return.")] = 0,
    max_bytes: Annotated[
        int, Query(ge=1, le=16 << 20, description="At most this many bytes.")
    ] = DEFAULT_BYTES,
    map_index: MapIndex = None,
    format: Annotated[
        Literal["json", "text"] | None, Query(description="text: the log alone, as text/plain.")
    ] = None,
    accept: Annotated[str | None, Header(max_length=1000)] = None,
) -> LogSlice | PlainTextResponse:
    """One attempt's log from byte ``offset`` (of its UTF-8 text; never inside a character). To
    tail it, call again with the answer's ``next_offset`` until ``complete``. JSON by default;
    ``?format=text`` or ``Accept: text/plain`` gives the text alone, the range in
    ``X-Weir-Log-Offset``, ``X-Weir-Log-Next-Offset`` and ``X-Weir-Log-Complete`` headers."""
    ti = await get_task_instance(session, dag_id, run_id, task_id, map_index)
    piece = await read_log(session, ti, attempt, offset, max_bytes)
    return as_text(piece) if wants_text(format, accept) else piece


router.include_router(instances)
router.include_router(task_actions.router)
