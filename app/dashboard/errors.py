"""Errors on dashboard pages are HTML, not problem+json: a page for a full load, a toast for htmx.

An htmx request that fails gets its message as a toast (``HX-Retarget: #toasts``), so a refused
button says why without replacing the part of the page it was about.
"""

from __future__ import annotations

from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from app.dashboard.sessions import LoginRequired

__all__ = ["dashboard_error", "install_dashboard_errors", "is_dashboard_request"]

_API_PREFIXES = ("/api/", "/execution/", "/health/", "/openapi.json", "/docs", "/redoc", "/metrics")


def is_dashboard_request(request: Request) -> bool:
    return not request.url.path.startswith(_API_PREFIXES)


def dashboard_error(request: Request, status: int, detail: str | None) -> Response:
    from app.dashboard.templating import render  # the templates import this module's neighbours

    title = HTTPStatus(status).phrase
    if request.headers.get("HX-Request"):
        response = render(
            request, "partials/toast.html", None, status_code=status,
            title=title, detail=detail, kind="error",
        )  # fmt: skip
        response.headers["HX-Retarget"] = "#toasts"
        response.headers["HX-Reswap"] = "beforeend"
        return response
    return render(
        request, "pages/error.html", None, status_code=status,
        title=title, status=status, detail=detail,
    )  # fmt: skip


async def _login_required(request: Request, error: Exception) -> Response:
    assert isinstance(error, LoginRequired)
    if request.headers.get("HX-Request"):
        return HTMLResponse("", status_code=401, headers={"HX-Redirect": error.next_url})
    return RedirectResponse(error.next_url, status_code=303)


def install_dashboard_errors(app: FastAPI) -> None:
    app.add_exception_handler(LoginRequired, _login_required)
