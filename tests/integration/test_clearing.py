"""Clearing and marking through the REST API, on both backends: a cleared failed task runs again
as its next attempt and the reopened run succeeds; downstream tasks come along; a cleared mapped
task is expanded again to its source's new length; marks end tasks and runs, and fence off the
worker of a running attempt."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select

from app.db.models import AuditEntry
from app.execution.reports import Finish, ReportRefused, finish_attempts
from app.scheduler.versions import VersionCache
from tests.support.stack import Stack, wait_until
from weir.messages import FinishRequest

FLAKY = """
    from pathlib import Path
    from weir import dag, task

    READY = Path(__file__).with_name("ready.txt")

    @dag
    def flaky():
        @task
        def first() -> int:
            if not READY.exists():
                raise RuntimeError("not ready yet")
            return 1

        @task
        def second(x: int) -> int:
            print(f"second got {x}")
            return x + 1

        second(first())

    flaky()
"""

MAPPED = """
    from pathlib import Path
    from weir import dag, task

    COUNT = Path(__file__).with_name("count.txt")

    @task
    def source() -> list[int]:
        return list(range(int(COUNT.read_text())))

    @task
    def double(x: int) -> int:
        return 2 * x

    @task
    def total(values: list[int]) -> int:
        return sum(values)

    @dag
    def mapped():
        total(double.expand(x=source()))

    mapped()
"""

SLOW = """
    import asyncio
    from weir import dag, task

    @dag
    def slow():
        @task
        async def wait() -> int:
            await asyncio.sleep(60)
            return 1

        @task
        def after(x: int) -> int:
            return x

        after(wait())

    slow()
