"""Dynamic task mapping: turning a mapped task's placeholder into one task instance per element.

A mapped task (``process.expand(x=upstream())``) gets one placeholder task instance when its run
is created, ``map_index = -1``, because the number of instances is only known once its source
has run. When its trigger rule lets it run, the planner (``progress``) asks for an expansion
instead of scheduling it, and ``expand_mapped_tasks`` reads the list:

- N elements: the placeholder becomes instance 0 (Airflow does the same) and instances 1..N-1 are
  added in state ``none``; the run is flagged, so the next pass schedules them like any task, each
  with its own attempts and retries;
- an empty list, or a source that did not succeed (possible under a lenient trigger rule): the
  placeholder is ``skipped``, as in Airflow, and the skip flows on through the trigger rules;
- anything that is not a list: the placeholder is ``failed``, the reason in its log.

Downstream tasks see a mapped task through ``aggregate_state`` (done when all its instances are
done; failed if any failed) and receive its results as a list ordered by map index
(``load_results``).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import AttemptLog, TaskInstance, XCom
from app.db.transitions import flag_runs_for_scheduling, set_task_state
from app.scheduler.versions import DagStructure, MapSpec
from weir.states import TERMINAL_TASK_STATES, TaskState

__all__ = ["Expansion", "aggregate_state", "expand_mapped_tasks", "load_results", "map_element"]

logger = logging.getLogger(__name__)

# The columns an expanded instance copies from its placeholder: those the run's creation filled in.
_COPIED = (
    "dag_id",
    "run_id",
    "task_id",
    "max_tries",
    "retry_delay",
    "queue",
    "pool",
    "pool_slots",
    "priority_weight",
)


@dataclass(frozen=True, slots=True)
class Expansion:
    """A mapped task's placeholder whose trigger rule is met: to expand in this pass."""

    task_instance_id: int
    dag_run_id: int
    run_id: str
    task_id: str
    structure: DagStructure


def aggregate_state(states: Sequence[TaskState]) -> TaskState:
    """The state downstream tasks see for a task with these instances: not done while one is not
    done; then failed if one failed, else success if one succeeded, else skipped."""
    for state in states:
        if state not in TERMINAL_TASK_STATES:
            return state
    for outcome in (TaskState.FAILED, TaskState.UPSTREAM_FAILED, TaskState.SUCCESS):
        if outcome in states:
            return outcome
    return TaskState.SKIPPED


async def load_results(
    session: AsyncSession, dag_run_id: int, task_ids: Collection[str], structure: DagStructure
) -> dict[str, Any]:
    """The return values of these tasks in one query: a mapped task's as a list ordered by map
    index (``None`` for an instance without a result), any other task's as it is."""
    rows = await session.execute(
        select(TaskInstance.task_id, TaskInstance.map_index, XCom.value)
        .outerjoin(XCom, XCom.task_instance_id == TaskInstance.id)
        .where(TaskInstance.dag_run_id == dag_run_id, TaskInstance.task_id.in_(task_ids))
        .order_by(TaskInstance.task_id, TaskInstance.map_index)
    )
    results: dict[str, Any] = {t: [] for t in task_ids if structure.tasks[t].mapped is not None}
    for row in rows:
        if structure.tasks[row.task_id].mapped is None:
            results[row.task_id] = row.value
        elif row.map_index >= 0:
            results[row.task_id].append(row.value)
    return results


async def map_element(
    session: AsyncSession, dag_run_id: int, structure: DagStructure, spec: MapSpec, index: int
) -> Any:
    """The element a mapped instance receives for its expanded argument."""
    values = spec.literal
    if spec.source is not None:
        values = (await load_results(session, dag_run_id, [spec.source], structure))[spec.source]
    return values[index] if isinstance(values, list) and 0 <= index < len(values) else None


