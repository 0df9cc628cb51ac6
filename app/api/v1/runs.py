"""``/api/v1/dags/{dag_id}/runs``: trigger, list and read DAG runs."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from app.api.deps import Service, Session
from app.api.problems import PROBLEM_RESPONSES
from app.api.v1.dags import get_dag
from app.auth import Operator, Viewer
from app.db.models import DagRun
from app.scheduler.dag_runs import RunRequest, create_run
from app.scheduler.wakeup import wake_scheduler
from weir.errors import NotFound
from weir.params import check_conf
from weir.states import DagRunState

__all__ = ["DagRunCreate", "DagRunPublic", "DagRunsPublic", "get_run", "router"]

router = APIRouter(prefix="/api/v1/dags/{dag_id}/runs", tags=["runs"], responses=PROBLEM_RESPONSES)


class DagRunCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    conf: dict[str, Any] = Field(default_factory=dict, description="Parameters for this run.")
    run_id: str | None = Field(default=None, max_length=250, pattern=r"^[A-Za-z0-9_.:+\-]+$")
    logical_date: datetime | None = None


class DagRunPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    dag_id: str
    run_id: str
    state: DagRunState
    run_type: str
    logical_date: datetime
    data_interval_start: datetime | None = None
    data_interval_end: datetime | None = None
    conf: dict[str, Any]
    created_at: datetime
    start_date: datetime | None
    end_date: datetime | None


class DagRunsPublic(BaseModel):
    dag_runs: list[DagRunPublic]
    total: int


async def get_run(session: Session, dag_id: str, run_id: str) -> DagRun:
    run = (
        await session.scalars(
            select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id)
        )
    ).first()
    if run is None:
        raise NotFound(f"DAG {dag_id!r} has no run {run_id!r}.")
    return run


@router.post("", status_code=201, operation_id="runs-trigger")
async def trigger_run(
    dag_id: str,
    body: DagRunCreate,
    response: Response,
    session: Session,
    service: Service,
    _token: Operator,
    idempotency_key: Annotated[str | None, Header(max_length=250)] = None,
) -> DagRunPublic:
    """Start a run now; the same ``Idempotency-Key`` returns the same run (200), not a new one.

    A ``conf`` that does not fit the DAG's params is refused (422, each field named) before
    anything is written.
    """
    dag = await get_dag(session, dag_id)
    structure = await service.versions.get(session, dag.version_id)
    check_conf(structure.options.get("params") or {}, body.conf)
    if body.logical_date is not None and body.logical_date.tzinfo is None:
        body = body.model_copy(update={"logical_date": body.logical_date.astimezone()})
    request = RunRequest(
        dag_id=dag_id,
        conf=body.conf,
        run_id=body.run_id,
        logical_date=body.logical_date,
        idempotency_key=idempotency_key,
    )
    run, created = await create_run(session, request, service.versions, service.clock.now())
    if created:
        await wake_scheduler(session)
    else:
        response.status_code = 200
    return DagRunPublic.model_validate(run)


@router.get("", operation_id="runs-list")
async def list_runs(
    dag_id: str, session: Session, _token: Viewer, limit: int = 100, offset: int = 0
) -> DagRunsPublic:
    await get_dag(session, dag_id)
    statement = (
        select(DagRun)
        .where(DagRun.dag_id == dag_id)
        .order_by(DagRun.id.desc())
        .limit(min(limit, 1000))
        .offset(offset)
    )
    runs = (await session.scalars(statement)).all()
    return DagRunsPublic(dag_runs=[DagRunPublic.model_validate(r) for r in runs], total=len(runs))


@router.get("/{run_id}", operation_id="runs-get")
async def read_run(dag_id: str, run_id: str, session: Session, _token: Viewer) -> DagRunPublic:
    return DagRunPublic.model_validate(await get_run(session, dag_id, run_id))
