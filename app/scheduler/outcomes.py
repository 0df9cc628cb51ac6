"""How an attempt ends: reported by its worker, or lost with it.

A task that raised, or that its worker stopped at its ``timeout``, is retried with the backoff of
``weir.retries`` (``record_failure``). An attempt lost with its worker (its lease lapsed, or a
stopping worker interrupted it) is not the task's fault: ``record_lost`` runs it again at once as
the next attempt without using one of its retries, up to ``max_lost_attempts`` lapses; a task
lost more often than that is probably what kills its workers, and fails naming itself.

A sensor's poke that is not done yet ends in ``record_reschedule``: each poke is an attempt of its
own (so the fences of invariants 1 and 2 hold unchanged), and each reschedule adds one to
``max_tries`` so that pokes never use up the task's retries (see ``docs/scheduling/sensors.md``).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import DagRun, DagVersion, TaskAttempt, TaskInstance
from app.db.transitions import close_attempts, flag_runs_for_scheduling, set_task_state
from app.scheduler.versions import VersionCache
from weir.retries import retry_delay_for
from weir.states import TaskState

__all__ = [
    "load_task_instance",
    "record_failure",
    "record_lost",
    "record_reschedule",
]

_CONTINUED = (TaskState.UP_FOR_RESCHEDULE, TaskState.UP_FOR_RETRY)
"""How an attempt ends when the task goes on: the sensor's clock keeps running across these."""


async def record_failure(
    session: AsyncSession,
    ti: TaskInstance,
    attempt: int,
    error: str | None,
    now: datetime,
    versions: VersionCache,
) -> TaskState | None:
    """``running -> up_for_retry`` while tries remain, else ``-> failed``. None if fenced off."""
    retry = attempt < ti.max_tries
    target = TaskState.UP_FOR_RETRY if retry else TaskState.FAILED
    values: dict[str, Any] = {"end_date": now, "lease_expires_at": None}
    if retry:
        delay = await _retry_delay(session, ti, attempt, versions)
        values["next_retry_at"] = now + timedelta(seconds=delay)
    moved = await set_task_state(
        session, ti.id, expected=TaskState.RUNNING, target=target, attempt=attempt, **values
    )
    if not moved:
        return None
    await close_attempts(session, [(ti.id, attempt)], state=target, now=now, error=error)
    if not retry:
        await flag_runs_for_scheduling(session, [ti.dag_run_id])
    return target


async def record_lost(
    session: AsyncSession,
    ti: TaskInstance,
    attempt: int,
    reason: str,
    now: datetime,
    *,
    max_lost: int | None,
) -> TaskState | None:
    """The attempt was lost with its worker: ``running -> scheduled`` as the next attempt, with
    ``max_tries`` raised so no retry is used (as a sensor's poke does). ``max_lost`` bounds how
    often that may happen (lapses count, a graceful stop's interruptions, ``None``, do not); past
    it the task fails. None if fenced off."""
    lost = ti.lost_attempts + (1 if max_lost is not None else 0)
    if max_lost is not None and lost > max_lost:
        return await _fail_lost(session, ti, attempt, reason, now, max_lost)
    moved = await set_task_state(
        session,
        ti.id,
        expected=TaskState.RUNNING,
        target=TaskState.SCHEDULED,
        attempt=attempt,
        next_attempt=True,
        **_NEXT_ATTEMPT,
        lost_attempts=lost,
    )
    if not moved:
        return None
    error = f"{reason} It runs again as attempt {attempt + 1}, without using one of its retries."
    await close_attempts(
        session, [(ti.id, attempt)], state=TaskState.UP_FOR_RETRY, now=now, error=error
    )
    return TaskState.SCHEDULED


_NEXT_ATTEMPT: dict[str, Any] = {
    "max_tries": TaskInstance.max_tries + 1,
    "worker": None,
    "start_date": None,
    "end_date": None,
    "lease_expires_at": None,
    "next_retry_at": None,
}


async def _fail_lost(
    session: AsyncSession, ti: TaskInstance, attempt: int, reason: str, now: datetime, limit: int
) -> TaskState | None:
    """Lost once too often: failed without a retry, since another try would likely kill another
    worker. The reason names the task, so the operator knows which one to look at."""
    error = (
        f"{reason} Task {ti.dag_id}.{ti.task_id} (run {ti.run_id}) was lost with its worker "
        f"{limit + 1} times: it is probably what kills its workers (it exits the process, "
        "crashes in native code or runs out of memory). Failed without using its retries; "
        "raise WEIR_MAX_LOST_ATTEMPTS if its workers die for other reasons."
    )
    moved = await set_task_state(
        session,
        ti.id,
        expected=TaskState.RUNNING,
        target=TaskState.FAILED,
        attempt=attempt,
        end_date=now,
        lease_expires_at=None,
        lost_attempts=limit + 1,
    )
    if not moved:
        return None
    await close_attempts(session, [(ti.id, attempt)], state=TaskState.FAILED, now=now, error=error)
    await flag_runs_for_scheduling(session, [ti.dag_run_id])
    return TaskState.FAILED


