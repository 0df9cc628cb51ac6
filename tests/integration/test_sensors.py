"""``@task.sensor`` end to end on both backends: pokes until done, timeouts (failed, or skipped
with ``soft_fail``), the worker slot free between pokes, and each poke fenced as an attempt."""

from __future__ import annotations

from pathlib import Path

from app.execution.tokens import AttemptTokens
from tests.integration.test_retries_timeouts import attempts, gaps
from tests.support.stack import Stack, start_stack, wait_until

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "dags" / "sensor.py"


async def test_the_example_waits_for_its_file(stack: Stack, tmp_path: Path) -> None:
    stack.write_dag("sensor.py", EXAMPLE.read_text())
    await stack.wait_for_dag("wait_for_export")
    export = tmp_path / "export.csv"
    run_id = await stack.trigger("wait_for_export", {"path": str(export)})

    async def waiting() -> bool:
        tis = await stack.task_instances("wait_for_export", run_id)
        return bool(tis["export_ready"]["state"] == "up_for_reschedule")

    await wait_until(waiting, timeout=20)
    tis = await stack.task_instances("wait_for_export", run_id)
    assert tis["export_ready"]["wait_code"] == "sensor_poke"
    export.write_text("a\nb\nc\n")

    assert await stack.wait_for_run("wait_for_export", run_id, timeout=30) == "success"
    assert "is not there yet" in await stack.logs("wait_for_export", run_id, "export_ready", 1)


THIRD_POKE = """
    from pathlib import Path
    from weir import dag, task

    POKES = Path(__file__).parent.parent / "pokes"

    @dag
    def waits():
        @task.sensor(poke_interval=0.3, timeout=60)
        def third_time_lucky() -> dict | bool:
            with POKES.open("a") as pokes:
                pokes.write("poke\\n")
            count = len(POKES.read_text().splitlines())
            print(f"poke {count}")
            return {"pokes": count} if count >= 3 else False

        @task
        def after(seen: dict) -> int:
            return seen["pokes"]

        after(third_time_lucky())

    waits()
"""


async def test_a_sensor_pokes_until_its_condition_holds(stack: Stack) -> None:
    stack.write_dag("waits.py", THIRD_POKE)
    await stack.wait_for_dag("waits")
    run_id = await stack.trigger("waits")

    assert await stack.wait_for_run("waits", run_id, timeout=30) == "success"

    rows = await attempts(stack, run_id, "third_time_lucky")
    assert [(row.attempt, row.state) for row in rows] == [
        (1, "up_for_reschedule"),
        (2, "up_for_reschedule"),
        (3, "success"),
    ]
    assert all(gap >= 0.3 for gap in gaps(rows)), gaps(rows)
    tis = await stack.task_instances("waits", run_id)
    assert tis["after"]["state"] == "success"
    assert tis["third_time_lucky"]["max_tries"] == 3  # each reschedule adds a poke, not a try
    first = await stack.logs("waits", run_id, "third_time_lucky", attempt=1)
    assert "poke 1" in first and "Sensor not done yet" in first
    assert "poke 3" in await stack.logs("waits", run_id, "third_time_lucky", attempt=3)
    await _a_late_report_of_an_earlier_poke_is_refused(stack, rows[0].task_instance_id)


async def _a_late_report_of_an_earlier_poke_is_refused(stack: Stack, ti_id: int) -> None:
    """Invariant 1 across pokes: each poke is an attempt of its own, so the first poke's token and
    attempt can no longer report anything."""
    tokens = _tokens(stack)
    for state in ("reschedule", "success"):
        response = await stack.client.post(
            f"/execution/v1/task-instances/{ti_id}/finish",
            json={"attempt": 1, "state": state},
            headers={"Authorization": f"Bearer {tokens.issue(ti_id, 1)}"},
        )
        assert response.status_code == 409, response.text


NEVER = """
    from weir import dag, task

    @dag
    def never():
        @task.sensor(poke_interval=0.3, timeout=1, soft_fail={soft_fail})
        def not_yet() -> bool:
            return False

        @task
        def after(_: bool) -> None:
            pass

        after(not_yet())

    never()
"""


