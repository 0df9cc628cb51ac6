"""Users as a use case: create, change role or password, disable, delete, and audit each.

Shared by the REST API (``app/api/v1/users.py``) and the dashboard's admin pages. Passwords are
stored as argon2 hashes (hashed in a thread) and never returned. Whatever the order of requests,
one enabled admin always remains: the change that would remove the last one (demote, disable,
delete) is refused with ``Conflict``, under a lock so two admins demoting each other at the same
moment cannot both succeed.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import record
from app.auth import Principal, Role, end_sessions
from app.db.models import User
from app.passwords import hash_password
from app.state import ServiceState
from weir.errors import Conflict, NotFound

__all__ = [
    "USERNAME_PATTERN",
    "Password",
    "UserCreate",
    "UserPatch",
    "Username",
    "create_user",
    "delete_user",
    "get_user",
    "update_user",
]

USERNAME_PATTERN = r"^[A-Za-z0-9_.@+\-]+$"
Username = Annotated[
    str,
    Field(min_length=1, max_length=150, pattern=USERNAME_PATTERN,
          description="Letters, digits and _ . @ + -", examples=["alice"]),
]  # fmt: skip
Password = Annotated[
    str,
    Field(min_length=8, max_length=1024, description="At least 8 characters; stored as argon2."),
]


class UserCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"username": "alice", "role": "operator", "password": "correct horse"}]
        },
    )

    username: Username
    role: Role = Role.VIEWER
    password: Password | None = Field(
        default=None, description="Omit for a service account that only uses API tokens."
    )


class UserPatch(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"role": "viewer"}, {"disabled": True}]},
    )

    role: Role | None = None
    password: Password | None = None
    disabled: bool | None = Field(
        default=None, description="true refuses the user's tokens and logins until re-enabled."
    )


async def get_user(session: AsyncSession, username: str) -> User:
    user = await session.scalar(select(User).where(User.username == username))
    if user is None:
        raise NotFound(f"User {username!r} does not exist; GET /api/v1/users lists them.")
    return user


def _is_enabled_admin(user: User) -> bool:
    return user.role == Role.ADMIN and user.disabled_at is None


async def _keep_an_admin(session: AsyncSession, leaving: User) -> None:
    """Refuse (409) unless an enabled admin other than ``leaving`` remains.

    The enabled admins are locked (``FOR UPDATE``) first, so a concurrent demotion waits for this
    transaction and then counts without the admin it removed.
    """
    admins = await session.scalars(
        select(User.id).where(User.role == Role.ADMIN, User.disabled_at.is_(None)).with_for_update()
    )
    if not set(admins.all()) - {leaving.id}:
        raise Conflict(
            f"{leaving.username!r} is the last enabled admin; make another user admin first."
        )


async def create_user(
    session: AsyncSession,
    service: ServiceState,
    principal: Principal,
    body: UserCreate,
    *,
    origin: str = "api",
) -> User:
    """Create a user; with a password for dashboard logins, or none for a service account."""
    if await session.scalar(select(User.id).where(User.username == body.username)) is not None:
        raise Conflict(f"User {body.username!r} exists already; change it instead.")
    now = service.clock.now()
    hashed = await asyncio.to_thread(hash_password, body.password) if body.password else None
    user = User(username=body.username, role=body.role, password_hash=hashed, created_at=now)
    session.add(user)
    await session.flush()
    detail = {"role": body.role.value, "has_password": hashed is not None}
    await record(session, principal, "user.create", user.username, now, detail=detail,
                 origin=origin)  # fmt: skip
    return user


async def update_user(
    session: AsyncSession,
    service: ServiceState,
    principal: Principal,
    username: str,
    body: UserPatch,
    *,
    origin: str = "api",
) -> User:
    """Change a user's role or password, or disable or enable it; the last enabled admin cannot
    be demoted or disabled (409). A new password or disabling ends the user's dashboard
    sessions."""
    user = await get_user(session, username)
    now = service.clock.now()
    changes: dict[str, Any] = {}
    demoted = body.role is not None and body.role != Role.ADMIN
    if _is_enabled_admin(user) and (demoted or body.disabled):
        await _keep_an_admin(session, user)
    if body.role is not None and body.role != user.role:
        changes["role"] = {"from": user.role, "to": body.role.value}
        user.role = body.role
    if body.disabled is not None and body.disabled != (user.disabled_at is not None):
        changes["disabled"] = body.disabled
        user.disabled_at = now if body.disabled else None
    if body.password is not None:
        changes["password"] = "changed"  # the fact, never the value
        user.password_hash = await asyncio.to_thread(hash_password, body.password)
    if body.password is not None or body.disabled:
        await end_sessions(session, user.id)  # a stolen cookie must not outlive either
    if changes:
        await record(session, principal, "user.update", user.username, now, detail=changes,
                     origin=origin)  # fmt: skip
    return user


async def delete_user(
    session: AsyncSession,
    service: ServiceState,
    principal: Principal,
    username: str,
    *,
    origin: str = "api",
) -> None:
    """Delete a user and its tokens; its audit entries stay, with its name."""
    user = await get_user(session, username)
    if _is_enabled_admin(user):
        await _keep_an_admin(session, user)
    await record(session, principal, "user.delete", user.username, service.clock.now(),
                 origin=origin)  # fmt: skip
    await session.delete(user)
