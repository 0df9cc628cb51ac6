"""API tokens: create (shown once), list, revoke. Issue 4 item 9."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.problems import PROBLEM_RESPONSES

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/tokens", tags=["tokens"], responses=PROBLEM_RESPONSES)
