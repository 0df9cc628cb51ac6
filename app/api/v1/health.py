"""Health probes: ``live`` says the process serves; ``ready`` that its database answers."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel
from sqlalchemy import text

from app.api.deps import Service

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


@router.get("/health/ready", operation_id="health-ready")
async def ready(service: Service) -> HealthPublic:
    """The process serves and its database answers (a readiness probe)."""
    from weir import __version__

    async with service.database.sessions() as session:
        await session.execute(text("SELECT 1"))
    return HealthPublic(status="ok", version=__version__)
