"""``/api/v1/users`` (admin only) and ``/api/v1/me`` (anyone with a token).

A user is a person or a service account; its role decides what its tokens and dashboard sessions
may do, at every request. Passwords are stored as argon2 hashes and never returned. Whatever the
order of requests, one enabled admin always remains: the change that would remove the last one
(demote, disable, delete) is refused with 409, under a lock so two admins demoting each other at
the same moment cannot both succeed.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from app.api.deps import Service, Session
from app.api.pagination import Limit, Offset, OrderBy, Page, paginate
from app.api.problems import PROBLEM_RESPONSES
from app.audit import record
from app.auth import Admin, Role, Viewer
from app.db.models import User
from app.passwords import hash_password
from weir.errors import Conflict, NotFound

__all__ = ["MePublic", "UserCreate", "UserPatch", "UserPublic", "UsersPublic", "router"]

router = APIRouter(prefix="/api/v1", responses=PROBLEM_RESPONSES)

USERNAME_PATTERN = r"^[A-Za-z0-9_.@+\-]+$"
Username = Annotated[
    str,
    Field(min_length=1, max_length=150, pattern=USERNAME_PATTERN,
          description="Letters, digits and _ . @ + -", examples=["alice"]),
]  # fmt: skip
UsernamePath = Annotated[str, Path(min_length=1, max_length=150, pattern=USERNAME_PATTERN)]
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


class UserPublic(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"username": "alice", "role": "operator", "has_password": True,
                 "disabled": False, "created_at": "2026-01-01T06:00:00Z", "disabled_at": None}
            ]
        }
    )  # fmt: skip

    username: str
    role: Role
    has_password: bool = Field(description="Whether the user can log in to the dashboard.")
    disabled: bool
    created_at: datetime
    disabled_at: datetime | None

    @classmethod
    def of(cls, user: User) -> UserPublic:
        return cls(
            username=user.username,
            role=Role(user.role),
            has_password=user.password_hash is not None,
            disabled=user.disabled_at is not None,
            created_at=user.created_at,
            disabled_at=user.disabled_at,
        )


class UsersPublic(BaseModel):
    users: list[UserPublic]
    total: int


class MePublic(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"username": "alice", "role": "operator", "token_id": 7}]}
    )

    username: str
    role: Role
    token_id: int | None = Field(description="The token this request used.")


SORT_KEYS = {"username": User.username, "role": User.role, "created_at": User.created_at}


async def _get_user(session: Session, username: str) -> User:
    user = await session.scalar(select(User).where(User.username == username))
    if user is None:
        raise NotFound(f"User {username!r} does not exist; GET /api/v1/users lists them.")
    return user


def _is_enabled_admin(user: User) -> bool:
    return user.role == Role.ADMIN and user.disabled_at is None


async def _keep_an_admin(session: Session, leaving: User) -> None:
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


@router.get("/users", operation_id="users-list", tags=["users"])
async def list_users(
    session: Session,
    _admin: Admin,
    role: Annotated[Role | None, Query(description="Only users with this role.")] = None,
    limit: Limit = 100,
    offset: Offset = 0,
    order_by: OrderBy = None,
) -> UsersPublic:
    """List users with their role and whether they are enabled (never their passwords)."""
    statement = select(User)
    if role is not None:
        statement = statement.where(User.role == role)
    rows, total = await paginate(
        session, statement, Page(limit, offset, order_by),
        sort_keys=SORT_KEYS, default="username", tiebreak=User.id,
    )  # fmt: skip
    return UsersPublic(users=[UserPublic.of(u) for u in rows], total=total)


@router.post(
    "/users", operation_id="users-create", tags=["users"], status_code=201,
    responses={409: PROBLEM_RESPONSES[409]},
)  # fmt: skip
async def create_user(
    body: UserCreate, session: Session, service: Service, admin: Admin
) -> UserPublic:
    """Create a user; give it a password for dashboard logins, or none for a service account."""
    if await session.scalar(select(User.id).where(User.username == body.username)) is not None:
        raise Conflict(f"User {body.username!r} exists already; PATCH it instead.")
    now = service.clock.now()
    hashed = await asyncio.to_thread(hash_password, body.password) if body.password else None
    user = User(username=body.username, role=body.role, password_hash=hashed, created_at=now)
    session.add(user)
    await session.flush()
    detail = {"role": body.role.value, "has_password": hashed is not None}
    await record(session, admin, "user.create", user.username, now, detail=detail)
    return UserPublic.of(user)


@router.get("/users/{username}", operation_id="users-get", tags=["users"])
async def read_user(username: UsernamePath, session: Session, _admin: Admin) -> UserPublic:
    """One user."""
    return UserPublic.of(await _get_user(session, username))


@router.patch(
    "/users/{username}", operation_id="users-update", tags=["users"],
    responses={409: PROBLEM_RESPONSES[409]},
)  # fmt: skip
async def update_user(
    username: UsernamePath, body: UserPatch, session: Session, service: Service, admin: Admin
) -> UserPublic:
    """Change a user's role or password, or disable or enable it. Takes effect on every token of
    the user at once; the last enabled admin cannot be demoted or disabled (409)."""
    user = await _get_user(session, username)
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
    if changes:
        await record(session, admin, "user.update", user.username, now, detail=changes)
    return UserPublic.of(user)


@router.delete(
    "/users/{username}", operation_id="users-delete", tags=["users"], status_code=204,
    responses={409: PROBLEM_RESPONSES[409]},
)  # fmt: skip
async def delete_user(
    username: UsernamePath, session: Session, service: Service, admin: Admin
) -> Response:
    """Delete a user and its tokens; its audit entries stay, with its name. The last enabled
    admin cannot be deleted (409)."""
    user = await _get_user(session, username)
    if _is_enabled_admin(user):
        await _keep_an_admin(session, user)
    await record(session, admin, "user.delete", user.username, service.clock.now())
    await session.delete(user)
    return Response(status_code=204)


@router.get("/me", operation_id="me-get", tags=["users"])
async def read_me(principal: Viewer) -> MePublic:
    """Who the token belongs to and what role it carries now."""
    return MePublic(username=principal.username, role=principal.role, token_id=principal.token_id)
