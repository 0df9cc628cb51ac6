"""Capacity on both backends: pools, priority_weight, max_active_tasks, max_active_runs, named
queues, and the wait reasons the API gives while a task waits.

The stacks here run with a 60 s safety sweep, so a task that starts within a second of a slot
freeing was woken by the finish, not found by a sweep.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from app.auth import Role, create_token
from tests.support.stack import Stack, start_stack, wait_until
from weir.broker import create_broker
from weir.clock import SystemClock

SWEEP = 60.0


@pytest.fixture
async def stack(backend: str, tmp_path: Path) -> AsyncIterator[Stack]:
    async with start_stack(backend, tmp_path, sweep_interval=SWEEP) as running:
        yield running


async def _create_pool(stack: Stack, name: str, slots: int) -> None:
    response = await stack.client.post("/api/v1/pools", json={"name": name, "slots": slots})
    assert response.status_code == 201, response.text


async def _ti(stack: Stack, dag_id: str, run_id: str, task_id: str) -> dict[str, Any]:
    response = await stack.client.get(f"/api/v1/dags/{dag_id}/runs/{run_id}/tasks/{task_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _in_start_order(tis: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(tis.values(), key=lambda ti: _time(ti["start_date"]))


def _assert_serial(tis: dict[str, dict[str, Any]]) -> None:
    """No two overlap, and each starts within a second of the previous end (woken, not swept)."""
    ordered = _in_start_order(tis)
    for before, after in itertools.pairwise(ordered):
        gap = (_time(after["start_date"]) - _time(before["end_date"])).total_seconds()
        assert 0 <= gap < 1.0, (before, after)


SERIAL = """
    import asyncio
    from weir import dag, task

    @dag
    def serial():
        @task(pool="single")
        async def first() -> None:
            await asyncio.sleep(0.6)

        @task(pool="single")
        async def second() -> None:
            await asyncio.sleep(0.6)

        first()
        second()

    serial()
"""


async def test_pool_of_one_slot_serializes_and_names_the_holder(stack: Stack) -> None:
    await _create_pool(stack, "single", 1)
    stack.write_dag("serial.py", SERIAL)
    await stack.wait_for_dag("serial")
    run_id = await stack.trigger("serial")

    async def one_waits() -> dict[str, Any] | None:
        tis = await stack.task_instances("serial", run_id)
        waiting = [t for t in tis.values() if t["wait_code"] == "pool_full"]
        return waiting[0] if waiting else None

    waiting = await wait_until(one_waits)
    holder = "second" if waiting["task_id"] == "first" else "first"
    assert waiting["state"] == "scheduled"
    assert "pool 'single' is full: 1 of 1 slots taken by serial." + holder in waiting["wait_reason"]
    assert await stack.wait_for_run("serial", run_id) == "success"
    tis = await stack.task_instances("serial", run_id)
    assert all(t["wait_code"] is None for t in tis.values())
    _assert_serial(tis)


PRIORITIES = """
    import asyncio
    from weir import dag, task

    @dag
    def ranked():
        @task(pool="single", priority_weight=1)
        async def low() -> None:
            await asyncio.sleep(0.2)

        @task(pool="single", priority_weight=5)
        async def mid() -> None:
            await asyncio.sleep(0.2)

        @task(pool="single", priority_weight=10)
        async def high() -> None:
            await asyncio.sleep(0.2)

        low()
        mid()
        high()

    ranked()
"""


async def test_priority_weight_orders_what_runs_first(stack: Stack) -> None:
    await _create_pool(stack, "single", 1)
    stack.write_dag("ranked.py", PRIORITIES)
    await stack.wait_for_dag("ranked")
    run_id = await stack.trigger("ranked")
    assert await stack.wait_for_run("ranked", run_id) == "success"
    tis = await stack.task_instances("ranked", run_id)
    assert [t["task_id"] for t in _in_start_order(tis)] == ["high", "mid", "low"]
    assert {t["priority_weight"] for t in tis.values()} == {1, 5, 10}
    assert {t["pool"] for t in tis.values()} == {"single"}
    _assert_serial(tis)


UNEVEN = """
    import asyncio
    from weir import dag, task

    @dag
    def uneven():
        @task(priority_weight=1)
        async def low() -> None:
            await asyncio.sleep(0.1)

        @task(priority_weight=5)
        async def mid() -> None:
            await asyncio.sleep(0.1)

        @task(priority_weight=10)
        async def high() -> None:
            await asyncio.sleep(0.1)

        low()
        mid()
        high()

    uneven()