async def test_a_sensor_past_its_timeout_fails(stack: Stack) -> None:
    stack.write_dag("never.py", NEVER.replace("{soft_fail}", "False"))
    await stack.wait_for_dag("never")
    run_id = await stack.trigger("never")

    assert await stack.wait_for_run("never", run_id, timeout=30) == "failed"

    tis = await stack.task_instances("never", run_id)
    assert (tis["not_yet"]["state"], tis["after"]["state"]) == ("failed", "upstream_failed")
    rows = await attempts(stack, run_id, "not_yet")
    assert len(rows) >= 2
    assert {row.state for row in rows[:-1]} == {"up_for_reschedule"}
    assert "The sensor timed out" in (rows[-1].error or "")
    span = rows[-1].end_date - rows[0].start_date  # type: ignore[operator]
    assert 1.0 <= span.total_seconds() < 5.0, span  # the last poke is due at the deadline


async def test_a_soft_failing_sensor_is_skipped_with_its_downstream(stack: Stack) -> None:
    stack.write_dag("never.py", NEVER.replace("{soft_fail}", "True"))
    await stack.wait_for_dag("never")
    run_id = await stack.trigger("never")

    await stack.wait_for_run("never", run_id, timeout=30)

    tis = await stack.task_instances("never", run_id)
    assert (tis["not_yet"]["state"], tis["after"]["state"]) == ("skipped", "skipped")


ONE_SLOT = """
    from pathlib import Path
    from weir import dag, task

    POKED = Path(__file__).parent.parent / "poked"
    MARKER = Path(__file__).parent.parent / "marker"

    @dag
    def one_slot():
        @task.sensor(poke_interval=0.3, timeout=20)
        def marker_written() -> bool:
            POKED.touch()
            return MARKER.exists()

        @task(retries=50, retry_delay=0.1)
        def write_marker() -> None:
            if not POKED.exists():  # the broker may hand this task out first: go second
                raise RuntimeError("the sensor has not poked yet")
            MARKER.touch()

        marker_written()
        write_marker()

    one_slot()
"""


async def test_a_sensor_frees_its_worker_slot_between_pokes(backend: str, tmp_path: Path) -> None:
    """With one slot, the writer can only run after the sensor's first poke if the waiting
    sensor does not hold the slot; otherwise the sensor would wait for it until its timeout."""
    async with start_stack(backend, tmp_path, worker_concurrency=1) as stack:
        stack.write_dag("one_slot.py", ONE_SLOT)
        await stack.wait_for_dag("one_slot")
        run_id = await stack.trigger("one_slot")

        assert await stack.wait_for_run("one_slot", run_id, timeout=30) == "success"

        rows = await attempts(stack, run_id, "marker_written")
        writer = (await attempts(stack, run_id, "write_marker"))[-1]
        assert [row.state for row in rows[:-1]] == ["up_for_reschedule"] * (len(rows) - 1)
        assert len(rows) >= 2 and rows[-1].state == "success"
        assert writer.state == "success" and writer.start_date is not None
        assert rows[0].end_date is not None and writer.start_date >= rows[0].end_date


async def test_only_a_sensor_may_ask_for_a_reschedule(stack: Stack) -> None:
    stack.write_dag(
        "plain.py",
        """
        import asyncio
        from weir import dag, task

        @dag
        def plain():
            @task
            async def slow() -> None:
                await asyncio.sleep(60)

            slow()

        plain()
        """,
    )
    await stack.wait_for_dag("plain")
    run_id = await stack.trigger("plain")
    ti_id = await _running_ti(stack, "plain", run_id, "slow")
    tokens = _tokens(stack)

    response = await stack.client.post(
        f"/execution/v1/task-instances/{ti_id}/finish",
        json={"attempt": 1, "state": "reschedule"},
        headers={"Authorization": f"Bearer {tokens.issue(ti_id, 1)}"},
    )

    assert response.status_code == 200, response.text
    assert response.json()["state"] == "failed"


async def _running_ti(stack: Stack, dag_id: str, run_id: str, task_id: str) -> int:
    async def running() -> int | None:
        ti = (await stack.task_instances(dag_id, run_id))[task_id]
        return int(ti["id"]) if ti["state"] == "running" else None

    found: int = await wait_until(running, timeout=20)
    return found


def _tokens(stack: Stack) -> AttemptTokens:
    key = stack.settings.secret_key
    assert key is not None
    return AttemptTokens(key.get_secret_value().encode())
