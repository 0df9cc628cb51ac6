"""A task instance's return value (its XCom), read-only."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict
from sqlalchemy import select

from app.api.deps import Session
from app.api.problems import PROBLEM_RESPONSES
from app.api.v1.dags import IdPath
from app.api.v1.tasks import get_task_instance
from app.auth import Viewer
from app.db.models import XCom
from weir.errors import NotFound

__all__ = ["XComPublic", "router"]

router = APIRouter(
    prefix="/api/v1/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/xcom",
    tags=["xcoms"],
    responses=PROBLEM_RESPONSES,
)


class XComPublic(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"task_id": "extract", "map_index": -1, "value": [1, 2]}]}
    )

    task_id: str
    map_index: int
    value: Any


@router.get("", operation_id="xcoms-get")
async def read_xcom(
    dag_id: IdPath,
    run_id: IdPath,
    task_id: IdPath,
    session: Session,
    _token: Viewer,
    map_index: Annotated[
        int | None, Query(ge=-1, le=1_000_000, description="Which instance of a mapped task.")
    ] = None,
) -> XComPublic:
    """What the task returned (404 while it has not succeeded, or after it was cleared)."""
    ti = await get_task_instance(session, dag_id, run_id, task_id, map_index)
    row = (await session.execute(select(XCom.value).where(XCom.task_instance_id == ti.id))).first()
    if row is None:
        raise NotFound(
            f"Task {task_id!r} (map_index {ti.map_index}) of run {run_id!r} has no return value: "
            f"it is {ti.state}."
        )
    return XComPublic(task_id=ti.task_id, map_index=ti.map_index, value=row.value)
