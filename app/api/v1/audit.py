"""``/api/v1/audit``: the audit log, read-only and for admins, newest first.

Entries are written by ``app.audit.record`` in the transaction of the change they describe; this
module only reads them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from sqlalchemy import select

from app.api.deps import Session
from app.api.pagination import Limit, Offset, OrderBy, Page, paginate
from app.api.problems import PROBLEM_RESPONSES
from app.auth import Admin
from app.db.models import AuditEntry

__all__ = ["AuditEntriesPublic", "AuditEntryPublic", "router"]

router = APIRouter(prefix="/api/v1/audit", tags=["audit"], responses=PROBLEM_RESPONSES)

PRINTABLE = r"^[^\x00-\x1f\x7f]+$"
EARLIEST, LATEST = datetime(1970, 1, 1, tzinfo=UTC), datetime(9000, 1, 1, tzinfo=UTC)


class AuditEntryPublic(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"id": 12, "at": "2026-01-01T06:00:00Z", "actor": "alice", "action": "dag.pause",
                 "target": "nightly_orders", "detail": None, "origin": "api"}
            ]
        }
    )  # fmt: skip

    id: int
    at: datetime
    actor: str = Field(description="The username at the time of the action.")
    action: str = Field(description="<resource>.<verb>, e.g. run.trigger.")
    target: str | None
    detail: dict[str, Any] | None
    origin: str = Field(description="api, dashboard or cli.")


class AuditEntriesPublic(BaseModel):
    entries: list[AuditEntryPublic]
    total: int


SORT_KEYS = {"at": AuditEntry.at, "actor": AuditEntry.actor, "action": AuditEntry.action}


@router.get("", operation_id="audit-list")
async def list_audit_entries(
    session: Session,
    _admin: Admin,
    actor: Annotated[
        str | None, Query(max_length=150, pattern=PRINTABLE, description="Only this user's.")
    ] = None,
    action: Annotated[
        str | None,
        Query(
            max_length=100,
            pattern=PRINTABLE,
            description="An action or its prefix: 'run.' gives every run action.",
        ),
    ] = None,
    target: Annotated[
        str | None, Query(max_length=1024, pattern=PRINTABLE, description="Only on this object.")
    ] = None,
    since: Annotated[
        AwareDatetime | None, Query(gt=EARLIEST, lt=LATEST, description="At or after this.")
    ] = None,
    until: Annotated[
        AwareDatetime | None, Query(gt=EARLIEST, lt=LATEST, description="Before this instant.")
    ] = None,
    limit: Limit = 100,
    offset: Offset = 0,
    order_by: OrderBy = None,
) -> AuditEntriesPublic:
    """Who did what, to what, and when; newest first unless ``order_by`` says otherwise."""
    statement = select(AuditEntry)
    if actor is not None:
        statement = statement.where(AuditEntry.actor == actor)
    if action is not None:
        statement = statement.where(AuditEntry.action.startswith(action, autoescape=True))
    if target is not None:
        statement = statement.where(AuditEntry.target == target)
    if since is not None:
        statement = statement.where(AuditEntry.at >= since)
    if until is not None:
        statement = statement.where(AuditEntry.at < until)
    rows, total = await paginate(
        session, statement, Page(limit, offset, order_by),
        sort_keys=SORT_KEYS, default="-at", tiebreak=AuditEntry.id,
    )  # fmt: skip
    return AuditEntriesPublic(
        entries=[AuditEntryPublic.model_validate(e, from_attributes=True) for e in rows],
        total=total,
    )
