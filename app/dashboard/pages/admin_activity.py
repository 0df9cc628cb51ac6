"""``/admin/audit``, ``/admin/import-errors`` and ``/admin/webhooks``: what happened (admins).

Read-only pages. The audit log and the import errors are live (one SSE stream per page, see
``app.dashboard.live``). Filters come from the query string and are read leniently: a value that
cannot be a filter is dropped rather than refused, because the live stream reuses the page's
query as it is. Every list is one bounded query, newest first.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.api.deps import Session
from app.dashboard.live import live_view
from app.dashboard.pages.admin import offset_of
from app.dashboard.sessions import UiAdmin, UiSession
from app.dashboard.templating import render, templates
from app.db.models import AuditEntry, ImportError_, Webhook, WebhookDelivery
from app.webhooks.deliveries import Verdict

__all__ = ["AuditFilter", "router"]

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 50
MAX_HOOKS = 500  # hooks offered in the deliveries filter
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_MINUTE = "%Y-%m-%dT%H:%M"  # what <input type="datetime-local"> sends
VERDICT_STATES = {"accepted": "success", "filtered": "skipped", "duplicate": "scheduled"}


def _text(query: Mapping[str, str], name: str, limit: int) -> str | None:
    value = _CONTROL.sub("", query.get(name, "")).strip()[:limit]
    return value or None


def _instant(query: Mapping[str, str], name: str) -> datetime | None:
    """A ``datetime-local`` value (read as UTC) or an ISO instant; anything else is ignored."""
    raw = _text(query, name, 40)
    try:
        moment = datetime.fromisoformat(raw) if raw else None
    except ValueError:
        return None
    if moment is None or not 1970 <= moment.year < 9000:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """The audit page's filters: actor, action prefix (``run.``), time window, page."""

    actor: str | None
    action: str | None
    since: datetime | None
    until: datetime | None
    offset: int

    @classmethod
    def of(cls, query: Mapping[str, str]) -> AuditFilter:
        return cls(actor=_text(query, "actor", 150), action=_text(query, "action", 100),
                   since=_instant(query, "since"), until=_instant(query, "until"),
                   offset=offset_of(query))  # fmt: skip

    def query(self) -> dict[str, str]:
        """The filters as query parameters (for the pager and the live stream's URL)."""
        values = {
            "actor": self.actor,
            "action": self.action,
            "since": self.since.strftime(_MINUTE) if self.since else None,
            "until": self.until.strftime(_MINUTE) if self.until else None,
        }
        return {name: value for name, value in values.items() if value}

    def apply(self, statement: Select[Any]) -> Select[Any]:
        if self.actor is not None:
            statement = statement.where(AuditEntry.actor == self.actor)
        if self.action is not None:
            statement = statement.where(AuditEntry.action.startswith(self.action, autoescape=True))
        if self.since is not None:
            statement = statement.where(AuditEntry.at >= self.since)
        if self.until is not None:
            statement = statement.where(AuditEntry.at < self.until)
        return statement


async def _page(
    session: AsyncSession, statement: Select[Any], offset: int, *order: Any
) -> tuple[list[Any], int]:
    total = await session.scalar(select(func.count()).select_from(statement.subquery())) or 0
    rows = await session.scalars(statement.order_by(*order).limit(PAGE_SIZE).offset(offset))
    return list(rows), total


async def _audit(session: AsyncSession, audit_filter: AuditFilter) -> dict[str, Any]:
    statement = audit_filter.apply(select(AuditEntry))
    entries, total = await _page(session, statement, audit_filter.offset,
                                 AuditEntry.at.desc(), AuditEntry.id.desc())  # fmt: skip
    return {"entries": entries, "filter": audit_filter, "query": audit_filter.query(),
            "total": total, "offset": audit_filter.offset, "page_size": PAGE_SIZE,
            "base_url": "/admin/audit"}  # fmt: skip


def _render(request: Request, ui: UiSession, template: str, context: dict[str, Any]) -> str:
    return templates.get_template(template).render({"request": request, "ui": ui, **context})


@router.get("/admin/audit", response_class=HTMLResponse)
async def audit_page(request: Request, session: Session, ui: UiAdmin) -> HTMLResponse:
    context = await _audit(session, AuditFilter.of(request.query_params))
    return render(request, "pages/admin_audit.html", ui, section="audit", **context)


@live_view("audit")
async def live_audit(
    request: Request, session: AsyncSession, ui: UiSession, query: Mapping[str, str]
) -> dict[str, str]:
    if not ui.can("admin"):
        return {}
    context = await _audit(session, AuditFilter.of(query))
    return {"audit-table": _render(request, ui, "partials/admin_audit_table.html", context)}


async def _import_errors(session: AsyncSession, offset: int) -> dict[str, Any]:
    errors, total = await _page(session, select(ImportError_), offset,
                                ImportError_.created_at.desc(), ImportError_.fileloc)  # fmt: skip
    return {"errors": errors, "total": total, "offset": offset, "page_size": PAGE_SIZE,
            "base_url": "/admin/import-errors"}  # fmt: skip


@router.get("/admin/import-errors", response_class=HTMLResponse)
async def import_errors_page(request: Request, session: Session, ui: UiAdmin) -> HTMLResponse:
    context = await _import_errors(session, offset_of(request.query_params))
    return render(request, "pages/admin_import_errors.html", ui, section="import-errors",
                  **context)  # fmt: skip


@live_view("import-errors")
async def live_import_errors(
    request: Request, session: AsyncSession, ui: UiSession, query: Mapping[str, str]
) -> dict[str, str]:
    if not ui.can("admin"):
        return {}
    context = await _import_errors(session, offset_of(query))
    return {"admin-import-errors": _render(request, ui, "partials/admin_import_errors.html",
                                           context)}  # fmt: skip


async def _deliveries(session: AsyncSession, query: Mapping[str, str]) -> dict[str, Any]:
    hook_id = _text(query, "hook", 400)
    verdict = query.get("verdict") if query.get("verdict") in set(Verdict) else None
    statement = select(WebhookDelivery)
    if hook_id is not None:
        statement = statement.where(WebhookDelivery.hook_id == hook_id)
    if verdict is not None:
        statement = statement.where(WebhookDelivery.verdict == verdict)
    offset = offset_of(query)
    deliveries, total = await _page(session, statement, offset, WebhookDelivery.id.desc())
    kept = {name: value for name, value in (("hook", hook_id), ("verdict", verdict)) if value}
    return {"deliveries": deliveries, "hook": hook_id, "verdict": verdict,
            "verdict_states": VERDICT_STATES, "query": kept, "total": total, "offset": offset,
            "page_size": PAGE_SIZE, "base_url": "/admin/webhooks"}  # fmt: skip


@router.get("/admin/webhooks", response_class=HTMLResponse)
async def deliveries_page(request: Request, session: Session, ui: UiAdmin) -> HTMLResponse:
    """Deliveries of every hook, newest first; filter by hook and verdict."""
    context = await _deliveries(session, request.query_params)
    hooks = await session.scalars(
        select(Webhook.hook_id).order_by(Webhook.hook_id).limit(MAX_HOOKS)
    )
    return render(request, "pages/admin_webhooks.html", ui, section="webhooks",
                  hooks=list(hooks), verdicts=list(Verdict), **context)  # fmt: skip


@live_view("deliveries")
async def live_deliveries(
    request: Request, session: AsyncSession, ui: UiSession, query: Mapping[str, str]
) -> dict[str, str]:
    if not ui.can("admin"):
        return {}
    context = await _deliveries(session, query)
    return {"deliveries": _render(request, ui, "partials/admin_deliveries.html", context)}
