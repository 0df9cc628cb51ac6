"""``/api/v1/tokens``: create (the clear value is answered once), list and revoke API tokens.

Anyone with a token manages their own; an admin also creates, lists and revokes other users'.
A token carries its user's role as it is at each request, so a token never needs a role of its
own. Only the SHA-256 of a token is stored; no answer ever holds a hash. The use cases live in
``app.tokens_service``, shared with the dashboard's admin pages.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app import tokens_service as use
from app.api.deps import Service, Session
from app.api.pagination import Limit, Offset, OrderBy, Page, paginate
from app.api.problems import PROBLEM_RESPONSES
from app.auth import Role, Viewer
from app.db.models import ApiToken, User
from app.tokens_service import TokenCreate, forbid_others
from app.users_service import USERNAME_PATTERN

__all__ = ["TokenCreate", "TokenCreated", "TokenPublic", "TokensPublic", "router"]

router = APIRouter(prefix="/api/v1/tokens", tags=["tokens"], responses=PROBLEM_RESPONSES)


class TokenPublic(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"id": 7, "name": "ci", "username": "alice", "created_at": "2026-01-01T06:00:00Z",
                 "expires_at": "2026-04-01T06:00:00Z", "revoked_at": None, "is_active": True}
            ]
        }
    )  # fmt: skip

    id: int
    name: str
    username: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    is_active: bool = Field(description="Neither revoked nor expired (the user may be disabled).")

    @classmethod
    def of(cls, token: ApiToken, username: str, now: datetime) -> TokenPublic:
        expired = token.expires_at is not None and token.expires_at <= now
        return cls(
            id=token.id,
            name=token.name,
            username=username,
            created_at=token.created_at,
            expires_at=token.expires_at,
            revoked_at=token.revoked_at,
            is_active=token.revoked_at is None and not expired,
        )


class TokenCreated(TokenPublic):
    """The new token, with its clear value: the only time it is ever shown."""

    token: str = Field(description="Send as 'Authorization: Bearer <token>'. Shown only once.")


class TokensPublic(BaseModel):
    tokens: list[TokenPublic]
    total: int


SORT_KEYS = {
    "created_at": ApiToken.created_at,
    "expires_at": ApiToken.expires_at,
    "name": ApiToken.name,
    "id": ApiToken.id,
}


@router.post(
    "", operation_id="tokens-create", status_code=201, responses={409: PROBLEM_RESPONSES[409]}
)
async def create_token(
    body: TokenCreate, session: Session, service: Service, principal: Viewer
) -> TokenCreated:
    """Create a token for yourself (or, as an admin, for ``username``); the answer holds its
    value, which is never shown again. It carries its user's role."""
    token, clear, username = await use.create_api_token(session, service, principal, body)
    created = TokenPublic.of(token, username, service.clock.now())
    return TokenCreated(**created.model_dump(), token=clear)


@router.get("", operation_id="tokens-list")
async def list_tokens(
    session: Session,
    service: Service,
    principal: Viewer,
    username: Annotated[
        str | None,
        Query(max_length=150, pattern=USERNAME_PATTERN, description="Only this user's (admins)."),
    ] = None,
    active: Annotated[
        bool | None, Query(description="true: only live tokens; false: only revoked or expired.")
    ] = None,
    limit: Limit = 100,
    offset: Offset = 0,
    order_by: OrderBy = None,
) -> TokensPublic:
    """List your tokens; an admin sees everyone's and may filter by user. Never their values."""
    forbid_others(principal, username)
    now = service.clock.now()
    statement = select(ApiToken)
    if not principal.role.allows(Role.ADMIN):
        statement = statement.where(ApiToken.user_id == principal.user_id)
    if username is not None:
        owner = select(User.id).where(User.username == username).scalar_subquery()
        statement = statement.where(ApiToken.user_id == owner)
    if active is not None:
        live = ApiToken.revoked_at.is_(None) & or_(
            ApiToken.expires_at.is_(None), ApiToken.expires_at > now
        )
        statement = statement.where(live if active else ~live)
    rows, total = await paginate(
        session, statement, Page(limit, offset, order_by),
        sort_keys=SORT_KEYS, default="-created_at", tiebreak=ApiToken.id,
    )  # fmt: skip
    names = await _usernames(session, rows)
    return TokensPublic(
        tokens=[TokenPublic.of(t, names[t.user_id], now) for t in rows], total=total
    )


async def _usernames(session: AsyncSession, tokens: Sequence[ApiToken]) -> dict[int, str]:
    ids = {t.user_id for t in tokens}
    rows = await session.execute(select(User.id, User.username).where(User.id.in_(ids)))
    return {user_id: name for user_id, name in rows}


@router.delete("/{token_id}", operation_id="tokens-revoke", status_code=204)
async def revoke_token(
    token_id: Annotated[str, Path(max_length=40)],
    session: Session,
    service: Service,
    principal: Viewer,
) -> Response:
    """Revoke a token of yours (an admin: anyone's). It stops working at once; revoking it
    again changes nothing."""
    await use.revoke_api_token(session, service, principal, token_id)
    return Response(status_code=204)
