"""Invariant 2 with real processes: SIGKILL the worker running a task; its lease lapses, the task
runs again on the other worker as attempt 2 and succeeds, and exactly those two attempts ran. The
task has no retries: an attempt lost with its worker does not use one."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.db.models import TaskAttempt
from tests.support.processes import spawn
from tests.support.stack import start_stack, wait_until

pytestmark = pytest.mark.postgres

LONG_TASK = """
    import asyncio
    import os
    from pathlib import Path

    from weir import dag, get_current_context, task

    EFFECTS = Path(__file__).parent.parent / "effects.log"

    @dag
    def long_job():
        @task(retries=0)
        async def crunch() -> str:
            attempt = get_current_context().attempt
            with EFFECTS.open("a") as out:
                out.write(f"start {attempt} {os.getpid()}\\n")
            if attempt == 1:
                await asyncio.sleep(120)  # killed long before this ends
            with EFFECTS.open("a") as out:
                out.write(f"end {attempt} {os.getpid()}\\n")
            return "done"

        crunch()

    long_job()
"""


async def test_a_killed_workers_task_runs_again_elsewhere(tmp_path: Path) -> None:
    overrides = {"lease_seconds": 3.0, "heartbeat_interval": 0.5, "sweep_interval": 0.5}
    async with start_stack("postgres", tmp_path, workers=0, **overrides) as stack:
        stack.write_dag("long_job.py", LONG_TASK)
        await stack.wait_for_dag("long_job")
        env = stack.worker_env(worker_concurrency=1)
        effects = tmp_path / "effects.log"
        with (
            spawn("worker-1", ["worker"], env, tmp_path / "logs") as first,
            spawn("worker-2", ["worker"], env, tmp_path / "logs") as second,
        ):
            run_id = await stack.trigger("long_job")

            async def started() -> list[str]:
                return effects.read_text().split() if effects.exists() else []

            _, attempt, pid = await wait_until(started, timeout=30)
            assert attempt == "1"
            victim, survivor = (first, second) if int(pid) == first.pid else (second, first)
            assert int(pid) == victim.pid, (pid, first.pid, second.pid)
            victim.kill()
            assert await stack.wait_for_run("long_job", run_id, timeout=60) == "success"
            assert survivor.process.poll() is None, survivor.output()

        lines = effects.read_text().splitlines()
        assert lines == [
            f"start 1 {victim.pid}",
            f"start 2 {survivor.pid}",
            f"end 2 {survivor.pid}",
        ]
        ti = (await stack.task_instances("long_job", run_id))["crunch"]
        assert (ti["state"], ti["attempt"]) == ("success", 2)
        async with stack.database.sessions() as session:
            first_try = await session.get_one(TaskAttempt, (ti["id"], 1))
        assert first_try.state == "up_for_retry"
        assert first_try.error is not None and "lapsed" in first_try.error
    assert "without using one of its retries" in first_try.error
