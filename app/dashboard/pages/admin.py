"""``/admin/users`` and ``/admin/tokens``: people, roles and API tokens (admins only).

Every action goes through the use cases the REST API calls (``app.users_service``,
``app.tokens_service``), so the last-admin protection, password hashing and the audit entries
(``origin="dashboard"``) are the same. A new token's value is shown once, in the answer to the
form that created it, and never again. The activity sections live in ``admin_activity``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app import tokens_service, users_service
from app.api.deps import Service, Session
from app.auth import Role
from app.dashboard.pages.form_input import form_fields, ok_toast, validated
from app.dashboard.sessions import UiAdmin, UiSession
from app.dashboard.templating import render, templates
from app.db.models import ApiToken, User
from app.state import ServiceState

__all__ = ["router"]

router = APIRouter(include_in_schema=False)

UsernamePath = Annotated[
    str, Path(min_length=1, max_length=150, pattern=users_service.USERNAME_PATTERN)
]
TokenIdPath = Annotated[str, Path(max_length=40)]
PAGE_SIZE = 100
MAX_OWNERS = 500  # usernames offered in the "new token" form


def offset_of(query: Mapping[str, str]) -> int:
    raw = query.get("offset", "0")
    return min(int(raw), 10_000_000) if raw.isascii() and raw.isdigit() else 0


def _fragment(request: Request, ui: UiSession, template: str, context: dict[str, Any]) -> str:
    return templates.get_template(template).render({"request": request, "ui": ui, **context})


@router.get("/admin")
async def admin_home(_ui: UiAdmin) -> RedirectResponse:
    return RedirectResponse("/admin/users", status_code=303)


# -- users -----------------------------------------------------------------------------------


async def _users(session: AsyncSession, offset: int) -> dict[str, Any]:
    total = await session.scalar(select(func.count()).select_from(User)) or 0
    rows = await session.scalars(
        select(User).order_by(User.username).limit(PAGE_SIZE).offset(offset)
    )
    return {"users": list(rows), "roles": list(Role), "total": total, "offset": offset,
            "page_size": PAGE_SIZE, "base_url": "/admin/users"}  # fmt: skip


async def _users_answer(
    request: Request, session: AsyncSession, ui: UiSession, toast: str
) -> HTMLResponse:
    context = await _users(session, 0)
    html = _fragment(request, ui, "partials/admin_users.html", context) + ok_toast(toast)
    return HTMLResponse(html)


@router.get("/admin/users", response_class=HTMLResponse)
async def users_page(request: Request, session: Session, ui: UiAdmin) -> HTMLResponse:
    context = await _users(session, offset_of(request.query_params))
    return render(request, "pages/admin_users.html", ui, section="users", **context)


@router.post("/admin/users", response_class=HTMLResponse)
async def create_user(
    request: Request, session: Session, service: Service, ui: UiAdmin
) -> HTMLResponse:
    """Create a user with a role and, for people, a password."""
    fields = await form_fields(request)
    data = {"username": fields.get("username", ""), "role": fields.get("role", Role.VIEWER),
            "password": fields.get("password")}  # fmt: skip
    body = validated(users_service.UserCreate, data)
    await users_service.create_user(session, service, ui.principal, body, origin="dashboard")
    return await _users_answer(request, session, ui, f"User {body.username} created")


async def _update_user(
    request: Request, session: AsyncSession, service: ServiceState, ui: UiSession, username: str,
    data: dict[str, Any], toast: str,
) -> HTMLResponse:  # fmt: skip
    body = validated(users_service.UserPatch, data)
    await users_service.update_user(
        session, service, ui.principal, username, body, origin="dashboard"
    )
    return await _users_answer(request, session, ui, toast)


@router.post("/admin/users/{username}/role", response_class=HTMLResponse)
async def change_role(
    request: Request, username: UsernamePath, session: Session, service: Service, ui: UiAdmin
) -> HTMLResponse:
    role = (await form_fields(request)).get("role", "")
    return await _update_user(request, session, service, ui, username, {"role": role},
                              f"{username} is now {role}")  # fmt: skip


@router.post("/admin/users/{username}/disable", response_class=HTMLResponse)
async def disable_user(
    request: Request, username: UsernamePath, session: Session, service: Service, ui: UiAdmin
) -> HTMLResponse:
    return await _update_user(request, session, service, ui, username, {"disabled": True},
                              f"{username} disabled")  # fmt: skip


@router.post("/admin/users/{username}/enable", response_class=HTMLResponse)
async def enable_user(
    request: Request, username: UsernamePath, session: Session, service: Service, ui: UiAdmin
) -> HTMLResponse:
    return await _update_user(request, session, service, ui, username, {"disabled": False},
                              f"{username} enabled")  # fmt: skip


@router.post("/admin/users/{username}/password", response_class=HTMLResponse)
async def reset_password(
    request: Request, username: UsernamePath, session: Session, service: Service, ui: UiAdmin
) -> HTMLResponse:
    password = (await form_fields(request)).get("password", "")
    return await _update_user(request, session, service, ui, username, {"password": password},
                              f"Password of {username} reset")  # fmt: skip


# -- tokens ----------------------------------------------------------------------------------


async def _tokens(session: AsyncSession, service: ServiceState, offset: int) -> dict[str, Any]:
    total = await session.scalar(select(func.count()).select_from(ApiToken)) or 0
    rows = await session.execute(
        select(ApiToken, User.username)
        .join(User, User.id == ApiToken.user_id)
        .order_by(ApiToken.created_at.desc(), ApiToken.id.desc())
        .limit(PAGE_SIZE)
        .offset(offset)
    )
    return {"tokens": rows.all(), "now": service.clock.now(), "total": total, "offset": offset,
            "page_size": PAGE_SIZE, "base_url": "/admin/tokens"}  # fmt: skip


@router.get("/admin/tokens", response_class=HTMLResponse)
async def tokens_page(
    request: Request, session: Session, service: Service, ui: UiAdmin
) -> HTMLResponse:
    owners = await session.scalars(
        select(User.username).where(User.disabled_at.is_(None)).order_by(User.username)
        .limit(MAX_OWNERS)
    )  # fmt: skip
    context = await _tokens(session, service, offset_of(request.query_params))
    return render(request, "pages/admin_tokens.html", ui, section="tokens",
                  owners=list(owners), **context)  # fmt: skip


@router.post("/admin/tokens", response_class=HTMLResponse)
async def create_token(
    request: Request, session: Session, service: Service, ui: UiAdmin
) -> HTMLResponse:
    """Create a token for a user; the answer shows its value, this once."""
    fields = await form_fields(request)
    data = {"name": fields.get("name", ""), "username": fields.get("username"),
            "expires_in_days": fields.get("expires_in_days")}  # fmt: skip
    body = validated(tokens_service.TokenCreate, data)
    token, clear, owner = await tokens_service.create_api_token(
        session, service, ui.principal, body, origin="dashboard"
    )
    context = await _tokens(session, service, 0)
    shown = _fragment(request, ui, "partials/admin_token_created.html",
                      {"token": token, "owner": owner, "clear": clear})  # fmt: skip
    table = _fragment(request, ui, "partials/admin_tokens.html", {**context, "oob": True})
    return HTMLResponse(shown + table)


@router.delete("/admin/tokens/{token_id}", response_class=HTMLResponse)
async def revoke_token(
    request: Request, token_id: TokenIdPath, session: Session, service: Service, ui: UiAdmin
) -> HTMLResponse:
    await tokens_service.revoke_api_token(
        session, service, ui.principal, token_id, origin="dashboard"
    )
    context = await _tokens(session, service, 0)
    html = _fragment(request, ui, "partials/admin_tokens.html", context)
    return HTMLResponse(html + ok_toast(f"Token {token_id} revoked"))
