"""The failure notifier's outbox: one ``notification`` row per run the scheduler failed.

The row is written in the transaction that fails the run, so a summary is never lost to a crash
(the in-memory queue it replaces was). A notifier takes due rows under ``FOR UPDATE SKIP LOCKED``
and leases them by pushing ``next_attempt_at`` forward past the longest send; its replica then
POSTs outside any transaction and deletes the row, or records the failure and the next try. A
replica that dies mid-send leaves a lease that lapses: the row is taken again, so a summary is
delivered at least once (receivers dedupe by ``X-Weir-Notification-Id``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import Notification

__all__ = [
    "LEASE",
    "TakenNotification",
    "add_failure_notifications",
    "delete_notification",
    "next_notification_at",
    "record_failed_send",
    "take_due_notifications",
]

LEASE = timedelta(seconds=30)
"""How long a taken row is hidden from other notifiers: longer than one POST may take."""


@dataclass(frozen=True, slots=True)
class TakenNotification:
    id: int
    dag_run_id: int
    attempts: int  # counting the try this taker is making (its fence)
    created_at: datetime


async def add_failure_notifications(
    session: AsyncSession, dag_run_ids: Sequence[int], now: datetime
) -> int:
    """Write one row per failed run, due at once, in the caller's transaction."""
    if not dag_run_ids:
        return 0
    rows = [
        {"dag_run_id": run_id, "created_at": now, "attempts": 0, "next_attempt_at": now}
        for run_id in dag_run_ids
    ]
    await session.execute(insert(Notification), rows)
    return len(rows)


async def take_due_notifications(
    session: AsyncSession, now: datetime, limit: int
) -> list[TakenNotification]:
    """Lease up to ``limit`` due rows: each try is counted now, so a crash mid-send counts too."""
    rows = (
        await session.execute(
            select(Notification.id, Notification.dag_run_id, Notification.created_at)
            .where(Notification.gave_up_at.is_(None), Notification.next_attempt_at <= now)
            .order_by(Notification.next_attempt_at, Notification.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    ).all()
    if not rows:
        return []
    leased = await session.execute(
        update(Notification)
        .where(Notification.id.in_([row.id for row in rows]))
        .values(attempts=Notification.attempts + 1, next_attempt_at=now + LEASE)
        .returning(Notification.id, Notification.attempts)
        .execution_options(synchronize_session=False)
    )
    attempts = {row.id: row.attempts for row in leased}
    return [
        TakenNotification(row.id, row.dag_run_id, attempts[row.id], row.created_at)
        for row in sorted(rows, key=lambda row: row.id)
    ]


async def delete_notification(session: AsyncSession, notification_id: int) -> None:
    """Delivered (or its run is gone): nothing more to do."""
    await session.execute(delete(Notification).where(Notification.id == notification_id))


async def record_failed_send(
    session: AsyncSession,
    taken: TakenNotification,
    error: str,
    retry_at: datetime | None,
    now: datetime,
) -> bool:
    """Store the error and the next try, or give up (``retry_at`` None). Fenced by the try's
    number: a taker whose lease lapsed and whose row was taken again changes nothing."""
    values: dict[str, object] = {"last_error": error}
    if retry_at is None:
        values["gave_up_at"] = now
    else:
        values["next_attempt_at"] = retry_at
    result = await session.execute(
        update(Notification)
        .where(Notification.id == taken.id, Notification.attempts == taken.attempts)
        .values(**values)
        .returning(Notification.id)
    )
    return result.first() is not None


async def next_notification_at(session: AsyncSession) -> datetime | None:
    """When the earliest row not given up is due (a lease's end included)."""
    statement = select(func.min(Notification.next_attempt_at)).where(
        Notification.gave_up_at.is_(None)
    )
    return (await session.execute(statement)).scalar()
