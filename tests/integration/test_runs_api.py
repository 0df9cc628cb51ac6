"""Runs and DAGs over REST, on both backends: list filters, totals and sort keys, the list of
every DAG's runs, triggers that are audited, idempotent and refuse a duplicate ``run_id``, and
deleting a run with everything it owns."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from app.db.models import AttemptLog, AuditEntry, TaskInstance
from tests.support.stack import Stack

DAGS = """
    from weir import dag, task

    @task
    def hello() -> str:
        print("hello")
        return "hi"

    @dag(tags=["etl", "nightly"])
    def Orders_Load():
        hello()

    @dag(tags=["ml"])
    def train():
        hello()

    Orders_Load()
    train()
"""

DATES = ["2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z", "2026-01-03T00:00:00Z"]


async def _trigger(stack: Stack, dag_id: str, **body: Any) -> dict[str, Any]:
    response = await stack.client.post(f"/api/v1/dags/{dag_id}/runs", json=body)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def _list(stack: Stack, path: str, **params: Any) -> dict[str, Any]:
    response = await stack.client.get(path, params=params)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def _ready(stack: Stack) -> None:
    stack.write_dag("dags.py", DAGS)
    await stack.wait_for_dag("Orders_Load")
    await stack.wait_for_dag("train")


async def test_dag_list_filters_sorts_and_pages(stack: Stack) -> None:
    await _ready(stack)
    paused = await stack.client.patch("/api/v1/dags/train", json={"is_paused": True})
    assert paused.status_code == 200

    def ids(body: dict[str, Any]) -> list[str]:
        return [d["dag_id"] for d in body["dags"]]

    assert ids(await _list(stack, "/api/v1/dags", tag="etl")) == ["Orders_Load"]
    assert ids(await _list(stack, "/api/v1/dags", tag=["ml", "nightly"])) == [
        "Orders_Load",
        "train",
    ]
    assert ids(await _list(stack, "/api/v1/dags", paused="true")) == ["train"]
    assert ids(await _list(stack, "/api/v1/dags", search="ORDERS_")) == ["Orders_Load"]
    assert ids(await _list(stack, "/api/v1/dags", search="%")) == []
    page = await _list(stack, "/api/v1/dags", order_by="-dag_id", limit=1)
    assert (ids(page), page["total"]) == (["train"], 2)
    bad = await stack.client.get("/api/v1/dags", params={"order_by": "fileloc"})
    assert bad.status_code == 422 and "dag_id" in bad.json()["detail"]
    async with stack.database.sessions() as session:
        actions = await session.scalars(select(AuditEntry.action).order_by(AuditEntry.id))
        assert list(actions) == ["dag.pause"]


async def test_run_lists_filter_sort_and_count(stack: Stack) -> None:
    await _ready(stack)
    for dag_id in ("Orders_Load", "train"):  # paused: the runs stay queued, nothing runs
        await stack.client.patch(f"/api/v1/dags/{dag_id}", json={"is_paused": True})
    for date in DATES:
        await _trigger(stack, "Orders_Load", logical_date=date, run_id=f"r-{date[:10]}")
    await _trigger(stack, "train", run_id="t-1")
    await stack.client.patch("/api/v1/dags/Orders_Load/runs/r-2026-01-01", json={"state": "failed"})

    path = "/api/v1/dags/Orders_Load/runs"
    first = await _list(stack, path, limit=2, order_by="logical_date")
    assert first["total"] == 3
    assert [r["run_id"] for r in first["dag_runs"]] == ["r-2026-01-01", "r-2026-01-02"]
    second = await _list(stack, path, limit=2, offset=2, order_by="logical_date")
    assert [r["run_id"] for r in second["dag_runs"]] == ["r-2026-01-03"]
    newest = await _list(stack, path)
    assert newest["dag_runs"][0]["run_id"] == "r-2026-01-03"
    queued = await _list(stack, path, state="queued", logical_date_gte=DATES[1])
    assert (queued["total"], queued["dag_runs"][0]["state"]) == (2, "queued")
    both = await _list(stack, path, state=["queued", "failed"], logical_date_lte=DATES[0])
    assert [r["run_id"] for r in both["dag_runs"]] == ["r-2026-01-01"]
    assert (await _list(stack, path, run_type="scheduled"))["total"] == 0

    everything = await _list(stack, "/api/v1/runs", order_by="-id")
    assert everything["total"] == 4 and everything["dag_runs"][0]["run_id"] == "t-1"
    assert (await _list(stack, "/api/v1/runs", dag_id="train"))["total"] == 1
    bad_state = await stack.client.get("/api/v1/runs", params={"state": "sleeping"})
    assert bad_state.status_code == 422


async def test_trigger_is_audited_and_refuses_hostile_input(stack: Stack) -> None:
    await _ready(stack)
    await stack.client.patch("/api/v1/dags/train", json={"is_paused": True})
    headers = {"Idempotency-Key": "k-1"}
    first = await stack.client.post("/api/v1/dags/train/runs", json={}, headers=headers)
    again = await stack.client.post("/api/v1/dags/train/runs", json={}, headers=headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["run_id"] == again.json()["run_id"]
    await _trigger(stack, "train", run_id="same")
    clash = await stack.client.post("/api/v1/dags/train/runs", json={"run_id": "same"})
    assert clash.status_code == 409 and clash.headers["content-type"] == "application/problem+json"
    nul = await stack.client.get("/api/v1/dags/train%00/runs/x%00")
    assert nul.status_code == 422
    nul_search = await stack.client.get("/api/v1/dags", params={"search": "a\x00b"})
    assert nul_search.status_code == 422
    nul_conf = await stack.client.post("/api/v1/dags/train/runs", json={"conf": {"a": ["\x00"]}})
    assert nul_conf.status_code == 422 and nul_conf.json()["errors"][0]["field"] == "body.conf"
    async with stack.database.sessions() as session:
        count = select(func.count()).where(AuditEntry.action == "run.trigger")
        assert await session.scalar(count) == 2


async def test_deleting_a_run_takes_its_tasks_and_logs(stack: Stack) -> None:
    await _ready(stack)
    done = (await _trigger(stack, "train"))["run_id"]
    assert await stack.wait_for_run("train", done) == "success"
    await stack.client.patch("/api/v1/dags/train", json={"is_paused": True})
    waiting = (await _trigger(stack, "train"))["run_id"]

    refused = await stack.client.delete(f"/api/v1/dags/train/runs/{waiting}")
    assert refused.status_code == 409 and "force=true" in refused.json()["detail"]
    forced = await stack.client.delete(f"/api/v1/dags/train/runs/{waiting}?force=true")
    assert forced.status_code == 204 and forced.content == b""
    deleted = await stack.client.delete(f"/api/v1/dags/train/runs/{done}")
    assert deleted.status_code == 204
    gone = await stack.client.get(f"/api/v1/dags/train/runs/{done}")
    assert gone.status_code == 404
    async with stack.database.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(TaskInstance)) == 0
        assert await session.scalar(select(func.count()).select_from(AttemptLog)) == 0
        count = select(func.count()).where(AuditEntry.action == "run.delete")
        assert await session.scalar(count) == 2
