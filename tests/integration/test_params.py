"""Params end to end on both backends: a trigger's conf is checked against the DAG's params before
any run exists, and tasks read the merged values from their context."""

from __future__ import annotations

from typing import Any

from tests.support.stack import Stack

PARAMS = """
    from weir import Param, dag, get_current_context, task

    @dag(params={
        "rows": Param(10, type="integer", minimum=1),
        "table": Param(type="string", enum=["orders", "customers"]),
        "label": "daily",
    })
    def load():
        @task
        def show() -> None:
            context = get_current_context()
            print("params:", sorted(context.params.items()))
            print("conf:", sorted(context.conf.items()))

        show()

    load()
"""


async def runs_of(stack: Stack, dag_id: str) -> list[dict[str, Any]]:
    response = await stack.client.get(f"/api/v1/dags/{dag_id}/runs")
    assert response.status_code == 200, response.text
    runs: list[dict[str, Any]] = response.json()["dag_runs"]
    return runs


async def test_tasks_read_the_params_merged_with_the_conf(stack: Stack) -> None:
    stack.write_dag("load.py", PARAMS)
    await stack.wait_for_dag("load")

    run_id = await stack.trigger("load", {"table": "orders", "extra": 1})

    assert await stack.wait_for_run("load", run_id) == "success"
    log = await stack.logs("load", run_id, "show")
    assert "params: [('label', 'daily'), ('rows', 10), ('table', 'orders')]" in log
    assert "conf: [('extra', 1), ('table', 'orders')]" in log


async def test_an_invalid_conf_is_refused_naming_the_field_and_creates_no_run(
    stack: Stack,
) -> None:
    stack.write_dag("load.py", PARAMS)
    await stack.wait_for_dag("load")

    response = await stack.client.post(
        "/api/v1/dags/load/runs", json={"conf": {"table": "orders", "rows": "many"}}
    )

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["errors"] == [
        {"field": "conf.rows", "message": "'many' is not of type 'integer'"}
    ]
    assert "conf.rows" in problem["detail"]
    assert await runs_of(stack, "load") == []


async def test_a_missing_required_param_is_refused(stack: Stack) -> None:
    stack.write_dag("load.py", PARAMS)
    await stack.wait_for_dag("load")

    response = await stack.client.post("/api/v1/dags/load/runs", json={"conf": {"rows": 3}})

    assert response.status_code == 422
    assert [error["field"] for error in response.json()["errors"]] == ["conf.table"]
    assert await runs_of(stack, "load") == []
