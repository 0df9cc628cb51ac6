"""Moving scheduled task instances to ``queued`` together with their outbox messages, as far as
capacity allows (pools, ``max_active_tasks``, ``priority_weight``; see ``capacity.py``).

One function does it, ``queue_scheduled``, called after anything that may have made room or new
candidates: a report of success (in its own transaction), the scheduler's pass, a retry falling
due. It costs what there is room for, not what waits: it counts the waiting tasks per pool and
DAG in SQL, takes the advisory locks and reads occupancy, then loads, per pool with free slots,
only the highest-priority waiting tasks that could fit (as many as the pool has free slots, none
of a DAG at its ``max_active_tasks``, none larger than the pool). Tasks that were just scheduled
(``new``) are candidates too, so a newcomer never overtakes a waiting task of higher priority
(or of equal priority scheduled earlier). A 10,000-task fan-out behind a 128-slot pool therefore
costs each finished task a handful of rows, not the 9,872 that wait.

A task that does not fit stays ``scheduled`` with its ``wait_code``/``wait_reason``, written
when it starts waiting (``_record_waits``): a newcomer left out, or a candidate that ``admit``
blocked. Priority decides twice: which tasks take the free capacity, and the order their
messages are written to the outbox, which the relay keeps when it publishes. So when more tasks
are queued at once than workers have free slots, the workers start the highest
``priority_weight`` first.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, Select, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import TaskInstance
from app.db.outbox import QueuedAttempt, add_task_messages
from app.db.statements import prebuilt
from app.db.transitions import move_task_states
from app.scheduler.capacity import (
    DEFAULT_MAX_ACTIVE_TASKS,
    Block,
    Candidate,
    Capacity,
    admit,
    describe,
    holders,
    load_capacity,
    lock_capacity,
)
from weir.states import TaskState, check_transition

__all__ = ["BATCH", "queue_attempts", "queue_scheduled", "relabel_pool_waits"]

_Row = Row[int, str, str, int, int, str | None, str | None]  # the columns of ``_COLUMNS``
BATCH = 500  # tasks one call queues at most (per pool with room)


async def queue_attempts(
    session: AsyncSession,
    task_instance_ids: Sequence[int],
    now: datetime,
) -> int:
    """These task instances were just scheduled: queue what fits among them and the tasks that
    already wait (``queue_scheduled`` with them as newcomers). Returns how many were queued."""
    if not task_instance_ids:
        return 0
    return await queue_scheduled(session, now, new=task_instance_ids)


async def queue_scheduled(
    session: AsyncSession,
    now: datetime,
    *,
    new: Collection[int] = (),
) -> int:
    """``scheduled -> queued`` for the highest-priority tasks there is room for, each with its
    message (invariant 3). Returns how many were queued."""
    check_transition(TaskState.SCHEDULED, TaskState.QUEUED)
    waiting = (await session.execute(prebuilt("queueing.waiting", _waiting))).all()
    if not waiting:
        return 0
    pools = {row.pool for row in waiting}
    dags = {row.dag_id for row in waiting}
    await lock_capacity(session, pools, dags)
    capacity = await load_capacity(session, pools, dags)
    rows = await _with_room(session, capacity, pools, dags)
    rows |= await _load(session, set(new) - set(rows))
    if not rows:
        return 0
    admitted, blocked = admit([_candidate(r) for r in rows.values()], capacity)
    queued = await _queue(session, [c.id for c in admitted], now)  # in ``admitted``'s order
    await add_task_messages(session, queued, now)
    await _record_waits(session, rows, blocked)
    return len(queued)


async def _with_room(
    session: AsyncSession, capacity: Capacity, pools: set[str], dags: set[str]
) -> dict[int, _Row]:
    """Per pool with free slots, the waiting tasks first in line that could take them, locked
    (``SKIP LOCKED``: a replica busy with some decides for them itself)."""
    full_dags = [
        dag
        for dag in dags
        if capacity.dag_taken.get(dag, 0) >= capacity.dag_limit.get(dag, DEFAULT_MAX_ACTIVE_TASKS)
    ]
    rows: dict[int, _Row] = {}
    for pool in sorted(pools):
        size = capacity.pool_size.get(pool)
        room = 0 if size is None else size - capacity.pool_taken.get(pool, 0)
        if room <= 0 or size is None:
            continue
        statement = prebuilt("queueing.first_in_line", _first_in_line)
        parameters = {"pool": pool, "size": size, "full": full_dags, "room": min(room, BATCH)}
        rows.update((row.id, row) for row in await session.execute(statement, parameters))
    return rows


_COLUMNS = (
    TaskInstance.id,
    TaskInstance.dag_id,
    TaskInstance.pool,
    TaskInstance.pool_slots,
    TaskInstance.priority_weight,
    TaskInstance.wait_code,
    TaskInstance.wait_reason,
)


def _waiting() -> Select[str, str]:
    """The pools and DAGs that have tasks waiting for a slot."""
    return (
        select(TaskInstance.pool, TaskInstance.dag_id)
        .where(TaskInstance.state == TaskState.SCHEDULED)
        .group_by(TaskInstance.pool, TaskInstance.dag_id)
    )


def _first_in_line() -> Any:
    """The ``room`` waiting tasks first in line for ``pool`` that fit its ``size``, outside the
    ``full`` DAGs, locked (``SKIP LOCKED``)."""
    return (
        select(*_COLUMNS)
        .where(
            TaskInstance.state == TaskState.SCHEDULED,
            TaskInstance.pool == bindparam("pool"),
            TaskInstance.pool_slots <= bindparam("size"),
            TaskInstance.dag_id.not_in(bindparam("full", expanding=True)),
        )
        .order_by(TaskInstance.priority_weight.desc(), TaskInstance.id)
        .limit(bindparam("room"))
        .with_for_update(skip_locked=True)
    )


async def _load(session: AsyncSession, ids: set[int]) -> dict[int, _Row]:
    """The candidates still scheduled (locked by the caller, or taken by ``_with_room``)."""
    if not ids:
        return {}
    statement = select(*_COLUMNS).where(
        TaskInstance.id.in_(ids), TaskInstance.state == TaskState.SCHEDULED
    )
    return {row.id: row for row in await session.execute(statement)}


def _candidate(r: _Row) -> Candidate:
    return Candidate(r.id, r.dag_id, r.pool, r.pool_slots, r.priority_weight)


async def _queue(session: AsyncSession, ids: list[int], now: datetime) -> list[QueuedAttempt]:
    """``scheduled -> queued``; returns the attempts in the order of ``ids`` (the database
    returns updated rows in an order of its own)."""
    rows = await move_task_states(
        session,
        ids,
        expected=TaskState.SCHEDULED,
        target=TaskState.QUEUED,
        returning=(
            TaskInstance.id,
            TaskInstance.attempt,
            TaskInstance.dag_id,
            TaskInstance.run_id,
            TaskInstance.task_id,
            TaskInstance.queue,
        ),
        queued_at=now,
        worker=None,
        lease_expires_at=None,
        wait_code=None,
        wait_reason=None,
    )
    queued = {
        r.id: QueuedAttempt(r.id, r.attempt, r.dag_id, r.run_id, r.task_id, r.queue) for r in rows
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


async def relabel_pool_waits(session: AsyncSession, pool: str, size: int | None) -> None:
    """A pool was created, resized or deleted (``size`` None): the tasks waiting on it get the
    reason that is now true. ``queue_scheduled`` looks only at tasks that could take a slot, so
    a task too large for the pool, or in a pool that is gone, would keep a stale reason."""
    of_pool = (TaskInstance.state == TaskState.SCHEDULED, TaskInstance.pool == pool)
    if size is None:
        block = Block("pool_missing", pool)
        await _set_wait(session, of_pool, block.code, describe(block))
        return
    too_large = await session.scalars(
        select(TaskInstance.pool_slots).where(*of_pool, TaskInstance.pool_slots > size).distinct()
    )
    for slots in too_large.all():
        block = Block("pool_too_small", pool, limit=size, needed=slots)
        await _set_wait(
            session, (*of_pool, TaskInstance.pool_slots == slots), block.code, describe(block)
        )
    fits = TaskInstance.wait_code.in_(("pool_missing", "pool_too_small"))
    await _set_wait(session, (*of_pool, TaskInstance.pool_slots <= size, fits), None, None)


async def _set_wait(
    session: AsyncSession, where: tuple[Any, ...], code: str | None, reason: str | None
) -> None:
    await session.execute(
        update(TaskInstance)
        .where(*where)
        .values(wait_code=code, wait_reason=reason)
        .execution_options(synchronize_session=False)
    )