"""


async def test_tasks_queued_together_are_published_by_priority(
    backend: str, tmp_path: Path
) -> None:
    """The pool has room for all three, the one worker for one at a time: the messages leave in
    priority order, so the worker starts the highest first (the tasks were created low first)."""
    async with start_stack(backend, tmp_path, sweep_interval=SWEEP, worker_concurrency=1) as stack:
        stack.write_dag("uneven.py", UNEVEN)
        await stack.wait_for_dag("uneven")
        run_id = await stack.trigger("uneven")
        assert await stack.wait_for_run("uneven", run_id) == "success"
        tis = await stack.task_instances("uneven", run_id)
    assert [t["task_id"] for t in _in_start_order(tis)] == ["high", "mid", "low"]


FAN_OUT = """
    import asyncio
    from weir import dag, task

    @dag(max_active_tasks=1)
    def narrow():
        @task
        async def work() -> None:
            await asyncio.sleep(0.4)

        for _ in range(3):
            work()

    narrow()
"""


async def test_max_active_tasks_serializes_a_fan_out(stack: Stack) -> None:
    stack.write_dag("narrow.py", FAN_OUT)
    await stack.wait_for_dag("narrow")
    run_id = await stack.trigger("narrow")

    async def one_waits() -> dict[str, Any] | None:
        tis = await stack.task_instances("narrow", run_id)
        return next((t for t in tis.values() if t["wait_code"] == "max_active_tasks"), None)

    waiting = await wait_until(one_waits)
    assert "DAG 'narrow' has 1 of 1 tasks queued or running" in waiting["wait_reason"]
    assert await stack.wait_for_run("narrow", run_id) == "success"
    _assert_serial(await stack.task_instances("narrow", run_id))


ONE_AT_A_TIME = """
    import asyncio
    from weir import dag, task

    @dag(max_active_runs=1)
    def single_run():
        @task
        async def slow() -> None:
            await asyncio.sleep(0.8)

        slow()

    single_run()
"""


async def test_max_active_runs_keeps_the_second_run_queued(stack: Stack) -> None:
    stack.write_dag("single_run.py", ONE_AT_A_TIME)
    await stack.wait_for_dag("single_run")
    first = await stack.trigger("single_run")
    second = await stack.trigger("single_run")

    async def second_waits() -> dict[str, Any] | None:
        ti = await _ti(stack, "single_run", second, "slow")
        return ti if ti["wait_code"] == "max_active_runs" else None

    waiting = await wait_until(second_waits)
    assert f"has 1 of 1 runs active (max_active_runs=1): {first}" in waiting["wait_reason"]
    run = (await stack.client.get(f"/api/v1/dags/single_run/runs/{second}")).json()
    assert run["state"] == "queued"
    assert await stack.wait_for_run("single_run", first) == "success"
    assert await stack.wait_for_run("single_run", second) == "success"
    before = (await stack.client.get(f"/api/v1/dags/single_run/runs/{first}")).json()
    after = (await stack.client.get(f"/api/v1/dags/single_run/runs/{second}")).json()
    assert _time(before["end_date"]) <= _time(after["start_date"])


GPU = """
    from weir import dag, task

    @dag
    def on_gpu():
        @task(queue="gpu")
        def crunch() -> int:
            return 42

        crunch()

    on_gpu()
