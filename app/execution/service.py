"""What the execution API does for workers besides claims and reports (``claims``,
``reports``): heartbeats and releases.

Each function is one business operation in the caller's transaction; each is fenced on
``(task_instance_id, attempt)`` and raises ``Conflict`` when the attempt is no longer current.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import delete, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import TaskAttempt, TaskInstance
from app.db.transitions import set_task_state
from weir.errors import Conflict
from weir.messages import HeartbeatAccepted
from weir.states import TaskState

__all__ = ["release_attempt", "renew_lease", "renew_leases"]


def _stale(ti_id: int, attempt: int, doing: str) -> Conflict:
    return Conflict(
        f"Attempt {attempt} of task instance {ti_id} cannot {doing}: it is not the current "
        "attempt in the expected state (another worker claimed it, it was cleared, or it lapsed)."
    )


async def renew_lease(
    session: AsyncSession, ti_id: int, attempt: int, now: datetime, lease_seconds: float
) -> HeartbeatAccepted:
    expires = now + timedelta(seconds=lease_seconds)
    result = await session.execute(
        update(TaskInstance)
        .where(
            TaskInstance.id == ti_id,
            TaskInstance.attempt == attempt,
            TaskInstance.state == TaskState.RUNNING,
        )
        .values(lease_expires_at=expires)
        .returning(TaskInstance.id)
    )
    if result.first() is None:
        raise _stale(ti_id, attempt, "heartbeat")
    return HeartbeatAccepted(lease_expires_at=expires)


async def renew_leases(
    session: AsyncSession, attempts: Sequence[tuple[int, int]], now: datetime, lease_seconds: float
) -> set[int]:
    """A worker's batched heartbeat: renew every lease still held by ``(task instance id,
    attempt)`` in one statement; returns the ids renewed (the others were fenced off)."""
    if not attempts:
        return set()
    result = await session.execute(
        update(TaskInstance)
        .where(
            tuple_(TaskInstance.id, TaskInstance.attempt).in_(attempts),
            TaskInstance.state == TaskState.RUNNING,
        )
        .values(lease_expires_at=now + timedelta(seconds=lease_seconds))
        .returning(TaskInstance.id)
        .execution_options(synchronize_session=False)
    )
    return set(result.scalars().all())


async def release_attempt(session: AsyncSession, ti_id: int, attempt: int) -> None:
    """Hand back a claimed attempt that never started: it is queued again, same attempt."""
    moved = await set_task_state(
        session,
        ti_id,
        expected=TaskState.RUNNING,
        target=TaskState.SCHEDULED,
        attempt=attempt,
        worker=None,
        start_date=None,
        lease_expires_at=None,
    )
    if not moved:
        raise _stale(ti_id, attempt, "be released")
    await session.execute(
        delete(TaskAttempt).where(
            TaskAttempt.task_instance_id == ti_id, TaskAttempt.attempt == attempt
        )
    )
