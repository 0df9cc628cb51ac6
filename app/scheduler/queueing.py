"""Moving scheduled task instances to ``queued`` together with their outbox messages."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import TaskInstance
from app.db.outbox import QueuedAttempt, add_task_messages
from app.execution.tokens import AttemptTokens
from weir.states import TaskState, check_transition

__all__ = ["queue_attempts"]


async def queue_attempts(
    session: AsyncSession,
    task_instance_ids: Sequence[int],
    tokens: AttemptTokens,
    now: datetime,
) -> int:
    """``scheduled -> queued`` for these task instances, each with its message (invariant 3).

    Capacity limits (pools, max_active_tasks) will decide here which of them go first.
    """
    if not task_instance_ids:
        return 0
    check_transition(TaskState.SCHEDULED, TaskState.QUEUED)
    statement = (
        update(TaskInstance)
        .where(TaskInstance.id.in_(task_instance_ids), TaskInstance.state == TaskState.SCHEDULED)
        .values(state=TaskState.QUEUED, queued_at=now, worker=None, lease_expires_at=None)
        .returning(
            TaskInstance.id,
            TaskInstance.attempt,
            TaskInstance.dag_id,
            TaskInstance.run_id,
            TaskInstance.task_id,
            TaskInstance.queue,
        )
        .execution_options(synchronize_session=False)
    )
    queued = [
        QueuedAttempt(r.id, r.attempt, r.dag_id, r.run_id, r.task_id, r.queue)
        for r in await session.execute(statement)
    ]
    await add_task_messages(session, queued, tokens, now)
    return len(queued)
