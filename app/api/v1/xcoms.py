"""A task instance's return value (read-only)."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.problems import PROBLEM_RESPONSES

__all__ = ["router"]

router = APIRouter(
    prefix="/api/v1/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/xcom",
    tags=["xcoms"],
    responses=PROBLEM_RESPONSES,
)
