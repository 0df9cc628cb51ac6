"""Backfills on both backends: the runs of a past range, no duplicates, their own run budget beside
the schedule's, pause, resume, cancel, and progress.

Time is a ``MovableClock`` that stands still, so the DAG's latest scheduled interval is known; a
DAG is paused where a test needs queued runs to stay queued until it says otherwise.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from app.auth import Role, create_token
from tests.support.clock import MovableClock
from tests.support.stack import Stack, start_stack, wait_until

DAG = """
    from datetime import datetime
    from weir import dag, task

    @dag(dag_id={dag_id!r}, schedule="@daily", start_date=datetime.fromisoformat({start!r}),
         max_active_runs=1)
    def daily():
        @task
        def work() -> None:
            print("working")

        work()

    daily()
"""
NO_RUNS = {"total": 0, "queued": 0, "running": 0, "success": 0, "failed": 0}


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
async def timed(backend: str, tmp_path: Path, clock: MovableClock) -> AsyncIterator[Stack]:
    async with start_stack(backend, tmp_path, clock=clock) as running:
        yield running


@pytest.fixture
async def idle(backend: str, tmp_path: Path, clock: MovableClock) -> AsyncIterator[Stack]:
    """No worker: runs start but never finish, so who is running can be read at leisure."""
    async with start_stack(backend, tmp_path, clock=clock, workers=0) as running:
        yield running


def day(clock: MovableClock, offset: int) -> datetime:
    """Midnight UTC ``offset`` days from the clock's today."""
    today = clock.now().replace(hour=0, minute=0, second=0, microsecond=0)
    return today + timedelta(days=offset)


async def write_daily(stack: Stack, dag_id: str, clock: MovableClock) -> None:
    source = DAG.format(dag_id=dag_id, start=day(clock, -30).isoformat())
    stack.write_dag(f"{dag_id}.py", source)
    await stack.wait_for_dag(dag_id)


async def set_paused(stack: Stack, dag_id: str, paused: bool) -> None:
    response = await stack.client.patch(f"/api/v1/dags/{dag_id}", json={"is_paused": paused})
    assert response.status_code == 200, response.text


async def backfill(stack: Stack, dag_id: str, start: datetime, end: datetime, **extra: Any) -> Any:
    body = {"dag_id": dag_id, "start": start.isoformat(), "end": end.isoformat(), **extra}
    response = await stack.client.post("/api/v1/backfills", json=body)
    assert response.status_code == 201, response.text
    return response.json()


async def action(stack: Stack, backfill_id: int, verb: str, status: int = 200) -> Any:
    response = await stack.client.post(f"/api/v1/backfills/{backfill_id}/{verb}")
    assert response.status_code == status, response.text
    return response.json()


async def read(stack: Stack, backfill_id: int) -> Any:
    response = await stack.client.get(f"/api/v1/backfills/{backfill_id}")
    assert response.status_code == 200, response.text
    return response.json()


async def runs_of(stack: Stack, dag_id: str, run_type: str = "backfill") -> list[dict[str, Any]]:
    response = await stack.client.get(f"/api/v1/dags/{dag_id}/runs")
    assert response.status_code == 200, response.text
    runs = [r for r in response.json()["dag_runs"] if r["run_type"] == run_type]
    return sorted(runs, key=lambda r: r["logical_date"])


async def wait_reason(stack: Stack, run: dict[str, Any]) -> tuple[str, str]:
    [task] = (await stack.task_instances("daily", run["run_id"])).values()
    return task["wait_code"], task["wait_reason"]


async def wait_for_state(stack: Stack, backfill_id: int, state: str) -> Any:
    async def reached() -> Any:
        body = await read(stack, backfill_id)
        return body if body["state"] == state else None

    return await wait_until(reached)


