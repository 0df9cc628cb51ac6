"""API tokens as a use case: create (the clear value exists once), find and revoke, audited.

Shared by the REST API (``app/api/v1/tokens.py``) and the dashboard's admin pages. Anyone
manages their own tokens; an admin also other users'. A token carries its user's role as it is
at each request; only its SHA-256 is stored. A token made with a token never outlives it and
never belongs to a user with a higher role than its maker, so a leaked short-lived token cannot
be turned into a lasting one.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import HTTPException
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import record
from app.auth import Principal, Role, issue_token
from app.db.models import ApiToken, User
from app.state import ServiceState
from app.users_service import Username
from weir.errors import Conflict, InvalidRequest, NotFound

__all__ = ["TokenCreate", "create_api_token", "forbid_others", "revoke_api_token", "visible_token"]

Instant = Annotated[
    AwareDatetime,
    Field(gt=datetime(1970, 1, 1, tzinfo=UTC), lt=datetime(9000, 1, 1, tzinfo=UTC)),
]


class TokenCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"name": "ci", "expires_in_days": 90},
                {"name": "export", "username": "etl-bot", "expires_at": "2027-01-01T00:00:00Z"},
            ]
        },
    )  # fmt: skip

    name: str = Field(
        min_length=1, max_length=250, pattern=r"^[^\x00-\x1f\x7f]+$",
        description="What the token is for (shown in lists, never secret).",
    )  # fmt: skip
    username: Username | None = Field(
        default=None, description="Whose token (admins only; default: yours)."
    )
    expires_at: Instant | None = None
    expires_in_days: int | None = Field(default=None, ge=1, le=3650)

    @model_validator(mode="after")
    def _one_expiry(self) -> TokenCreate:
        if self.expires_at is not None and self.expires_in_days is not None:
            raise ValueError("give expires_at or expires_in_days, not both")
        return self


def forbid_others(principal: Principal, username: str | None) -> None:
    """Only an admin acts on another user's tokens."""
    if username not in (None, principal.username) and not principal.role.allows(Role.ADMIN):
        raise HTTPException(403, "Only an admin manages other users' tokens.")


def _expiry(body: TokenCreate, now: datetime, limit: datetime | None) -> datetime | None:
    """The new token's expiry: as asked, and never after ``limit`` (the creating token's);
    a token made with an expiring token inherits its expiry when none is asked."""
    wanted = body.expires_at
    if body.expires_in_days is not None:
        wanted = now + timedelta(days=body.expires_in_days)
    elif wanted is not None and wanted <= now:
        raise InvalidRequest(
            "expires_at is in the past; give a future instant or expires_in_days.",
            errors=[{"field": "body.expires_at", "message": "must be in the future"}],
        )
    if limit is None:
        return wanted
    if wanted is not None and wanted > limit:
        raise InvalidRequest(
            f"A token made with a token cannot outlive it: yours expires at {limit.isoformat()}. "
            "Ask for an earlier expiry, or create the token from the dashboard.",
            errors=[{"field": "body.expires_at", "message": "after the creating token's expiry"}],
        )
    return wanted or limit


async def _creator_expiry(session: AsyncSession, principal: Principal) -> datetime | None:
    """When the token making this request expires (``None``: no token, or one that never does)."""
    if principal.token_id is None:
        return None
    return await session.scalar(
        select(ApiToken.expires_at).where(ApiToken.id == principal.token_id)
    )


async def create_api_token(
    session: AsyncSession,
    service: ServiceState,
    principal: Principal,
    body: TokenCreate,
    *,
    origin: str = "api",
) -> tuple[ApiToken, str, str]:
    """A new token for ``principal`` (or, by an admin, for ``body.username``): the row, its clear
    value (never stored, never shown again) and the owner's username."""
    forbid_others(principal, body.username)
    username = body.username or principal.username
    user = await session.scalar(select(User).where(User.username == username))
    if user is None:
        raise NotFound(f"User {username!r} does not exist; create it with POST /api/v1/users.")
    if user.disabled_at is not None:
        raise Conflict(f"User {username!r} is disabled; enable it before giving it tokens.")
    if not principal.role.allows(Role(user.role)):
        raise HTTPException(403, f"A {principal.role} cannot create tokens for a {user.role}.")
    now = service.clock.now()
    expires_at = _expiry(body, now, await _creator_expiry(session, principal))
    token, clear = await issue_token(session, user, body.name, now, expires_at=expires_at)
    detail = {"token_id": token.id, "name": token.name,
              "expires_at": token.expires_at.isoformat() if token.expires_at else None}  # fmt: skip
    await record(session, principal, "token.create", username, now, detail=detail, origin=origin)
    return token, clear, username


async def visible_token(session: AsyncSession, principal: Principal, token_id: str) -> ApiToken:
    """The token, if it exists and the caller may see it (others' tokens look missing)."""
    number = int(token_id) if token_id.isascii() and token_id.isdigit() else None
    token = await session.get(ApiToken, number) if number is not None and number < 2**63 else None
    if token is None or not (
        token.user_id == principal.user_id or principal.role.allows(Role.ADMIN)
    ):
        raise NotFound(f"Token {token_id!r} does not exist; GET /api/v1/tokens lists yours.")
    return token


async def revoke_api_token(
    session: AsyncSession,
    service: ServiceState,
    principal: Principal,
    token_id: str,
    *,
    origin: str = "api",
) -> ApiToken:
    """Revoke a token at once; revoking it again changes nothing (and is not audited again)."""
    token = await visible_token(session, principal, token_id)
    if token.revoked_at is None:
        now = service.clock.now()
        token.revoked_at = now
        owner = await session.scalar(select(User.username).where(User.id == token.user_id))
        detail = {"token_id": token.id, "name": token.name}
        await record(session, principal, "token.revoke", owner, now, detail=detail, origin=origin)
    return token
