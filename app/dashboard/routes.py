"""The dashboard's routes (HTML only, out of the OpenAPI document): sign-in, the live stream and
the pages, each page in a module of its own under ``app/dashboard/pages``."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI
from fastapi.staticfiles import StaticFiles

from app.dashboard import live, log_stream, login
from app.dashboard.errors import install_dashboard_errors
from app.dashboard.pages import (
    admin,
    admin_activity,
    connections,
    dag,
    dags,
    run,
    task_instance,
    variables,
)
from app.dashboard.templating import STATIC_DIR

__all__ = ["install_dashboard", "router"]

router = APIRouter(include_in_schema=False)
for module in (
    login,
    live,
    log_stream,
    dag,
    dags,
    run,
    task_instance,
    connections,
    variables,
    admin,
    admin_activity,
):
    router.include_router(module.router)


def install_dashboard(app: FastAPI) -> None:
    """Routes, static files and HTML error pages."""
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    install_dashboard_errors(app)
