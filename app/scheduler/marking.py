"""Marking: a user sets a task instance, or a whole run, to ``success`` or ``failed``.

Every change is a compare-and-set write on the instance's locked state and attempt. A running
attempt that is marked ends there: its record is closed with the mark as its state, and its
worker's later heartbeat, log or finish names a state that is no longer current and is refused
with 409 (the worker then stops it). Marked instances keep their attempt: they never ran again.

Manual marks run no DAG callback and no failure notifier, as in Airflow: those report what a
run did, not what somebody decided about it.

- A task marked in a running run: the run is flagged, so the scheduler moves on from it (a task
  marked success lets its downstream tasks run).
- A task marked in a finished run: the run's state is worked out again from its instances
  (success when none failed), without running anything.
- A run marked: its unfinished instances take the mark, the finished ones keep their state, and
  the run ends in the mark's state.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import DagRun, TaskInstance
from app.db.transitions import (
    close_attempts,
    flag_runs_for_scheduling,
    set_run_state,
    set_task_state,
)
from app.scheduler.clearing import downstream_closure, lock_task_instances
from app.scheduler.versions import DagStructure
from weir.errors import Conflict
from weir.states import FINISHED_DAG_RUN_STATES, TERMINAL_TASK_STATES, DagRunState, TaskState

__all__ = ["MARKS", "mark_run", "mark_task"]

MARKS = frozenset({TaskState.SUCCESS, TaskState.FAILED})
_OK = frozenset({TaskState.SUCCESS, TaskState.SKIPPED})


async def mark_task(
    session: AsyncSession,
    run: DagRun,
    structure: DagStructure,
    task_id: str,
    *,
    target: TaskState,
    map_index: int | None,
    include_downstream: bool,
    actor: str,
    now: datetime,
) -> list[tuple[TaskInstance, TaskState]]:
    """Mark ``task_id``'s instances (one, with ``map_index``) and, optionally, every instance
    downstream of it; returns those that changed, each with the state it had."""
    instances = await lock_task_instances(session, run.id)
    below = downstream_closure(structure, [task_id]) if include_downstream else {task_id}
    chosen = [
        ti
        for ti in instances
        if (ti.task_id == task_id and map_index in (None, ti.map_index))
        or (ti.task_id in below and ti.task_id != task_id)
    ]
    changed = await _mark_instances(session, chosen, target, actor, now)
    state = DagRunState(run.state)
    if state in FINISHED_DAG_RUN_STATES:
        await _settle_finished_run(session, run.id, state, instances, now)
    else:
        await flag_runs_for_scheduling(session, [run.id])
    return changed


async def mark_run(
    session: AsyncSession, run: DagRun, *, target: DagRunState, actor: str, now: datetime
) -> list[tuple[TaskInstance, TaskState]]:
    """End ``run`` in ``target``: its unfinished instances take the same state."""
    instances = await lock_task_instances(session, run.id)
    unfinished = [ti for ti in instances if TaskState(ti.state) not in TERMINAL_TASK_STATES]
    changed = await _mark_instances(session, unfinished, TaskState(target.value), actor, now)
    state = DagRunState(run.state)
    if state is not target:
        values = {"end_date": now} | ({} if run.start_date else {"start_date": now})
        if not await set_run_state(session, run.id, expected=state, target=target, **values):
            raise Conflict(f"Run {run.run_id!r} changed while it was being marked; try again.")
    return changed


async def _mark_instances(
    session: AsyncSession,
    instances: Sequence[TaskInstance],
    target: TaskState,
    actor: str,
    now: datetime,
) -> list[tuple[TaskInstance, TaskState]]:
    changed = []
    for ti in instances:
        state = TaskState(ti.state)
        if state is target:
            continue
        moved = await set_task_state(
            session, ti.id, expected=state, target=target, attempt=ti.attempt, end_date=now,
            lease_expires_at=None, next_retry_at=None, wait_code=None, wait_reason=None,
        )  # fmt: skip
        if not moved:  # the rows are locked: only a bug could get here
            raise Conflict(f"Task {ti.task_id!r} changed while it was being marked; try again.")
        if state is TaskState.RUNNING:
            error = f"Marked {target} by {actor} while it ran; its worker's reports are refused."
            await close_attempts(session, [(ti.id, ti.attempt)], state=target, now=now, error=error)
        changed.append((ti, state))
    return changed


async def _settle_finished_run(
    session: AsyncSession,
    dag_run_id: int,
    state: DagRunState,
    instances: Sequence[TaskInstance],
    now: datetime,
) -> None:
    """A finished run whose instances were re-marked ends in the state they now add up to."""
    ok = all(TaskState(ti.state) in _OK for ti in instances)
    outcome = DagRunState.SUCCESS if ok else DagRunState.FAILED
    if outcome is not state:
        await set_run_state(session, dag_run_id, expected=state, target=outcome, end_date=now)
