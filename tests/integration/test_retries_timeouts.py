"""Retries with exponential backoff, per-task timeouts for every kind of task, and
``dagrun_timeout``, end to end on both backends."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from sqlalchemy import select

from app.db.models import TaskAttempt, TaskInstance
from tests.support.stack import Stack, start_stack, wait_until


async def attempts(stack: Stack, run_id: str, task_id: str) -> list[TaskAttempt]:
    async with stack.database.sessions() as session:
        statement = (
            select(TaskAttempt)
            .join(TaskInstance, TaskInstance.id == TaskAttempt.task_instance_id)
            .where(TaskInstance.run_id == run_id, TaskInstance.task_id == task_id)
            .order_by(TaskAttempt.attempt)
        )
        return list((await session.scalars(statement)).all())


def gaps(rows: list[TaskAttempt]) -> list[float]:
    """Seconds between each attempt's end and the next one's start."""
    ends: list[datetime] = [row.end_date for row in rows[:-1] if row.end_date is not None]
    starts: list[datetime] = [row.start_date for row in rows[1:] if row.start_date is not None]
    return [(start - end).total_seconds() for end, start in zip(ends, starts, strict=True)]


BACKOFF = """
    from weir import dag, task

    @dag
    def backoff():
        @task(retries=3, retry_delay=0.5, retry_exponential_backoff=True, max_retry_delay=1.5)
        def always_fails() -> None:
            raise RuntimeError("down again")

        always_fails()

    backoff()
"""


async def test_exponential_backoff_doubles_the_delay_up_to_its_cap(stack: Stack) -> None:
    stack.write_dag("backoff.py", BACKOFF)
    await stack.wait_for_dag("backoff")
    run_id = await stack.trigger("backoff")

    assert await stack.wait_for_run("backoff", run_id) == "failed"

    rows = await attempts(stack, run_id, "always_fails")
    assert [row.attempt for row in rows] == [1, 2, 3, 4]
    first, second, third = gaps(rows)
    assert first >= 0.5
    assert second >= 1.0
    assert 1.5 <= third < 2.0  # 0.5 * 2**2 = 2.0, capped by max_retry_delay


TIMEOUTS = """
    import asyncio
    import os
    import time
    from pathlib import Path
    from weir import dag, task

    PIDS = Path(__file__).parent.parent / "pids"

    @dag
    def slow():
        @task(timeout=1, retries=1)
        def sync_sleeper() -> None:
            PIDS.mkdir(exist_ok=True)
            (PIDS / f"sync-{os.getpid()}").touch()
            time.sleep(60)

        @task(timeout=1, retries=1)
        async def async_sleeper() -> None:
            await asyncio.sleep(60)

        @task.shell(timeout=1, retries=1)
        def shell_sleeper() -> str:
            PIDS.mkdir(exist_ok=True)
            return f"touch {PIDS}/shell-$$; sleep 60"

        sync_sleeper()
        async_sleeper()
        shell_sleeper()

    slow()
"""


def is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_a_timeout_stops_every_kind_of_task_and_counts_as_a_failure(stack: Stack) -> None:
    stack.write_dag("slow.py", TIMEOUTS)
    await stack.wait_for_dag("slow")
    run_id = await stack.trigger("slow")

    try:
        assert await stack.wait_for_run("slow", run_id, timeout=30) == "failed"
    except AssertionError as stuck:  # say where it stood: this test has failed once in CI
        states = {
            task_id: (ti["state"], ti["attempt"], ti["wait_code"])
            for task_id, ti in (await stack.task_instances("slow", run_id)).items()
        }
        raise AssertionError(f"{stuck}; task instances (state, attempt, wait): {states}") from None

    tis = await stack.task_instances("slow", run_id)
    for task_id in ("sync_sleeper", "async_sleeper", "shell_sleeper"):
        assert (tis[task_id]["state"], tis[task_id]["attempt"]) == ("failed", 2), task_id
        errors = [row.error or "" for row in await attempts(stack, run_id, task_id)]
        assert all("timed out after 1 s" in error for error in errors), (task_id, errors)
    assert "timed out after 1 s" in await stack.logs("slow", run_id, "sync_sleeper", attempt=1)
    pids = [int(path.name.split("-")[1]) for path in (stack.dags_folder.parent / "pids").iterdir()]
    assert len(pids) == 4  # two tries each of the sync and the shell task

    async def all_stopped() -> bool:
        return not any(is_alive(pid) for pid in pids)

    await wait_until(all_stopped, timeout=10)


DAGRUN_TIMEOUT = """
    import asyncio
    from weir import dag, task

    @dag(dagrun_timeout=2)
    def late():
        @task
        async def sleeper() -> None:
            await asyncio.sleep(60)

        @task
        def after(_: None) -> None:
            pass

        @task
        async def quick() -> int:
            return 1

        after(sleeper())
        quick()

    late()
"""


async def test_a_run_past_its_dagrun_timeout_fails_with_its_unfinished_tasks(
    stack: Stack,
) -> None:
    stack.write_dag("late.py", DAGRUN_TIMEOUT)
    await stack.wait_for_dag("late")
    run_id = await stack.trigger("late")

    assert await stack.wait_for_run("late", run_id, timeout=20) == "failed"

    tis = await stack.task_instances("late", run_id)
    assert {task_id: ti["state"] for task_id, ti in tis.items()} == {
        "sleeper": "failed",
        "after": "failed",
        "quick": "success",
    }
    (sleeper,) = await attempts(stack, run_id, "sleeper")
    assert "dagrun_timeout (2 s)" in (sleeper.error or "")


async def test_a_dagrun_timeout_fires_at_its_deadline_not_at_the_next_sweep(
    backend: str, tmp_path: Path
) -> None:
    """The scheduler's idle wait ends at the earliest running run's deadline: with a 60 s sweep,
    the run still fails within about a second of its 2 s ``dagrun_timeout``."""
    async with start_stack(backend, tmp_path, sweep_interval=60.0) as stack:
        stack.write_dag("late.py", DAGRUN_TIMEOUT)
        await stack.wait_for_dag("late")
        run_id = await stack.trigger("late")
        assert await stack.wait_for_run("late", run_id, timeout=20) == "failed"
        response = await stack.client.get(f"/api/v1/dags/late/runs/{run_id}")
        run = response.json()
    ran = datetime.fromisoformat(run["end_date"]) - datetime.fromisoformat(run["start_date"])
    assert 2.0 <= ran.total_seconds() < 3.5, ran
