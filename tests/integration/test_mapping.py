"""Dynamic task mapping end to end on both backends, read back through the REST API: instances
per element with their map index, results gathered in order, an empty list, a failing instance
with its own retries, a source that returns no list, and the example DAG."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.support.stack import Stack

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "dags" / "mapped.py"

MAPPED = """
    from weir import dag, get_current_context, task

    @task
    def numbers() -> list[int]:
        return [3, 1, 2]

    @task
    def nothing() -> list[int]:
        return []

    @task
    def not_a_list() -> int:
        return 5

    @task
    def scale(x: int, factor: int) -> int:
        print(f"index {get_current_context().map_index} got {x}")
        return x * factor

    @task(retries=1)
    def invert(x: int) -> float:
        return 1 / x

    @task
    def gather(values: list[int]) -> int:
        print(f"gathered {values}")
        return sum(values)

    @dag
    def three():
        gather(scale.partial(factor=10).expand(x=numbers()))

    @dag
    def empty():
        mapped = scale.partial(factor=10).expand(x=nothing())
        gather.override(task_id="after")(mapped)
        gather.override(task_id="anyway", trigger_rule="all_done")(mapped)

    @dag
    def failing():
        gather(invert.expand(x=[1, 0, 4]))

    @dag
    def wrong_source():
        scale.partial(factor=1).expand(x=not_a_list())

    three()
    empty()
    failing()
    wrong_source()
"""


async def _instances(stack: Stack, dag_id: str, run_id: str) -> list[dict[str, Any]]:
    response = await stack.client.get(f"/api/v1/dags/{dag_id}/runs/{run_id}/tasks")
    assert response.status_code == 200, response.text
    rows: list[dict[str, Any]] = response.json()["task_instances"]
    return sorted(rows, key=lambda ti: (ti["task_id"], ti["map_index"]))


def _states(rows: list[dict[str, Any]]) -> list[tuple[str, int, str]]:
    return [(ti["task_id"], ti["map_index"], ti["state"]) for ti in rows]


async def _logs(stack: Stack, dag_id: str, run_id: str, task_id: str, **params: Any) -> str:
    url = f"/api/v1/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/logs"
    response = await stack.client.get(url, params={**params, "format": "text"})
    assert response.status_code == 200, response.text
    return response.text


async def test_mapping_on_each_backend(stack: Stack) -> None:
    stack.write_dag("mapped_cases.py", MAPPED)
    stack.write_dag("example_mapped.py", EXAMPLE.read_text())
    for dag_id in ("three", "empty", "failing", "wrong_source", "mapped"):
        await stack.wait_for_dag(dag_id)
    runs = {dag_id: await stack.trigger(dag_id) for dag_id in ("three", "empty", "failing")}
    runs |= {dag_id: await stack.trigger(dag_id) for dag_id in ("wrong_source", "mapped")}

    # One instance per element, map indexes 0..2; the downstream gets the results in that order.
    assert await stack.wait_for_run("three", runs["three"]) == "success"
    assert _states(await _instances(stack, "three", runs["three"])) == [
        ("gather", -1, "success"),
        ("numbers", -1, "success"),
        ("scale", 0, "success"),
        ("scale", 1, "success"),
        ("scale", 2, "success"),
    ]
    assert "gathered [30, 10, 20]" in await _logs(stack, "three", runs["three"], "gather")
    assert "index 1 got 1" in await _logs(stack, "three", runs["three"], "scale", map_index=1)
    await _check_addressing(stack, runs["three"])

    # An empty list skips the mapped task; the rules downstream decide from there.
    assert await stack.wait_for_run("empty", runs["empty"]) == "success"
    assert _states(await _instances(stack, "empty", runs["empty"])) == [
        ("after", -1, "skipped"),
        ("anyway", -1, "success"),
        ("nothing", -1, "success"),
        ("scale", -1, "skipped"),
    ]
    assert "gathered []" in await _logs(stack, "empty", runs["empty"], "anyway")

    # One instance fails after its own retry; the others succeed once; the downstream never runs.
    assert await stack.wait_for_run("failing", runs["failing"]) == "failed"
    rows = await _instances(stack, "failing", runs["failing"])
    assert [(*state, ti["attempt"]) for state, ti in zip(_states(rows), rows, strict=True)] == [
        ("gather", -1, "upstream_failed", 0),
        ("invert", 0, "success", 1),
        ("invert", 1, "failed", 2),
        ("invert", 2, "success", 1),
    ]
    assert "ZeroDivisionError" in await _logs(
        stack, "failing", runs["failing"], "invert", map_index=1
    )

    # A source that returns no list fails the mapped task, saying why in its log.
    assert await stack.wait_for_run("wrong_source", runs["wrong_source"]) == "failed"
    log = await _logs(stack, "wrong_source", runs["wrong_source"], "scale")
    assert "returned int 5, not a list" in log

    assert await stack.wait_for_run("mapped", runs["mapped"]) == "success"
    example = _states(await _instances(stack, "mapped", runs["mapped"]))
    assert [i for t, i, _ in example if t == "count_lines"] == [0, 1, 2]
    assert [i for t, i, _ in example if t == "shout"] == [0, 1, 2, 3]
    assert "lines per file: [9, 19, 29]" in await _logs(stack, "mapped", runs["mapped"], "total")


async def _check_addressing(stack: Stack, run_id: str) -> None:
    """``?map_index=`` picks one instance; a mapped task without it is refused with a hint."""
    base = f"/api/v1/dags/three/runs/{run_id}/tasks"
    one = await stack.client.get(f"{base}/scale", params={"map_index": 2})
    assert one.status_code == 200, one.text
    assert (one.json()["map_index"], one.json()["state"]) == (2, "success")
    unnamed = await stack.client.get(f"{base}/scale")
    assert unnamed.status_code == 404
    assert "map indexes 0..2" in unnamed.text
    assert (await stack.client.get(f"{base}/scale", params={"map_index": 3})).status_code == 404
    plain = await stack.client.get(f"{base}/gather")
    assert plain.status_code == 200 and plain.json()["map_index"] == -1
