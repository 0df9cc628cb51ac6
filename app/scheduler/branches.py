"""Branching: which direct downstream tasks a succeeded ``@task.branch`` task does not follow.

A branch task returns the task id, or list of task ids, to follow; its worker stores that as the
task's XCom like any return value. The worker does not know the DAG's shape, so the scheduler
reads the choice when it plans the branch's downstream tasks, as Airflow's ``skip_all_except``
does when its branch operator ends:

- the direct downstream tasks it names are followed; the others are skipped, whatever their
  trigger rule, and the skip flows on through the trigger rules of the tasks after them;
- a direct downstream task that is also downstream of a followed task is followed too, so the
  "empty branch" shape ``branch >> [work, join]; work >> join`` keeps its join;
- ``None`` or an empty list follows nothing: every direct downstream task is skipped;
- anything else (an id that is not a direct downstream task, a value that is not a task id or a
  list of them) is a bug in the DAG: the branch task itself is marked failed, with the reason in
  its log and its attempt's error, and its downstream tasks follow their rules from there
  (``upstream_failed`` for ``all_success``). Airflow fails the branch task too; it does so
  inside the task, which here cannot see the DAG.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import AttemptLog, XCom
from app.db.transitions import close_attempts, set_task_state
from app.scheduler.versions import DagStructure
from weir.states import TaskState

__all__ = ["BranchChoice", "InvalidBranch", "fail_invalid_branches", "load_choices", "read_choice"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BranchChoice:
    """What a branch's return value means: the direct downstream tasks to skip, or why it is
    invalid (then ``skip`` is empty and the branch task fails)."""

    skip: frozenset[str]
    error: str | None = None


@dataclass(frozen=True, slots=True)
class InvalidBranch:
    """A succeeded branch task whose choice is invalid, to be marked failed."""

    task_instance_id: int
    attempt: int
    dag_id: str
    run_id: str
    task_id: str
    message: str


def read_choice(structure: DagStructure, branch_id: str, value: Any) -> BranchChoice:
    """Interpret the return value of branch task ``branch_id``. Pure."""
    downstream = structure.downstream_of(branch_id)
    named = _named_ids(value)
    if named is None:
        return BranchChoice(
            frozenset(),
            f"Branch task {branch_id!r} returned {value!r}; a branch task must return a task id, "
            f"a list of task ids, or None. Its downstream tasks are {downstream}.",
        )
    unknown = sorted(named - set(downstream))
    if unknown:
        return BranchChoice(
            frozenset(),
            f"Branch task {branch_id!r} chose {unknown}, not among its direct downstream tasks "
            f"{downstream}; return one or more of those, or None to skip them all.",
        )
    followed = named | _descendants(structure, named)
    return BranchChoice(frozenset(t for t in downstream if t not in followed))


def _named_ids(value: Any) -> set[str] | None:
    """The task ids a return value names; ``None`` when it names none in a valid way."""
    if value is None:
        return set()
    if isinstance(value, str):
        return {value}
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return set(value)
    return None


def _descendants(structure: DagStructure, roots: Collection[str]) -> set[str]:
    """Every task reachable downstream of ``roots`` (the structure lists upstreams first)."""
    found = set(roots)
    for task_id, spec in structure.tasks.items():
        if any(up in found for up in spec.upstream):
            found.add(task_id)
    return found - set(roots)


async def load_choices(session: AsyncSession, task_instance_ids: Collection[int]) -> dict[int, Any]:
    """The stored return values of these succeeded branch task instances, in one query.

    A branch task that a user marked ``success`` without it running has no value: it is left out,
    and its downstream tasks follow their trigger rules as after any other task (Airflow's
    behaviour too), rather than all being skipped by a choice nobody made.
    """
    if not task_instance_ids:
        return {}
    rows = await session.execute(
        select(XCom.task_instance_id, XCom.value).where(
            XCom.task_instance_id.in_(task_instance_ids)
        )
    )
    return {row.task_instance_id: row.value for row in rows}


async def fail_invalid_branches(
    session: AsyncSession, invalid: Sequence[InvalidBranch], now: datetime
) -> None:
    """Mark each branch task failed (``success -> failed``, fenced on its attempt), and say why
    where its user looks: the attempt's log and error."""
    for branch in invalid:
        moved = await set_task_state(
            session,
            branch.task_instance_id,
            expected=TaskState.SUCCESS,
            target=TaskState.FAILED,
            attempt=branch.attempt,
            end_date=now,
        )
        if not moved:
            continue  # cleared or marked by a user in the meantime: their word wins
        await close_attempts(
            session,
            [(branch.task_instance_id, branch.attempt)],
            state=TaskState.FAILED,
            now=now,
            error=branch.message,
        )
        await session.execute(
            insert(AttemptLog).values(
                task_instance_id=branch.task_instance_id,
                attempt=branch.attempt,
                data=f"[weir scheduler] {branch.message}\n",
                created_at=now,
            )
        )
        logger.warning(
            "dag_id=%s run_id=%s task_id=%s attempt=%s failed: %s",
            branch.dag_id,
            branch.run_id,
            branch.task_id,
            branch.attempt,
            branch.message,
        )
