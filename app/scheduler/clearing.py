"""Clearing task instances: a user asks for tasks to run again (Airflow's "clear").

A cleared instance goes back to ``none`` by a compare-and-set write and keeps its ``attempt``: the
scheduler's next move to ``scheduled`` makes it ``attempt + 1``, so the old attempts, their logs
and their records stay readable, and a worker still running the old attempt is fenced off (its
heartbeat, log and finish calls name an attempt that is no longer current and get 409). Its
``max_tries`` is raised to ``attempt + retries + 1``, so it gets its full retries again, as in
Airflow, and its XCom is dropped, so nobody reads a result of the run that was cleared.

A mapped task cleared as a whole is collapsed back into its placeholder (``map_index -1``): its
instances above 0 are deleted (with their logs) and instance 0 becomes the placeholder again, so
the scheduler expands it anew from its source's (new) output, to however many elements there are
now (``mapping``). Clearing one instance of a mapped task (``map_index``) only resets that one.

A finished run is reopened (``success|failed → queued``, end date cleared) and every touched run
is flagged for scheduling; the caller wakes the scheduler after the commit.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import DagRun, TaskInstance, XCom
from app.db.transitions import (
    close_attempts,
    flag_runs_for_scheduling,
    set_run_state,
    set_task_state,
)
from app.scheduler.versions import DagStructure
from weir.errors import Conflict, InvalidRequest
from weir.states import FINISHED_DAG_RUN_STATES, DagRunState, TaskState

__all__ = ["ClearRequest", "clear_task_instances", "downstream_closure", "lock_task_instances"]

FAILED_STATES = frozenset({TaskState.FAILED, TaskState.UPSTREAM_FAILED})


@dataclass(frozen=True, slots=True)
class ClearRequest:
    """Which instances of one run to clear. ``task_ids`` None means every task."""

    task_ids: frozenset[str] | None = None
    only_failed: bool = False
    include_downstream: bool = False
    map_index: int | None = None  # one instance of a mapped task; None for all of them
    dry_run: bool = False


def downstream_closure(structure: DagStructure, task_ids: Iterable[str]) -> set[str]:
    """``task_ids`` and every task downstream of them, however far."""
    found: set[str] = set()
    pending = list(task_ids)
    while pending:
        task_id = pending.pop()
        if task_id not in found:
            found.add(task_id)
            pending.extend(structure.downstream_of(task_id))
    return found


async def lock_task_instances(session: AsyncSession, dag_run_id: int) -> list[TaskInstance]:
    """The run's instances, row-locked in id order: the order a worker's finish takes (its task
    instance, then its run), so that a clear or a mark racing a finish waits instead of
    deadlocking. ``populate_existing`` so that the states read are the locked ones."""
    statement = (
        select(TaskInstance)
        .where(TaskInstance.dag_run_id == dag_run_id)
        .order_by(TaskInstance.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return list((await session.scalars(statement)).all())


async def clear_task_instances(
    session: AsyncSession,
    run: DagRun,
    structure: DagStructure,
    request: ClearRequest,
    actor: str,
    now: datetime,
) -> list[TaskInstance]:
    """Clear what ``request`` selects in ``run``; returns the instances cleared (or, with
    ``dry_run``, that would be), as they were before. Unknown task ids are a 422."""
    _check_task_ids(structure, request.task_ids)
    instances = await lock_task_instances(session, run.id)
    plan = _plan(structure, instances, request)
    chosen = [ti for ti, _ in plan if _has_run(ti)]
    if request.dry_run or not chosen:
        return chosen
    before = [_snapshot(ti) for ti in chosen]
    for ti, collapse in plan:
        if collapse and ti.map_index > 0:
            await session.execute(delete(TaskInstance).where(TaskInstance.id == ti.id))
        elif collapse:
            await _reset(session, ti, structure, actor, now, map_index=-1)
        else:
            await _reset(session, ti, structure, actor, now, map_index=ti.map_index)
    await _reopen(session, run)
    return before


def _check_task_ids(structure: DagStructure, task_ids: Collection[str] | None) -> None:
    unknown = sorted(set(task_ids or ()) - structure.tasks.keys())
    if unknown:
        raise InvalidRequest(
            f"The run's DAG version has no task {', '.join(map(repr, unknown))}; it has "
            f"{', '.join(structure.tasks)}.",
            errors=[{"field": "body.task_ids", "message": f"unknown task {t!r}"} for t in unknown],
        )


def _plan(
    structure: DagStructure, instances: list[TaskInstance], request: ClearRequest
) -> list[tuple[TaskInstance, bool]]:
    """``(instance, collapse)`` for each instance to touch. The chosen tasks' instances (only
    the failed ones with ``only_failed``; one map index when given) are reset one by one; a task
    cleared as a whole, or downstream of a chosen one, is taken whole, and a whole mapped task
    that was expanded is collapsed back into its placeholder."""
    wanted = request.task_ids if request.task_ids is not None else structure.tasks.keys()
    per_instance = request.only_failed or request.map_index is not None
    primary = [
        ti
        for ti in instances
        if ti.task_id in wanted
        and (request.map_index is None or ti.map_index == request.map_index)
        and (not request.only_failed or TaskState(ti.state) in FAILED_STATES)
    ]
    whole = set() if per_instance else {ti.task_id for ti in primary}
    if request.include_downstream:
        starts = {ti.task_id for ti in primary}
        whole |= downstream_closure(structure, starts) - starts
    plan = [(ti, False) for ti in primary if ti.task_id not in whole and _has_run(ti)]
    for task_id in whole:
        group = [ti for ti in instances if ti.task_id == task_id]
        expanded = structure.tasks[task_id].mapped is not None and any(
            ti.map_index >= 0 for ti in group
        )
        plan += [(ti, expanded) for ti in group if expanded or _has_run(ti)]
    return plan


def _has_run(ti: TaskInstance) -> bool:
    """Whether clearing changes anything: not a never-started ``none``."""
    return TaskState(ti.state) is not TaskState.NONE


def _snapshot(ti: TaskInstance) -> TaskInstance:
    """A detached copy of the row as it was, for the answer (the ORM object is updated below)."""
    return TaskInstance(**{c.key: getattr(ti, c.key) for c in TaskInstance.__table__.columns})


async def _reset(
    session: AsyncSession,
    ti: TaskInstance,
    structure: DagStructure,
    actor: str,
    now: datetime,
    *,
    map_index: int,
) -> None:
    """One instance back to ``none`` (compare-and-set on its locked state and attempt). A mapped
    instance that is ``none`` already only gets its ``map_index`` back to -1."""
    state = TaskState(ti.state)
    if state is TaskState.NONE:
        await session.execute(
            update(TaskInstance)
            .where(TaskInstance.id == ti.id, TaskInstance.state == TaskState.NONE)
            .values(map_index=map_index)
        )
        return
    retries = structure.tasks[ti.task_id].retries
    moved = await set_task_state(
        session, ti.id, expected=state, target=TaskState.NONE, attempt=ti.attempt,
        map_index=map_index, max_tries=ti.attempt + retries + 1, worker=None, queued_at=None,
        start_date=None, end_date=None, lease_expires_at=None, next_retry_at=None,
        wait_code=None, wait_reason=None,
    )  # fmt: skip
    if not moved:  # the rows are locked: only a bug could get here
        raise Conflict(f"Task {ti.task_id!r} changed while it was being cleared; try again.")
    await session.execute(delete(XCom).where(XCom.task_instance_id == ti.id))
    if state is TaskState.RUNNING:
        error = f"Cleared by {actor} while it ran; its worker's reports are refused."
        await close_attempts(
            session, [(ti.id, ti.attempt)], state=TaskState.FAILED, now=now, error=error
        )


async def _reopen(session: AsyncSession, run: DagRun) -> None:
    """A finished run runs again (``→ queued``, through ``max_active_runs`` like any run)."""
    state = DagRunState(run.state)
    if state in FINISHED_DAG_RUN_STATES:
        await set_run_state(
            session, run.id, expected=state, target=DagRunState.QUEUED, end_date=None
        )
    await flag_runs_for_scheduling(session, [run.id])
