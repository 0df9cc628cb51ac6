"""The audit log: every action taken through the API or the dashboard, in the same transaction.

Routes that change state call ``record`` with the principal that called; the entry commits or
rolls back with the change itself, so the log never claims an action that did not happen.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import Principal
from app.db.models import AuditEntry
from app.live import mark_changed

__all__ = ["record"]


async def record(
    session: AsyncSession,
    principal: Principal,
    action: str,
    target: str | None,
    now: datetime,
    *,
    detail: dict[str, Any] | None = None,
    origin: str = "api",
) -> None:
    """Add one entry. ``action`` is ``<resource>.<verb>`` (``dag.pause``, ``run.trigger``, …);
    ``target`` names the object (``dag_id``, ``dag_id/run_id``, …). Never put secrets in
    ``detail``."""
    session.add(
        AuditEntry(
            at=now,
            user_id=principal.user_id,
            actor=principal.username,
            action=action,
            target=target,
            detail=detail,
            origin=origin,
        )
    )
    mark_changed(session)  # the audit page is live, and so is whatever the action changed
