"""Time-driven moves: retries whose backoff ended, hand-backs, and zombies whose lease lapsed.

The first two are woken by events too; the zombie sweep is the safety net of invariant 2.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import TaskInstance
from app.db.transitions import set_task_states
from app.execution.tokens import AttemptTokens
from app.scheduler.outcomes import record_failure
from app.scheduler.queueing import queue_attempts
from weir.states import TaskState

__all__ = ["fail_zombies", "next_retry_at", "queue_scheduled", "schedule_due_retries"]

log = logging.getLogger(__name__)
BATCH = 500


async def schedule_due_retries(session: AsyncSession, tokens: AttemptTokens, now: datetime) -> int:
    """``up_for_retry -> scheduled`` (a new attempt) once the backoff has passed, then queue."""
    statement = (
        select(TaskInstance.id)
        .where(TaskInstance.state == TaskState.UP_FOR_RETRY, TaskInstance.next_retry_at <= now)
        .limit(BATCH)
        .with_for_update(skip_locked=True)
    )
    ids = list((await session.scalars(statement)).all())
    moved = await set_task_states(
        session,
        ids,
        expected=TaskState.UP_FOR_RETRY,
        target=TaskState.SCHEDULED,
        next_attempt=True,
        next_retry_at=None,
        start_date=None,
        end_date=None,
    )
    await queue_attempts(session, [ti_id for ti_id, _ in moved], tokens, now)
    return len(moved)


async def queue_scheduled(session: AsyncSession, tokens: AttemptTokens, now: datetime) -> int:
    """Queue task instances left ``scheduled`` (handed back by a stopping worker)."""
    statement = (
        select(TaskInstance.id)
        .where(TaskInstance.state == TaskState.SCHEDULED)
        .limit(BATCH)
        .with_for_update(skip_locked=True)
    )
    ids = list((await session.scalars(statement)).all())
    return await queue_attempts(session, ids, tokens, now)


async def fail_zombies(session: AsyncSession, now: datetime) -> int:
    """Fail running attempts whose lease lapsed (their worker died or lost touch)."""
    statement = (
        select(TaskInstance)
        .where(TaskInstance.state == TaskState.RUNNING, TaskInstance.lease_expires_at < now)
        .limit(BATCH)
        .with_for_update(skip_locked=True)
    )
    zombies = list((await session.scalars(statement)).all())
    for ti in zombies:
        log.warning(
            "zombie: lease lapsed dag_id=%s run_id=%s task_id=%s attempt=%s worker=%s",
            ti.dag_id, ti.run_id, ti.task_id, ti.attempt, ti.worker,
        )  # fmt: skip
        error = f"The attempt's lease lapsed at {ti.lease_expires_at}: worker {ti.worker} is gone."
        await record_failure(session, ti, ti.attempt, error, now)
    return len(zombies)


async def next_retry_at(session: AsyncSession) -> datetime | None:
    """When the earliest waiting retry is due, so the scheduler can sleep exactly until then."""
    statement = select(func.min(TaskInstance.next_retry_at)).where(
        TaskInstance.state == TaskState.UP_FOR_RETRY
    )
    return (await session.execute(statement)).scalar()
