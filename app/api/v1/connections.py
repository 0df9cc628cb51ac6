"""Connections: CRUD; secrets are encrypted at rest and never returned in clear."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.problems import PROBLEM_RESPONSES

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/connections", tags=["connections"], responses=PROBLEM_RESPONSES)
