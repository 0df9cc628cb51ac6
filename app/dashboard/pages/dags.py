"""``/``: every DAG with its latest run, live. (Issue 5 grows it: filters, paging, toggles.)"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.api.deps import Session
from app.dashboard.live import live_view
from app.dashboard.sessions import UiSession, UiViewer
from app.dashboard.templating import render, templates
from app.db.models import Dag, DagRun, ImportError_

__all__ = ["router"]

router = APIRouter(include_in_schema=False)


async def _context(session: AsyncSession) -> dict[str, Any]:
    dags = (await session.scalars(select(Dag).order_by(Dag.dag_id))).all()
    latest = (
        select(DagRun.dag_id, func.max(DagRun.id).label("run_pk"))
        .group_by(DagRun.dag_id)
        .subquery()
    )
    runs = {
        r.dag_id: r
        for r in (await session.scalars(select(DagRun).join(latest, DagRun.id == latest.c.run_pk)))
    }
    errors = (await session.scalars(select(ImportError_).order_by(ImportError_.fileloc))).all()
    return {"dags": dags, "latest_runs": runs, "import_errors": errors}


@router.get("/", response_class=HTMLResponse)
async def dags_page(request: Request, session: Session, ui: UiViewer) -> HTMLResponse:
    return render(request, "pages/dags.html", ui, **await _context(session))


@live_view("dags")
async def live_dags(
    request: Request, session: AsyncSession, ui: UiSession, _params: Mapping[str, str]
) -> dict[str, str]:
    context = {"request": request, "ui": ui, **await _context(session)}
    return {
        "dag-table": templates.get_template("partials/dag_table.html").render(context),
        "import-errors": templates.get_template("partials/import_errors.html").render(context),
    }
