"""The first slice of ``/api/v1``: tokens and roles, pause and unpause, idempotent triggers,
problem details, the OpenAPI document and the plain dashboard page."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx

from app.auth import Role, create_token
from tests.support.stack import Stack, wait_until

ONE_TASK = """
    from weir import dag, task

    @dag(tags=["demo"])
    def single():
        @task
        def only() -> int:
            return 7

        only()

    single()
"""


async def _client_with_role(stack: Stack, role: Role) -> httpx.AsyncClient:
    async with stack.database.sessions.begin() as session:
        token = await create_token(session, f"{role}-token", role, datetime.now(UTC))
    return httpx.AsyncClient(
        base_url=stack.settings.api_url, headers={"Authorization": f"Bearer {token}"}
    )


async def test_requests_without_a_valid_token_are_refused(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.settings.api_url) as anonymous:
        missing = await anonymous.get("/api/v1/dags")
        wrong = await anonymous.get("/api/v1/dags", headers={"Authorization": "Bearer nope"})
    for response in (missing, wrong):
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["status"] == 401


async def test_a_viewer_reads_but_cannot_trigger_or_pause(stack: Stack) -> None:
    stack.write_dag("single.py", ONE_TASK)
    await stack.wait_for_dag("single")
    async with await _client_with_role(stack, Role.VIEWER) as viewer:
        assert (await viewer.get("/api/v1/dags")).status_code == 200
        trigger = await viewer.post("/api/v1/dags/single/runs", json={})
        pause = await viewer.patch("/api/v1/dags/single", json={"is_paused": True})
    assert trigger.status_code == 403 and "operator" in trigger.json()["detail"]
    assert pause.status_code == 403


async def test_a_paused_dags_run_waits_until_unpaused(stack: Stack) -> None:
    stack.write_dag("single.py", ONE_TASK)
    await stack.wait_for_dag("single")
    paused = await stack.client.patch("/api/v1/dags/single", json={"is_paused": True})
    assert paused.json()["is_paused"] is True
    run_id = await stack.trigger("single")
    await stack.app.state.loops.scheduler.run_until_idle()
    run = (await stack.client.get(f"/api/v1/dags/single/runs/{run_id}")).json()
    assert run["state"] == "queued"
    await stack.client.patch("/api/v1/dags/single", json={"is_paused": False})
    assert await stack.wait_for_run("single", run_id) == "success"


async def test_idempotency_key_returns_the_same_run_and_duplicate_run_id_conflicts(
    stack: Stack,
) -> None:
    stack.write_dag("single.py", ONE_TASK)
    await stack.wait_for_dag("single")
    headers = {"Idempotency-Key": "order-42"}
    first = await stack.client.post("/api/v1/dags/single/runs", json={}, headers=headers)
    again = await stack.client.post("/api/v1/dags/single/runs", json={}, headers=headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["run_id"] == again.json()["run_id"]
    named = await stack.client.post("/api/v1/dags/single/runs", json={"run_id": "nightly-1"})
    clash = await stack.client.post("/api/v1/dags/single/runs", json={"run_id": "nightly-1"})
    assert (named.status_code, clash.status_code) == (201, 409)
    assert clash.headers["content-type"] == "application/problem+json"


async def test_bad_input_gets_a_problem_naming_the_field(stack: Stack) -> None:
    stack.write_dag("single.py", ONE_TASK)
    await stack.wait_for_dag("single")
    bad = await stack.client.post("/api/v1/dags/single/runs", json={"conf": "not an object"})
    assert bad.status_code == 422
    assert bad.headers["content-type"] == "application/problem+json"
    assert any(e["field"] == "body.conf" for e in bad.json()["errors"])
    unknown = await stack.client.post("/api/v1/dags/nope/runs", json={})
    assert unknown.status_code == 404 and "nope" in unknown.json()["detail"]


async def test_openapi_names_every_operation(stack: Stack) -> None:
    document = (await stack.client.get("/openapi.json")).json()
    operation_ids = [
        operation["operationId"]
        for path in document["paths"].values()
        for operation in path.values()
    ]
    assert len(operation_ids) == len(set(operation_ids))
    assert {"dags-list", "dags-get", "dags-update", "runs-trigger", "runs-get"} <= set(
        operation_ids
    )


async def test_dashboard_lists_dags_and_import_errors(stack: Stack) -> None:
    stack.write_dag("single.py", ONE_TASK)
    stack.write_dag("broken.py", "import nowhere_to_be_found\n")
    await stack.wait_for_dag("single")

    async with httpx.AsyncClient(base_url=stack.settings.api_url) as anonymous:
        refused = await anonymous.get("/")
    assert (refused.status_code, refused.headers["location"]) == (303, "/login?next=%2F")

    async with stack.dashboard() as browser:

        async def page() -> str | None:
            html = (await browser.get("/")).text
            return html if "broken.py" in html else None

        html = await wait_until(page)
    assert "single" in html and "No module named" in html
