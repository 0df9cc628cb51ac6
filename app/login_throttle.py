"""Throttling of password sign-ins, per user name and per client address.

Every attempt is counted *before* its password is checked, in a transaction of its own: so a
throttled guess costs no argon2 time, and a burst of parallel guesses is counted as it arrives
rather than after each one is verified. A success clears its user name's count and takes back
its own count from its address (only that one: a valid account must not let an address guess at
others without end; an office full of people signing in is never throttled for it). Counts live
in the database (``login_throttle``), so replicas behind a load balancer count together, and a
window (fixed, from its first attempt) bounds them: after ``WINDOW``, counting starts again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import case, delete, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.engine import Database
from app.db.models import LoginThrottle

__all__ = [
    "MAX_ATTEMPTS_PER_ADDRESS",
    "MAX_ATTEMPTS_PER_USER",
    "WINDOW",
    "Throttled",
    "count_attempt",
    "count_success",
]

WINDOW = timedelta(minutes=15)
MAX_ATTEMPTS_PER_USER = 10
"""Sign-ins per user name and window: enough for a person who mistypes, far too few to guess."""
MAX_ATTEMPTS_PER_ADDRESS = 50
"""Per client address and window: higher, since an office or a proxy shares one address."""


@dataclass(frozen=True)
class Throttled:
    """Too many attempts: the key at fault and when the next one is allowed."""

    scope: str  # "user" or "address"
    retry_after: int  # seconds


async def count_attempt(
    database: Database, username: str, address: str | None, now: datetime
) -> Throttled | None:
    """Count one sign-in attempt (committed at once); ``Throttled`` if it is one too many."""
    limits = [("user", f"user:{username.lower()}", MAX_ATTEMPTS_PER_USER)]
    if address:
        limits.append(("address", f"address:{address}", MAX_ATTEMPTS_PER_ADDRESS))
    throttled: list[Throttled] = []
    async with database.sessions.begin() as session:
        for scope, key, limit in limits:
            attempts, window_start = await _increment(session, database.is_postgres, key, now)
            if attempts > limit:
                wait = (window_start + WINDOW - now).total_seconds()
                throttled.append(Throttled(scope, max(1, math.ceil(wait))))
    return max(throttled, key=lambda t: t.retry_after, default=None)


async def count_success(session: AsyncSession, username: str, address: str | None) -> None:
    """The password was right: forget the user name's attempts, and this one of the address's."""
    user_key = f"user:{username.lower()}"
    await session.execute(delete(LoginThrottle).where(LoginThrottle.key == user_key))
    if address:
        await session.execute(
            update(LoginThrottle)
            .where(LoginThrottle.key == f"address:{address}", LoginThrottle.attempts > 0)
            .values(attempts=LoginThrottle.attempts - 1)
        )


async def _increment(
    session: AsyncSession, is_postgres: bool, key: str, now: datetime
) -> tuple[int, datetime]:
    """Add one attempt to ``key`` (a fresh window if its last one is over), atomically."""
    dialect = postgresql if is_postgres else sqlite
    statement = dialect.insert(LoginThrottle).values(key=key, attempts=1, window_start=now)
    expired = LoginThrottle.window_start <= now - WINDOW
    statement = statement.on_conflict_do_update(
        index_elements=[LoginThrottle.key],
        set_={
            "attempts": case((expired, 1), else_=LoginThrottle.attempts + 1),
            "window_start": case(
                (expired, statement.excluded.window_start), else_=LoginThrottle.window_start
            ),
        },
    ).returning(LoginThrottle.attempts, LoginThrottle.window_start)
    attempts, window_start = (await session.execute(statement)).one()
    return attempts, window_start