async def test_backfill_runs_each_interval_once_and_completes(
    timed: Stack, clock: MovableClock
) -> None:
    await write_daily(timed, "daily", clock)
    first = await backfill(timed, "daily", day(clock, -10), day(clock, -6))
    assert first["skipped"] == 0 and first["progress"]["total"] == 5
    done = await wait_for_state(timed, first["id"], "completed")
    assert done["progress"] == {**NO_RUNS, "total": 5, "success": 5}
    assert done["completed_at"] is not None
    runs = await runs_of(timed, "daily")
    expected = [day(clock, offset) for offset in range(-10, -5)]
    assert [datetime.fromisoformat(r["logical_date"]) for r in runs] == expected
    for run, start in zip(runs, expected, strict=True):
        assert datetime.fromisoformat(run["data_interval_start"]) == start
        assert datetime.fromisoformat(run["data_interval_end"]) == start + timedelta(days=1)
        assert run["state"] == "success"

    # Overlapping the first backfill and yesterday's scheduled run: only the gaps are created.
    second = await backfill(timed, "daily", day(clock, -8), day(clock, 0))
    assert second["skipped"] == 4  # three backfilled days and yesterday's scheduled run
    assert second["progress"]["total"] == 4
    await wait_for_state(timed, second["id"], "completed")
    logical = [r["logical_date"] for r in await runs_of(timed, "daily")]
    assert len(logical) == len(set(logical)) == 9
    listed = await timed.client.get("/api/v1/backfills", params={"dag_id": "daily"})
    assert [b["id"] for b in listed.json()["backfills"]] == [second["id"], first["id"]]


async def test_backfill_budget_is_its_own(idle: Stack, clock: MovableClock) -> None:
    await write_daily(idle, "daily", clock)
    await set_paused(idle, "daily", True)
    created = await backfill(idle, "daily", day(clock, -5), day(clock, -3), max_active_runs=1)
    await set_paused(idle, "daily", False)
    await idle.app.state.loops.scheduler.run_until_idle()
    # The DAG allows one active run and its scheduled run has it; the backfill runs beside it.
    [scheduled] = await runs_of(idle, "daily", "scheduled")
    assert scheduled["state"] == "running"
    states = [r["state"] for r in await runs_of(idle, "daily")]
    assert states == ["running", "queued", "queued"]
    progress = (await read(idle, created["id"]))["progress"]
    assert (progress["running"], progress["queued"]) == (1, 2)
    code, reason = await wait_reason(idle, (await runs_of(idle, "daily"))[1])
    assert code == "max_active_runs" and f"backfill {created['id']} has 1 of 1" in reason

    cancelled = await action(idle, created["id"], "cancel")
    assert cancelled["state"] == "cancelled" and cancelled["completed_at"] is not None
    assert cancelled["deleted_runs"] == 2  # the queued ones; the running one finishes
    assert [r["state"] for r in await runs_of(idle, "daily")] == ["running"]
    await action(idle, created["id"], "resume", status=409)


async def test_pause_holds_queued_runs_until_resumed(timed: Stack, clock: MovableClock) -> None:
    await write_daily(timed, "daily", clock)
    await set_paused(timed, "daily", True)
    created = await backfill(timed, "daily", day(clock, -5), day(clock, -3))
    paused = await action(timed, created["id"], "pause")
    assert paused["state"] == "paused"
    await action(timed, created["id"], "pause", status=409)
    await set_paused(timed, "daily", False)
    await timed.app.state.loops.scheduler.run_until_idle()
    queued = await runs_of(timed, "daily")
    assert [r["state"] for r in queued] == ["queued"] * 3
    code, reason = await wait_reason(timed, queued[0])
    assert code == "backfill_paused" and f"/api/v1/backfills/{created['id']}/resume" in reason

    assert (await action(timed, created["id"], "resume"))["state"] == "running"
    done = await wait_for_state(timed, created["id"], "completed")
    assert done["progress"]["success"] == 3


