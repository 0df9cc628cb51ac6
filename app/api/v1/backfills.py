"""``/api/v1/backfills``: create, list, read, pause, resume and cancel backfills
(``docs/scheduling/backfills.md``); every change is audited."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import select

from app.api.deps import Service, Session
from app.api.pagination import Limit, Offset, OrderBy, Page, paginate
from app.api.problems import PROBLEM_RESPONSES
from app.api.v1.dags import get_dag
from app.audit import record
from app.auth import Operator, Viewer
from app.conf_size import check_conf_size
from app.db.models import Backfill
from app.scheduler import backfills
from app.scheduler.wakeup import wake_scheduler
from weir.errors import NotFound
from weir.params import check_conf

__all__ = ["BackfillCreate", "BackfillProgress", "BackfillPublic", "BackfillsPublic", "router"]

router = APIRouter(prefix="/api/v1/backfills", tags=["backfills"], responses=PROBLEM_RESPONSES)

NO_NUL = r"^[^\x00]+$"  # PostgreSQL refuses NUL in text: such input must stop at validation
MAX_ID = 2**63 - 1
CONF_CHARS = 64_000
BackfillIdPath = Annotated[str, Path(min_length=1, max_length=20, description="The backfill's id.")]
SORT_KEYS = {
    "id": Backfill.id,
    "dag_id": Backfill.dag_id,
    "created_at": Backfill.created_at,
    "state": Backfill.state,
}


class BackfillCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"dag_id": "nightly_orders", "start": "2026-01-01", "end": "2026-01-31",
                 "max_active_runs": 4, "conf": {}}
            ]
        },
    )  # fmt: skip

    dag_id: str = Field(min_length=1, max_length=250, pattern=NO_NUL)
    start: datetime = Field(description="First logical date; without an offset, the DAG's zone.")
    end: datetime = Field(description="Last logical date (included).")
    max_active_runs: int = Field(default=4, ge=1, le=1000, description="The backfill's budget.")
    conf: dict[str, Any] = Field(default_factory=dict, description="Parameters for every run.")

    @field_validator("start", "end")
    @classmethod
    def _plausible(cls, value: datetime) -> datetime:
        if not 1900 <= value.year <= 2200:
            raise ValueError("must lie between the years 1900 and 2200")
        return value

    @field_validator("conf")
    @classmethod
    def _storable(cls, value: dict[str, Any]) -> dict[str, Any]:
        text = repr(value)
        if "\x00" in text or "\\x00" in text:
            raise ValueError("must not contain NUL characters")
        if len(text) > CONF_CHARS:
            raise ValueError(f"must be under {CONF_CHARS} characters")
        return value


class BackfillProgress(BaseModel):
    total: int
    queued: int
    running: int
    success: int
    failed: int


class BackfillPublic(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"id": 7, "dag_id": "nightly_orders", "start": "2026-01-01T00:00:00Z",
                 "end": "2026-01-31T00:00:00Z", "max_active_runs": 4, "state": "running",
                 "conf": {}, "created_at": "2026-02-01T09:00:00Z", "completed_at": None,
                 "progress": {"total": 29, "queued": 21, "running": 4, "success": 4,
                              "failed": 0},
                 "skipped": 2, "deleted_runs": None}
            ]
        }
    )  # fmt: skip

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
    deleted_runs: int | None = Field(
        default=None, description="On cancel: queued runs deleted, as they never started."
    )


class BackfillsPublic(BaseModel):
    backfills: list[BackfillPublic]
    total: int


async def _public(
    session: Session, items: Sequence[Backfill], **extra: int
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
            **extra,
        )
        for b in items
    ]


def _progress(counts: dict[str, int]) -> BackfillProgress:
    states = ("queued", "running", "success", "failed")
    return BackfillProgress(total=sum(counts.values()), **{s: counts.get(s, 0) for s in states})


def _backfill_id(raw: str) -> int:
    """Ids are numbers: anything else names no backfill (404, like an unknown number)."""
    if raw.isascii() and raw.isdigit() and 0 < int(raw) <= MAX_ID:
        return int(raw)
    raise NotFound(f"backfill {raw!r} does not exist; GET /api/v1/backfills lists them.")


@router.post("", status_code=201, operation_id="backfills-create")
async def create_backfill(
    body: BackfillCreate, session: Session, service: Service, principal: Operator
) -> BackfillPublic:
    """Queue a run for each interval of the range that has none (422 with none to run, or more
    than 10,000); the runs start within the backfill's own ``max_active_runs``."""
    check_conf_size(body.conf, service.settings.max_conf_bytes)
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
    now = service.clock.now()
    backfill, skipped = await backfills.create_backfill(session, request, service.versions, now)
    [public] = await _public(session, [backfill], skipped=skipped)
    detail = {"backfill_id": backfill.id, "runs": public.progress.total, "skipped": skipped}
    await record(session, principal, "backfill.create", body.dag_id, now, detail=detail)
    await wake_scheduler(session)
    return public


