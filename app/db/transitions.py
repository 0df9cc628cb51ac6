"""Compare-and-set state writes: every task-instance and DAG-run state change is one of these,
and every attempt record is closed here (``close_attempts``). No other module writes a state
(``tests/unit/test_state_writes.py``).

Each write is ``UPDATE … WHERE id = :id AND state = :expected [AND attempt = :attempt]`` and tells
its caller whether it changed a row. A write that matched nothing lost a race or was fenced off: the
caller decides what that means (the execution API answers 409). Helpers never commit.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, bindparam, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from app.db.effects import effects_of
from app.db.models import DagRun, TaskAttempt, TaskInstance
from app.db.statements import prebuilt
from app.live import mark_changed
from weir.states import DagRunState, TaskState, check_transition

__all__ = [
    "close_attempts",
    "flag_runs_for_scheduling",
    "move_task_states",
    "set_attempt_states",
    "set_run_state",
    "set_run_states",
    "set_task_state",
    "set_task_states",
]


async def set_task_state(
    session: AsyncSession,
    task_instance_id: int,
    *,
    expected: TaskState,
    target: TaskState,
    attempt: int | None = None,
    next_attempt: bool = False,
    **values: Any,
) -> bool:
    """Move one task instance from ``expected`` to ``target`` if it is still there (and still at
    ``attempt``, when given); ``next_attempt`` starts the next try. Returns whether it moved."""
    check_transition(expected, target)
    if next_attempt:
        values["attempt"] = TaskInstance.attempt + 1
    statement = (
        update(TaskInstance)
        .where(TaskInstance.id == task_instance_id, TaskInstance.state == expected)
        .values(state=target, **values)
        .returning(TaskInstance.id)
    )
    if attempt is not None:
        statement = statement.where(TaskInstance.attempt == attempt)
    moved = (await session.execute(statement)).first() is not None
    if moved:
        mark_changed(session)
    return moved


async def set_task_states(
    session: AsyncSession,
    task_instance_ids: Sequence[int],
    *,
    expected: TaskState,
    target: TaskState,
    next_attempt: bool = False,
    **values: Any,
) -> list[tuple[int, int]]:
    """Batch form of ``set_task_state`` without the attempt fence (the scheduler's moves).

    ``next_attempt`` increments ``attempt`` (a move to ``scheduled`` starts a new try). Returns
    ``(id, attempt)`` of the rows that moved.
    """
    rows = await move_task_states(
        session,
        task_instance_ids,
        expected=expected,
        target=target,
        returning=(TaskInstance.id, TaskInstance.attempt),
        next_attempt=next_attempt,
        **values,
    )
    return [(row.id, row.attempt) for row in rows]


async def move_task_states(
    session: AsyncSession,
    task_instance_ids: Collection[int],
    *,
    expected: TaskState,
    target: TaskState,
    returning: Sequence[InstrumentedAttribute[Any]],
    next_attempt: bool = False,
    **values: Any,
) -> Sequence[Row[Any]]:
    """``set_task_states`` returning the columns its caller needs of the rows that moved (the
    queueing step reads what a task message carries in the same statement). ``values`` are
    plain values, bound as parameters of a statement built once per shape (``db.statements``)."""
    if not task_instance_ids:
        return []
    check_transition(expected, target)
    names = tuple(sorted(values))
    columns = tuple(column.key for column in returning)

    def build() -> Any:
        sets: dict[str, Any] = _placeholders(names)
        if next_attempt:
            sets["attempt"] = TaskInstance.attempt + 1
        return (
            update(TaskInstance)
            .where(
                TaskInstance.id.in_(bindparam("ids", expanding=True)),
                TaskInstance.state == expected,
            )
            .values(state=target, **sets)
            .returning(*returning)
            .execution_options(synchronize_session=False)
        )

    statement = prebuilt(
        ("move_task_states", expected, target, names, columns, next_attempt), build
    )
    parameters = {"ids": list(task_instance_ids), **_bound(values)}
    moved = (await session.execute(statement, parameters)).all()
    if moved:
        mark_changed(session)
    return moved


def _placeholders(names: Sequence[str]) -> dict[str, Any]:
    """The columns a prebuilt write sets, each bound to a parameter of its own (``_bound``)."""
    return {name: bindparam(f"v_{name}") for name in names}


def _bound(values: dict[str, Any]) -> dict[str, Any]:
    """The parameters that fill ``_placeholders``."""
    return {f"v_{name}": value for name, value in values.items()}


async def set_attempt_states(
    session: AsyncSession,
    attempts: Sequence[tuple[int, int]],
    *,
    expected: TaskState,
    target: TaskState,
    **values: Any,
) -> dict[int, Row[int, int, str]]:
    """Batch form of ``set_task_state`` with the attempt fence: each ``(task instance id,
    attempt)`` moves only if it is still that attempt in ``expected``. One statement for the lot
    (a batch of workers' claims or reports); returns ``id -> (id, dag_run_id, task_id)`` of the
    rows that moved, so the caller answers each item on its own and needs no second read."""
    if not attempts:
        return {}
    check_transition(expected, target)
    names = tuple(sorted(values))

    def build() -> Any:
        return (
            update(TaskInstance)
            .where(
                tuple_(TaskInstance.id, TaskInstance.attempt).in_(
                    bindparam("attempts", expanding=True)
                ),
                TaskInstance.state == expected,
            )
            .values(state=target, **_placeholders(names))
            .returning(TaskInstance.id, TaskInstance.dag_run_id, TaskInstance.task_id)
            .execution_options(synchronize_session=False)
        )

    statement = prebuilt(("set_attempt_states", expected, target, names), build)
    parameters = {"attempts": list(attempts), **_bound(values)}
    moved = {row.id: row for row in await session.execute(statement, parameters)}
    if moved:
        mark_changed(session)
    return moved


async def set_run_state(
    session: AsyncSession,
    dag_run_id: int,
    *,
    expected: DagRunState,
    target: DagRunState,
    **values: Any,
) -> bool:
    """Move one DAG run from ``expected`` to ``target`` if it is still there."""
    check_transition(expected, target)
    statement = (
        update(DagRun)
        .where(DagRun.id == dag_run_id, DagRun.state == expected)
        .values(state=target, **values)
        .returning(DagRun.id)
        .execution_options(synchronize_session=False)
    )
    changed = (await session.execute(statement)).first() is not None
    if changed:
        mark_changed(session)
    if changed and target in (DagRunState.SUCCESS, DagRunState.FAILED):
        effects_of(session).finished_runs[dag_run_id] = target
    return changed


async def set_run_states(
    session: AsyncSession,
    dag_run_ids: Sequence[int],
    *,
    expected: DagRunState,
    target: DagRunState,
    **values: Any,
) -> list[int]:
    """Batch form of ``set_run_state`` (the scheduler's starts). Returns the ids that moved."""
    if not dag_run_ids:
        return []
    check_transition(expected, target)
    statement = (
        update(DagRun)
        .where(DagRun.id.in_(dag_run_ids), DagRun.state == expected)
        .values(state=target, **values)
        .returning(DagRun.id)
        .execution_options(synchronize_session=False)
    )
    moved = list((await session.scalars(statement)).all())
    if moved:
        mark_changed(session)
    if target in (DagRunState.SUCCESS, DagRunState.FAILED):
        effects_of(session).finished_runs.update(dict.fromkeys(moved, target))
    return moved


async def close_attempts(
    session: AsyncSession,
    attempts: Sequence[tuple[int, int]],
    *,
    state: TaskState,
    now: datetime,
    error: str | None = None,
) -> None:
    """End the records of these ``(task instance id, attempt)``: the one place an attempt is
    closed, however it ended (its worker's report, a lost lease, a sensor's reschedule, a
    user's mark or clear, a run's timeout). ``state`` is how the attempt ended, which is not
    always where its instance went (a lost attempt ends ``up_for_retry`` while its instance is
    scheduled again). The caller has already moved the instances, fenced on these attempts."""
    if not attempts:
        return
    statement = prebuilt(
        "close_attempts",
        lambda: (
            update(TaskAttempt)
            .where(
                tuple_(TaskAttempt.task_instance_id, TaskAttempt.attempt).in_(
                    bindparam("attempts", expanding=True)
                )
            )
            .values(state=bindparam("state"), end_date=bindparam("now"), error=bindparam("error"))
            .execution_options(synchronize_session=False)
        ),
    )
    await session.execute(
        statement, {"attempts": list(attempts), "state": state, "now": now, "error": error}
    )


async def flag_runs_for_scheduling(session: AsyncSession, dag_run_ids: Sequence[int]) -> None:
    """Ask the scheduler to look at these runs again (something in them changed)."""
    if dag_run_ids:
        await session.execute(
            update(DagRun)
            .where(DagRun.id.in_(set(dag_run_ids)), DagRun.needs_scheduling.is_(False))
            .values(needs_scheduling=True)
            .execution_options(synchronize_session=False)
        )
