"""Backfills: run a DAG over a past range, as an object of its own (docs/scheduling/backfills.md).

A backfill creates, at once and queued, one ``backfill`` run per interval of the DAG's schedule
whose logical date lies in ``[start, end]`` and is complete by now, skipping logical dates that
already have a run of any type (the partial unique index on scheduled and backfill runs is the
backstop against a scheduler creating the same interval concurrently). Its runs count against the
backfill's own ``max_active_runs`` (``run_starts.py``), so it and the schedule cannot starve each
other. Only a ``running`` backfill has that budget: pausing holds its queued runs, cancelling
deletes them, and runs already running finish either way. A scheduler step marks a backfill
``completed`` once none of its runs is queued or running.

Why cancelling deletes the runs that never started, where Airflow marks them failed: nothing of
them ran, so nothing failed. A failed run calls the DAG's ``on_failure`` and is sent to the
failure notifier; a cancelled backfill of three hundred days would page three hundred times for
a decision its operator made. Deleted, they leave no trace to explain, and the same range can be
backfilled again once the reason for cancelling is fixed (a failed run would be skipped).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import delete, exists, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import Backfill, Dag, DagRun
from app.scheduler.dag_runs import RunRequest, create_run
from app.scheduler.versions import VersionCache
from weir.errors import Conflict, InvalidRequest, NotFound
from weir.schedule import Interval, next_interval, wall_to_utc, zone
from weir.states import DagRunState

__all__ = [
    "MAX_INTERVALS",
    "BackfillRequest",
    "BackfillState",
    "backfill_intervals",
    "backfill_progress",
    "cancel_backfill",
    "complete_finished_backfills",
    "create_backfill",
    "pause_backfill",
    "resume_backfill",
]

MAX_INTERVALS = 10_000  # one transaction creates them all: above this, split the range
UNFINISHED = (DagRunState.QUEUED, DagRunState.RUNNING)


class BackfillState(StrEnum):
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class BackfillRequest:
    dag_id: str
    start: datetime  # naive: a wall time of the DAG's timezone, as ``start_date`` is
    end: datetime
    max_active_runs: int = 4
    conf: dict[str, Any] | None = None


def backfill_intervals(
    options: Mapping[str, Any], start: datetime, end: datetime, now: datetime
) -> list[Interval]:
    """The schedule's intervals with a logical date in ``[start, end]`` (aware), complete at
    ``now`` and within the DAG's ``start_date``/``end_date``: what a backfill may run."""
    lower = start
    if options.get("start_date") is not None:  # the first interval of the schedule bounds it
        first = next_interval(options, None, now, catchup=True)
        if first is None:
            return []
        lower = max(lower, first.start)
    intervals: list[Interval] = []
    interval = next_interval(options, lower, now, catchup=True)
    while interval is not None and interval.start <= end and interval.end <= now:
        if intervals and interval.start <= intervals[-1].start:
            break  # the series ended: ``next_interval`` fell back to an earlier one
        if len(intervals) == MAX_INTERVALS:
            raise InvalidRequest(
                f"the range holds more than {MAX_INTERVALS} intervals: split it into backfills "
                "of fewer intervals each."
            )
        intervals.append(interval)
        interval = next_interval(options, interval.end, now, catchup=True)
    return intervals


async def create_backfill(
    session: AsyncSession, request: BackfillRequest, versions: VersionCache, now: datetime
) -> tuple[Backfill, int]:
    """Create the backfill and its queued runs in the caller's transaction.

    Returns ``(backfill, skipped)``: how many intervals of the range already had a run.
    """
    dag = await session.get(Dag, request.dag_id)
    if dag is None:
        raise NotFound(f"DAG {request.dag_id!r} does not exist.")
    options = (await versions.get(session, dag.version_id)).options
    start, end = (_aware(moment, options) for moment in (request.start, request.end))
    if start > end:
        raise InvalidRequest(f"start {start.isoformat()} is after end {end.isoformat()}.")
    intervals = backfill_intervals(options, start, end, now)
    if not intervals:
        raise InvalidRequest(
            f"DAG {dag.dag_id!r} has no complete interval of its schedule "
            f"({options.get('schedule') or 'manual only'}) with a logical date in "
            f"[{start.isoformat()}, {end.isoformat()}]."
        )
    backfill = Backfill(
        dag_id=dag.dag_id,
        from_date=start,
        to_date=end,
        max_active_runs=request.max_active_runs,
        state=BackfillState.RUNNING,
        conf=request.conf or {},
        created_at=now,
    )
    session.add(backfill)
    await session.flush()
    skipped = await _create_runs(session, backfill, intervals, versions, now)
    if skipped == len(intervals):
        backfill.state, backfill.completed_at = BackfillState.COMPLETED, now
    return backfill, skipped