"""


def _run_url(dag_id: str, run_id: str) -> str:
    return f"/api/v1/dags/{dag_id}/runs/{run_id}"


async def _task(stack: Stack, dag_id: str, run_id: str, task_id: str, **params: Any) -> Any:
    response = await stack.client.get(f"{_run_url(dag_id, run_id)}/tasks/{task_id}", params=params)
    assert response.status_code == 200, response.text
    return response.json()


async def _audit_count(stack: Stack, action: str) -> int:
    async with stack.database.sessions() as session:
        statement = select(func.count()).where(AuditEntry.action == action)
        return int(await session.scalar(statement) or 0)


async def test_clearing_a_failed_task_runs_it_again_and_the_run_succeeds(stack: Stack) -> None:
    stack.write_dag("flaky.py", FLAKY)
    await stack.wait_for_dag("flaky")
    run_id = await stack.trigger("flaky")
    assert await stack.wait_for_run("flaky", run_id) == "failed"
    states = {t: ti["state"] for t, ti in (await stack.task_instances("flaky", run_id)).items()}
    assert states == {"first": "failed", "second": "upstream_failed"}

    dry = await stack.client.post(
        f"{_run_url('flaky', run_id)}/tasks/first/clear",
        json={"include_downstream": True, "dry_run": True},
    )
    assert dry.status_code == 200, dry.text
    assert {c["task_id"] for c in dry.json()["task_instances"]} == {"first", "second"}
    assert (await stack.client.get(_run_url("flaky", run_id))).json()["state"] == "failed"

    (stack.dags_folder / "ready.txt").write_text("ok")
    cleared = await stack.client.post(
        f"{_run_url('flaky', run_id)}/tasks/first/clear", json={"include_downstream": True}
    )
    assert cleared.status_code == 200, cleared.text
    changes = {c["task_id"]: c for c in cleared.json()["task_instances"]}
    assert changes["first"]["previous_state"] == "failed" and changes["first"]["state"] == "none"
    assert await stack.wait_for_run("flaky", run_id) == "success"

    first = await _task(stack, "flaky", run_id, "first")
    assert (first["state"], first["attempt"], first["max_tries"]) == ("success", 2, 2)
    assert [(a["attempt"], a["state"]) for a in first["attempts"]] == [
        (1, "failed"),
        (2, "success"),
    ]
    assert "not ready yet" in first["attempts"][0]["error"]
    old_log = await stack.client.get(
        f"{_run_url('flaky', run_id)}/tasks/first/logs", params={"attempt": 1}
    )
    assert old_log.json()["complete"] is True
    assert (await _task(stack, "flaky", run_id, "second"))["state"] == "success"
    assert await _audit_count(stack, "task_instance.clear") == 1


async def test_clearing_only_failed_tasks_of_a_run(stack: Stack) -> None:
    stack.write_dag("flaky.py", FLAKY)
    await stack.wait_for_dag("flaky")
    run_id = await stack.trigger("flaky")
    assert await stack.wait_for_run("flaky", run_id) == "failed"
    unknown = await stack.client.post(
        f"{_run_url('flaky', run_id)}/clear", json={"task_ids": ["nope"]}
    )
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["field"] == "body.task_ids"

    (stack.dags_folder / "ready.txt").write_text("ok")
    cleared = await stack.client.post(
        f"{_run_url('flaky', run_id)}/clear", json={"task_ids": None, "only_failed": True}
    )
    assert cleared.status_code == 200, cleared.text
    listed = sorted((c["task_id"], c["previous_state"]) for c in cleared.json()["task_instances"])
    assert listed == [("first", "failed"), ("second", "upstream_failed")]
    assert await stack.wait_for_run("flaky", run_id) == "success"


async def test_clearing_a_mapped_task_expands_it_again_to_the_new_length(stack: Stack) -> None:
    stack.write_dag("mapped.py", MAPPED)
    (stack.dags_folder / "count.txt").write_text("2")
    await stack.wait_for_dag("mapped")
    run_id = await stack.trigger("mapped")
    assert await stack.wait_for_run("mapped", run_id) == "success"

    async def doubles() -> list[tuple[int, str]]:
        response = await stack.client.get(
            f"{_run_url('mapped', run_id)}/tasks", params={"task_id": "double"}
        )
        return [(t["map_index"], t["state"]) for t in response.json()["task_instances"]]

    assert await doubles() == [(0, "success"), (1, "success")]

    (stack.dags_folder / "count.txt").write_text("4")
    cleared = await stack.client.post(
        f"{_run_url('mapped', run_id)}/tasks/source/clear", json={"include_downstream": True}
    )
    assert cleared.status_code == 200, cleared.text
    assert await stack.wait_for_run("mapped", run_id) == "success"
    assert await doubles() == [(i, "success") for i in range(4)]
    xcom = await stack.client.get(f"{_run_url('mapped', run_id)}/tasks/total/xcom")
    assert xcom.json() == {"task_id": "total", "map_index": -1, "value": 12}
    element = await stack.client.get(
        f"{_run_url('mapped', run_id)}/tasks/double/xcom", params={"map_index": 3}
    )
    assert element.json()["value"] == 6


async def test_marking_tasks_and_runs(stack: Stack) -> None:
    stack.write_dag("flaky.py", FLAKY)
    await stack.wait_for_dag("flaky")
    run_id = await stack.trigger("flaky")
    assert await stack.wait_for_run("flaky", run_id) == "failed"
    marked = await stack.client.patch(
        f"{_run_url('flaky', run_id)}/tasks/first",
        json={"state": "success", "include_downstream": True},
    )
    assert marked.status_code == 200, marked.text
    assert {c["task_id"]: c["previous_state"] for c in marked.json()["task_instances"]} == {
        "first": "failed",
        "second": "upstream_failed",
    }
    # A finished run is settled again from its tasks, without running anything.
    run = (await stack.client.get(_run_url("flaky", run_id))).json()
    assert run["state"] == "success"
    assert (await _task(stack, "flaky", run_id, "first"))["attempt"] == 1

    failed = await stack.client.patch(_run_url("flaky", run_id), json={"state": "failed"})
    assert failed.status_code == 200 and failed.json()["state"] == "failed"
    bad = await stack.client.patch(_run_url("flaky", run_id), json={"state": "running"})
    assert bad.status_code == 422
    assert await _audit_count(stack, "task_instance.mark") == 1
    assert await _audit_count(stack, "run.mark") == 1


async def test_marking_a_running_task_fences_off_its_worker(stack: Stack) -> None:
    stack.write_dag("slow.py", SLOW)
    await stack.wait_for_dag("slow")
    run_id = await stack.trigger("slow")

    async def running() -> Any:
        ti = await _task(stack, "slow", run_id, "wait")
        return ti if ti["state"] == "running" else None

    ti = await wait_until(running)
    marked = await stack.client.patch(
        f"{_run_url('slow', run_id)}/tasks/wait", json={"state": "success"}
    )
    assert marked.json()["task_instances"][0]["previous_state"] == "running"
    # The worker's late report for the attempt it was running is refused and changes nothing.
    async with stack.database.sessions.begin() as session:
        report = FinishRequest(attempt=ti["attempt"], state="failed", error="late")
        reports = await finish_attempts(
            session, [Finish(ti["id"], report)], VersionCache(), datetime.now(UTC)
        )
        (answer,) = reports.answers
        assert isinstance(answer, ReportRefused) and answer.status == 409
    assert await stack.wait_for_run("slow", run_id) == "success"
    wait = await _task(stack, "slow", run_id, "wait")
    assert wait["state"] == "success"
    assert wait["attempts"][0]["state"] == "success"
    assert "Marked success" in wait["attempts"][0]["error"]


async def test_marking_a_queued_run_failed_ends_its_tasks(stack: Stack) -> None:
    stack.write_dag("slow.py", SLOW)
    await stack.wait_for_dag("slow")
    await stack.client.patch("/api/v1/dags/slow", json={"is_paused": True})
    run_id = await stack.trigger("slow")
    marked = await stack.client.patch(_run_url("slow", run_id), json={"state": "failed"})
    assert marked.status_code == 200, marked.text
    assert marked.json()["state"] == "failed" and marked.json()["end_date"] is not None
    states = {t: ti["state"] for t, ti in (await stack.task_instances("slow", run_id)).items()}
    assert states == {"wait": "failed", "after": "failed"}