async def expand_mapped_tasks(
    session: AsyncSession, expansions: Sequence[Expansion], now: datetime
) -> None:
    """Expand, skip or fail each placeholder, by what its source returned (module docstring)."""
    for expansion in expansions:
        spec = expansion.structure.tasks[expansion.task_id].mapped
        assert spec is not None  # the planner asks only for mapped tasks
        values, why_not = await _values_to_map(session, expansion, spec)
        if values:
            await _add_instances(session, expansion, len(values))
        elif why_not is None:
            await _end_placeholder(session, expansion, TaskState.SKIPPED, "an empty list", now)
        elif values is not None:
            await _end_placeholder(session, expansion, TaskState.SKIPPED, why_not, now)
        else:
            await _end_placeholder(session, expansion, TaskState.FAILED, why_not, now)


async def _values_to_map(
    session: AsyncSession, expansion: Expansion, spec: MapSpec
) -> tuple[list[Any] | None, str | None]:
    """The list to map over, or why there is none: ``([], reason)`` to skip, ``(None, reason)``
    to fail."""
    if spec.source is None:
        return list(spec.literal or []), None
    if expansion.structure.tasks[spec.source].mapped is not None:
        results = await load_results(
            session, expansion.dag_run_id, [spec.source], expansion.structure
        )
        return list(results[spec.source]), None
    row = (
        await session.execute(
            select(XCom.value).where(
                XCom.dag_run_id == expansion.dag_run_id, XCom.task_id == spec.source
            )
        )
    ).first()
    if row is None:
        return [], f"no result from {spec.source!r}, which did not succeed"
    if not isinstance(row.value, list):
        return None, (
            f"task {spec.source!r} returned {type(row.value).__name__} {row.value!r:.200}, not a "
            f"list; a task that {expansion.task_id!r} expands over must return a list"
        )
    return row.value, None


async def _add_instances(session: AsyncSession, expansion: Expansion, count: int) -> None:
    """Placeholder → instance 0, plus instances 1..count-1; fenced on the placeholder still being
    an unexpanded ``none``, so a second pass cannot expand it twice."""
    moved = await session.execute(
        update(TaskInstance)
        .where(
            TaskInstance.id == expansion.task_instance_id,
            TaskInstance.state == TaskState.NONE,
            TaskInstance.map_index == -1,
        )
        .values(map_index=0)
        .returning(*(getattr(TaskInstance, c) for c in _COPIED))
    )
    placeholder = moved.first()
    if placeholder is None:
        return
    if count > 1:
        common = dict(zip(_COPIED, placeholder, strict=True))
        rows = [
            {**common, "dag_run_id": expansion.dag_run_id, "map_index": index}
            | {"state": TaskState.NONE, "attempt": 0}
            for index in range(1, count)
        ]
        await session.execute(insert(TaskInstance), rows)
    await flag_runs_for_scheduling(session, [expansion.dag_run_id])
    logger.info(
        "dag_id=%s run_id=%s task_id=%s expanded into %d instances",
        expansion.structure.dag_id,
        expansion.run_id,
        expansion.task_id,
        count,
    )


async def _end_placeholder(
    session: AsyncSession, expansion: Expansion, target: TaskState, why: str, now: datetime
) -> None:
    """End a placeholder that has nothing to expand into, saying why in its log (attempt 0)."""
    moved = await set_task_state(
        session, expansion.task_instance_id, expected=TaskState.NONE, target=target, end_date=now
    )
    if not moved:
        return
    message = f"Mapped task {expansion.task_id!r} {target.value}: {why}."
    await session.execute(
        insert(AttemptLog).values(
            task_instance_id=expansion.task_instance_id,
            attempt=0,
            data=f"[weir scheduler] {message}\n",
            created_at=now,
        )
    )
    await flag_runs_for_scheduling(session, [expansion.dag_run_id])
    logger.log(
        logging.WARNING if target is TaskState.FAILED else logging.INFO,
        "dag_id=%s run_id=%s %s",
        expansion.structure.dag_id,
        expansion.run_id,
        message,
    )
