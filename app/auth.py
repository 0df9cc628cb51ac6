"""API tokens and roles. Tokens are random, shown once, and stored as their SHA-256."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from fastapi import Depends, Header, HTTPException
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.api.deps import Service
from app.db.models import ApiToken

__all__ = [
    "Admin",
    "Operator",
    "Role",
    "Viewer",
    "authenticate",
    "create_token",
    "ensure_token",
    "hash_token",
    "require",
]


class Role(StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"


_RANK = {Role.VIEWER: 0, Role.OPERATOR: 1, Role.ADMIN: 2}


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def create_token(
    session: AsyncSession, name: str, role: Role, now: datetime, *, value: str | None = None
) -> str:
    """Store a new token and return its clear value (the only time anyone sees it)."""
    clear = value or f"weir_{secrets.token_urlsafe(32)}"
    session.add(ApiToken(name=name, token_hash=hash_token(clear), role=role, created_at=now))
    await session.flush()
    return clear


async def ensure_token(
    session: AsyncSession, name: str, role: Role, value: str, now: datetime
) -> None:
    """Make a token with exactly ``value`` exist (``WEIR_BOOTSTRAP_ADMIN_TOKEN``)."""
    existing = await session.scalar(
        select(ApiToken).where(ApiToken.token_hash == hash_token(value))
    )
    if existing is None:
        await create_token(session, name, role, now, value=value)
    else:
        existing.role, existing.revoked_at = role, None


async def authenticate(session: AsyncSession, token: str, now: datetime) -> ApiToken | None:
    statement = select(ApiToken).where(
        ApiToken.token_hash == hash_token(token),
        ApiToken.revoked_at.is_(None),
        or_(ApiToken.expires_at.is_(None), ApiToken.expires_at > now),
    )
    return (await session.scalars(statement)).first()


def require(role: Role) -> object:
    """A dependency admitting bearer tokens of ``role`` or higher."""

    async def check(
        service: Service, authorization: Annotated[str | None, Header()] = None
    ) -> ApiToken:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise HTTPException(401, "Send an API token: Authorization: Bearer <token>.",
                                {"WWW-Authenticate": "Bearer"})  # fmt: skip
        async with service.database.sessions() as session:
            found = await authenticate(session, token, service.clock.now())
        if found is None:
            raise HTTPException(401, "The API token is unknown, revoked or expired.",
                                {"WWW-Authenticate": "Bearer"})  # fmt: skip
        if _RANK[Role(found.role)] < _RANK[role]:
            raise HTTPException(403, f"This needs the {role} role; the token has {found.role}.")
        return found

    return Depends(check)


Viewer = Annotated[ApiToken, require(Role.VIEWER)]
Operator = Annotated[ApiToken, require(Role.OPERATOR)]
Admin = Annotated[ApiToken, require(Role.ADMIN)]