async def test_cancel_deletes_runs_not_started(timed: Stack, clock: MovableClock) -> None:
    """They never ran: no failed run to call back or notify about, and the range stays free
    for the backfill that follows the fix."""
    await write_daily(timed, "daily", clock)
    await set_paused(timed, "daily", True)
    created = await backfill(timed, "daily", day(clock, -4), day(clock, -3))
    cancelled = await action(timed, created["id"], "cancel")
    assert cancelled["progress"] == NO_RUNS and cancelled["deleted_runs"] == 2
    assert await runs_of(timed, "daily") == []
    await action(timed, created["id"], "cancel", status=409)
    await timed.app.state.loops.scheduler.run_until_idle()
    assert (await read(timed, created["id"]))["state"] == "cancelled"

    again = await backfill(timed, "daily", day(clock, -4), day(clock, -3))
    assert again["skipped"] == 0 and again["progress"]["total"] == 2
    audit = await timed.client.get("/api/v1/audit", params={"action": "backfill.cancel"})
    assert audit.status_code == 200, audit.text
    [entry] = [e for e in audit.json()["entries"] if e["action"] == "backfill.cancel"]
    assert entry["target"] == "daily" and entry["detail"]["deleted_runs"] == 2


async def test_backfill_refusals(stack: Stack) -> None:
    now = datetime.now(UTC)
    await write_daily(stack, "daily", MovableClock(now))
    post = stack.client.post
    cases = [
        ({"dag_id": "nope", "start": "2024-01-01", "end": "2024-01-02"}, 404),
        ({"dag_id": "daily", "start": "2024-01-05", "end": "2024-01-01"}, 422),
        ({"dag_id": "daily", "start": (now + timedelta(days=3)).isoformat(),
          "end": (now + timedelta(days=5)).isoformat()}, 422),
        ({"dag_id": "daily", "start": "2024-01-01", "end": "2024-01-02", "max_active_runs": 0},
         422),
        ({"dag_id": "dai\x00ly", "start": "2024-01-01", "end": "2024-01-02"}, 422),
        ({"dag_id": "daily", "start": "2024-01-01", "end": "2024-01-02",
          "conf": {"k": "v\x00"}}, 422),
        ({"dag_id": "daily", "start": "0001-01-01", "end": "2024-01-02"}, 422),
        ({"dag_id": "daily", "start": "2024-01-01", "end": "2024-01-02", "surprise": 1}, 422),
    ]  # fmt: skip
    for body, status in cases:
        response = await post("/api/v1/backfills", json=body)
        assert response.status_code == status, (body, response.text)
        assert response.headers["content-type"] == "application/problem+json"
    assert (await stack.client.get("/api/v1/backfills/999")).status_code == 404
    for hostile in ("abc", "99999999999999999999", "-1"):
        assert (await stack.client.get(f"/api/v1/backfills/{hostile}")).status_code == 404
    assert (await stack.client.get("/api/v1/backfills/%00")).status_code == 422  # any NUL
    assert (await post("/api/v1/backfills/999/pause")).status_code == 404


async def test_viewers_read_and_operators_act(stack: Stack) -> None:
    clock = MovableClock(datetime.now(UTC))
    await write_daily(stack, "daily", clock)
    created = await backfill(stack, "daily", day(clock, -3), day(clock, -2))
    async with stack.database.sessions.begin() as session:
        viewer = await create_token(session, "viewer", Role.VIEWER, clock.now())
    as_viewer = {"Authorization": f"Bearer {viewer}"}
    listed = await stack.client.get("/api/v1/backfills", headers=as_viewer)
    assert [b["id"] for b in listed.json()["backfills"]] == [created["id"]]
    body = {"dag_id": "daily", "start": "2024-01-01", "end": "2024-01-02"}
    refused = await stack.client.post("/api/v1/backfills", json=body, headers=as_viewer)
    assert refused.status_code == 403
    for verb in ("pause", "resume", "cancel"):
        url = f"/api/v1/backfills/{created['id']}/{verb}"
        assert (await stack.client.post(url, headers=as_viewer)).status_code == 403
    document = (await stack.client.get("/openapi.json")).json()
    operation_ids = {
        op["operationId"] for path in document["paths"].values() for op in path.values()
    }
    verbs = ("create", "list", "get", "pause", "resume", "cancel")
    assert {f"backfills-{verb}" for verb in verbs} <= operation_ids
