""" "Why is it not running?": a code and words for every task instance that waits.

Capacity reasons (``pool_full``, ``pool_missing``, ``pool_too_small``, ``max_active_tasks``) are
decided while queueing and stored on the task instance (``queueing.py``). Everything else is
computed here, when someone asks: upstream tasks not done, the run held by ``max_active_runs``, a
paused DAG or a paused backfill, a retry's backoff, the message not yet published
(``broker_unreachable``), or no worker consuming its queue. Computing on read keeps the
scheduler's hot path free of bookkeeping for states other parts own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import Backfill, Dag, DagRun, Outbox, TaskInstance
from app.scheduler.run_starts import active_runs, max_active_runs
from app.scheduler.versions import VersionCache
from weir.broker import Broker
from weir.states import TERMINAL_TASK_STATES, DagRunState, TaskState

__all__ = ["BrokerView", "WaitReason", "explain"]

WaitReason = tuple[str, str]
RUN_QUEUED: WaitReason = ("run_queued", "its run is queued and starts at the scheduler's next pass")


class BrokerView(Protocol):
    """What the relay knows of the broker (``app.relay.OutboxRelay`` is one)."""

    @property
    def publish_error(self) -> str | None: ...

    @property
    def broker(self) -> Broker: ...


async def explain(
    session: AsyncSession, ti: TaskInstance, versions: VersionCache, broker: BrokerView
) -> WaitReason | None:
    """``(wait_code, wait_reason)`` for a task instance that waits; None if it runs or ended."""
    state = TaskState(ti.state)
    if state in TERMINAL_TASK_STATES or state is TaskState.RUNNING:
        return None
    if state is TaskState.SCHEDULED:
        if ti.wait_code:
            return ti.wait_code, ti.wait_reason or ""
        return "queueing", "scheduled; the scheduler is queueing it now"
    if state is TaskState.UP_FOR_RETRY:
        return "retry_backoff", f"attempt {ti.attempt} failed; the next try starts at {_at(ti)}"
    if state is TaskState.UP_FOR_RESCHEDULE:
        return "sensor_poke", f"the sensor is not done yet; it pokes again at {_at(ti)}"
    if state is TaskState.QUEUED:
        return await _explain_queued(session, ti, broker)
    return await _explain_not_scheduled(session, ti, versions)


def _at(ti: TaskInstance) -> str:
    when = ti.next_retry_at
    return f"{when:%Y-%m-%d %H:%M:%S} UTC" if when else "once the scheduler picks it up"


async def _explain_queued(session: AsyncSession, ti: TaskInstance, view: BrokerView) -> WaitReason:
    """A queued task waits for its message to be published, then for a worker to take it."""
    queue = ti.queue
    unpublished = await session.scalar(
        select(func.count()).where(Outbox.message_id == f"{ti.id}:{ti.attempt}")
    )
    if unpublished:
        if view.publish_error:
            return (
                "broker_unreachable",
                f"its message to queue {queue!r} cannot be published: {view.publish_error}; it is "
                "kept and sent as soon as the broker answers again",
            )
        return "publishing", f"its message to queue {queue!r} is being published"
    consumers = await view.broker.consumer_count(queue)
    if consumers is None:
        return "queued", f"waiting in queue {queue!r} for a worker"
    if consumers:
        return "queued", f"waiting in queue {queue!r}; {consumers} worker(s) consume it"
    running = await session.scalar(
        select(func.count()).where(
            TaskInstance.queue == queue, TaskInstance.state == TaskState.RUNNING
        )
    )
    if running:
        return (
            "workers_busy",
            f"every worker serving queue {queue!r} is busy ({running} task(s) running there)",
        )
    return (
        "no_worker",
        f"no worker serves queue {queue!r}: start one with `weir worker --queues {queue}`",
    )


async def _explain_not_scheduled(
    session: AsyncSession, ti: TaskInstance, versions: VersionCache
) -> WaitReason:
    run = await session.get_one(DagRun, ti.dag_run_id)
    if run.state == DagRunState.QUEUED:
        return await _explain_queued_run(session, run)
    spec = (await versions.get(session, run.version_id)).tasks.get(ti.task_id)
    upstream = list(spec.upstream) if spec else []
    waiting = await _unfinished(session, run.id, upstream)
    if waiting:
        return "waiting_for_upstream", f"waiting for upstream task(s) {', '.join(waiting)}"
    return "pending", "its upstream tasks are done; the scheduler decides it at its next pass"


async def _unfinished(session: AsyncSession, run_id: int, task_ids: Sequence[str]) -> list[str]:
    if not task_ids:
        return []
    rows = await session.execute(
        select(TaskInstance.task_id, TaskInstance.state).where(
            TaskInstance.dag_run_id == run_id, TaskInstance.task_id.in_(task_ids)
        )
    )
    done = {t for t, s in rows if TaskState(s) in TERMINAL_TASK_STATES}
    return [t for t in task_ids if t not in done]


async def _explain_queued_run(session: AsyncSession, run: DagRun) -> WaitReason:
    """A run that has not started: its DAG is paused, or ``max_active_runs`` holds it."""
    dag = await session.get_one(Dag, run.dag_id)
    if dag.is_paused:
        return (
            "dag_paused",
            f"DAG {dag.dag_id!r} is paused: unpause it (PATCH /api/v1/dags/{dag.dag_id} "
            'with {"is_paused": false}) to start this run',
        )
    if run.backfill_id is not None:
        return await _explain_queued_backfill_run(session, run.backfill_id)
    limit = (await max_active_runs(session, [dag.dag_id])).get(dag.dag_id, 16)
    active = (await active_runs(session, [dag.dag_id])).get(("dag", dag.dag_id), 0)
    if active >= limit:
        names = await _running_run_ids(session, dag.dag_id)
        return (
            "max_active_runs",
            f"DAG {dag.dag_id!r} has {active} of {limit} runs active "
            f"(max_active_runs={limit}): {', '.join(names)}; this run starts when one ends",
        )
    return RUN_QUEUED


async def _explain_queued_backfill_run(session: AsyncSession, backfill_id: int) -> WaitReason:
    """A backfill's run waits for its backfill: paused, or at its own ``max_active_runs``."""
    backfill = await session.get_one(Backfill, backfill_id)
    if backfill.state == "paused":
        return (
            "backfill_paused",
            f"backfill {backfill_id} is paused: resume it "
            f"(POST /api/v1/backfills/{backfill_id}/resume) to start this run",
        )
    limit = backfill.max_active_runs
    active = (await active_runs(session, [backfill.dag_id])).get(("backfill", str(backfill_id)), 0)
    if active >= limit:
        return (
            "max_active_runs",
            f"backfill {backfill_id} has {active} of {limit} runs active "
            f"(its max_active_runs={limit}); this run starts when one ends",
        )
    return RUN_QUEUED


async def _running_run_ids(session: AsyncSession, dag_id: str) -> list[str]:
    rows = await session.scalars(
        select(DagRun.run_id)
        .where(DagRun.dag_id == dag_id, DagRun.state == DagRunState.RUNNING)
        .order_by(DagRun.id)
        .limit(3)
    )
    return list(rows.all())
