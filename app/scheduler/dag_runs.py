"""Creating DAG runs and their task instances."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import Dag, DagRun, TaskInstance
from app.live import mark_changed
from app.scheduler.versions import VersionCache
from weir.errors import Conflict, InvalidRequest, NotFound
from weir.states import DagRunState, TaskState

__all__ = ["RunRequest", "create_run"]


@dataclass(frozen=True)
class RunRequest:
    dag_id: str
    run_type: str = "manual"
    conf: dict[str, Any] | None = None
    run_id: str | None = None
    logical_date: datetime | None = None
    idempotency_key: str | None = None
    # A scheduled run's interval; a run without one covers its logical date alone (see
    # ``weir.schedule.manual_interval``).
    data_interval_start: datetime | None = None
    data_interval_end: datetime | None = None
    backfill_id: int | None = None  # the backfill that made the run, whose budget it counts in


async def create_run(
    session: AsyncSession, request: RunRequest, versions: VersionCache, now: datetime
) -> tuple[DagRun, bool]:
    """Create a queued run with one task instance per task, in the caller's transaction.

    Returns ``(run, created)``: with an idempotency key already used, the existing run and False.
    """
    dag = await session.get(Dag, request.dag_id)
    if dag is None:
        raise NotFound(f"DAG {request.dag_id!r} does not exist.")
    if not dag.is_active:
        raise InvalidRequest(f"DAG {request.dag_id!r} is inactive: its file is gone.")
    if request.idempotency_key is not None:
        existing = await _find_by_idempotency_key(session, request.dag_id, request.idempotency_key)
        if existing is not None:
            return existing, False
    logical_date = request.logical_date or now
    run = DagRun(
        dag_id=dag.dag_id,
        run_id=request.run_id or f"{request.run_type}__{now.isoformat()}__{uuid.uuid4().hex[:8]}",
        version_id=dag.version_id,
        state=DagRunState.QUEUED,
        run_type=request.run_type,
        logical_date=logical_date,
        data_interval_start=request.data_interval_start or logical_date,
        data_interval_end=request.data_interval_end or logical_date,
        conf=request.conf or {},
        backfill_id=request.backfill_id,
        idempotency_key=request.idempotency_key,
        created_at=now,
        needs_scheduling=True,
    )
    try:
        async with session.begin_nested():
            session.add(run)
            await session.flush()
            mark_changed(session)
    except IntegrityError as error:
        raise Conflict(
            f"DAG {dag.dag_id!r} already has a run with id {run.run_id!r} or that idempotency key."
        ) from error
    await _create_task_instances(session, run, versions)
    return run, True


async def _find_by_idempotency_key(session: AsyncSession, dag_id: str, key: str) -> DagRun | None:
    statement = select(DagRun).where(DagRun.dag_id == dag_id, DagRun.idempotency_key == key)
    return (await session.scalars(statement)).first()


async def _create_task_instances(
    session: AsyncSession, run: DagRun, versions: VersionCache
) -> None:
    structure = await versions.get(session, run.version_id)
    rows = [
        {
            "dag_run_id": run.id,
            "dag_id": run.dag_id,
            "run_id": run.run_id,
            "task_id": spec.task_id,
            "state": TaskState.NONE,
            "attempt": 0,
            "max_tries": spec.retries + 1,
            "retry_delay": spec.retry_delay,
            "queue": spec.queue,
            "pool": spec.pool,
            "pool_slots": spec.pool_slots,
            "priority_weight": spec.priority_weight,
        }
        for spec in structure.tasks.values()
    ]
    await session.execute(insert(TaskInstance), rows)
