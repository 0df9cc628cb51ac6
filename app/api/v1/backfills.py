"""``/api/v1/backfills``: create, list, read, pause, resume and cancel backfills."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from app.api.deps import Service, Session
from app.api.problems import PROBLEM_RESPONSES
from app.api.v1.dags import get_dag
from app.auth import Operator, Viewer
from app.db.models import Backfill
from app.scheduler import backfills
from app.scheduler.wakeup import wake_scheduler
from weir.errors import NotFound
from weir.params import check_conf

__all__ = ["BackfillCreate", "BackfillProgress", "BackfillPublic", "BackfillsPublic", "router"]

router = APIRouter(prefix="/api/v1/backfills", tags=["backfills"], responses=PROBLEM_RESPONSES)


class BackfillCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dag_id: str
    start: datetime = Field(description="First logical date; without an offset, the DAG's zone.")
    end: datetime = Field(description="Last logical date (included).")
    max_active_runs: int = Field(default=4, ge=1, le=1000, description="The backfill's budget.")
    conf: dict[str, Any] = Field(default_factory=dict, description="Parameters for every run.")


class BackfillProgress(BaseModel):
    total: int
    queued: int
    running: int
    success: int
    failed: int


class BackfillPublic(BaseModel):
    id: int
    dag_id: str
    start: datetime
    end: datetime
    max_active_runs: int
    state: backfills.BackfillState
    conf: dict[str, Any]
    created_at: datetime
    completed_at: datetime | None
    progress: BackfillProgress
    skipped: int | None = Field(
        default=None, description="On creation: intervals of the range that already had a run."
    )


class BackfillsPublic(BaseModel):
    backfills: list[BackfillPublic]
    total: int


async def _public(
    session: Session, items: Sequence[Backfill], skipped: int | None = None
) -> list[BackfillPublic]:
    counts = await backfills.backfill_progress(session, [b.id for b in items])
    return [
        BackfillPublic(
            id=b.id,
            dag_id=b.dag_id,
            start=b.from_date,
            end=b.to_date,
            max_active_runs=b.max_active_runs,
            state=backfills.BackfillState(b.state),
            conf=b.conf,
            created_at=b.created_at,
            completed_at=b.completed_at,
            progress=_progress(counts[b.id]),
            skipped=skipped,
        )
        for b in items
    ]


def _progress(counts: dict[str, int]) -> BackfillProgress:
    states = ("queued", "running", "success", "failed")
    return BackfillProgress(total=sum(counts.values()), **{s: counts.get(s, 0) for s in states})


@router.post("", status_code=201, operation_id="backfills-create")
async def create_backfill(
    body: BackfillCreate, session: Session, service: Service, _token: Operator
) -> BackfillPublic:
    """Queue a run for each interval of the range that has none (422 with none to run, or more
    than 10,000); the runs start within the backfill's own ``max_active_runs``."""
    dag = await get_dag(session, body.dag_id)
    structure = await service.versions.get(session, dag.version_id)
    check_conf(structure.options.get("params") or {}, body.conf)
    request = backfills.BackfillRequest(
        dag_id=body.dag_id,
        start=body.start,
        end=body.end,
        max_active_runs=body.max_active_runs,
        conf=body.conf,
    )
    backfill, skipped = await backfills.create_backfill(
        session, request, service.versions, service.clock.now()
    )
    await wake_scheduler(session)
    [public] = await _public(session, [backfill], skipped)
    return public


@router.get("", operation_id="backfills-list")
async def list_backfills(
    session: Session, _token: Viewer, dag_id: str | None = None, limit: int = 100, offset: int = 0
) -> BackfillsPublic:
    """Newest first, optionally of one DAG."""
    statement = select(Backfill).order_by(Backfill.id.desc()).limit(min(limit, 1000)).offset(offset)
    if dag_id is not None:
        statement = statement.where(Backfill.dag_id == dag_id)
    items = (await session.scalars(statement)).all()
    return BackfillsPublic(backfills=await _public(session, items), total=len(items))


@router.get("/{backfill_id}", operation_id="backfills-get")
async def read_backfill(backfill_id: int, session: Session, _token: Viewer) -> BackfillPublic:
    backfill = await session.get(Backfill, backfill_id)
    if backfill is None:
        raise NotFound(f"backfill {backfill_id} does not exist; GET /api/v1/backfills lists them.")
    [public] = await _public(session, [backfill])
    return public


@router.post("/{backfill_id}/pause", operation_id="backfills-pause")
async def pause_backfill(
    backfill_id: int, session: Session, service: Service, _token: Operator
) -> BackfillPublic:
    """Its queued runs wait (409 unless running); the runs already running finish."""
    backfill = await backfills.pause_backfill(session, backfill_id, service.clock.now())
    [public] = await _public(session, [backfill])
    return public


@router.post("/{backfill_id}/resume", operation_id="backfills-resume")
async def resume_backfill(
    backfill_id: int, session: Session, service: Service, _token: Operator
) -> BackfillPublic:
    """Its queued runs start again (409 unless paused)."""
    backfill = await backfills.resume_backfill(session, backfill_id, service.clock.now())
    await wake_scheduler(session)
    [public] = await _public(session, [backfill])
    return public


@router.post("/{backfill_id}/cancel", operation_id="backfills-cancel")
async def cancel_backfill(
    backfill_id: int, session: Session, service: Service, _token: Operator
) -> BackfillPublic:
    """Its runs that have not started fail; running ones finish (409 once completed or
    cancelled)."""
    backfill = await backfills.cancel_backfill(session, backfill_id, service.clock.now())
    [public] = await _public(session, [backfill])
    return public
