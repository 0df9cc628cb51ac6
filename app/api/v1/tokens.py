"""``/api/v1/tokens``: create (the clear value is answered once), list and revoke API tokens.

Anyone with a token manages their own; an admin also creates, lists and revokes other users'.
A token carries its user's role as it is at each request, so a token never needs a role of its
own. Only the SHA-256 of a token is stored; no answer ever holds a hash.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.api.deps import Service, Session
from app.api.pagination import Limit, Offset, OrderBy, Page, paginate
from app.api.problems import PROBLEM_RESPONSES
from app.api.v1.users import USERNAME_PATTERN, Username
from app.audit import record
from app.auth import Principal, Role, Viewer, issue_token
from app.db.models import ApiToken, User
from weir.errors import Conflict, InvalidRequest, NotFound

__all__ = ["TokenCreate", "TokenCreated", "TokenPublic", "TokensPublic", "router"]

router = APIRouter(prefix="/api/v1/tokens", tags=["tokens"], responses=PROBLEM_RESPONSES)

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


def _forbid_others(principal: Principal, username: str | None) -> None:
    if username not in (None, principal.username) and not principal.role.allows(Role.ADMIN):
        raise HTTPException(403, "Only an admin manages other users' tokens.")


def _expiry(body: TokenCreate, now: datetime) -> datetime | None:
    if body.expires_in_days is not None:
        return now + timedelta(days=body.expires_in_days)
    if body.expires_at is not None and body.expires_at <= now:
        raise InvalidRequest(
            "expires_at is in the past; give a future instant or expires_in_days.",
            errors=[{"field": "body.expires_at", "message": "must be in the future"}],
        )
    return body.expires_at


@router.post(
    "", operation_id="tokens-create", status_code=201, responses={409: PROBLEM_RESPONSES[409]}
)
async def create_token(
    body: TokenCreate, session: Session, service: Service, principal: Viewer
) -> TokenCreated:
    """Create a token for yourself (or, as an admin, for ``username``); the answer holds its
    value, which is never shown again. It carries its user's role."""
    _forbid_others(principal, body.username)
    username = body.username or principal.username
    user = await session.scalar(select(User).where(User.username == username))
    if user is None:
        raise NotFound(f"User {username!r} does not exist; create it with POST /api/v1/users.")
    if user.disabled_at is not None:
        raise Conflict(f"User {username!r} is disabled; enable it before giving it tokens.")
    now = service.clock.now()
    token, clear = await issue_token(session, user, body.name, now, expires_at=_expiry(body, now))
    detail = {"token_id": token.id, "name": token.name,
              "expires_at": token.expires_at.isoformat() if token.expires_at else None}  # fmt: skip
    await record(session, principal, "token.create", username, now, detail=detail)
    return TokenCreated(**TokenPublic.of(token, username, now).model_dump(), token=clear)


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
    _forbid_others(principal, username)
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
    token = await _visible_token(session, principal, token_id)
    if token.revoked_at is None:
        now = service.clock.now()
        token.revoked_at = now
        owner = await session.scalar(select(User.username).where(User.id == token.user_id))
        detail = {"token_id": token.id, "name": token.name}
        await record(session, principal, "token.revoke", owner, now, detail=detail)
    return Response(status_code=204)


async def _visible_token(session: AsyncSession, principal: Principal, token_id: str) -> ApiToken:
    """The token, if it exists and the caller may see it (others' tokens look missing)."""
    number = int(token_id) if token_id.isascii() and token_id.isdigit() else None
    token = await session.get(ApiToken, number) if number is not None and number < 2**63 else None
    if token is None or not (
        token.user_id == principal.user_id or principal.role.allows(Role.ADMIN)
    ):
        raise NotFound(f"Token {token_id!r} does not exist; GET /api/v1/tokens lists yours.")
    return token
