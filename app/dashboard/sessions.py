"""Dashboard sign-in: a signed session cookie for the users of ``app.auth``, and CSRF protection.

The cookie holds only the user's id, their session epoch, a random session nonce and the time it
was issued, signed with ``WEIR_SECRET_KEY`` (itsdangerous), so any replica can read it. The user
row is read on every request: a demoted or disabled user loses their powers at once, as with
tokens, and a cookie from an older epoch is refused, so logging out, a new password or disabling
the user (``app.auth.end_sessions``) ends every session of that user on every replica, even one
whose cookie was copied.

Every state-changing request (POST, PUT, PATCH, DELETE) must carry the session's CSRF token, in
the ``X-CSRF-Token`` header (htmx sends it from ``base.html``) or a ``csrf_token`` form field;
the token is an HMAC of the nonce, so it cannot be computed without the secret key. The cookie is
``HttpOnly`` and ``SameSite=Lax`` on top of that.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, HTTPException, Request
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import select

from app.api.deps import Service
from app.auth import Principal, Role
from app.db.models import User
from app.state import ServiceState

__all__ = [
    "COOKIE",
    "CSRF_HEADER",
    "SESSION_SECONDS",
    "LoginRequired",
    "SessionCookie",
    "UiAdmin",
    "UiOperator",
    "UiSession",
    "UiViewer",
    "csrf_token_for",
    "issue_session_cookie",
    "read_session",
]

COOKIE = "weir_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
SESSION_SECONDS = 12 * 3600
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True, slots=True)
class UiSession:
    """Who is signed in, with the CSRF token their pages must send back."""

    principal: Principal
    csrf_token: str

    @property
    def role(self) -> Role:
        return self.principal.role

    def can(self, role: Role | str) -> bool:
        """For templates: whether to show a button that needs ``role``."""
        return self.principal.role.allows(Role(role))


class LoginRequired(Exception):
    """Raised by the session dependency; answered with a redirect to the login page (or, for
    htmx requests, an ``HX-Redirect``), see ``app.dashboard.errors``."""

    def __init__(self, next_url: str) -> None:
        super().__init__(next_url)
        self.next_url = next_url


def _serializer(service: ServiceState) -> URLSafeTimedSerializer:
    key = service.settings.secret_key
    assert key is not None  # create_app refuses to start without one
    return URLSafeTimedSerializer(key.get_secret_value(), salt="weir.dashboard.session")


def csrf_token_for(service: ServiceState, nonce: str) -> str:
    key = service.settings.secret_key
    assert key is not None
    message = f"csrf:{nonce}".encode()
    return hmac.new(key.get_secret_value().encode(), message, hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class SessionCookie:
    """What a valid session cookie says."""

    user_id: int
    epoch: int
    nonce: str


def issue_session_cookie(service: ServiceState, user_id: int, epoch: int) -> str:
    """The cookie value for a user who just signed in (a fresh nonce: a fresh CSRF token)."""
    return _serializer(service).dumps({"u": user_id, "e": epoch, "n": secrets.token_urlsafe(16)})


def read_session(service: ServiceState, cookie: str | None) -> SessionCookie | None:
    """What a valid, unexpired cookie says; ``None`` otherwise (whether its epoch is still the
    user's is for the caller to check)."""
    if not cookie:
        return None
    try:
        data: Any = _serializer(service).loads(cookie, max_age=SESSION_SECONDS)
    except BadSignature:
        return None
    if not isinstance(data, dict):
        return None
    user_id, epoch, nonce = data.get("u"), data.get("e"), data.get("n")
    if isinstance(user_id, int) and isinstance(epoch, int) and isinstance(nonce, str):
        return SessionCookie(user_id, epoch, nonce)
    return None


def _next_url(request: Request) -> str:
    path = request.url.path
    if request.url.query:
        path += f"?{request.url.query}"
    return f"/login?next={quote(path, safe='')}"


async def _check_csrf(request: Request, expected: str) -> None:
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        form = await request.form()
        field = form.get(CSRF_FIELD)
        sent = field if isinstance(field, str) else None
    if sent is None or not hmac.compare_digest(sent, expected):
        raise HTTPException(403, "The form is stale or was not sent by this dashboard; reload.")


def require_ui(role: Role) -> Any:
    """A dependency: the signed-in user, with at least ``role``; CSRF-checked on writes."""

    async def current(request: Request, service: Service) -> UiSession:
        found = read_session(service, request.cookies.get(COOKIE))
        if found is None:
            raise LoginRequired(_next_url(request))
        async with service.database.sessions() as session:
            user = await session.scalar(
                select(User).where(
                    User.id == found.user_id,
                    User.disabled_at.is_(None),
                    User.session_epoch == found.epoch,
                )
            )
        if user is None:
            raise LoginRequired(_next_url(request))
        ui = UiSession(
            principal=Principal(user_id=user.id, username=user.username, role=Role(user.role)),
            csrf_token=csrf_token_for(service, found.nonce),
        )
        if request.method not in _SAFE_METHODS:
            await _check_csrf(request, ui.csrf_token)
        if not ui.role.allows(role):
            raise HTTPException(403, f"This needs the {role} role; you are {ui.role}.")
        return ui

    return Depends(current)


UiViewer = Annotated[UiSession, require_ui(Role.VIEWER)]
UiOperator = Annotated[UiSession, require_ui(Role.OPERATOR)]
UiAdmin = Annotated[UiSession, require_ui(Role.ADMIN)]
