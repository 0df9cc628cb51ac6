"""Scheduled runs on both backends: data intervals, catchup, pause and unpause, no duplicates.

Time is a ``MovableClock`` shared by the service: a test moves it and runs the scheduler until
idle, instead of waiting for a schedule to fall due in real time. A running attempt's lease is
measured on the same clock, so each test lets its runs finish before it moves the clock again.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from app.db.models import Dag
from app.scheduler.due_runs import create_due_runs
from tests.support.clock import MovableClock
from tests.support.stack import Stack, start_stack, wait_until

DAG = """
    from datetime import datetime
    from weir import dag, task
    from weir.context import get_current_context

    @dag(dag_id={dag_id!r}, schedule={schedule!r}, start_date=datetime.fromisoformat({start!r}),
         timezone={timezone!r}, catchup={catchup!r})
    def scheduled():
        @task
        def report() -> None:
            context = get_current_context()
            print("interval", context.data_interval_start.isoformat(),
                  context.data_interval_end.isoformat())

        report()

    scheduled()
"""


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
async def timed(backend: str, tmp_path: Path, clock: MovableClock) -> AsyncIterator[Stack]:
    async with start_stack(backend, tmp_path, clock=clock) as running:
        yield running


def midnight(moment: datetime) -> datetime:
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


async def write_dag(
    stack: Stack,
    dag_id: str,
    start: datetime,
    *,
    catchup: bool = False,
    schedule: str = "@daily",
    timezone: str = "UTC",
) -> dict[str, Any]:
    source = DAG.format(
        dag_id=dag_id,
        schedule=schedule,
        start=start.isoformat(),
        timezone=timezone,
        catchup=catchup,
    )
    stack.write_dag(f"{dag_id}.py", source)
    return await stack.wait_for_dag(dag_id)


async def scheduled_runs(stack: Stack, dag_id: str) -> list[dict[str, Any]]:
    """The DAG's scheduled runs through the REST API, oldest first."""
    response = await stack.client.get(f"/api/v1/dags/{dag_id}/runs")
    assert response.status_code == 200, response.text
    runs = [r for r in response.json()["dag_runs"] if r["run_type"] == "scheduled"]
    return sorted(runs, key=lambda r: r["created_at"] + r["run_id"])


async def settle(stack: Stack, dag_id: str, count: int) -> list[dict[str, Any]]:
    """Run the scheduler until idle, then wait for ``count`` scheduled runs to finish."""
    await stack.app.state.loops.scheduler.run_until_idle()

    async def finished() -> list[dict[str, Any]] | None:
        runs = await scheduled_runs(stack, dag_id)
        done = len(runs) == count and all(r["state"] in {"success", "failed"} for r in runs)
        return runs if done else None

    runs: list[dict[str, Any]] = await wait_until(finished)
    return runs


def interval(run: dict[str, Any]) -> tuple[datetime, datetime]:
    return (
        datetime.fromisoformat(run["data_interval_start"]),
        datetime.fromisoformat(run["data_interval_end"]),
    )


async def test_cron_dag_runs_its_intervals_and_tasks_see_them(
    timed: Stack, clock: MovableClock
) -> None:
    today = midnight(clock.now())
    await write_dag(timed, "daily", today - timedelta(days=10))
    [first] = await settle(timed, "daily", 1)
    assert first["state"] == "success"
    assert interval(first) == (today - timedelta(days=1), today)
    assert datetime.fromisoformat(first["logical_date"]) == today - timedelta(days=1)
    assert first["run_id"] == f"scheduled__{(today - timedelta(days=1)).isoformat()}"
    log = await timed.logs("daily", first["run_id"], "report")
    assert f"interval {(today - timedelta(days=1)).isoformat()} {today.isoformat()}" in log

    clock.set(today + timedelta(days=1, seconds=5))
    runs = await settle(timed, "daily", 2)
    assert interval(runs[1]) == (today, today + timedelta(days=1))


async def test_cron_is_read_in_the_dag_timezone(timed: Stack, clock: MovableClock) -> None:
    today = midnight(clock.now())
    await write_dag(
        timed, "tokyo", today - timedelta(days=5), schedule="0 9 * * *", timezone="Asia/Tokyo"
    )
    [run] = await settle(timed, "tokyo", 1)
    start, end = interval(run)
    assert (start.hour, end.hour, end - start) == (0, 0, timedelta(days=1))  # 09:00 JST = 00:00 Z
    assert end <= clock.now() < end + timedelta(days=1)


async def test_catchup_creates_every_missed_interval_in_order(
    timed: Stack, clock: MovableClock
) -> None:
    today = midnight(clock.now())
    await write_dag(timed, "backlog", today - timedelta(days=3), catchup=True)
    runs = await settle(timed, "backlog", 3)
    assert [interval(r)[0] for r in runs] == [today - timedelta(days=n) for n in (3, 2, 1)]
    assert all(r["state"] == "success" for r in runs)


