"""DAG files that failed to import, with their tracebacks."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.problems import PROBLEM_RESPONSES

__all__ = ["router"]

router = APIRouter(
    prefix="/api/v1/import-errors", tags=["import-errors"], responses=PROBLEM_RESPONSES
)
