"""Users, roles and API tokens: who is calling, and may they do this?

Tokens are random, shown once, and stored as their SHA-256; each belongs to a user and carries
that user's role at the time of the request. Routes declare the least role they need with the
``Viewer``, ``Operator`` and ``Admin`` aliases and receive the ``Principal`` that called; the
``RoleRequirement`` behind each alias is what ``app.api.openapi`` reads to document the role.
Passwords (argon2, ``app.passwords``) serve the dashboard's login through ``verify_login``.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from fastapi import Depends, Header, HTTPException
from sqlalchemy import or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.api.deps import Service
from app.db.engine import Database
from app.db.models import ApiToken, User
from app.passwords import hash_password, needs_rehash, verify_password

__all__ = [
    "BOOTSTRAP_LOCK",
    "Admin",
    "Operator",
    "Principal",
    "Role",
    "RoleRequirement",
    "Viewer",
    "authenticate",
    "create_token",
    "end_sessions",
    "ensure_bootstrap_admin",
    "ensure_password",
    "ensure_token",
    "ensure_user",
    "hash_token",
    "issue_token",
    "require",
    "session_epoch",
    "verify_login",
]


class Role(StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"

    def allows(self, needed: Role) -> bool:
        """Whether this role may do what ``needed`` may (roles are ordered)."""
        return _RANK[self] >= _RANK[needed]


_RANK = {Role.VIEWER: 0, Role.OPERATOR: 1, Role.ADMIN: 2}


@dataclass(frozen=True, slots=True)
class Principal:
    """Who made a request: the user, their role now, and the token used (if any)."""

    user_id: int
    username: str
    role: Role
    token_id: int | None = None


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def ensure_user(session: AsyncSession, username: str, role: Role, now: datetime) -> User:
    """The user named ``username``, created with ``role`` (and no password) if it is missing."""
    user = await session.scalar(select(User).where(User.username == username))
    if user is None:
        user = User(username=username, role=role, created_at=now)
        session.add(user)
        await session.flush()
    return user


async def issue_token(
    session: AsyncSession,
    user: User,
    name: str,
    now: datetime,
    *,
    expires_at: datetime | None = None,
    value: str | None = None,
) -> tuple[ApiToken, str]:
    """Store a new token of ``user``; returns it with its clear value (the only time it exists)."""
    clear = value or f"weir_{secrets.token_urlsafe(32)}"
    token = ApiToken(
        user_id=user.id,
        name=name,
        token_hash=hash_token(clear),
        created_at=now,
        expires_at=expires_at,
    )
    session.add(token)
    await session.flush()
    return token, clear


async def create_token(session: AsyncSession, name: str, role: Role, now: datetime) -> str:
    """A token for the (service) user ``name`` with ``role``; for the CLI's bootstrap and tests."""
    user = await ensure_user(session, name, role, now)
    user.role = role
    _token, clear = await issue_token(session, user, name, now)
    return clear


async def ensure_token(
    session: AsyncSession, username: str, role: Role, value: str, now: datetime
) -> None:
    """Make a token with exactly ``value`` exist for ``username`` (the bootstrap token)."""
    user = await ensure_user(session, username, role, now)
    user.role, user.disabled_at = role, None
    existing = await session.scalar(
        select(ApiToken).where(ApiToken.token_hash == hash_token(value))
    )
    if existing is None:
        await issue_token(session, user, "bootstrap", now, value=value)
    else:
        existing.user_id, existing.revoked_at, existing.expires_at = user.id, None, None


BOOTSTRAP_LOCK = 0x7765_6972_0001
"""PostgreSQL advisory lock key serialising the replicas' bootstrap of user ``admin``."""


async def ensure_bootstrap_admin(
    database: Database, token: str | None, password: str | None, now: datetime
) -> None:
    """Make user ``admin`` exist with exactly this token and password (either may be ``None``).

    Replicas often start together: the first to take the lock creates the user, the others wait
    and then find it, so no replica fails its start on a duplicate key.
    """
    async with database.sessions.begin() as session:
        if database.is_postgres:
            await session.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": BOOTSTRAP_LOCK}
            )
        if token is not None:
            await ensure_token(session, "admin", Role.ADMIN, token, now)
        if password is not None:
            await ensure_password(session, "admin", Role.ADMIN, password, now)


