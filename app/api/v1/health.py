"""Health probes: ``live`` says the process serves; ``ready`` that its database answers.

During a database outage ``ready`` answers 503 (``app.api.problems``), so a load balancer sends
traffic to replicas that can serve it, while ``live`` stays 200: restarting a replica does not
bring the database back, and every loop resumes by itself when it returns.
"""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel
from sqlalchemy import text

from app.api.deps import Service
from app.api.problems import PROBLEM_RESPONSES

__all__ = ["router"]

router = APIRouter(tags=["health"])


class HealthPublic(BaseModel):
    status: str
    version: str


@router.get("/health/live", operation_id="health-live")
async def live() -> HealthPublic:
    """The process serves HTTP (a liveness probe; touches nothing else)."""
    from weir import __version__

    return HealthPublic(status="ok", version=__version__)


@router.get("/health/ready", operation_id="health-ready", responses={503: PROBLEM_RESPONSES[503]})
async def ready(service: Service) -> HealthPublic:
    """The process serves and its database answers (a readiness probe); 503 while it does not."""
    from weir import __version__

    async with service.database.sessions() as session:
        await session.execute(text("SELECT 1"))
    return HealthPublic(status="ok", version=__version__)
