"""Advancing runs after reported successes, touching only what those successes can change.

A task's success can change the decision of its direct downstream tasks and nothing else (its
frontier), and those decisions read only the frontier's upstreams. So a report reads the frontier
tasks and their upstreams, never the whole run: a hop of a chain of 1,000 reads two rows, and the
join of a 10,000-task fan-out is decided from one row per task state, found by index probes
(``_present_states``). Trigger rules only ask whether a state is present among the upstreams (see
``weir.trigger_rules``), never how many times, which is what makes the probes enough.

What this path does not decide it hands to the full pass (``progress.advance_runs``) in the same
transaction: a run someone else flagged since (a clear, a mark: changes this path cannot see), a
frontier with a branch or mapped task in it, and any decision to skip or fail a task (it cascades
further down than the frontier). Those are rare next to successes, and the full pass costs what it
cost before.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import BindParameter, Select, and_, bindparam, exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import DagRun, TaskInstance
from app.db.statements import prebuilt
from app.db.transitions import flag_runs_for_scheduling
from app.scheduler.progress import Advanced, Plan, advance_runs, apply_plan
from app.scheduler.versions import DagStructure, VersionCache
from weir.states import TERMINAL_TASK_STATES, DagRunState, TaskState
from weir.trigger_rules import Decision, decide

__all__ = ["advance_reported"]

FEW_UPSTREAMS = 16
"""Up to this many upstreams are read row by row; more are probed by state (``_present_states``)."""


@dataclass(frozen=True, slots=True)
class _Run:
    id: int
    structure: DagStructure
    frontier: tuple[str, ...]  # direct downstreams of the tasks that succeeded


@dataclass
class _Reads:
    """What one statement read for a batch of runs: the frontier tasks' instances and their
    upstreams' states, by run and task."""

    ids: dict[tuple[int, str], int] = field(default_factory=dict)
    states: dict[tuple[int, str], TaskState] = field(default_factory=dict)


async def advance_reported(
    session: AsyncSession,
    versions: VersionCache,
    now: datetime,
    succeeded: Mapping[int, Collection[str]],
) -> Advanced:
    """Advance the runs in which these tasks (by run id) just succeeded, in the reporting
    transaction. Like ``advance_runs(end_runs=False)``, a run whose tasks are all done is left
    flagged for the scheduler to end; the tasks scheduled are for the caller to queue."""
    locked = await _lock(session, versions, succeeded)
    if not locked:
        return Advanced(0, 0)
    runs = [run for run, flagged in locked if not flagged and _incremental(run)]
    full = [run.id for run, _ in locked if run not in runs]
    plan = Plan()
    handed, waiting = await _plan(session, runs, plan)
    full += handed
    done = await _finished(
        session, [r.id for r in runs if r.id not in full and r.id not in waiting]
    )
    await flag_runs_for_scheduling(session, done)
    scheduled = await apply_plan(session, plan, now)
    if not full:
        return Advanced(len(locked), len(done), scheduled)
    await flag_runs_for_scheduling(session, full)
    rest = await advance_runs(session, versions, now, run_ids=full, end_runs=False)
    return Advanced(len(locked), len(done) + rest.ending, scheduled + rest.scheduled)


async def _lock(
    session: AsyncSession, versions: VersionCache, succeeded: Mapping[int, Collection[str]]
) -> list[tuple[_Run, bool]]:
    """Lock the running runs in id order, with whether something else flagged them for a full
    look since they were last advanced. ``FOR NO KEY UPDATE``, the lock an ``UPDATE`` of the run
    takes: a plain ``FOR UPDATE`` would also wait for the key-share locks that inserting a
    result (its foreign key to the run) takes, and two reports of one run would deadlock."""
    statement = prebuilt(
        "frontier.lock",
        lambda: (
            select(DagRun.id, DagRun.version_id, DagRun.needs_scheduling)
            .where(
                DagRun.id.in_(bindparam("runs", expanding=True)),
                DagRun.state == DagRunState.RUNNING,
            )
            .order_by(DagRun.id)
            .with_for_update(key_share=True)
        ),
    )
    rows = (await session.execute(statement, {"runs": list(succeeded)})).all()
    structures = await versions.get_many(session, {row.version_id for row in rows})
    locked = []
    for row in rows:
        structure = structures[row.version_id]
        frontier = {d for t in succeeded[row.id] for d in structure.downstream.get(t, ())}
        ordered = tuple(sorted(frontier, key=structure.position.__getitem__))
        locked.append((_Run(row.id, structure, ordered), bool(row.needs_scheduling)))
    return locked


def _incremental(run: _Run) -> bool:
    """Whether this path can decide the run's frontier: no mapped task in it and no branch or
    mapped task among its upstreams (their choices and aggregates are the full pass's)."""
    return run.structure.aggregating.isdisjoint(run.frontier)


