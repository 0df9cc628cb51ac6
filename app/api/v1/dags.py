"""``/api/v1/dags``: list, read, pause and unpause DAGs."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict
from sqlalchemy import select

from app.api.deps import Service, Session
from app.api.problems import PROBLEM_RESPONSES
from app.auth import Operator, Viewer
from app.db.models import Dag
from app.scheduler.due_runs import plan_next_run
from app.scheduler.wakeup import wake_scheduler
from weir.errors import NotFound

__all__ = ["DagPatch", "DagPublic", "DagsPublic", "router"]

router = APIRouter(prefix="/api/v1/dags", tags=["dags"], responses=PROBLEM_RESPONSES)


class DagPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    dag_id: str
    fileloc: str
    is_paused: bool
    is_active: bool
    schedule: str | None
    description: str | None
    tags: list[str]
    last_parsed_at: datetime
    next_logical_date: datetime | None = None
    next_run_after: datetime | None = None


class DagsPublic(BaseModel):
    dags: list[DagPublic]
    total: int


class DagPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    is_paused: bool


async def get_dag(session: Session, dag_id: str) -> Dag:
    dag = await session.get(Dag, dag_id)
    if dag is None:
        raise NotFound(f"DAG {dag_id!r} does not exist; `weir dags list` shows the DAGs there are.")
    return dag


@router.get("", operation_id="dags-list")
async def list_dags(session: Session, _token: Viewer) -> DagsPublic:
    dags = (await session.scalars(select(Dag).order_by(Dag.dag_id))).all()
    return DagsPublic(dags=[DagPublic.model_validate(d) for d in dags], total=len(dags))


@router.get("/{dag_id}", operation_id="dags-get")
async def read_dag(dag_id: str, session: Session, _token: Viewer) -> DagPublic:
    return DagPublic.model_validate(await get_dag(session, dag_id))


@router.patch("/{dag_id}", operation_id="dags-update")
async def update_dag(
    dag_id: str, patch: DagPatch, session: Session, service: Service, _token: Operator
) -> DagPublic:
    """Pause or unpause. Unpausing plans the next run from now, so the intervals missed while
    paused are not all created at once (only the latest, unless the DAG has catchup)."""
    dag = await get_dag(session, dag_id)
    unpausing = dag.is_paused and not patch.is_paused
    dag.is_paused = patch.is_paused
    await session.flush()
    if unpausing:
        options = (await service.versions.get(session, dag.version_id)).options
        await plan_next_run(session, dag_id, options, service.clock.now())
        await session.refresh(dag)
        await wake_scheduler(session)
    return DagPublic.model_validate(dag)
