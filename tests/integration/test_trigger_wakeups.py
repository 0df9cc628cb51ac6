"""A triggered run starts at once: the trigger's commit wakes the scheduler, the scheduler's
commit wakes the relay, and the relay publishes. Each hand-off is an event, not a poll: a
missed wake-up shows as a run that waits for the next safety sweep (seconds), which this test
tells apart from a slow machine by a wide margin."""

from __future__ import annotations

from datetime import datetime

from tests.support.stack import Stack

SINGLE = """
    from weir import dag, task

    @dag
    def single():
        @task
        async def noop() -> None:
            return None

        noop()

    single()
"""


async def test_a_triggered_run_starts_its_task_without_waiting_for_a_sweep(stack: Stack) -> None:
    stack.write_dag("single.py", SINGLE)
    await stack.wait_for_dag("single")
    await stack.wait_for_run("single", await stack.trigger("single"))  # warm: workers, caches
    delays = []
    for _ in range(3):
        run_id = await stack.trigger("single")
        assert await stack.wait_for_run("single", run_id) == "success"
        run = (await stack.client.get(f"/api/v1/dags/single/runs/{run_id}")).json()
        noop = (await stack.task_instances("single", run_id))["noop"]
        started = datetime.fromisoformat(noop["start_date"])
        delays.append((started - datetime.fromisoformat(run["created_at"])).total_seconds())
    # The sweep comes every few seconds; a woken hand-off takes milliseconds, even when loaded.
    assert min(delays) < 1.5, f"trigger -> task start took {delays} s: a wake-up was missed"
