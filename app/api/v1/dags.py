"""``/api/v1/dags``: list, read, pause and unpause DAGs."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Select, func, or_, select, type_coerce

from app.api.deps import Service, Session
from app.api.pagination import Limit, Offset, OrderBy, Page, paginate
from app.api.problems import PROBLEM_RESPONSES
from app.auth import Operator, Viewer
from app.dags_service import set_paused
from app.db.models import Dag
from weir.errors import NotFound

__all__ = ["DagPatch", "DagPublic", "DagsPublic", "IdPath", "get_dag", "router"]

router = APIRouter(prefix="/api/v1/dags", tags=["dags"], responses=PROBLEM_RESPONSES)

NO_NUL = r"^[^\x00]+$"  # PostgreSQL refuses NUL in text: such input must stop at validation
IdPath = Annotated[str, Path(min_length=1, max_length=250, pattern=NO_NUL)]
"""A DAG, run or task id in a path."""

SORT_KEYS = {
    "dag_id": Dag.dag_id,
    "last_parsed_at": Dag.last_parsed_at,
    "next_run_after": Dag.next_run_after,
}


class DagPublic(BaseModel):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "dag_id": "nightly_orders", "fileloc": "orders.py", "is_paused": False,
                    "is_active": True, "schedule": "0 6 * * *", "description": None,
                    "tags": ["etl"], "last_parsed_at": "2026-01-02T05:59:00Z",
                    "next_logical_date": "2026-01-02T06:00:00Z",
                    "next_run_after": "2026-01-03T06:00:00Z",
                }
            ]
        },
    )  # fmt: skip

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
    total: int = Field(description="DAGs matching the filters, on every page.")


class DagPatch(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"is_paused": True}]})

    is_paused: bool


async def get_dag(session: Session, dag_id: str) -> Dag:
    dag = await session.get(Dag, dag_id)
    if dag is None:
        raise NotFound(f"DAG {dag_id!r} does not exist; `weir dags list` shows the DAGs there are.")
    return dag


def _with_tags(statement: Select[Dag], tags: list[str], dialect: str) -> Select[Dag]:
    """DAGs carrying any of ``tags``. Tags are a JSON list: matched inside the database (a
    JSON containment on PostgreSQL, ``json_each`` on SQLite), so pagination stays in SQL."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import JSONB

        tags_jsonb = type_coerce(Dag.tags, JSONB)
        return statement.where(or_(*(tags_jsonb.contains([tag]) for tag in tags)))
    each = func.json_each(Dag.tags).table_valued("value")
    return statement.where(select(each.c.value).where(each.c.value.in_(tags)).exists())


@router.get("", operation_id="dags-list")
async def list_dags(
    session: Session,
    _token: Viewer,
    tag: Annotated[
        list[Annotated[str, Field(max_length=100, pattern=NO_NUL)]] | None,
        Query(max_length=20, description="DAGs with any of these tags (repeatable)."),
    ] = None,
    paused: bool | None = None,
    active: bool | None = None,
    search: Annotated[
        str | None,
        Query(max_length=250, pattern=NO_NUL, description="Part of the DAG id, any case."),
    ] = None,
    limit: Limit = 100,
    offset: Offset = 0,
    order_by: OrderBy = None,
) -> DagsPublic:
    """DAGs, by id unless ``order_by`` says otherwise (dag_id, last_parsed_at, next_run_after)."""
    statement = select(Dag)
    if tag:
        statement = _with_tags(statement, tag, session.get_bind().dialect.name)
    if paused is not None:
        statement = statement.where(Dag.is_paused.is_(paused))
    if active is not None:
        statement = statement.where(Dag.is_active.is_(active))
    if search:
        escaped = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        statement = statement.where(func.lower(Dag.dag_id).like(f"%{escaped.lower()}%", "\\"))
    rows, total = await paginate(
        session, statement, Page(limit, offset, order_by),
        sort_keys=SORT_KEYS, default="dag_id", tiebreak=Dag.dag_id,
    )  # fmt: skip
    return DagsPublic(dags=[DagPublic.model_validate(d) for d in rows], total=total)


@router.get("/{dag_id}", operation_id="dags-get")
async def read_dag(dag_id: IdPath, session: Session, _token: Viewer) -> DagPublic:
    """One DAG as last parsed."""
    return DagPublic.model_validate(await get_dag(session, dag_id))


@router.patch("/{dag_id}", operation_id="dags-update")
async def update_dag(
    dag_id: IdPath, patch: DagPatch, session: Session, service: Service, principal: Operator
) -> DagPublic:
    """Pause or unpause. Unpausing plans the next run from now, so the intervals missed while
    paused are not all created at once (only the latest, unless the DAG has catchup)."""
    dag = await set_paused(
        session, service.versions, principal, dag_id, patch.is_paused, service.clock.now()
    )
    return DagPublic.model_validate(dag)
