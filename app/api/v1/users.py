"""``/api/v1/users`` (admin only) and ``/api/v1/me`` (anyone with a token).

A user is a person or a service account; its role decides what its tokens and dashboard sessions
may do, at every request. Passwords are stored as argon2 hashes and never returned. Whatever the
order of requests, one enabled admin always remains: the change that would remove the last one
(demote, disable, delete) is refused with 409, under a lock so two admins demoting each other at
the same moment cannot both succeed. The use cases live in ``app.users_service``, shared with the
dashboard's admin pages.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from app import users_service as use
from app.api.deps import Service, Session
from app.api.pagination import Limit, Offset, OrderBy, Page, paginate
from app.api.problems import PROBLEM_RESPONSES
from app.auth import Admin, Role, Viewer
from app.db.models import User
from app.users_service import USERNAME_PATTERN, UserCreate, UserPatch

__all__ = ["MePublic", "UserCreate", "UserPatch", "UserPublic", "UsersPublic", "router"]

router = APIRouter(prefix="/api/v1", responses=PROBLEM_RESPONSES)

UsernamePath = Annotated[str, Path(min_length=1, max_length=150, pattern=USERNAME_PATTERN)]


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
    return UserPublic.of(await use.create_user(session, service, admin, body))


@router.get("/users/{username}", operation_id="users-get", tags=["users"])
async def read_user(username: UsernamePath, session: Session, _admin: Admin) -> UserPublic:
    """One user."""
    return UserPublic.of(await use.get_user(session, username))


@router.patch(
    "/users/{username}", operation_id="users-update", tags=["users"],
    responses={409: PROBLEM_RESPONSES[409]},
)  # fmt: skip
async def update_user(
    username: UsernamePath, body: UserPatch, session: Session, service: Service, admin: Admin
) -> UserPublic:
    """Change a user's role or password, or disable or enable it. Takes effect on every token of
    the user at once; the last enabled admin cannot be demoted or disabled (409)."""
    return UserPublic.of(await use.update_user(session, service, admin, username, body))


@router.delete(
    "/users/{username}", operation_id="users-delete", tags=["users"], status_code=204,
    responses={409: PROBLEM_RESPONSES[409]},
)  # fmt: skip
async def delete_user(
    username: UsernamePath, session: Session, service: Service, admin: Admin
) -> Response:
    """Delete a user and its tokens; its audit entries stay, with its name. The last enabled
    admin cannot be deleted (409)."""
    await use.delete_user(session, service, admin, username)
    return Response(status_code=204)


@router.get("/me", operation_id="me-get", tags=["users"])
async def read_me(principal: Viewer) -> MePublic:
    """Who the token belongs to and what role it carries now."""
    return MePublic(username=principal.username, role=principal.role, token_id=principal.token_id)