async def _plan(session: AsyncSession, runs: list[_Run], plan: Plan) -> tuple[list[int], set[int]]:
    """Decide each run's waiting frontier tasks into ``plan``. Returns the runs to hand to the
    full pass instead (a decision that cascades; theirs are left out of ``plan``), and the runs
    with a frontier task still waiting or just scheduled (they cannot have finished)."""
    reads = await _read(session, runs)
    handed: list[int] = []
    waiting: set[int] = set()
    for run in runs:
        decisions: list[tuple[int, Decision]] = []
        for task_id in run.frontier:
            key = (run.id, task_id)
            if key in reads.ids and reads.states[key] is TaskState.NONE:
                decisions.append((reads.ids[key], await _decide(session, run, task_id, reads)))
        if any(d in (Decision.SKIP, Decision.UPSTREAM_FAILED) for _, d in decisions):
            handed.append(run.id)
        elif decisions:
            waiting.add(run.id)
            for ti_id, decision in decisions:
                plan.add(decision, ti_id)
    return handed, waiting


async def _read(session: AsyncSession, runs: list[_Run]) -> _Reads:
    """One statement: the frontier tasks' instances and the states of their few upstreams (a
    task with many upstreams is probed by ``_present_states`` instead)."""
    reads = _Reads()
    wanted = {
        (run.id, t)
        for run in runs
        for task_id in run.frontier
        for t in _row_read(run.structure, task_id)
    }
    if not wanted:
        return reads
    ti = TaskInstance
    statement = prebuilt(
        "frontier.read",
        lambda: select(ti.id, ti.dag_run_id, ti.task_id, ti.state).where(
            ti.dag_run_id.in_(bindparam("runs", expanding=True)),
            ti.task_id.in_(bindparam("tasks", expanding=True)),
        ),
    )
    runs_read = list({run_id for run_id, _ in wanted})
    tasks_read = list({task_id for _, task_id in wanted})
    rows = await session.execute(statement, {"runs": runs_read, "tasks": tasks_read})
    for ti_id, run_id, task_id, state in rows:
        if (run_id, task_id) in wanted:
            reads.ids[(run_id, task_id)] = ti_id
            reads.states[(run_id, task_id)] = TaskState(state)
    return reads


def _row_read(structure: DagStructure, task_id: str) -> tuple[str, ...]:
    """The tasks read row by row for deciding ``task_id``: itself, and its upstreams if few."""
    upstream = structure.tasks[task_id].upstream
    return (task_id, *upstream) if len(upstream) <= FEW_UPSTREAMS else (task_id,)


async def _decide(session: AsyncSession, run: _Run, task_id: str, reads: _Reads) -> Decision:
    spec = run.structure.tasks[task_id]
    if len(spec.upstream) <= FEW_UPSTREAMS:
        states = [reads.states.get((run.id, up), TaskState.NONE) for up in spec.upstream]
    else:
        states = await _present_states(session, run, task_id)
    return decide(spec.trigger_rule, states)


async def _present_states(session: AsyncSession, run: _Run, task_id: str) -> list[TaskState]:
    """The states present among the instances of ``task_id``'s upstreams, one index probe per
    state on ``(dag_run_id, state)``. The upstreams are named by whichever list is shorter:
    themselves, or the run's other tasks (a join over a whole fan-out names two, not 10,000)."""
    upstream = run.structure.tasks[task_id].upstream
    others = run.structure.not_upstream_of(task_id)
    by_others = len(others) < len(upstream)
    statement = prebuilt(("frontier.present", by_others), lambda: _probes(by_others))
    named = list(others if by_others else upstream)
    row = (await session.execute(statement, {"run": run.id, "tasks": named})).one()
    return [state for state, present in zip(TaskState, row, strict=True) if present]


def _probes(by_others: bool) -> Any:
    """One ``EXISTS`` per state over the instances of the tasks bound as ``tasks`` (or of every
    task but those, ``by_others``) in the run bound as ``run``."""
    ti = TaskInstance
    tasks: BindParameter[str] = bindparam("tasks", expanding=True)
    among = ti.task_id.not_in(tasks) if by_others else ti.task_id.in_(tasks)
    return select(
        *(
            exists()
            .where(and_(ti.dag_run_id == bindparam("run"), ti.state == state, among))
            .label(state.value)
            for state in TaskState
        )
    )


async def _finished(session: AsyncSession, run_ids: list[int]) -> list[int]:
    """Those of these runs with no instance left that is not done: one index probe on
    ``(dag_run_id, state)`` per open state and run."""
    if not run_ids:
        return []
    statement = prebuilt("frontier.finished", _still_open_runs)
    rows = await session.execute(statement, {"runs": run_ids})
    return [row.id for row in rows]


def _still_open_runs() -> Select[Any]:
    ti = TaskInstance
    open_states = [s for s in TaskState if s not in TERMINAL_TASK_STATES]
    still_open = select(ti.id).where(ti.dag_run_id == DagRun.id, ti.state.in_(open_states))
    return select(DagRun.id).where(
        DagRun.id.in_(bindparam("runs", expanding=True)), ~still_open.exists()
    )
