"""How an attempt ends: reported by its worker, or failed as a zombie when its lease lapses.

Both paths use these functions, so a zombie (or a task its worker stopped at its ``timeout``) is
retried exactly like a task that raised, with the backoff of ``weir.retries``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import DagRun, TaskAttempt, TaskInstance, XCom
from app.db.transitions import flag_runs_for_scheduling, set_task_state
from app.scheduler.versions import VersionCache
from weir.retries import retry_delay_for
from weir.states import TaskState

__all__ = ["record_failure", "record_success"]


async def record_success(
    session: AsyncSession, ti: TaskInstance, attempt: int, result: Any, now: datetime
) -> bool:
    """``running -> success`` for ``attempt``; stores the return value. False if fenced off."""
    moved = await set_task_state(
        session,
        ti.id,
        expected=TaskState.RUNNING,
        target=TaskState.SUCCESS,
        attempt=attempt,
        end_date=now,
        lease_expires_at=None,
    )
    if not moved:
        return False
    await session.execute(delete(XCom).where(XCom.task_instance_id == ti.id))
    await session.execute(
        insert(XCom).values(
            task_instance_id=ti.id, dag_run_id=ti.dag_run_id, task_id=ti.task_id, value=result
        )
    )
    await _close_attempt(session, ti.id, attempt, TaskState.SUCCESS, now, None)
    await flag_runs_for_scheduling(session, [ti.dag_run_id])
    return True


async def record_failure(
    session: AsyncSession,
    ti: TaskInstance,
    attempt: int,
    error: str | None,
    now: datetime,
    versions: VersionCache,
) -> TaskState | None:
    """``running -> up_for_retry`` while tries remain, else ``-> failed``. None if fenced off."""
    retry = attempt < ti.max_tries
    target = TaskState.UP_FOR_RETRY if retry else TaskState.FAILED
    values: dict[str, Any] = {"end_date": now, "lease_expires_at": None}
    if retry:
        delay = await _retry_delay(session, ti, attempt, versions)
        values["next_retry_at"] = now + timedelta(seconds=delay)
    moved = await set_task_state(
        session, ti.id, expected=TaskState.RUNNING, target=target, attempt=attempt, **values
    )
    if not moved:
        return None
    await _close_attempt(session, ti.id, attempt, target, now, error)
    if not retry:
        await flag_runs_for_scheduling(session, [ti.dag_run_id])
    return target


async def _retry_delay(
    session: AsyncSession, ti: TaskInstance, attempt: int, versions: VersionCache
) -> float:
    """The backoff after ``attempt``, from the options of the version the run was created with
    (the row keeps only the base delay; the exponential options live in the version)."""
    version_id = (
        await session.execute(select(DagRun.version_id).where(DagRun.id == ti.dag_run_id))
    ).scalar_one()
    spec = (await versions.get(session, version_id)).tasks.get(ti.task_id)
    if spec is None:  # versions never lose a task of their runs; stay lenient all the same
        return ti.retry_delay
    return retry_delay_for(
        attempt, ti.retry_delay, spec.retry_exponential_backoff, spec.max_retry_delay
    )


async def load_task_instance(session: AsyncSession, task_instance_id: int) -> TaskInstance | None:
    return (
        await session.scalars(select(TaskInstance).where(TaskInstance.id == task_instance_id))
    ).first()


async def _close_attempt(
    session: AsyncSession,
    ti_id: int,
    attempt: int,
    state: TaskState,
    now: datetime,
    error: str | None,
) -> None:
    await session.execute(
        update(TaskAttempt)
        .where(TaskAttempt.task_instance_id == ti_id, TaskAttempt.attempt == attempt)
        .values(state=state, end_date=now, error=error)
    )
