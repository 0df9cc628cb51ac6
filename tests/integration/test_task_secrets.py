"""Invariant 6 from a task's side: a running task reads connections and variables through the
execution API (sync tasks from their pool process, async ones on the worker's loop); the task gets
the clear values, and its log shows ``***`` wherever it printed a secret."""

from __future__ import annotations

import hashlib

from tests.support.stack import Stack

PASSWORD = "p@ss w0rd/with:odd&chars"
TOKEN = "variable-token-value-42"

SECRETS_DAG = """
    import hashlib
    from weir import dag, task
    from weir.resources import aget_connection, aget_variable, get_connection, get_variable

    def digest(text):
        return hashlib.sha256(text.encode()).hexdigest()

    @dag()
    def uses_secrets():
        @task
        def sync_reader() -> dict:
            conn = get_connection("warehouse")
            token = get_variable("deploy_token")
            print("password is", conn.password)
            print("uri is", conn.get_uri())
            print("token is", token, "and region is", get_variable("region"))
            return {"password": digest(conn.password), "token": digest(token),
                    "missing": get_variable("nope", default="fallback"),
                    "limits": get_variable("limits", deserialize_json=True)}

        @task
        async def async_reader() -> dict:
            conn = await aget_connection("warehouse")
            token = await aget_variable("deploy_token")
            print("async password is", conn.password, "and token", token)
            return {"password": digest(conn.password), "token": digest(token)}

        @task
        async def blocking_call_in_async_task() -> str:
            try:
                get_connection("warehouse")
            except RuntimeError as error:
                return str(error)
            return "no error"

        sync_reader()
        async_reader()
        blocking_call_in_async_task()

    uses_secrets()
"""


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


async def _xcom(stack: Stack, run_id: str, task_id: str) -> object:
    response = await stack.client.get(
        f"/api/v1/dags/uses_secrets/runs/{run_id}/tasks/{task_id}/xcom"
    )
    assert response.status_code == 200, response.text
    return response.json()["value"]


async def test_tasks_read_secrets_that_their_logs_mask(stack: Stack) -> None:
    await stack.client.post("/api/v1/connections", json={
        "conn_id": "warehouse", "conn_type": "postgres", "host": "db", "login": "etl",
        "password": PASSWORD,
    })  # fmt: skip
    await stack.client.put("/api/v1/variables/deploy_token", json={"value": TOKEN})
    await stack.client.put("/api/v1/variables/region", json={"value": "eu-west-1"})
    await stack.client.put("/api/v1/variables/limits", json={"value": '{"rows": 10}'})
    stack.write_dag("uses_secrets.py", SECRETS_DAG)
    await stack.wait_for_dag("uses_secrets")

    run_id = await stack.trigger("uses_secrets")
    assert await stack.wait_for_run("uses_secrets", run_id) == "success"

    tasks = await stack.task_instances("uses_secrets", run_id)
    assert {t["state"] for t in tasks.values()} == {"success"}
    sync_log = await stack.logs("uses_secrets", run_id, "sync_reader")
    async_log = await stack.logs("uses_secrets", run_id, "async_reader")
    assert "password is ***" in sync_log and "token is *** and region is eu-west-1" in sync_log
    assert "uri is postgres://etl:***@db/" in sync_log  # the URL-encoded form is masked too
    assert "async password is *** and token ***" in async_log
    for log in (sync_log, async_log):
        assert PASSWORD not in log and TOKEN not in log
    blocking_log = await stack.logs("uses_secrets", run_id, "blocking_call_in_async_task")
    assert "aget_connection" in blocking_log
    sync_result = await _xcom(stack, run_id, "sync_reader")
    assert sync_result == {"password": _digest(PASSWORD), "token": _digest(TOKEN),
                           "missing": "fallback", "limits": {"rows": 10}}  # fmt: skip
    async_result = await _xcom(stack, run_id, "async_reader")
    assert async_result == {"password": _digest(PASSWORD), "token": _digest(TOKEN)}
