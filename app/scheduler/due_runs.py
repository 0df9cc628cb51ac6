"""Scheduled runs: create the runs a DAG's schedule makes due, and keep its next one planned.

Each DAG row carries its next scheduled interval (``Dag.next_*``, computed by ``weir.schedule``),
so finding due work is one indexed query and the scheduler can sleep until exactly the earliest
``next_run_after`` (no polling). Replicas claim due DAGs with ``FOR UPDATE SKIP LOCKED``; the
partial unique index on ``(dag_id, logical_date)`` of scheduled runs is the backstop, so a run a
stale plan asks for twice is created once and the plan simply moves on.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import Dag, DagRun
from app.scheduler.dag_runs import RunRequest, create_run
from app.scheduler.versions import VersionCache
from weir.errors import Conflict
from weir.schedule import Interval, latest_interval, next_interval

__all__ = ["create_due_runs", "next_due_at", "plan_next_run"]

log = logging.getLogger(__name__)

DAGS_PER_PASS = 50
RUNS_PER_DAG = 100  # a long catch-up continues in the next pass instead of one huge transaction


async def create_due_runs(session: AsyncSession, versions: VersionCache, now: datetime) -> int:
    """Create the scheduled runs due at ``now`` for active, unpaused DAGs; returns the number of
    intervals handled (created, or found already created by another replica)."""
    due = (
        select(Dag)
        .where(Dag.is_active, Dag.is_paused.is_(False), Dag.next_run_after <= now)
        .order_by(Dag.next_run_after, Dag.dag_id)
        .limit(DAGS_PER_PASS)
        .with_for_update(skip_locked=True)
    )
    handled = 0
    for dag in (await session.scalars(due)).all():
        options = (await versions.get(session, dag.version_id)).options
        handled += await _create_runs_of(session, dag, options, versions, now)
    return handled


async def next_due_at(session: AsyncSession) -> datetime | None:
    """When the earliest planned scheduled run falls due: the scheduler's wake-up time."""
    statement = select(func.min(Dag.next_run_after)).where(Dag.is_active, Dag.is_paused.is_(False))
    earliest: datetime | None = await session.scalar(statement)
    return earliest


async def plan_next_run(
    session: AsyncSession, dag_id: str, options: Mapping[str, Any], now: datetime
) -> Interval | None:
    """Recompute a DAG's next interval from its history and ``now`` (after a new schedule, or an
    unpause): it follows the last scheduled run, or is the latest complete interval without
    catchup, so neither a new schedule nor a long pause floods the DAG with runs."""
    last_end = await session.scalar(
        select(func.max(DagRun.data_interval_end)).where(
            DagRun.dag_id == dag_id, DagRun.run_type == "scheduled"
        )
    )
    interval = next_interval(options, last_end, now, bool(options.get("catchup")))
    await session.execute(update(Dag).where(Dag.dag_id == dag_id).values(**_next_values(interval)))
    return interval


async def _create_runs_of(
    session: AsyncSession,
    dag: Dag,
    options: Mapping[str, Any],
    versions: VersionCache,
    now: datetime,
) -> int:
    catchup = bool(options.get("catchup"))
    interval = _planned(dag)
    handled = 0
    while interval is not None and interval.run_after <= now and handled < RUNS_PER_DAG:
        if not catchup:  # the plan may be old (a stopped scheduler): only the latest counts
            latest = latest_interval(options, now)
            if latest is not None and latest.start > interval.start:
                interval = latest
        await _create_scheduled_run(session, dag.dag_id, interval, versions, now)
        handled += 1
        interval = next_interval(options, interval.end, now, catchup)
    for name, value in _next_values(interval).items():
        setattr(dag, name, value)
    return handled


async def _create_scheduled_run(
    session: AsyncSession, dag_id: str, interval: Interval, versions: VersionCache, now: datetime
) -> None:
    request = RunRequest(
        dag_id=dag_id,
        run_type="scheduled",
        run_id=f"scheduled__{interval.logical_date.isoformat()}",
        logical_date=interval.logical_date,
        data_interval_start=interval.start,
        data_interval_end=interval.end,
    )
    try:
        await create_run(session, request, versions, now)
    except Conflict:  # another replica (or a backfill) made this interval's run: nothing to do
        log.debug("dag %s: the run of %s exists already", dag_id, interval.logical_date)
        return
    log.info("dag %s: created scheduled run of %s", dag_id, interval.logical_date.isoformat())


def _planned(dag: Dag) -> Interval | None:
    start, end, after = dag.next_data_interval_start, dag.next_data_interval_end, dag.next_run_after
    if start is None or end is None or after is None:
        return None
    return Interval(start, end, after)


def _next_values(interval: Interval | None) -> dict[str, datetime | None]:
    return {
        "next_logical_date": interval.logical_date if interval else None,
        "next_data_interval_start": interval.start if interval else None,
        "next_data_interval_end": interval.end if interval else None,
        "next_run_after": interval.run_after if interval else None,
    }
