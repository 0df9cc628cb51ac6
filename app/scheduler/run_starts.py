"""Starting DAG runs: ``queued -> running`` when the DAG is unpaused and has room for another
active run (``max_active_runs``). Capacity rules for runs live here."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import Dag, DagRun
from weir.states import DagRunState

__all__ = ["start_queued_runs"]

BATCH = 200


async def start_queued_runs(session: AsyncSession, now: datetime) -> int:
    """``queued -> running`` for runs of unpaused DAGs (issue 3 adds max_active_runs here)."""
    statement = (
        select(DagRun.id)
        .join(Dag, Dag.dag_id == DagRun.dag_id)
        .where(DagRun.state == DagRunState.QUEUED, Dag.is_paused.is_(False))
        .order_by(DagRun.id)
        .limit(BATCH)
        .with_for_update(of=DagRun, skip_locked=True)
    )
    ids = list((await session.scalars(statement)).all())
    if ids:
        await session.execute(
            update(DagRun)
            .where(DagRun.id.in_(ids), DagRun.state == DagRunState.QUEUED)
            .values(state=DagRunState.RUNNING, start_date=now, needs_scheduling=True)
            .execution_options(synchronize_session=False)
        )
    return len(ids)