async def test_catchup_off_creates_only_the_latest_interval(
    timed: Stack, clock: MovableClock
) -> None:
    today = midnight(clock.now())
    await write_dag(timed, "latest", today - timedelta(days=30))
    [first] = await settle(timed, "latest", 1)  # not thirty runs: only yesterday's
    assert interval(first) == (today - timedelta(days=1), today)
    clock.set(today + timedelta(days=4, hours=1))  # the scheduler was away four days
    runs = await settle(timed, "latest", 2)
    assert interval(runs[1]) == (today + timedelta(days=3), today + timedelta(days=4))


async def test_paused_dag_creates_no_runs_and_unpausing_does_not_flood(
    timed: Stack, clock: MovableClock
) -> None:
    today = midnight(clock.now())
    dag = await write_dag(timed, "sleepy", today + timedelta(days=1))
    assert datetime.fromisoformat(dag["next_run_after"]) == today + timedelta(days=2)
    paused = await timed.client.patch("/api/v1/dags/sleepy", json={"is_paused": True})
    assert paused.status_code == 200, paused.text

    clock.set(today + timedelta(days=6, hours=1))
    await timed.app.state.loops.scheduler.run_until_idle()
    assert await scheduled_runs(timed, "sleepy") == []

    unpaused = await timed.client.patch("/api/v1/dags/sleepy", json={"is_paused": False})
    assert unpaused.status_code == 200, unpaused.text
    planned = datetime.fromisoformat(unpaused.json()["next_logical_date"])
    assert planned == today + timedelta(days=5)
    runs = await settle(timed, "sleepy", 1)
    assert interval(runs[0]) == (today + timedelta(days=5), today + timedelta(days=6))


async def test_replicas_never_create_the_same_run_twice(timed: Stack, clock: MovableClock) -> None:
    today = midnight(clock.now())
    await write_dag(timed, "contended", today - timedelta(days=2), catchup=True)
    await settle(timed, "contended", 2)
    versions = timed.app.state.weir.versions
    database = timed.database

    async def replica() -> int:
        async with database.sessions.begin() as session:
            return await create_due_runs(session, versions, clock.now())

    clock.set(today + timedelta(days=3, hours=1))
    await asyncio.gather(*(replica() for _ in range(4)))
    runs = await settle(timed, "contended", 5)
    starts = [interval(r)[0] for r in runs]
    assert sorted(starts) == [today + timedelta(days=n) for n in range(-2, 3)]

    # A stale plan (a replica that read the DAG before another advanced it) asks for a run that
    # exists: the unique index refuses it, and the plan moves on without a duplicate.
    async with database.sessions.begin() as session:
        await session.execute(
            update(Dag)
            .where(Dag.dag_id == "contended")
            .values(
                next_logical_date=today,
                next_data_interval_start=today,
                next_data_interval_end=today + timedelta(days=1),
                next_run_after=today + timedelta(days=1),
            )
        )
    # This call or the stack's own scheduler (its safety sweep may come first) meets the stale
    # plan; either way the same step runs, and neither may add a run.
    await replica()
    assert len(await scheduled_runs(timed, "contended")) == 5
    dag = (await timed.client.get("/api/v1/dags/contended")).json()
    assert datetime.fromisoformat(dag["next_logical_date"]) == today + timedelta(days=3)


async def test_manual_run_covers_its_logical_date(timed: Stack) -> None:
    await write_dag(timed, "manual", datetime(2026, 1, 1, tzinfo=UTC))
    run_id = await timed.trigger("manual")
    run = (await timed.client.get(f"/api/v1/dags/manual/runs/{run_id}")).json()
    assert run["data_interval_start"] == run["data_interval_end"] == run["logical_date"]


async def test_manual_only_dag_has_no_plan_and_a_new_schedule_gets_one(
    timed: Stack, clock: MovableClock
) -> None:
    today = midnight(clock.now())
    source = DAG.replace("schedule={schedule!r}", "schedule=None")
    timed.write_dag(
        "later.py",
        source.format(
            dag_id="later",
            start=(today - timedelta(days=3)).isoformat(),
            timezone="UTC",
            catchup=False,
        ),
    )
    dag = await timed.wait_for_dag("later")
    assert (dag["schedule"], dag["next_run_after"]) == (None, None)

    await write_dag(timed, "later", today - timedelta(days=3), schedule="@hourly")

    async def planned() -> Any:
        found = (await timed.client.get("/api/v1/dags/later")).json()
        return found if found["next_run_after"] else None

    dag = await wait_until(planned)
    assert dag["schedule"] == "@hourly"
    next_run_after = datetime.fromisoformat(dag["next_run_after"])
    assert abs(next_run_after - clock.now()) <= timedelta(hours=1)
