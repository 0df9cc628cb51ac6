"""Advancing flagged DAG runs: decide each waiting task, finish complete runs.

Each waiting task is decided by its trigger rule (``weir.trigger_rules``) over its upstreams'
states, unless a succeeded branch task upstream of it did not choose it (``branches``): then it is
skipped. Tasks are walked upstream-first and each decision updates the states the next one reads,
so a skip or a failure reaches the end of the DAG in one pass, not one pass per level.

A run is examined only when flagged (``needs_scheduling``), so the scheduler's work follows the
rate of change, not the number of runs. Rows are claimed with ``FOR UPDATE SKIP LOCKED``, so two
replicas never advance the same run at once (invariant 4).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import DagRun, TaskInstance
from app.db.transitions import set_run_state, set_task_states
from app.execution.tokens import AttemptTokens
from app.scheduler.branches import (
    InvalidBranch,
    fail_invalid_branches,
    load_choices,
    read_choice,
)
from app.scheduler.queueing import queue_attempts
from app.scheduler.versions import DagStructure, VersionCache
from weir.states import TERMINAL_TASK_STATES, DagRunState, TaskState
from weir.trigger_rules import Decision, decide

__all__ = ["advance_flagged_runs"]

BATCH = 200


@dataclass(frozen=True, slots=True)
class _Run:
    id: int
    run_id: str
    structure: DagStructure


@dataclass(frozen=True, slots=True)
class _Instance:
    id: int
    state: TaskState
    attempt: int


@dataclass
class _Plan:
    """What one pass decided for the waiting tasks of a batch of runs."""

    to_schedule: list[int] = field(default_factory=list)
    to_skip: list[int] = field(default_factory=list)
    to_upstream_fail: list[int] = field(default_factory=list)
    invalid_branches: list[InvalidBranch] = field(default_factory=list)
    finished: dict[int, DagRunState] = field(default_factory=dict)

    def add(self, decision: Decision, ti_id: int) -> TaskState:
        """Record a decision for one waiting task; returns the state it will be in."""
        if decision is Decision.RUN:
            self.to_schedule.append(ti_id)
            return TaskState.SCHEDULED
        if decision is Decision.SKIP:
            self.to_skip.append(ti_id)
            return TaskState.SKIPPED
        if decision is Decision.UPSTREAM_FAILED:
            self.to_upstream_fail.append(ti_id)
            return TaskState.UPSTREAM_FAILED
        return TaskState.NONE


async def advance_flagged_runs(
    session: AsyncSession, versions: VersionCache, tokens: AttemptTokens, now: datetime
) -> int:
    """Decide the next move of every waiting task in flagged running runs; returns work done."""
    statement = (
        select(DagRun.id, DagRun.run_id, DagRun.version_id)
        .where(DagRun.needs_scheduling.is_(True), DagRun.state == DagRunState.RUNNING)
        .order_by(DagRun.id)
        .limit(BATCH)
        .with_for_update(skip_locked=True)
    )
    rows = (await session.execute(statement)).all()
    if not rows:
        return 0
    await session.execute(
        update(DagRun)
        .where(DagRun.id.in_([row.id for row in rows]))
        .values(needs_scheduling=False)
        .execution_options(synchronize_session=False)
    )
    structures = await versions.get_many(session, {row.version_id for row in rows})
    runs = {row.id: _Run(row.id, row.run_id, structures[row.version_id]) for row in rows}
    plan = await _plan(session, runs)
    await _apply(session, plan, tokens, now)
    return len(runs)


async def _plan(session: AsyncSession, runs: dict[int, _Run]) -> _Plan:
    rows = await session.execute(
        select(
            TaskInstance.id,
            TaskInstance.dag_run_id,
            TaskInstance.task_id,
            TaskInstance.state,
            TaskInstance.attempt,
        ).where(TaskInstance.dag_run_id.in_(runs))
    )
    by_run: dict[int, dict[str, _Instance]] = defaultdict(dict)
    for row in rows:
        by_run[row.dag_run_id][row.task_id] = _Instance(row.id, TaskState(row.state), row.attempt)
    choices = await load_choices(
        session,
        [ti_id for run_id, tis in by_run.items() for ti_id in _open_branches(runs[run_id], tis)],
    )
    plan = _Plan()
    for run_id, instances in by_run.items():
        _plan_run(runs[run_id], instances, choices, plan)
    return plan


def _open_branches(run: _Run, instances: dict[str, _Instance]) -> list[int]:
    """Succeeded branch tasks with a direct downstream task still waiting: the ones whose choice
    this pass needs (once their downstream tasks are decided, their choice is never read again)."""
    return [
        instance.id
        for task_id, instance in instances.items()
        if instance.state is TaskState.SUCCESS
        and run.structure.tasks[task_id].branch
        and any(
            instances[down].state is TaskState.NONE
            for down in run.structure.downstream_of(task_id)
            if down in instances
        )
    ]


def _plan_run(
    run: _Run, instances: dict[str, _Instance], choices: dict[int, Any], plan: _Plan
) -> None:
    """Walk tasks upstream-first, updating the states in memory, so that a failure or a skip
    cascades through the whole run in one pass."""
    states = {task_id: instance.state for task_id, instance in instances.items()}
    not_followed: set[str] = set()
    for task_id, spec in run.structure.tasks.items():
        instance = instances.get(task_id)
        if instance is None:
            continue
        if instance.id in choices:
            choice = read_choice(run.structure, task_id, choices[instance.id])
            if choice.error is None:
                not_followed |= choice.skip
            else:
                plan.invalid_branches.append(_invalid(run, task_id, instance, choice.error))
                states[task_id] = TaskState.FAILED
        elif instance.state is TaskState.NONE:
            if task_id in not_followed:
                decision = Decision.SKIP
            else:
                decision = decide(
                    spec.trigger_rule, [states.get(up, TaskState.NONE) for up in spec.upstream]
                )
            states[task_id] = plan.add(decision, instance.id)
    _finish_if_done(run, states, plan)


def _invalid(run: _Run, task_id: str, instance: _Instance, error: str) -> InvalidBranch:
    dag_id, run_id = run.structure.dag_id, run.run_id
    return InvalidBranch(instance.id, instance.attempt, dag_id, run_id, task_id, error)


def _finish_if_done(run: _Run, states: dict[str, TaskState], plan: _Plan) -> None:
    """A run whose tasks are all terminal ends: success only if none failed. Unlike Airflow, which
    looks at the leaf tasks only, a failure stays a failure even when an ``all_done`` cleanup or a
    ``one_failed`` alert after it succeeded."""
    if all(state in TERMINAL_TASK_STATES for state in states.values()):
        ok = all(s in (TaskState.SUCCESS, TaskState.SKIPPED) for s in states.values())
        plan.finished[run.id] = DagRunState.SUCCESS if ok else DagRunState.FAILED


async def _apply(session: AsyncSession, plan: _Plan, tokens: AttemptTokens, now: datetime) -> None:
    await fail_invalid_branches(session, plan.invalid_branches, now)
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
