"""Time-driven moves: retries whose backoff ended, sensors due for their next poke, attempts whose
lease lapsed, and runs past their DAG's ``dagrun_timeout``.

The lapsed-lease sweep is the safety net of invariant 2. Each of these is checked when it falls
due: the scheduler sleeps no longer than until the next of them (``next_retry_or_poke_at``,
``next_lease_lapse_at``, ``next_run_timeout_at``), so each happens within a pass of its time.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime, timedelta

from sqlalchemy import Row, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import DagRun, TaskInstance
from app.db.transitions import close_attempts, set_run_state, set_task_states
from app.scheduler.outcomes import record_lost
from app.scheduler.queueing import queue_attempts
from app.scheduler.versions import VersionCache
from weir.states import TERMINAL_TASK_STATES, DagRunState, TaskState

__all__ = [
    "fail_timed_out_runs",
    "next_lease_lapse_at",
    "next_retry_or_poke_at",
    "next_run_timeout_at",
    "queue_due_retries_and_pokes",
    "requeue_lapsed_attempts",
]

log = logging.getLogger(__name__)
BATCH = 500
_UNFINISHED = [state for state in TaskState if state not in TERMINAL_TASK_STATES]
_WAITING = (TaskState.UP_FOR_RETRY, TaskState.UP_FOR_RESCHEDULE)
"""States that wait until ``next_retry_at``: a retry's backoff, or a sensor's next poke."""


async def queue_due_retries_and_pokes(session: AsyncSession, now: datetime) -> int:
    """``up_for_retry -> scheduled`` once the backoff has passed, and a sensor's ``up_for_reschedule
    -> scheduled`` at its next poke: each as a new attempt, queued at once."""
    moved = 0
    for waiting in _WAITING:
        statement = (
            select(TaskInstance.id)
            .where(TaskInstance.state == waiting, TaskInstance.next_retry_at <= now)
            .limit(BATCH)
            .with_for_update(skip_locked=True)
        )
        ids = list((await session.scalars(statement)).all())
        scheduled = await set_task_states(
            session,
            ids,
            expected=waiting,
            target=TaskState.SCHEDULED,
            next_attempt=True,
            next_retry_at=None,
            start_date=None,
            end_date=None,
        )
        await queue_attempts(session, [ti_id for ti_id, _ in scheduled], now)
        moved += len(scheduled)
    return moved


async def requeue_lapsed_attempts(session: AsyncSession, now: datetime, max_lost: int) -> int:
    """Run again the attempts whose lease lapsed (their worker died, froze or lost touch), each as
    its next attempt without using a retry, up to ``max_lost`` lapses per task instance."""
    statement = (
        select(TaskInstance)
        .where(TaskInstance.state == TaskState.RUNNING, TaskInstance.lease_expires_at < now)
        .limit(BATCH)
        .with_for_update(skip_locked=True)
    )
    lapsed = list((await session.scalars(statement)).all())
    for ti in lapsed:
        log.warning(
            "lease lapsed dag_id=%s run_id=%s task_id=%s attempt=%s worker=%s",
            ti.dag_id,
            ti.run_id,
            ti.task_id,
            ti.attempt,
            ti.worker,
        )
        reason = (
            f"The lease of attempt {ti.attempt} of {ti.dag_id}.{ti.task_id} lapsed at "
            f"{ti.lease_expires_at:%Y-%m-%d %H:%M:%S} UTC: worker {ti.worker} stopped renewing it "
            "(it died, froze or lost touch with the API)."
        )
        await record_lost(session, ti, ti.attempt, reason, now, max_lost=max_lost)
    return len(lapsed)


async def next_lease_lapse_at(session: AsyncSession) -> datetime | None:
    """When the earliest running attempt's lease lapses, so the scheduler wakes then and a dead
    worker's attempts run again within a lease, not a sweep period, of its last heartbeat."""
    statement = select(func.min(TaskInstance.lease_expires_at)).where(
        TaskInstance.state == TaskState.RUNNING
    )
    return (await session.execute(statement)).scalar()


async def next_retry_or_poke_at(session: AsyncSession) -> datetime | None:
    """When the earliest waiting retry or sensor poke is due, so the scheduler can sleep exactly
    until then."""
    statement = select(func.min(TaskInstance.next_retry_at)).where(TaskInstance.state.in_(_WAITING))
    return (await session.execute(statement)).scalar()