async def _create_runs(
    session: AsyncSession,
    backfill: Backfill,
    intervals: Sequence[Interval],
    versions: VersionCache,
    now: datetime,
) -> int:
    """One queued run per interval whose logical date has no run yet; returns how many had."""
    taken = set(
        (
            await session.scalars(
                select(DagRun.logical_date).where(
                    DagRun.dag_id == backfill.dag_id,
                    DagRun.logical_date.between(intervals[0].start, intervals[-1].start),
                )
            )
        ).all()
    )
    skipped = 0
    for interval in intervals:
        if interval.logical_date in taken:
            skipped += 1
            continue
        request = RunRequest(
            dag_id=backfill.dag_id,
            run_type="backfill",
            conf=backfill.conf,
            run_id=f"backfill__{interval.logical_date.isoformat()}",
            logical_date=interval.logical_date,
            data_interval_start=interval.start,
            data_interval_end=interval.end,
            backfill_id=backfill.id,
        )
        try:
            await create_run(session, request, versions, now)
        except Conflict:  # the scheduler created this interval's run meanwhile
            skipped += 1
    return skipped


def _aware(moment: datetime, options: Mapping[str, Any]) -> datetime:
    if moment.tzinfo is not None:
        return moment
    return wall_to_utc(moment, zone(options.get("timezone") or "UTC"))


async def pause_backfill(session: AsyncSession, backfill_id: int, now: datetime) -> Backfill:
    """Hold the backfill's queued runs; its running runs finish."""
    return await _move(session, backfill_id, (BackfillState.RUNNING,), BackfillState.PAUSED, now)


async def resume_backfill(session: AsyncSession, backfill_id: int, now: datetime) -> Backfill:
    """Give a paused backfill its budget back (the caller wakes the scheduler)."""
    return await _move(session, backfill_id, (BackfillState.PAUSED,), BackfillState.RUNNING, now)


async def cancel_backfill(
    session: AsyncSession, backfill_id: int, now: datetime
) -> tuple[Backfill, int]:
    """Delete the runs that have not started (see the module's docstring); running runs finish.

    Returns the backfill and how many runs were deleted. A run the scheduler is starting at this
    moment holds its row lock: the delete waits for it, then finds it running and leaves it.
    Task instances of a queued run are all ``none``, with nothing queued or logged: they go with
    the run (``ON DELETE CASCADE``).
    """
    backfill = await _move(
        session,
        backfill_id,
        (BackfillState.RUNNING, BackfillState.PAUSED),
        BackfillState.CANCELLED,
        now,
    )
    deleted = await session.execute(
        delete(DagRun)
        .where(DagRun.backfill_id == backfill_id, DagRun.state == DagRunState.QUEUED)
        .returning(DagRun.id)
        .execution_options(synchronize_session=False)
    )
    return backfill, len(deleted.all())


async def _move(
    session: AsyncSession,
    backfill_id: int,
    expected: tuple[BackfillState, ...],
    target: BackfillState,
    now: datetime,
) -> Backfill:
    """Compare-and-set the state, so two callers cannot both pause or cancel it."""
    ending = target in (BackfillState.COMPLETED, BackfillState.CANCELLED)
    moved = await session.scalar(
        update(Backfill)
        .where(Backfill.id == backfill_id, Backfill.state.in_(expected))
        .values(state=target, completed_at=now if ending else None)
        .returning(Backfill.id)
    )
    backfill = await session.get(Backfill, backfill_id, populate_existing=True)
    if backfill is None:
        raise NotFound(f"backfill {backfill_id} does not exist.")
    if moved is None:
        raise Conflict(
            f"backfill {backfill_id} is {backfill.state}: only a "
            f"{' or '.join(expected)} backfill can become {target}."
        )
    return backfill


async def backfill_progress(
    session: AsyncSession, backfill_ids: Sequence[int]
) -> dict[int, dict[str, int]]:
    """How many runs of each backfill are in each run state."""
    counts: dict[int, dict[str, int]] = {b: {} for b in backfill_ids}
    rows = await session.execute(
        select(DagRun.backfill_id, DagRun.state, func.count())
        .where(DagRun.backfill_id.in_(list(backfill_ids)))
        .group_by(DagRun.backfill_id, DagRun.state)
    )
    for backfill_id, state, count in rows:
        if backfill_id is not None:
            counts[backfill_id][str(state)] = int(count)
    return counts


async def complete_finished_backfills(session: AsyncSession, now: datetime) -> int:
    """Scheduler step: ``running`` or ``paused`` backfills with no run left to finish become
    ``completed``; returns how many did."""
    unfinished = exists().where(DagRun.backfill_id == Backfill.id, DagRun.state.in_(UNFINISHED))
    result = await session.execute(
        update(Backfill)
        .where(Backfill.state.in_((BackfillState.RUNNING, BackfillState.PAUSED)), ~unfinished)
        .values(state=BackfillState.COMPLETED, completed_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
