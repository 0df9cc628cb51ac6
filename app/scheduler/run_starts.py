"""Starting DAG runs: ``queued -> running`` when the DAG is unpaused and has room for another
active run. Capacity rules for runs live here.

A DAG's runs share ``max_active_runs`` (of the DAG's current version: lowering it in the file
takes effect for runs already queued). A backfill's runs count apart, against the backfill's own
``max_active_runs``, so scheduled runs and a backfill cannot starve each other; only a running
backfill has a budget (``backfills.py``: pausing one holds its queued runs). Within a budget the
oldest queued run starts first. Queued runs have no wait columns: the API explains them through
their tasks (``reasons.py``).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import Backfill, Dag, DagRun, DagVersion
from app.db.transitions import set_run_states
from app.scheduler.capacity import dag_option, lock_capacity
from weir.states import DagRunState

__all__ = ["DEFAULT_MAX_ACTIVE_RUNS", "active_runs", "max_active_runs", "start_queued_runs"]

BATCH = 200
DEFAULT_MAX_ACTIVE_RUNS = 16

# A budget: ("dag", dag_id) for a DAG's own runs, ("backfill", "<id>") for a backfill's.
Budget = tuple[str, str]


async def start_queued_runs(session: AsyncSession, now: datetime) -> int:
    """``queued -> running`` for the oldest queued runs of unpaused DAGs with room."""
    dags = list(
        (
            await session.scalars(
                select(DagRun.dag_id)
                .join(Dag, Dag.dag_id == DagRun.dag_id)
                .where(DagRun.state == DagRunState.QUEUED, Dag.is_paused.is_(False))
                .group_by(DagRun.dag_id)
                .order_by(func.min(DagRun.id))
                .limit(BATCH)
            )
        ).all()
    )
    if not dags:
        return 0
    # The same per-DAG lock as queueing takes: two replicas cannot both see the last free run.
    await lock_capacity(session, (), dags)
    room = await _room(session, dags)
    ids = await _oldest_with_room(session, dags, room)
    await set_run_states(
        session,
        ids,
        expected=DagRunState.QUEUED,
        target=DagRunState.RUNNING,
        start_date=now,
        needs_scheduling=True,
    )
    return len(ids)


def _budget(dag_id: str, backfill_id: int | None) -> Budget:
    return ("dag", dag_id) if backfill_id is None else ("backfill", str(backfill_id))


async def max_active_runs(session: AsyncSession, dags: Iterable[str]) -> dict[str, int]:
    """Each DAG's ``max_active_runs``, from its current version."""
    rows = await session.execute(
        select(Dag.dag_id, dag_option("max_active_runs", DEFAULT_MAX_ACTIVE_RUNS))
        .join(DagVersion, DagVersion.id == Dag.version_id)
        .where(Dag.dag_id.in_(list(dags)))
    )
    return {dag_id: int(limit) for dag_id, limit in rows}


async def active_runs(session: AsyncSession, dags: Iterable[str]) -> dict[Budget, int]:
    """Running runs per budget of these DAGs."""
    rows = await session.execute(
        select(DagRun.dag_id, DagRun.backfill_id, func.count())
        .where(DagRun.state == DagRunState.RUNNING, DagRun.dag_id.in_(list(dags)))
        .group_by(DagRun.dag_id, DagRun.backfill_id)
    )
    return {_budget(d, b): int(n) for d, b, n in rows}


async def _room(session: AsyncSession, dags: list[str]) -> dict[Budget, int]:
    """How many more runs each budget may start now."""
    limits: dict[Budget, int] = {
        ("dag", d): n for d, n in (await max_active_runs(session, dags)).items()
    }
    backfills = await session.execute(
        select(Backfill.id, Backfill.max_active_runs).where(
            Backfill.dag_id.in_(dags), Backfill.state == "running"
        )
    )  # a paused, cancelled or completed backfill has no budget: its queued runs stay queued
    limits.update({("backfill", str(b)): n for b, n in backfills})
    active = await active_runs(session, dags)
    return {budget: limit - active.get(budget, 0) for budget, limit in limits.items()}


async def _oldest_with_room(
    session: AsyncSession, dags: list[str], room: dict[Budget, int]
) -> list[int]:
    """The oldest queued runs of each budget, as many as it has room for, locked.

    Runs are ranked per budget in SQL, so a DAG with many queued runs and no room does not fill
    the batch and hold back other DAGs' runs.
    """
    widest = max((n for n in room.values() if n > 0), default=0)
    if widest == 0:
        return []
    rank = (
        func.row_number()
        .over(partition_by=(DagRun.dag_id, DagRun.backfill_id), order_by=DagRun.id)
        .label("rank")
    )
    ranked = (
        select(DagRun.id, DagRun.dag_id, DagRun.backfill_id, rank)
        .where(DagRun.state == DagRunState.QUEUED, DagRun.dag_id.in_(dags))
        .subquery()
    )
    rows = await session.execute(
        select(ranked.c.id, ranked.c.dag_id, ranked.c.backfill_id, ranked.c.rank)
        .where(ranked.c.rank <= widest)
        .order_by(ranked.c.id)
    )
    wanted = [r.id for r in rows if r.rank <= room.get(_budget(r.dag_id, r.backfill_id), 0)][:BATCH]
    if not wanted:
        return []
    locked = await session.scalars(
        select(DagRun.id)
        .where(and_(DagRun.id.in_(wanted), DagRun.state == DagRunState.QUEUED))
        .order_by(DagRun.id)
        .with_for_update(skip_locked=True)
    )
    return list(locked.all())