async def authenticate(session: AsyncSession, token: str, now: datetime) -> Principal | None:
    """Who holds this token, if it is known, live (not revoked or expired) and its user enabled."""
    statement = (
        select(ApiToken.id, User.id, User.username, User.role)
        .join(User, User.id == ApiToken.user_id)
        .where(
            ApiToken.token_hash == hash_token(token),
            ApiToken.revoked_at.is_(None),
            or_(ApiToken.expires_at.is_(None), ApiToken.expires_at > now),
            User.disabled_at.is_(None),
        )
    )
    row = (await session.execute(statement)).first()
    if row is None:
        return None
    token_id, user_id, username, role = row
    return Principal(user_id=user_id, username=username, role=Role(role), token_id=token_id)


class RoleRequirement:
    """The dependency admitting bearer tokens of ``role`` or higher.

    A class rather than a closure so that the role stays readable on the route's dependency tree:
    the OpenAPI document derives each operation's ``x-weir-role`` from it, never from a list.
    """

    def __init__(self, role: Role) -> None:
        self.role = role

    async def __call__(
        self,
        service: Service,
        authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
    ) -> Principal:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise HTTPException(401, "Send an API token: Authorization: Bearer <token>.",
                                {"WWW-Authenticate": "Bearer"})  # fmt: skip
        async with service.database.sessions() as session:
            found = await authenticate(session, token, service.clock.now())
        if found is None:
            raise HTTPException(401, "The API token is unknown, revoked or expired.",
                                {"WWW-Authenticate": "Bearer"})  # fmt: skip
        if not found.role.allows(self.role):
            raise HTTPException(
                403, f"This needs the {self.role} role; the token has {found.role}."
            )
        return found


def require(role: Role) -> object:
    """``Depends`` on a ``RoleRequirement`` of ``role``."""
    return Depends(RoleRequirement(role))


async def verify_login(
    session: AsyncSession, username: str, password: str, now: datetime
) -> Principal | None:
    """Who logs in with this username and password, if they match an enabled user.

    An unknown user costs the same time as a wrong password. A hash made with weaker parameters
    than today's is replaced (in the caller's transaction) while the clear password is at hand.
    """
    user = await session.scalar(select(User).where(User.username == username))
    stored = user.password_hash if user is not None else None
    if not await asyncio.to_thread(verify_password, stored, password):
        return None
    assert user is not None and stored is not None  # a match needs a stored hash
    if user.disabled_at is not None:
        return None
    if needs_rehash(stored):
        user.password_hash = await asyncio.to_thread(hash_password, password)
    return Principal(user_id=user.id, username=user.username, role=Role(user.role))


async def ensure_password(
    session: AsyncSession, username: str, role: Role, password: str, now: datetime
) -> None:
    """Make ``username`` exist, enabled, with ``role`` and exactly this password (bootstrap)."""
    user = await ensure_user(session, username, role, now)
    user.role, user.disabled_at = role, None
    if not await asyncio.to_thread(verify_password, user.password_hash, password):
        user.password_hash = await asyncio.to_thread(hash_password, password)
        await end_sessions(session, user.id)


async def session_epoch(session: AsyncSession, user_id: int) -> int:
    """The user's current session epoch, for the cookie of a session that starts now."""
    epoch = await session.scalar(select(User.session_epoch).where(User.id == user_id))
    return epoch or 0


async def end_sessions(session: AsyncSession, user_id: int) -> None:
    """End every dashboard session of the user (logout, a new password, disabled): their cookies
    name the session epoch they were issued in, which this moves on."""
    await session.execute(
        update(User)
        .where(User.id == user_id)
        .values(session_epoch=User.session_epoch + 1)
        .execution_options(synchronize_session=False)
    )


Viewer = Annotated[Principal, require(Role.VIEWER)]
Operator = Annotated[Principal, require(Role.OPERATOR)]
Admin = Annotated[Principal, require(Role.ADMIN)]
