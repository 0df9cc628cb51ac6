"""Advancing flagged DAG runs: decide each waiting task, finish complete runs.

A run is examined only when flagged (``needs_scheduling``), so the scheduler's work follows the
rate of change, not the number of runs. Rows are claimed with ``FOR UPDATE SKIP LOCKED``, so two
replicas never advance the same run at once (invariant 4).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import DagRun, TaskInstance
from app.db.transitions import set_run_state, set_task_states
from app.execution.tokens import AttemptTokens
from app.scheduler.queueing import queue_attempts
from app.scheduler.versions import DagStructure, VersionCache
from weir.states import TERMINAL_TASK_STATES, DagRunState, TaskState
from weir.trigger_rules import Decision, decide

__all__ = ["advance_flagged_runs"]

BATCH = 200


@dataclass
class _Plan:
    """What one pass decided for the waiting tasks of a batch of runs."""

    to_schedule: list[int] = field(default_factory=list)
    to_skip: list[int] = field(default_factory=list)
    to_upstream_fail: list[int] = field(default_factory=list)
    finished: dict[int, DagRunState] = field(default_factory=dict)


async def advance_flagged_runs(
    session: AsyncSession, versions: VersionCache, tokens: AttemptTokens, now: datetime
) -> int:
    """Decide the next move of every waiting task in flagged running runs; returns work done."""
    statement = (
        select(DagRun.id, DagRun.version_id)
        .where(DagRun.needs_scheduling.is_(True), DagRun.state == DagRunState.RUNNING)
        .order_by(DagRun.id)
        .limit(BATCH)
        .with_for_update(skip_locked=True)
    )
    runs = {row.id: row.version_id for row in await session.execute(statement)}
    if not runs:
        return 0
    await session.execute(
        update(DagRun)
        .where(DagRun.id.in_(runs))
        .values(needs_scheduling=False)
        .execution_options(synchronize_session=False)
    )
    structures = await versions.get_many(session, runs.values())
    plan = await _plan(session, runs, structures)
    await _apply(session, plan, tokens, now)
    return len(runs)


async def _plan(
    session: AsyncSession, runs: dict[int, int], structures: dict[int, DagStructure]
) -> _Plan:
    rows = await session.execute(
        select(
            TaskInstance.id, TaskInstance.dag_run_id, TaskInstance.task_id, TaskInstance.state
        ).where(TaskInstance.dag_run_id.in_(runs))
    )
    by_run: dict[int, dict[str, tuple[int, TaskState]]] = defaultdict(dict)
    for row in rows:
        by_run[row.dag_run_id][row.task_id] = (row.id, TaskState(row.state))
    plan = _Plan()
    for run_id, instances in by_run.items():
        _plan_run(structures[runs[run_id]], run_id, instances, plan)
    return plan


def _plan_run(
    structure: DagStructure,
    run_id: int,
    instances: dict[str, tuple[int, TaskState]],
    plan: _Plan,
) -> None:
    """Walk tasks upstream-first so a failure cascades through the whole run in one pass."""
    states = {task_id: state for task_id, (_, state) in instances.items()}
    for task_id, spec in structure.tasks.items():
        if task_id not in instances or states[task_id] is not TaskState.NONE:
            continue
        decision = decide(states.get(up, TaskState.NONE) for up in spec.upstream)
        ti_id = instances[task_id][0]
        if decision is Decision.RUN:
            plan.to_schedule.append(ti_id)
            states[task_id] = TaskState.SCHEDULED
        elif decision is Decision.SKIP:
            plan.to_skip.append(ti_id)
            states[task_id] = TaskState.SKIPPED
        elif decision is Decision.UPSTREAM_FAILED:
            plan.to_upstream_fail.append(ti_id)
            states[task_id] = TaskState.UPSTREAM_FAILED
    if all(state in TERMINAL_TASK_STATES for state in states.values()):
        ok = all(s in (TaskState.SUCCESS, TaskState.SKIPPED) for s in states.values())
        plan.finished[run_id] = DagRunState.SUCCESS if ok else DagRunState.FAILED


async def _apply(session: AsyncSession, plan: _Plan, tokens: AttemptTokens, now: datetime) -> None:
    await set_task_states(
        session, plan.to_skip, expected=TaskState.NONE, target=TaskState.SKIPPED, end_date=now
    )
    await set_task_states(
        session,
        plan.to_upstream_fail,
        expected=TaskState.NONE,
        target=TaskState.UPSTREAM_FAILED,
        end_date=now,
    )
    scheduled = await set_task_states(
        session,
        plan.to_schedule,
        expected=TaskState.NONE,
        target=TaskState.SCHEDULED,
        next_attempt=True,
    )
    await queue_attempts(session, [ti_id for ti_id, _ in scheduled], tokens, now)
    for run_id, state in plan.finished.items():
        await set_run_state(
            session, run_id, expected=DagRunState.RUNNING, target=state, end_date=now
        )
