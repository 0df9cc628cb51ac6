"""Attempts lost with their worker (invariant 2): a lapsed lease or a worker that stops mid-attempt
runs the task again at once as its next attempt, without using one of its retries; a task lost
more often than ``max_lost_attempts`` fails, named as the likely cause. On both backends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from app.db.models import TaskAttempt, TaskInstance
from tests.support.stack import Stack, start_stack, wait_until
from weir.states import TaskState

QUICK = """
    from weir import dag, task

    @dag
    def fragile():
        @task(retries=0)
        def step() -> int:
            return 1

        step()

    fragile()
"""

SLOW_FIRST_ATTEMPT = """
    import asyncio

    from weir import dag, get_current_context, task

    @dag
    def patient():
        @task(retries=0)
        async def wait() -> str:
            if get_current_context().attempt == 1:
                await asyncio.sleep(120)  # the worker stops long before this ends
            return "done"

        wait()

    patient()
"""


async def instance(stack: Stack, run_id: str, task_id: str) -> TaskInstance:
    async with stack.database.sessions() as session:
        statement = select(TaskInstance).where(
            TaskInstance.run_id == run_id, TaskInstance.task_id == task_id
        )
        return (await session.scalars(statement)).one()


async def lapse_as_if_claimed(stack: Stack, ti_id: int, attempt: int) -> None:
    """What a worker that claimed the attempt and died leaves behind: running, lease lapsed."""
    async with stack.database.sessions.begin() as session:
        await session.execute(
            update(TaskInstance)
            .where(TaskInstance.id == ti_id, TaskInstance.attempt == attempt)
            .values(
                state=TaskState.RUNNING,
                worker="gone:1",
                lease_expires_at=datetime.now(UTC) - timedelta(seconds=1),
            )
        )
        session.add(
            TaskAttempt(
                task_instance_id=ti_id,
                attempt=attempt,
                state=TaskState.RUNNING,
                worker="gone:1",
                start_date=datetime.now(UTC),
            )
        )


async def attempt_error(stack: Stack, ti_id: int, attempt: int) -> tuple[str, str | None]:
    async with stack.database.sessions() as session:
        row = await session.get_one(TaskAttempt, (ti_id, attempt))
        return row.state, row.error


async def test_a_lapsed_attempt_runs_again_without_a_retry_until_lost_too_often(
    backend: str, tmp_path: Path
) -> None:
    async with start_stack(
        backend, tmp_path, workers=0, sweep_interval=0.2, max_lost_attempts=1
    ) as stack:
        stack.write_dag("fragile.py", QUICK)
        await stack.wait_for_dag("fragile")
        run_id = await stack.trigger("fragile")

        async def queued(attempt: int) -> Any:
            ti = await instance(stack, run_id, "step")
            return ti if ti.state == TaskState.QUEUED and ti.attempt == attempt else None

        first = await wait_until(lambda: queued(1))
        await lapse_as_if_claimed(stack, first.id, 1)

        second = await wait_until(lambda: queued(2), timeout=15)
        assert (second.max_tries, second.lost_attempts) == (2, 1)  # no retry used
        state, error = await attempt_error(stack, first.id, 1)
        assert state == TaskState.UP_FOR_RETRY
        assert error is not None and "fragile.step lapsed" in error and "gone:1" in error

        await lapse_as_if_claimed(stack, first.id, 2)
        assert await stack.wait_for_run("fragile", run_id, timeout=15) == "failed"
        state, error = await attempt_error(stack, first.id, 2)
        assert state == TaskState.FAILED
        assert error is not None
        assert "Task fragile.step" in error and "probably what kills its workers" in error
        assert "WEIR_MAX_LOST_ATTEMPTS" in error


async def test_an_attempt_cut_off_by_a_stopping_worker_runs_again_at_once(
    backend: str, tmp_path: Path
) -> None:
    async with start_stack(backend, tmp_path, workers=1, worker_grace_period=0.2) as stack:
        stack.write_dag("patient.py", SLOW_FIRST_ATTEMPT)
        await stack.wait_for_dag("patient")
        run_id = await stack.trigger("patient")

        async def running() -> bool:
            return (await instance(stack, run_id, "wait")).state == TaskState.RUNNING

        await wait_until(running)
        stop, worker = stack.workers[0]
        stop.set()
        await worker  # waits out the grace period, then cuts the attempt off

        ti = await instance(stack, run_id, "wait")
        # Requeued by the worker's report, not by its lease (8 s): at once.
        assert ti.attempt == 2 and ti.state in (TaskState.SCHEDULED, TaskState.QUEUED)
        assert (ti.max_tries, ti.lost_attempts) == (2, 0)  # an interruption is not counted
        state, error = await attempt_error(stack, ti.id, 1)
        assert state == TaskState.UP_FOR_RETRY
        assert error is not None and "stopped before the attempt finished" in error
