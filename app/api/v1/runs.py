"""DAG runs: trigger, list (one DAG's or all), read, mark success or failed, delete."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import Select, delete, select

from app.api.deps import Service, Session
from app.api.pagination import Limit, Offset, OrderBy, Page, paginate
from app.api.problems import PROBLEM_RESPONSES
from app.api.v1.dags import IdPath, get_dag
from app.audit import record
from app.auth import Operator, Viewer
from app.conf_size import check_conf_size
from app.db.models import DagRun
from app.scheduler.dag_runs import RunRequest, create_run
from app.scheduler.marking import mark_run
from app.scheduler.wakeup import wake_scheduler
from weir.errors import Conflict, NotFound
from weir.params import check_conf
from weir.states import FINISHED_DAG_RUN_STATES, DagRunState

__all__ = ["DagRunCreate", "DagRunPublic", "DagRunsPublic", "get_run", "router"]

router = APIRouter(tags=["runs"], responses=PROBLEM_RESPONSES)
dag_runs = APIRouter(prefix="/api/v1/dags/{dag_id}/runs")
all_runs = APIRouter(prefix="/api/v1/runs")

RunId = Annotated[str, Field(min_length=1, max_length=250, pattern=r"^[A-Za-z0-9_.:+\-]+$")]
SORT_KEYS = {
    "id": DagRun.id,
    "logical_date": DagRun.logical_date,
    "start_date": DagRun.start_date,
    "end_date": DagRun.end_date,
    "state": DagRun.state,
}


class DagRunCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"conf": {"rows": 3}, "run_id": "rerun-2026-01-02"}]},
    )

    conf: dict[str, Any] = Field(default_factory=dict, description="Parameters for this run.")
    run_id: RunId | None = None
    logical_date: datetime | None = None

    @field_validator("conf")
    @classmethod
    def _no_nul(cls, conf: dict[str, Any]) -> dict[str, Any]:
        """PostgreSQL cannot store NUL in JSON text: refuse it here, naming the field."""
        if _has_nul(conf):
            raise ValueError("strings in conf cannot contain NUL (\\u0000) characters")
        return conf


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(item) for item in value)
    return False


class DagRunPublic(BaseModel):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "dag_id": "nightly_orders", "run_id": "manual__2026-01-02T06:00:00+00:00",
                    "state": "success", "run_type": "manual",
                    "logical_date": "2026-01-02T06:00:00Z", "conf": {},
                    "created_at": "2026-01-02T06:00:00Z", "start_date": "2026-01-02T06:00:01Z",
                    "end_date": "2026-01-02T06:00:09Z",
                }
            ]
        },
    )  # fmt: skip

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
    total: int = Field(description="Runs matching the filters, on every page.")


class DagRunMark(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"state": "failed"}]})

    state: Literal["success", "failed"] = Field(
        description="The state the run ends in; its unfinished tasks take it too."
    )


async def get_run(session: Session, dag_id: str, run_id: str) -> DagRun:
    run = (
        await session.scalars(
            select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id)
        )
    ).first()
    if run is None:
        raise NotFound(f"DAG {dag_id!r} has no run {run_id!r}.")
    return run


@dag_runs.post(
    "", status_code=201, operation_id="runs-trigger", responses={200: {"model": DagRunPublic}}
)
async def trigger_run(
    dag_id: IdPath,
    body: DagRunCreate,
    response: Response,
    session: Session,
    service: Service,
    principal: Operator,
    idempotency_key: Annotated[str | None, Header(max_length=250, pattern=r"^[ -~]+$")] = None,
) -> DagRunPublic:
    """Start a run now (201). The same ``Idempotency-Key`` returns the run it made (200), not a
    new one; a ``run_id`` the DAG already has is a 409.

    A ``conf`` that does not fit the DAG's params is refused (422, each field named) before
    anything is written.
    """
    check_conf_size(body.conf, service.settings.max_conf_bytes)
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
    now = service.clock.now()
    try:
        run, created = await create_run(session, request, service.versions, now)
    except Conflict:
        # Two retries of one request that raced: the loser answers with the winner's run.
        run, created = await _retried_run(session, dag_id, idempotency_key), False
    if not created:
        response.status_code = 200
        return DagRunPublic.model_validate(run)
    await record(session, principal, "run.trigger", f"{dag_id}/{run.run_id}", now)
    await wake_scheduler(session)
    return DagRunPublic.model_validate(run)


async def _retried_run(session: Session, dag_id: str, idempotency_key: str | None) -> DagRun:
    found = None
    if idempotency_key is not None:
        statement = select(DagRun).where(
            DagRun.dag_id == dag_id, DagRun.idempotency_key == idempotency_key
        )
        found = (await session.scalars(statement)).first()
    if found is None:
        raise Conflict(f"DAG {dag_id!r} already has a run with that run_id; choose another.")
    return found


StateFilter = Annotated[
    list[DagRunState] | None, Query(max_length=4, description="Any of these states (repeatable).")
]
RunType = Annotated[
    str | None, Query(max_length=20, pattern=r"^[a-z_]+$", description="manual, scheduled, …")
]


def _filtered(
    statement: Select[DagRun],
    state: list[DagRunState] | None,
    run_type: str | None,
    dates: dict[str, datetime | None],
) -> Select[DagRun]:
    """Apply the list filters; ``dates`` maps ``<column>_gte``/``_lte`` to bounds."""
    if state:
        statement = statement.where(DagRun.state.in_(state))
    if run_type:
        statement = statement.where(DagRun.run_type == run_type)
    for name, bound in dates.items():
        if bound is None:
            continue
        column = getattr(DagRun, name.rsplit("_", 1)[0])
        if bound.tzinfo is None:
            bound = bound.astimezone()
        statement = statement.where(column >= bound if name.endswith("gte") else column <= bound)
    return statement


async def _page(session: Session, statement: Select[DagRun], page: Page) -> DagRunsPublic:
    rows, total = await paginate(
        session, statement, page, sort_keys=SORT_KEYS, default="-id", tiebreak=DagRun.id
    )
    return DagRunsPublic(dag_runs=[DagRunPublic.model_validate(r) for r in rows], total=total)


@dag_runs.get("", operation_id="runs-list")
async def list_runs(
    dag_id: IdPath,
    session: Session,
    _token: Viewer,
    state: StateFilter = None,
    run_type: RunType = None,
    logical_date_gte: datetime | None = None,
    logical_date_lte: datetime | None = None,
    start_date_gte: datetime | None = None,
    start_date_lte: datetime | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
    order_by: OrderBy = None,
) -> DagRunsPublic:
    """The DAG's runs, newest first by default; sort keys: id, logical_date, start_date,
    end_date, state."""
    await get_dag(session, dag_id)
    dates = {"logical_date_gte": logical_date_gte, "logical_date_lte": logical_date_lte,
             "start_date_gte": start_date_gte, "start_date_lte": start_date_lte}  # fmt: skip
    statement = _filtered(select(DagRun).where(DagRun.dag_id == dag_id), state, run_type, dates)
    return await _page(session, statement, Page(limit, offset, order_by))


@all_runs.get("", operation_id="runs-list-all")
async def list_all_runs(
    session: Session,
    _token: Viewer,
    dag_id: Annotated[str | None, Query(max_length=250, pattern=r"^[^\x00]*$")] = None,
    state: StateFilter = None,
    run_type: RunType = None,
    logical_date_gte: datetime | None = None,
    logical_date_lte: datetime | None = None,
    start_date_gte: datetime | None = None,
    start_date_lte: datetime | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
    order_by: OrderBy = None,
) -> DagRunsPublic:
    """The runs of every DAG (or of ``dag_id``), with the same filters and sort keys."""
    statement = select(DagRun)
    if dag_id is not None:
        statement = statement.where(DagRun.dag_id == dag_id)
    dates = {"logical_date_gte": logical_date_gte, "logical_date_lte": logical_date_lte,
             "start_date_gte": start_date_gte, "start_date_lte": start_date_lte}  # fmt: skip
    statement = _filtered(statement, state, run_type, dates)
    return await _page(session, statement, Page(limit, offset, order_by))


@dag_runs.get("/{run_id}", operation_id="runs-get")
async def read_run(
    dag_id: IdPath, run_id: IdPath, session: Session, _token: Viewer
) -> DagRunPublic:
    """One run."""
    return DagRunPublic.model_validate(await get_run(session, dag_id, run_id))


@dag_runs.patch("/{run_id}", operation_id="runs-mark")
async def mark_dag_run(
    dag_id: IdPath,
    run_id: IdPath,
    body: DagRunMark,
    session: Session,
    service: Service,
    principal: Operator,
) -> DagRunPublic:
    """Mark the run success or failed: its unfinished tasks (running ones too: their workers'
    later reports are refused) take that state, and the run ends in it. No DAG callback and no
    failure notification run for a manual mark."""
    run = await get_run(session, dag_id, run_id)
    now = service.clock.now()
    target = DagRunState(body.state)
    changed = await mark_run(session, run, target=target, actor=principal.username, now=now)
    detail = {"state": body.state, "task_instances": len(changed)}
    await record(session, principal, "run.mark", f"{dag_id}/{run_id}", now, detail=detail)
    await wake_scheduler(session)
    await session.refresh(run)
    return DagRunPublic.model_validate(run)


@dag_runs.delete("/{run_id}", status_code=204, operation_id="runs-delete", response_class=Response)
async def delete_run(
    dag_id: IdPath,
    run_id: IdPath,
    session: Session,
    service: Service,
    principal: Operator,
    force: Annotated[
        bool, Query(description="Delete a run that has not finished yet, too.")
    ] = False,
) -> Response:
    """Delete the run with its task instances, attempts, logs and XComs. A run that has not
    finished is refused (409) unless ``?force=true``: its workers' later reports are then refused.
    """
    run = await get_run(session, dag_id, run_id)
    state = DagRunState(run.state)
    if state not in FINISHED_DAG_RUN_STATES and not force:
        raise Conflict(
            f"Run {run_id!r} is {state}; mark it first, or pass ?force=true to delete it anyway."
        )
    await session.execute(delete(DagRun).where(DagRun.id == run.id))
    now = service.clock.now()
    detail = {"state": state.value, "force": force}
    await record(session, principal, "run.delete", f"{dag_id}/{run_id}", now, detail=detail)
    await wake_scheduler(session)
    return Response(status_code=204)


router.include_router(all_runs)
router.include_router(dag_runs)
