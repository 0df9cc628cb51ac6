"""The transactional outbox (invariant 3): a task becomes ``queued`` in the same transaction that
writes its message here; the relay publishes and then deletes. A crash in between republishes, and
the attempt fence makes the duplicate harmless."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import Outbox
from app.execution.tokens import AttemptTokens
from weir.messages import TaskMessage

__all__ = ["QueuedAttempt", "add_task_messages", "delete_outbox_rows", "take_outbox_batch"]


@dataclass(frozen=True, slots=True)
class QueuedAttempt:
    task_instance_id: int
    attempt: int
    dag_id: str
    run_id: str
    task_id: str
    queue: str


async def add_task_messages(
    session: AsyncSession,
    attempts: Sequence[QueuedAttempt],
    tokens: AttemptTokens,
    now: datetime,
) -> None:
    """Write one task message per queued attempt, in the caller's transaction."""
    if not attempts:
        return
    rows = []
    for a in attempts:
        message = TaskMessage(
            task_instance_id=a.task_instance_id,
            attempt=a.attempt,
            dag_id=a.dag_id,
            run_id=a.run_id,
            task_id=a.task_id,
            queue=a.queue,
            token=tokens.issue(a.task_instance_id, a.attempt),
        )
        rows.append(
            {
                "queue": a.queue,
                "message_id": f"{a.task_instance_id}:{a.attempt}",
                "body": message.model_dump_json().encode(),
                "priority": 0,
                "created_at": now,
            }
        )
    await session.execute(insert(Outbox), rows)


async def take_outbox_batch(session: AsyncSession, limit: int) -> list[Outbox]:
    """The oldest unpublished messages, locked so another replica's relay skips them."""
    statement = select(Outbox).order_by(Outbox.id).limit(limit).with_for_update(skip_locked=True)
    return list((await session.scalars(statement)).all())


async def delete_outbox_rows(session: AsyncSession, ids: Sequence[int]) -> None:
    if ids:
        await session.execute(delete(Outbox).where(Outbox.id.in_(ids)))
