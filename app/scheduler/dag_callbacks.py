"""DAG-level callbacks: when a run ends, a ``DagCallbackMessage`` for a worker to run the DAG's
``on_success`` or ``on_failure``.

The message goes through the outbox in the transaction that ended the run (``set_run_state``
records the run on the transaction's effects, the scheduler loop calls ``queue_dag_callbacks``
before the commit), so it is published at least once, like a task message (invariant 3). It is
sent to the queue of the DAG's first task: a worker serving it has the DAG file. The message
carries the run context itself, as no attempt, and so no execution-API token, stands behind a DAG
callback.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.effects import effects_of
from app.db.models import DagRun, Outbox, TaskInstance
from app.scheduler.versions import DagStructure, VersionCache
from weir.messages import DagCallbackMessage
from weir.params import merge_params
from weir.states import DagRunState, TaskState
from weir.task_options import DEFAULT_QUEUE

__all__ = ["queue_dag_callbacks"]


async def queue_dag_callbacks(session: AsyncSession, versions: VersionCache, now: datetime) -> int:
    """Write the callback messages of the runs this session ended; returns how many."""
    finished = effects_of(session).finished_runs
    if not finished:
        return 0
    runs = (await session.scalars(select(DagRun).where(DagRun.id.in_(finished)))).all()
    structures = await versions.get_many(session, {run.version_id for run in runs})
    rows: list[dict[str, Any]] = []
    for run in runs:
        structure = structures[run.version_id]
        callback: Literal["on_success", "on_failure"] = (
            "on_success" if finished[run.id] is DagRunState.SUCCESS else "on_failure"
        )
        if not structure.options.get(f"has_{callback}"):
            continue
        error = await _describe_failure(session, run.id) if callback == "on_failure" else None
        message = _message(run, structure, callback, error)
        rows.append(
            {
                "queue": _queue_of(structure),
                "message_id": f"dag_callback:{run.id}",
                "body": message.model_dump_json().encode(),
                "priority": 0,
                "created_at": now,
            }
        )
    if rows:
        await session.execute(insert(Outbox), rows)
    return len(rows)


def _message(
    run: DagRun,
    structure: DagStructure,
    callback: Literal["on_success", "on_failure"],
    error: str | None,
) -> DagCallbackMessage:
    return DagCallbackMessage(
        callback=callback,
        dag_id=run.dag_id,
        run_id=run.run_id,
        fileloc=structure.fileloc,
        file_hash=structure.file_hash,
        logical_date=run.logical_date,
        data_interval_start=run.data_interval_start,
        data_interval_end=run.data_interval_end,
        conf=run.conf,
        params=merge_params(structure.options.get("params") or {}, run.conf),
        error=error,
    )


async def _describe_failure(session: AsyncSession, dag_run_id: int) -> str:
    failed = await session.scalars(
        select(TaskInstance.task_id)
        .where(TaskInstance.dag_run_id == dag_run_id, TaskInstance.state == TaskState.FAILED)
        .order_by(TaskInstance.task_id)
        .distinct()
    )
    names = ", ".join(failed)
    return f"Failed tasks: {names}" if names else "The run failed (timed out or marked failed)."


def _queue_of(structure: DagStructure) -> str:
    first = next(iter(structure.tasks.values()), None)
    return first.queue if first is not None else DEFAULT_QUEUE
