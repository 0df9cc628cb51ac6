"""What the execution API does for workers: claim, heartbeat, log, finish, release.

Each function is one business operation in the caller's transaction; each is fenced on
``(task_instance_id, attempt)`` and raises ``Conflict`` when the attempt is no longer current.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, insert, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import AttemptLog, DagRun, TaskAttempt, TaskInstance
from app.db.transitions import set_task_state
from app.live import LOG, mark_changed
from app.scheduler.mapping import load_results, map_element
from app.scheduler.outcomes import (
    load_task_instance,
    record_failure,
    record_lost,
    record_success,
)
from app.scheduler.versions import DagStructure, TaskSpec, VersionCache
from weir.errors import Conflict, NotFound
from weir.messages import (
    ClaimAccepted,
    ClaimRequest,
    FinishRequest,
    HeartbeatAccepted,
    LogAppend,
    TaskKind,
)
from weir.params import merge_params
from weir.states import TaskState
from weir.task import MAP_ELEMENT_INPUT

__all__ = [
    "append_log",
    "claim_attempt",
    "finish_attempt",
    "release_attempt",
    "renew_lease",
    "renew_leases",
]


def _stale(ti_id: int, attempt: int, doing: str) -> Conflict:
    return Conflict(
        f"Attempt {attempt} of task instance {ti_id} cannot {doing}: it is not the current "
        "attempt in the expected state (another worker claimed it, it was cleared, or it lapsed)."
    )


async def claim_attempt(
    session: AsyncSession,
    ti_id: int,
    body: ClaimRequest,
    versions: VersionCache,
    now: datetime,
    *,
    lease_seconds: float,
    heartbeat_interval: float,
) -> ClaimAccepted:
    moved = await set_task_state(
        session,
        ti_id,
        expected=TaskState.QUEUED,
        target=TaskState.RUNNING,
        attempt=body.attempt,
        worker=body.worker,
        start_date=now,
        end_date=None,
        lease_expires_at=now + timedelta(seconds=lease_seconds),
    )
    if moved:
        await session.execute(
            insert(TaskAttempt).values(
                task_instance_id=ti_id,
                attempt=body.attempt,
                state=TaskState.RUNNING,
                worker=body.worker,
                start_date=now,
            )
        )
    ti = await session.get(TaskInstance, ti_id)
    if ti is None:  # 404: the worker dead-letters the message, it can never be claimed
        raise NotFound(f"Task instance {ti_id} does not exist (its run was deleted?).")
    if not (moved or _is_own_claim(ti, body)):
        raise _stale(ti_id, body.attempt, "be claimed")
    run = await session.get_one(DagRun, ti.dag_run_id)
    structure = await versions.get(session, run.version_id)
    spec = structure.tasks[ti.task_id]
    inputs = await _load_inputs(session, run.id, structure, spec, ti.map_index)
    return ClaimAccepted(
        task_instance_id=ti_id,
        attempt=body.attempt,
        dag_id=ti.dag_id,
        run_id=ti.run_id,
        task_id=ti.task_id,
        fileloc=structure.fileloc,
        file_hash=structure.file_hash,
        kind=TaskKind(spec.kind),
        inputs=inputs,
        conf=run.conf,
        params=merge_params(structure.options.get("params") or {}, run.conf),
        logical_date=run.logical_date,
        data_interval_start=run.data_interval_start,
        data_interval_end=run.data_interval_end,
        map_index=ti.map_index,
        timeout=spec.timeout,
        heartbeat_interval=heartbeat_interval,
        lease_seconds=lease_seconds,
    )


async def _load_inputs(
    session: AsyncSession, dag_run_id: int, structure: DagStructure, spec: TaskSpec, map_index: int
) -> dict[str, Any]:
    """The upstream results the task takes (a mapped upstream's as a list by map index), and for
    a mapped instance its element under ``MAP_ELEMENT_INPUT``."""
    inputs = await load_results(session, dag_run_id, spec.inputs, structure) if spec.inputs else {}
    if spec.mapped is not None and map_index >= 0:
        element = await map_element(session, dag_run_id, structure, spec.mapped, map_index)
        inputs[MAP_ELEMENT_INPUT] = element
    return inputs


def _is_own_claim(ti: TaskInstance, body: ClaimRequest) -> bool:
    """A worker whose claim answer was lost retries it: the same worker gets the same answer."""
    return ti.state == TaskState.RUNNING and ti.attempt == body.attempt and ti.worker == body.worker


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


async def append_log(session: AsyncSession, ti_id: int, body: LogAppend, now: datetime) -> None:
    current = await session.execute(
        select(TaskInstance.id).where(
            TaskInstance.id == ti_id,
            TaskInstance.attempt == body.attempt,
            TaskInstance.state == TaskState.RUNNING,
        )
    )
    if current.first() is None:
        raise _stale(ti_id, body.attempt, "append to its log")
    await session.execute(
        insert(AttemptLog).values(
            task_instance_id=ti_id, attempt=body.attempt, data=body.data, created_at=now
        )
    )
    mark_changed(session, LOG)  # wakes the dashboard's log streams, not every live page


async def finish_attempt(
    session: AsyncSession, ti_id: int, body: FinishRequest, versions: VersionCache, now: datetime
) -> TaskState:
    ti = await load_task_instance(session, ti_id)
    if ti is None:
        raise _stale(ti_id, body.attempt, "finish")
    outcome: TaskState | None = TaskState.SUCCESS
    if body.state == "success":
        if not await record_success(session, ti, body.attempt, body.result, now):
            outcome = None
    elif body.state == "interrupted":
        reason = body.error or "The worker stopped while the attempt was running."
        outcome = await record_lost(session, ti, body.attempt, reason, now, max_lost=None)
    else:
        outcome = await record_failure(session, ti, body.attempt, body.error, now, versions)
    if outcome is None:
        raise _stale(ti_id, body.attempt, "finish")
    if body.log:
        await session.execute(
            insert(AttemptLog).values(
                task_instance_id=ti_id, attempt=body.attempt, data=body.log, created_at=now
            )
        )
    return outcome


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
