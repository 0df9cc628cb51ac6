"""Dashboard routes (HTML only). Issue 5 grows this into the full HTMX dashboard."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy import func, select

from app.api.deps import Session
from app.dashboard.templating import STATIC_DIR, templates
from app.db.models import Dag, DagRun, ImportError_

__all__ = ["mount_static", "router"]

router = APIRouter(include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
async def dags_page(request: Request, session: Session) -> HTMLResponse:
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
    return templates.TemplateResponse(
        request, "pages/dags.html", {"dags": dags, "latest_runs": runs, "import_errors": errors}
    )


def mount_static(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
