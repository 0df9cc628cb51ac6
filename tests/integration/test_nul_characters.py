"""NUL characters: PostgreSQL's text and JSONB cannot hold them, SQLite can. A task that prints or
returns NUL still succeeds with its whole log, and both backends store the same (U+FFFD in its
place); a NUL in a path or query parameter is a 422 problem+json, never a 500."""

from __future__ import annotations

import pytest

from tests.support.stack import Stack

NUL_DAG = """
    import subprocess, sys
    from weir import dag, task

    @dag()
    def nul_output():
        @task
        def emits() -> dict:
            print("before\\x00after")
            sys.stdout.write("second\\x00line\\n")
            return {"key\\x00": ["value\\x00", 1]}

        @task
        async def passes_on(value: dict) -> dict:
            print("async", "x\\x00y")
            return value

        passes_on(emits())

    nul_output()
"""


async def test_a_task_that_prints_and_returns_nul_succeeds_with_its_log(stack: Stack) -> None:
    stack.write_dag("nul_output.py", NUL_DAG)
    await stack.wait_for_dag("nul_output")
    run_id = await stack.trigger("nul_output")
    assert await stack.wait_for_run("nul_output", run_id) == "success"

    log = await stack.logs("nul_output", run_id, "emits")
    assert "before\ufffdafter" in log and "second\ufffdline" in log
    assert "async x\ufffdy" in await stack.logs("nul_output", run_id, "passes_on")
    expected = {"key\ufffd": ["value\ufffd", 1]}
    for task_id in ("emits", "passes_on"):
        response = await stack.client.get(
            f"/api/v1/dags/nul_output/runs/{run_id}/tasks/{task_id}/xcom"
        )
        assert response.status_code == 200, response.text
        assert response.json()["value"] == expected


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/pools/a%00b",
        "/api/v1/dags/a%00b/runs/r/tasks",
        "/api/v1/dags?tags=a%00b",
        "/api/v1/webhooks/a%00b",
        "/dags/a%00b",
    ],
)
async def test_a_nul_in_a_parameter_is_a_client_error(stack: Stack, url: str) -> None:
    for method in ("GET", "POST"):
        response = await stack.client.request(method, url)
        assert response.status_code == 422, (method, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert "NUL" in response.json()["detail"]
