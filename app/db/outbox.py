"""The transactional outbox (invariant 3): a task becomes ``queued`` in the same transaction that
writes its message here; the relay publishes and then deletes. A crash in between republishes, and
the attempt fence makes the duplicate harmless.

A task message is stored unsigned: the relay adds the attempt's token when it publishes
(``app.relay``), so the database layer holds no signing key and a token never rests in a table.
The row's ``message_id`` names the attempt (``attempt_of``), which is all the token signs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import Outbox
from app.db.statements import prebuilt
from weir.messages import MESSAGE_VERSION

__all__ = [
    "OutboxRow",
    "QueuedAttempt",
    "add_task_messages",
    "attempt_of",
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
    session: AsyncSession, attempts: Sequence[QueuedAttempt], now: datetime
) -> None:
    """Write one task message per queued attempt, in the caller's transaction: a
    ``weir.messages.TaskMessage`` but for its ``token``, which the relay adds."""
    if not attempts:
        return
    rows = [
        {
            "queue": a.queue,
            "message_id": f"{a.task_instance_id}:{a.attempt}",
            "body": _unsigned(a),
            "priority": 0,
            "created_at": now,
        }
        for a in attempts
    ]
    await session.execute(insert(Outbox), rows)


def _unsigned(a: QueuedAttempt) -> bytes:
    fields = {
        "v": MESSAGE_VERSION,
        "task_instance_id": a.task_instance_id,
        "attempt": a.attempt,
        "dag_id": a.dag_id,
        "run_id": a.run_id,
        "task_id": a.task_id,
        "queue": a.queue,
    }
    return json.dumps(fields, ensure_ascii=False, separators=(",", ":")).encode()


def attempt_of(message_id: str) -> tuple[int, int] | None:
    """``(task instance id, attempt)`` of a task message's row; None for other messages (a DAG
    callback's is ``dag_callback:<run id>``)."""
    task_instance_id, _, attempt = message_id.partition(":")
    if task_instance_id.isdigit() and attempt.isdigit():
        return int(task_instance_id), int(attempt)
    return None


async def take_outbox_batch(session: AsyncSession, limit: int) -> list[OutboxRow]:
    """The oldest unpublished messages, deleted in the caller's transaction in the same
    statement that takes them (locked, so another replica's relay skips them): the caller
    publishes, then commits; a failed publish rolls the delete back."""
    statement = prebuilt("outbox.take", _take_oldest)
    rows = [OutboxRow(*row) for row in await session.execute(statement, {"limit": limit})]
    rows.sort(key=lambda row: row.id)  # RETURNING has no order: keep the queueing order
    return rows


def _take_oldest() -> Any:
    oldest = (
        select(Outbox.id)
        .order_by(Outbox.id)
        .limit(bindparam("limit"))
        .with_for_update(skip_locked=True)
    ).scalar_subquery()
    return (
        delete(Outbox)
        .where(Outbox.id.in_(oldest))
        .returning(Outbox.id, Outbox.queue, Outbox.body, Outbox.message_id, Outbox.priority)
    )


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    queue: str
    body: bytes
    message_id: str
    priority: int
