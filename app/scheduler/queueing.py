"""Moving scheduled task instances to ``queued`` together with their outbox messages, as far as
capacity allows (pools, ``max_active_tasks``, ``priority_weight``; see ``capacity.py``).

Whoever schedules tasks calls ``queue_attempts`` with the ids it just scheduled. The tasks that
already wait in the same pools or DAGs compete with them, so a newcomer never overtakes a waiting
task of higher priority (or of equal priority scheduled earlier). What does not fit stays
``scheduled`` with its ``wait_code``/``wait_reason``; the scheduler's ``queue_scheduled`` step
tries again on every pass, and a finished task wakes the scheduler, so a freed slot is taken
within the pass that follows the finish, not at the next sweep.

Priority decides twice: which tasks take the free capacity, and the order their messages are
written to the outbox, which the relay keeps when it publishes. So when more tasks are queued at
once than workers have free slots, the workers start the highest ``priority_weight`` first.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Row, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import TaskInstance
from app.db.outbox import QueuedAttempt, add_task_messages
from app.execution.tokens import AttemptTokens
from app.scheduler.capacity import (
    Block,
    Candidate,
    admit,
    describe,
    holders,
    load_capacity,
    lock_capacity,
)
from weir.states import TaskState, check_transition

__all__ = ["BATCH", "queue_attempts", "queue_scheduled"]

_Row = Row[int, str, str, int, int, str | None, str | None]  # the columns of ``_COLUMNS``
COMPETITORS = 500  # waiting tasks considered beside the given ones, highest priority first
BATCH = 500  # scheduled tasks one ``queue_scheduled`` pass takes, highest priority first


async def queue_scheduled(session: AsyncSession, tokens: AttemptTokens, now: datetime) -> int:
    """Scheduler step: queue what waits ``scheduled`` (for capacity, or handed back by a
    stopping worker) as far as capacity allows, highest ``priority_weight`` first."""
    statement = (
        select(TaskInstance.id)
        .where(TaskInstance.state == TaskState.SCHEDULED)
        .order_by(TaskInstance.priority_weight.desc(), TaskInstance.id)
        .limit(BATCH)
        .with_for_update(skip_locked=True)
    )
    ids = list((await session.scalars(statement)).all())
    return await queue_attempts(session, ids, tokens, now)


async def queue_attempts(
    session: AsyncSession,
    task_instance_ids: Sequence[int],
    tokens: AttemptTokens,
    now: datetime,
) -> int:
    """``scheduled -> queued`` for what fits, each with its message (invariant 3).

    Returns how many were queued (given ones and waiting competitors together).
    """
    if not task_instance_ids:
        return 0
    check_transition(TaskState.SCHEDULED, TaskState.QUEUED)
    rows = await _load_candidates(session, task_instance_ids)
    if not rows:
        return 0
    candidates = [_candidate(r) for r in rows.values()]
    pools = {c.pool for c in candidates}
    dags = {c.dag_id for c in candidates}
    await lock_capacity(session, pools, dags)
    admitted, blocked = admit(candidates, await load_capacity(session, pools, dags))
    queued = await _queue(session, [c.id for c in admitted], now)  # in ``admitted``'s order
    await add_task_messages(session, queued, tokens, now)
    await _record_waits(session, rows, blocked)
    return len(queued)


_COLUMNS = (
    TaskInstance.id,
    TaskInstance.dag_id,
    TaskInstance.pool,
    TaskInstance.pool_slots,
    TaskInstance.priority_weight,
    TaskInstance.wait_code,
    TaskInstance.wait_reason,
)


async def _load_candidates(session: AsyncSession, ids: Sequence[int]) -> dict[int, _Row]:
    """The given scheduled instances and the waiting ones they compete with, locked.

    The given rows are locked by the caller already; competitors are taken with ``SKIP LOCKED``,
    so a replica busy with them is never waited for: it decides for them itself.
    """
    given = {
        r.id: r
        for r in await session.execute(
            select(*_COLUMNS).where(
                TaskInstance.id.in_(ids), TaskInstance.state == TaskState.SCHEDULED
            )
        )
    }
    if not given:
        return {}
    pools = {r.pool for r in given.values()}
    dags = {r.dag_id for r in given.values()}
    competitors = await session.execute(
        select(*_COLUMNS)
        .where(
            TaskInstance.state == TaskState.SCHEDULED,
            TaskInstance.id.not_in(list(given)),
            or_(TaskInstance.pool.in_(pools), TaskInstance.dag_id.in_(dags)),
        )
        .order_by(TaskInstance.priority_weight.desc(), TaskInstance.id)
        .limit(COMPETITORS)
        .with_for_update(of=TaskInstance, skip_locked=True)
    )
    return given | {r.id: r for r in competitors}


def _candidate(r: _Row) -> Candidate:
    return Candidate(r.id, r.dag_id, r.pool, r.pool_slots, r.priority_weight)


async def _queue(session: AsyncSession, ids: list[int], now: datetime) -> list[QueuedAttempt]:
    """``scheduled -> queued``; returns the attempts in the order of ``ids`` (the database
    returns updated rows in an order of its own)."""
    if not ids:
        return []
    statement = (
        update(TaskInstance)
        .where(TaskInstance.id.in_(ids), TaskInstance.state == TaskState.SCHEDULED)
        .values(
            state=TaskState.QUEUED,
            queued_at=now,
            worker=None,
            lease_expires_at=None,
            wait_code=None,
            wait_reason=None,
        )
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
    queued = {
        r.id: QueuedAttempt(r.id, r.attempt, r.dag_id, r.run_id, r.task_id, r.queue)
        for r in await session.execute(statement)
    }
    return [queued[ti_id] for ti_id in ids if ti_id in queued]


async def _record_waits(
    session: AsyncSession, rows: dict[int, _Row], blocked: dict[int, Block]
) -> None:
    """Store the reason of each task that starts waiting, or now waits for something else.

    A task that keeps waiting for the same thing (a code names one subject: the task's own pool
    or DAG) keeps the words written when it began, holders included: rewriting every waiting row
    on every pass would make each finished task cost work in proportion to how many wait."""
    words: dict[Block, str] = {}
    changed: dict[tuple[str, str], list[int]] = defaultdict(list)
    for ti_id, block in blocked.items():
        if rows[ti_id].wait_code == block.code:
            continue
        if block not in words:
            words[block] = describe(block, await holders(session, block))
        changed[(block.code, words[block])].append(ti_id)
    for (code, reason), ids in changed.items():
        await session.execute(
            update(TaskInstance)
            .where(TaskInstance.id.in_(ids), TaskInstance.state == TaskState.SCHEDULED)
            .values(wait_code=code, wait_reason=reason)
            .execution_options(synchronize_session=False)
        )
