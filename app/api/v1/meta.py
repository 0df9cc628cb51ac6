"""``/api/v1/version`` and other facts about this server."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.problems import PROBLEM_RESPONSES

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["meta"], responses=PROBLEM_RESPONSES)