async def _retry_delay(
    session: AsyncSession, ti: TaskInstance, attempt: int, versions: VersionCache
) -> float:
    """The backoff after ``attempt``, from the options of the version the run was created with
    (the row keeps only the base delay; the exponential options live in the version)."""
    version_id = (
        await session.execute(select(DagRun.version_id).where(DagRun.id == ti.dag_run_id))
    ).scalar_one()
    spec = (await versions.get(session, version_id)).tasks.get(ti.task_id)
    if spec is None:  # versions never lose a task of their runs; stay lenient all the same
        return ti.retry_delay
    pokes = max(ti.max_tries - (spec.retries + 1), 0)  # a sensor's reschedules are not tries
    tries = max(attempt - pokes, 1)
    return retry_delay_for(
        tries, ti.retry_delay, spec.retry_exponential_backoff, spec.max_retry_delay
    )


async def load_task_instance(session: AsyncSession, task_instance_id: int) -> TaskInstance | None:
    return (
        await session.scalars(select(TaskInstance).where(TaskInstance.id == task_instance_id))
    ).first()


async def record_reschedule(
    session: AsyncSession, ti: TaskInstance, attempt: int, now: datetime, versions: VersionCache
) -> TaskState | None:
    """A sensor's poke is not done: ``running -> up_for_reschedule`` until the next poke, or, past
    its timeout (counted from its first poke), ``-> failed`` (``skipped`` with ``soft_fail``).
    None if fenced off. A task that is not a sensor cannot ask for this: it fails."""
    sensor = await _sensor_options(session, ti)
    if sensor is None:
        error = "Only a @task.sensor can ask to be poked again; this task is not one."
        return await record_failure(session, ti, attempt, error, now, versions)
    timeout = float(sensor.get("timeout") or 0) or None
    first_poke = await _first_poke_at(session, ti.id, attempt) or now
    deadline = first_poke + timedelta(seconds=timeout) if timeout else None
    if deadline is not None and now >= deadline:
        return await _time_out(session, ti, attempt, now, timeout or 0, bool(sensor["soft_fail"]))
    next_poke = now + timedelta(seconds=float(sensor["poke_interval"]))
    moved = await set_task_state(
        session,
        ti.id,
        expected=TaskState.RUNNING,
        target=TaskState.UP_FOR_RESCHEDULE,
        attempt=attempt,
        end_date=now,
        lease_expires_at=None,
        next_retry_at=min(next_poke, deadline) if deadline else next_poke,
        max_tries=TaskInstance.max_tries + 1,
    )
    if not moved:
        return None
    await close_attempts(session, [(ti.id, attempt)], state=TaskState.UP_FOR_RESCHEDULE, now=now)
    return TaskState.UP_FOR_RESCHEDULE


async def _time_out(
    session: AsyncSession, ti: TaskInstance, attempt: int, now: datetime, timeout: float, soft: bool
) -> TaskState | None:
    """The sensor's last poke came too late: failed, or skipped with ``soft_fail``. Not retried:
    another try could only time out again."""
    target = TaskState.SKIPPED if soft else TaskState.FAILED
    error = f"The sensor timed out: its condition was not met {timeout:g} s after its first poke."
    moved = await set_task_state(
        session, ti.id, expected=TaskState.RUNNING, target=target, attempt=attempt,
        end_date=now, lease_expires_at=None,
    )  # fmt: skip
    if not moved:
        return None
    await close_attempts(session, [(ti.id, attempt)], state=target, now=now, error=error)
    await flag_runs_for_scheduling(session, [ti.dag_run_id])
    return target


async def _sensor_options(session: AsyncSession, ti: TaskInstance) -> dict[str, Any] | None:
    """The serialized options of the task, from its run's version, if it is a sensor."""
    statement = (
        select(DagVersion.serialized)
        .join(DagRun, DagRun.version_id == DagVersion.id)
        .where(DagRun.id == ti.dag_run_id)
    )
    serialized = (await session.execute(statement)).scalar_one()
    for raw in serialized["tasks"]:
        if raw["task_id"] == ti.task_id:
            return raw if raw.get("sensor") else None
    return None


async def _first_poke_at(session: AsyncSession, ti_id: int, attempt: int) -> datetime | None:
    """When the sensor first poked: the start of the earliest attempt in the unbroken chain of
    reschedules and retries that ends with ``attempt`` (a clear or a mark starts a new chain)."""
    of_ti = TaskAttempt.task_instance_id == ti_id
    boundary = await session.scalar(
        select(func.max(TaskAttempt.attempt)).where(
            of_ti, TaskAttempt.attempt < attempt, TaskAttempt.state.not_in(_CONTINUED)
        )
    )
    return await session.scalar(
        select(func.min(TaskAttempt.start_date)).where(of_ti, TaskAttempt.attempt > (boundary or 0))
    )