async def fail_timed_out_runs(session: AsyncSession, versions: VersionCache, now: datetime) -> int:
    """Fail running runs older than their DAG's ``dagrun_timeout``, with every unfinished task.

    Running attempts are failed too: their workers' next heartbeat is refused (409) and they stop.
    """
    failed = 0
    for row, timeout, deadline in await _run_deadlines(session, versions):
        if deadline <= now:
            error = f"The DAG run timed out: it ran longer than its dagrun_timeout ({timeout:g} s)."
            if await _fail_run(session, row.id, error, now):
                log.warning("dag_id=%s run_id=%s failed: %s", row.dag_id, row.run_id, error)
                failed += 1
    return failed


async def next_run_timeout_at(session: AsyncSession, versions: VersionCache) -> datetime | None:
    """The earliest ``dagrun_timeout`` deadline of a running run, so the scheduler wakes for it
    rather than at the next sweep."""
    return min(
        (deadline for _, _, deadline in await _run_deadlines(session, versions)), default=None
    )


_RunRow = Row[int, str, str, int, datetime | None]


async def _run_deadlines(
    session: AsyncSession, versions: VersionCache
) -> list[tuple[_RunRow, float, datetime]]:
    """Running runs whose DAG version has a ``dagrun_timeout``: (run, timeout, deadline)."""
    statement = select(
        DagRun.id, DagRun.dag_id, DagRun.run_id, DagRun.version_id, DagRun.start_date
    ).where(DagRun.state == DagRunState.RUNNING, DagRun.start_date.is_not(None))
    rows = (await session.execute(statement)).all()
    if not rows:
        return []
    structures = await versions.get_many(session, {row.version_id for row in rows})
    deadlines = []
    for row in rows:
        timeout = structures[row.version_id].options.get("dagrun_timeout")
        if timeout and row.start_date is not None:
            deadline = row.start_date + timedelta(seconds=float(timeout))
            deadlines.append((row, float(timeout), deadline))
    return deadlines


async def _fail_run(session: AsyncSession, dag_run_id: int, error: str, now: datetime) -> bool:
    """Fail one late run, or nothing if another transaction holds one of its rows.

    Locks are taken in the execution API's order (task instances, then the run) and never waited
    for (``SKIP LOCKED``): a run with a task being reported or scheduled right now stays running
    and is failed at the next pass, so this sweep can take part in no deadlock."""
    unfinished = TaskInstance.dag_run_id == dag_run_id, TaskInstance.state.in_(_UNFINISHED)
    total = await session.scalar(select(func.count()).select_from(TaskInstance).where(*unfinished))
    locked = (
        await session.execute(
            select(TaskInstance.id, TaskInstance.state, TaskInstance.attempt)
            .where(*unfinished)
            .with_for_update(skip_locked=True)
        )
    ).all()
    if len(locked) != total or not await _lock_run(session, dag_run_id):
        return False
    rows = [(row.id, TaskState(row.state), row.attempt) for row in locked]
    await _fail_task_instances(session, rows, error, now)
    return await set_run_state(
        session, dag_run_id, expected=DagRunState.RUNNING, target=DagRunState.FAILED, end_date=now
    )


async def _lock_run(session: AsyncSession, dag_run_id: int) -> bool:
    statement = (
        select(DagRun.id)
        .where(DagRun.id == dag_run_id, DagRun.state == DagRunState.RUNNING)
        .with_for_update(skip_locked=True)
    )
    return (await session.execute(statement)).first() is not None


async def _fail_task_instances(
    session: AsyncSession, rows: list[tuple[int, TaskState, int]], error: str, now: datetime
) -> None:
    """Compare-and-set each unfinished task instance to ``failed``; close running attempts."""
    by_state: dict[TaskState, list[int]] = defaultdict(list)
    for ti_id, state, _ in rows:
        by_state[state].append(ti_id)
    for state, ids in by_state.items():
        await set_task_states(
            session, ids, expected=state, target=TaskState.FAILED, end_date=now,
            lease_expires_at=None, next_retry_at=None,
        )  # fmt: skip
    running = [(ti_id, attempt) for ti_id, state, attempt in rows if state is TaskState.RUNNING]
    await close_attempts(session, running, state=TaskState.FAILED, now=now, error=error)
