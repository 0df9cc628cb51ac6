"""The audit log, read-only (admin)."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.problems import PROBLEM_RESPONSES

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/audit", tags=["audit"], responses=PROBLEM_RESPONSES)