@router.get("", operation_id="backfills-list")
async def list_backfills(
    session: Session,
    _token: Viewer,
    dag_id: Annotated[str | None, Query(max_length=250, pattern=NO_NUL)] = None,
    limit: Limit = 100,
    offset: Offset = 0,
    order_by: OrderBy = None,
) -> BackfillsPublic:
    """Backfills, newest first unless ``order_by`` says otherwise (``id``, ``dag_id``,
    ``created_at``, ``state``), optionally of one DAG."""
    statement = select(Backfill)
    if dag_id is not None:
        statement = statement.where(Backfill.dag_id == dag_id)
    rows, total = await paginate(
        session, statement, Page(limit, offset, order_by),
        sort_keys=SORT_KEYS, default="-id", tiebreak=Backfill.id,
    )  # fmt: skip
    return BackfillsPublic(backfills=await _public(session, rows), total=total)


@router.get("/{backfill_id}", operation_id="backfills-get")
async def read_backfill(
    backfill_id: BackfillIdPath, session: Session, _token: Viewer
) -> BackfillPublic:
    """One backfill with its progress (404 if there is none with this id)."""
    backfill = await session.get(Backfill, _backfill_id(backfill_id))
    if backfill is None:
        raise NotFound(f"backfill {backfill_id} does not exist; GET /api/v1/backfills lists them.")
    [public] = await _public(session, [backfill])
    return public


@router.post("/{backfill_id}/pause", operation_id="backfills-pause")
async def pause_backfill(
    backfill_id: BackfillIdPath, session: Session, service: Service, principal: Operator
) -> BackfillPublic:
    """Its queued runs wait (409 unless running); the runs already running finish."""
    now = service.clock.now()
    backfill = await backfills.pause_backfill(session, _backfill_id(backfill_id), now)
    await record(session, principal, "backfill.pause", backfill.dag_id, now,
                 detail={"backfill_id": backfill.id})  # fmt: skip
    [public] = await _public(session, [backfill])
    return public


@router.post("/{backfill_id}/resume", operation_id="backfills-resume")
async def resume_backfill(
    backfill_id: BackfillIdPath, session: Session, service: Service, principal: Operator
) -> BackfillPublic:
    """Its queued runs start again (409 unless paused)."""
    now = service.clock.now()
    backfill = await backfills.resume_backfill(session, _backfill_id(backfill_id), now)
    await record(session, principal, "backfill.resume", backfill.dag_id, now,
                 detail={"backfill_id": backfill.id})  # fmt: skip
    await wake_scheduler(session)
    [public] = await _public(session, [backfill])
    return public


@router.post("/{backfill_id}/cancel", operation_id="backfills-cancel")
async def cancel_backfill(
    backfill_id: BackfillIdPath, session: Session, service: Service, principal: Operator
) -> BackfillPublic:
    """Its runs that have not started are deleted (they never ran: no callback, no failure
    notification, and the range can be backfilled again); running ones finish (409 once
    completed or cancelled)."""
    now = service.clock.now()
    backfill, deleted = await backfills.cancel_backfill(session, _backfill_id(backfill_id), now)
    await record(session, principal, "backfill.cancel", backfill.dag_id, now,
                 detail={"backfill_id": backfill.id, "deleted_runs": deleted})  # fmt: skip
    [public] = await _public(session, [backfill], deleted_runs=deleted)
    return public
