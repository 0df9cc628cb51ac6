"""SIGTERM to a worker: it stops taking work, lets its running task finish and report, exits 0;
the work it had not started runs on another worker, and nothing runs twice."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest

from tests.support.processes import spawn
from tests.support.stack import start_stack, wait_until

pytestmark = pytest.mark.postgres

SLOW = """
    import asyncio
    from pathlib import Path

    from weir import dag, get_current_context, task

    EFFECTS = Path(__file__).parent.parent / "effects.log"

    def note(event: str) -> None:
        with EFFECTS.open("a") as out:
            out.write(f"{event} {get_current_context().task_id}\\n")

    @dag
    def slow():
        @task
        async def step() -> None:
            note("start")
            await asyncio.sleep(1.5)
            note("end")

        step()
        step()
        step()

    slow()
"""


async def test_sigterm_lets_the_running_task_finish_and_leaves_the_rest(tmp_path: Path) -> None:
    async with start_stack("postgres", tmp_path, workers=0) as stack:
        stack.write_dag("slow.py", SLOW)
        await stack.wait_for_dag("slow")
        env = stack.worker_env(worker_concurrency=1, worker_grace_period=20)
        effects = tmp_path / "effects.log"

        async def lines() -> list[str]:
            return effects.read_text().splitlines() if effects.exists() else []

        with spawn("worker-1", ["worker"], env, tmp_path / "logs") as first:
            run_id = await stack.trigger("slow")
            [started] = await wait_until(lines, timeout=30)
            # In a thread: the API under test shares this event loop and must keep answering.
            assert await asyncio.to_thread(first.terminate, 30) == 0, first.output()
            assert "Traceback" not in first.output()
        finished_by_first = started.replace("start", "end")
        assert await lines() == [started, finished_by_first]

        with spawn("worker-2", ["worker"], env, tmp_path / "logs"):
            assert await stack.wait_for_run("slow", run_id, timeout=60) == "success"

        starts = Counter(line.split()[1] for line in await lines() if line.startswith("start"))
        assert starts == {"step": 1, "step__1": 1, "step__2": 1}
