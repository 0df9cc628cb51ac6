"""Advancing flagged DAG runs: decide each waiting task, finish complete runs.

Each waiting task is decided by its trigger rule (``weir.trigger_rules``) over its upstreams'
states, unless a succeeded branch task upstream of it did not choose it (``branches``): then it is
skipped. Tasks are walked upstream-first and each decision updates the states the next one reads,
so a skip or a failure reaches the end of the DAG in one pass, not one pass per level.

A mapped task has several instances (``mapping``): its downstream tasks read their aggregate
state, and a mapped task whose rule is met while it still has only its placeholder is expanded,
not scheduled; the next pass schedules its instances.

A run is examined only when flagged (``needs_scheduling``), so the scheduler's work follows the
rate of change, not the number of runs. Rows are claimed with ``FOR UPDATE SKIP LOCKED``, so two
replicas never advance the same run at once (invariant 4).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, union_all, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import DagRun, TaskInstance
from app.db.transitions import flag_runs_for_scheduling, set_run_state, set_task_states
from app.scheduler.branches import (
    InvalidBranch,
    fail_invalid_branches,
    load_choices,
    read_choice,
)
from app.scheduler.mapping import Expansion, aggregate_state, expand_mapped_tasks
from app.scheduler.versions import DagStructure, VersionCache
from weir.states import TERMINAL_TASK_STATES, DagRunState, TaskState
from weir.trigger_rules import Decision, decide

__all__ = ["Advanced", "Plan", "advance_runs", "apply_plan"]

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
    map_index: int


@dataclass
class Plan:
    """What one pass decided for the waiting tasks of a batch of runs."""

    to_schedule: list[int] = field(default_factory=list)
    to_skip: list[int] = field(default_factory=list)
    to_upstream_fail: list[int] = field(default_factory=list)
    invalid_branches: list[InvalidBranch] = field(default_factory=list)
    to_expand: list[Expansion] = field(default_factory=list)
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


@dataclass(frozen=True, slots=True)
class Advanced:
    advanced: int  # runs looked at
    ending: int  # runs left flagged for the scheduler to end (``end_runs=False``)
    scheduled: list[int] = field(default_factory=list)  # for the caller to queue


async def advance_runs(
    session: AsyncSession,
    versions: VersionCache,
    now: datetime,
    *,
    run_ids: Collection[int] | None = None,
    end_runs: bool = True,
) -> Advanced:
    """Advance flagged running runs (only ``run_ids`` when given: the runs a batch of reports
    just flagged, advanced in the same transaction). ``end_runs=False`` leaves a run whose tasks
    are all done flagged instead of ending it: what follows a run's end (DAG callbacks, failure
    notifications, backfills, the next queued run) is the scheduler's. The tasks it schedules
    are for the caller to queue (``Advanced.scheduled``)."""
    statement = (
        select(DagRun.id, DagRun.run_id, DagRun.version_id)
        .where(DagRun.needs_scheduling.is_(True), DagRun.state == DagRunState.RUNNING)
        .order_by(DagRun.id)
        .limit(BATCH)
        .with_for_update(skip_locked=True, key_share=True)  # FOR NO KEY UPDATE: see ``frontier``
    )
    if run_ids is not None:
        statement = statement.where(DagRun.id.in_(run_ids))
    rows = (await session.execute(statement)).all()
    if not rows:
        return Advanced(0, 0)
    await session.execute(
        update(DagRun)
        .where(DagRun.id.in_([row.id for row in rows]))
        .values(needs_scheduling=False)
        .execution_options(synchronize_session=False)
    )
    structures = await versions.get_many(session, {row.version_id for row in rows})
    runs = {row.id: _Run(row.id, row.run_id, structures[row.version_id]) for row in rows}
    plan = await _plan(session, runs)
    ending = len(plan.finished)
    if not end_runs and plan.finished:
        await flag_runs_for_scheduling(session, list(plan.finished))
        plan.finished = {}
    scheduled = await apply_plan(session, plan, now)
    return Advanced(len(runs), ending if not end_runs else 0, scheduled)


async def _plan(session: AsyncSession, runs: dict[int, _Run]) -> Plan:
    """Plan from what deciding needs: every waiting instance, and for the others one row per
    task and state (what trigger rules, branches and the run's end read). A fan-out of 10,000
    then costs Python a few rows per pass, not 10,000: PostgreSQL does the counting."""
    ti = TaskInstance
    waiting = select(ti.id, ti.dag_run_id, ti.task_id, ti.state, ti.attempt, ti.map_index).where(
        ti.dag_run_id.in_(runs), ti.state == TaskState.NONE
    )
    others = (
        select(
            func.min(ti.id),
            ti.dag_run_id,
            ti.task_id,
            ti.state,
            func.min(ti.attempt),
            func.min(ti.map_index),
        )
        .where(ti.dag_run_id.in_(runs), ti.state != TaskState.NONE)
        .group_by(ti.dag_run_id, ti.task_id, ti.state)
    )
    rows = await session.execute(union_all(waiting, others))
    by_run: dict[int, dict[str, list[_Instance]]] = defaultdict(lambda: defaultdict(list))
    for row_id, run_id, task_id, state, attempt, map_index in rows:
        instance = _Instance(row_id, TaskState(state), attempt, map_index)
        by_run[run_id][task_id].append(instance)
    for instances in by_run.values():
        for group in instances.values():
            group.sort(key=lambda instance: instance.map_index)
    choices = await load_choices(
        session,
        [ti_id for run_id, tis in by_run.items() for ti_id in _open_branches(runs[run_id], tis)],
    )
    plan = Plan()
    for run_id, instances in by_run.items():
        _plan_run(runs[run_id], instances, choices, plan)
    return plan


def _open_branches(run: _Run, instances: dict[str, list[_Instance]]) -> list[int]:
    """Succeeded branch tasks with a direct downstream task still waiting: the ones whose choice
    this pass needs (once their downstream tasks are decided, their choice is never read again).
    A branch task is never mapped, so it has one instance."""
    return [
        group[0].id
        for task_id, group in instances.items()
        if group[0].state is TaskState.SUCCESS
        and run.structure.tasks[task_id].branch
        and any(
            instance.state is TaskState.NONE
            for down in run.structure.downstream_of(task_id)
            for instance in instances.get(down, [])
        )
    ]


def _plan_run(
    run: _Run, instances: dict[str, list[_Instance]], choices: dict[int, Any], plan: Plan
) -> None:
    """Walk tasks upstream-first, updating the states in memory, so that a failure or a skip
    cascades through the whole run in one pass."""
    states = {task_id: aggregate_state([i.state for i in g]) for task_id, g in instances.items()}
    not_followed: set[str] = set()
    for task_id in run.structure.tasks:
        group = instances.get(task_id)
        if not group:
            continue
        if group[0].id in choices:
            choice = read_choice(run.structure, task_id, choices[group[0].id])
            if choice.error is None:
                not_followed |= choice.skip
            else:
                plan.invalid_branches.append(_invalid(run, task_id, group[0], choice.error))
                states[task_id] = TaskState.FAILED
        elif any(instance.state is TaskState.NONE for instance in group):
            states[task_id] = _plan_task(run, task_id, group, states, task_id in not_followed, plan)
    _finish_if_done(run, states, plan)


def _plan_task(
    run: _Run,
    task_id: str,
    group: list[_Instance],
    states: dict[str, TaskState],
    not_followed: bool,
    plan: Plan,
) -> TaskState:
    """Decide a task's waiting instances; returns the task's state as its downstreams see it."""
    spec = run.structure.tasks[task_id]
    if not_followed:
        decision = Decision.SKIP
    else:
        decision = decide(
            spec.trigger_rule, [states.get(up, TaskState.NONE) for up in spec.upstream]
        )
    if decision is Decision.RUN and spec.mapped is not None and group[0].map_index == -1:
        plan.to_expand.append(Expansion(group[0].id, run.id, run.run_id, task_id, run.structure))
        return TaskState.NONE
    return aggregate_state(
        [plan.add(decision, i.id) if i.state is TaskState.NONE else i.state for i in group]
    )


def _invalid(run: _Run, task_id: str, instance: _Instance, error: str) -> InvalidBranch:
    """The branch task to fail, with what the user needs to read about it."""
    dag_id, run_id = run.structure.dag_id, run.run_id
    return InvalidBranch(instance.id, instance.attempt, dag_id, run_id, task_id, error)


def _finish_if_done(run: _Run, states: dict[str, TaskState], plan: Plan) -> None:
    """A run whose tasks are all terminal ends: success only if none failed. Unlike Airflow, which
    looks at the leaf tasks only, a failure stays a failure even when an ``all_done`` cleanup or a
    ``one_failed`` alert after it succeeded."""
    if all(state in TERMINAL_TASK_STATES for state in states.values()):
        ok = all(s in (TaskState.SUCCESS, TaskState.SKIPPED) for s in states.values())
        plan.finished[run.id] = DagRunState.SUCCESS if ok else DagRunState.FAILED


async def apply_plan(session: AsyncSession, plan: Plan, now: datetime) -> list[int]:
    """Write the plan; returns the task instances it scheduled (the caller queues them with
    ``queue_scheduled``, in the same transaction)."""
    await fail_invalid_branches(session, plan.invalid_branches, now)
    await expand_mapped_tasks(session, plan.to_expand, now)
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
    for run_id, state in plan.finished.items():
        await set_run_state(
            session, run_id, expected=DagRunState.RUNNING, target=state, end_date=now
        )
    return [ti_id for ti_id, _ in scheduled]
