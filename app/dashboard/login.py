"""``/login`` and ``/logout``: the dashboard's sign-in with the users of ``app.auth``.

Sign-ins are throttled per user name and per client address (``app.login_throttle``): one too
many is answered 429 with ``Retry-After`` before any password is checked. Logging out ends every
session of the user (``app.auth.end_sessions``), not only this browser's cookie.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from app.api.deps import Service
from app.audit import record
from app.auth import Principal, end_sessions, session_epoch, verify_login
from app.dashboard.sessions import COOKIE, SESSION_SECONDS, UiViewer, issue_session_cookie
from app.dashboard.templating import render
from app.login_throttle import Throttled, count_attempt, count_success
from app.state import ServiceState

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
    address = request.client.host if request.client else None
    throttled = await count_attempt(service.database, username, address, service.clock.now())
    if throttled is not None:
        return _throttled(request, target, username, throttled)
    signed_in = await _sign_in(service, username, password, address)
    if signed_in is None:
        return render(request, "pages/login.html", None, status_code=401, next_url=target,
                      error="Unknown user or wrong password.", username=username)  # fmt: skip
    principal, epoch = signed_in
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        COOKIE,
        issue_session_cookie(service, principal.user_id, epoch),
        max_age=SESSION_SECONDS,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )
    return response


async def _sign_in(
    service: ServiceState, username: str, password: str, address: str | None
) -> tuple[Principal, int] | None:
    """Who signs in with this password, and the session epoch for their cookie."""
    now = service.clock.now()
    async with service.database.sessions.begin() as session:
        principal = await verify_login(session, username, password, now)
        if principal is None:
            return None
        await count_success(session, username, address)
        await record(session, principal, "user.login", username, now, origin="dashboard")
        return principal, await session_epoch(session, principal.user_id)


def _throttled(request: Request, target: str, username: str, throttled: Throttled) -> Response:
    minutes = max(1, round(throttled.retry_after / 60))
    who = "this user" if throttled.scope == "user" else "your address"
    response = render(request, "pages/login.html", None, status_code=429, next_url=target,
                      username=username, error=f"Too many sign-in attempts for {who}; "
                      f"try again in {minutes} minute{'s' if minutes > 1 else ''}.")  # fmt: skip
    response.headers["Retry-After"] = str(throttled.retry_after)
    return response


@router.post("/logout")
async def log_out(ui: UiViewer, service: Service) -> Response:
    """End the user's sessions, everywhere, and forget the cookie (CSRF-checked, like every
    write): a copy of the cookie is refused from now on."""
    async with service.database.sessions.begin() as session:
        await end_sessions(session, ui.principal.user_id)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE)
    response.headers["HX-Redirect"] = "/login"
    return response
