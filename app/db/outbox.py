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

__all__ = [
    "OutboxRow",
    "QueuedAttempt",
    "add_task_messages",
    "take_outbox_batch",
]


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


async def take_outbox_batch(session: AsyncSession, limit: int) -> list[OutboxRow]:
    """The oldest unpublished messages, deleted in the caller's transaction in the same
    statement that takes them (locked, so another replica's relay skips them): the caller
    publishes, then commits; a failed publish rolls the delete back."""
    oldest = (
        select(Outbox.id).order_by(Outbox.id).limit(limit).with_for_update(skip_locked=True)
    ).scalar_subquery()
    statement = (
        delete(Outbox)
        .where(Outbox.id.in_(oldest))
        .returning(Outbox.id, Outbox.queue, Outbox.body, Outbox.message_id, Outbox.priority)
    )
    rows = [OutboxRow(*row) for row in await session.execute(statement)]
    rows.sort(key=lambda row: row.id)  # RETURNING has no order: keep the queueing order
    return rows


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    queue: str
    body: bytes
    message_id: str
    priority: int
