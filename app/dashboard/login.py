"""``/login`` and ``/logout``: the dashboard's sign-in with the users of ``app.auth``."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from app.api.deps import Service
from app.audit import record
from app.auth import verify_login
from app.dashboard.sessions import COOKIE, SESSION_SECONDS, UiViewer, issue_session_cookie
from app.dashboard.templating import render

__all__ = ["router"]

router = APIRouter(include_in_schema=False)

Username = Annotated[str, Form(min_length=1, max_length=150)]
Password = Annotated[str, Form(min_length=1, max_length=1024)]
Next = Annotated[str, Form(max_length=2000)]


def _safe_next(next_url: str | None) -> str:
    """Only a path of this site: never an open redirect to another host."""
    if not next_url or not next_url.startswith("/") or next_url.startswith("//"):
        return "/"
    parts = urlsplit(next_url)
    return next_url if not parts.scheme and not parts.netloc and "\\" not in next_url else "/"


def _same_origin(request: Request) -> bool:
    """A login form posted from another site is refused (login CSRF)."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    return urlsplit(origin).netloc == request.headers.get("host", "")


@router.get("/login")
async def login_page(request: Request, next: str = "/") -> Response:
    return render(request, "pages/login.html", None, next_url=_safe_next(next), error=None)


@router.post("/login")
async def log_in(
    request: Request,
    service: Service,
    username: Username,
    password: Password,
    next: Next = "/",
) -> Response:
    """Check the password (argon2); on success set the session cookie and go where asked."""
    target = _safe_next(next)
    if not _same_origin(request):
        return render(request, "pages/login.html", None, status_code=403, next_url=target,
                      error="This sign-in form was sent from another site.")  # fmt: skip
    now = service.clock.now()
    async with service.database.sessions.begin() as session:
        principal = await verify_login(session, username, password, now)
        if principal is not None:
            await record(session, principal, "user.login", username, now, origin="dashboard")
    if principal is None:
        return render(request, "pages/login.html", None, status_code=401, next_url=target,
                      error="Unknown user or wrong password.", username=username)  # fmt: skip
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        COOKIE,
        issue_session_cookie(service, principal.user_id),
        max_age=SESSION_SECONDS,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/logout")
async def log_out(_ui: UiViewer) -> Response:
    """Forget the session cookie (CSRF-checked, like every write)."""
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE)
    response.headers["HX-Redirect"] = "/login"
    return response