"""


async def test_task_on_a_queue_without_worker_waits_until_one_serves_it(stack: Stack) -> None:
    stack.write_dag("on_gpu.py", GPU)
    await stack.wait_for_dag("on_gpu")
    run_id = await stack.trigger("on_gpu")

    async def no_worker() -> dict[str, Any] | None:
        ti = await _ti(stack, "on_gpu", run_id, "crunch")
        return ti if ti["wait_code"] == "no_worker" else None

    waiting = await wait_until(no_worker)
    assert waiting["state"] == "queued" and waiting["queue"] == "gpu"
    assert "weir worker --queues gpu" in waiting["wait_reason"]
    broker = stack.app.state.loops.relay.broker if stack.backend == "sqlite" else None
    if broker is None:
        broker = create_broker(stack.settings)
        await broker.connect()
    stack.start_worker(broker, worker_queues=["gpu"])
    stop, worker = stack.workers.pop()
    try:
        assert await stack.wait_for_run("on_gpu", run_id) == "success"
    finally:
        stop.set()
        await worker
        if stack.backend == "postgres":
            await broker.delete_namespace(["gpu"])  # type: ignore[attr-defined]
            await broker.close()


MISSING_POOL = """
    from weir import dag, task

    @dag
    def needs_pool():
        @task(pool="later", pool_slots=2)
        def load() -> None:
            pass

        load()

    needs_pool()
"""


async def test_missing_then_too_small_pool_says_how_to_fix_it(stack: Stack) -> None:
    stack.write_dag("needs_pool.py", MISSING_POOL)
    await stack.wait_for_dag("needs_pool")
    run_id = await stack.trigger("needs_pool")

    async def reason(code: str) -> dict[str, Any] | None:
        ti = await _ti(stack, "needs_pool", run_id, "load")
        return ti if ti["wait_code"] == code else None

    missing = await wait_until(lambda: reason("pool_missing"))
    assert "pool 'later' does not exist: create it (POST /api/v1/pools" in missing["wait_reason"]
    await _create_pool(stack, "later", 1)
    small = await wait_until(lambda: reason("pool_too_small"))
    assert "needs 2 slot(s) but pool 'later' has only 1" in small["wait_reason"]
    response = await stack.client.patch("/api/v1/pools/later", json={"slots": 2})
    assert response.status_code == 200, response.text
    assert await stack.wait_for_run("needs_pool", run_id) == "success"


async def test_pools_api_reads_for_viewers_and_changes_for_admins(stack: Stack) -> None:
    async with stack.database.sessions.begin() as session:
        viewer = await create_token(session, "viewer", Role.VIEWER, SystemClock().now())
    as_viewer = {"Authorization": f"Bearer {viewer}"}
    listed = await stack.client.get("/api/v1/pools", headers=as_viewer)
    assert listed.status_code == 200
    assert [p["name"] for p in listed.json()["pools"]] == ["default_pool"]
    assert listed.json()["pools"][0]["slots"] == 128
    denied = await stack.client.post(
        "/api/v1/pools", json={"name": "db", "slots": 2}, headers=as_viewer
    )
    assert denied.status_code == 403

    created = await stack.client.post("/api/v1/pools", json={"name": "db", "slots": 2})
    assert created.status_code == 201
    assert created.json() | {"description": None} == {
        "name": "db",
        "slots": 2,
        "description": None,
        "queued_slots": 0,
        "running_slots": 0,
        "open_slots": 2,
        "scheduled_tasks": 0,
    }
    again = await stack.client.post("/api/v1/pools", json={"name": "db", "slots": 3})
    assert again.status_code == 409
    bad = await stack.client.post("/api/v1/pools", json={"name": "db", "slots": -1})
    assert bad.status_code == 422
    patched = await stack.client.patch(
        "/api/v1/pools/db", json={"slots": 5, "description": "the warehouse"}
    )
    assert patched.json()["slots"] == 5 and patched.json()["description"] == "the warehouse"
    got = await stack.client.get("/api/v1/pools/db", headers=as_viewer)
    assert got.status_code == 200 and got.json()["open_slots"] == 5
    assert (await stack.client.delete("/api/v1/pools/db", headers=as_viewer)).status_code == 403
    assert (await stack.client.delete("/api/v1/pools/db")).status_code == 204
    assert (await stack.client.get("/api/v1/pools/db")).status_code == 404
    assert (await stack.client.delete("/api/v1/pools/default_pool")).status_code == 409
