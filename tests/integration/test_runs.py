"""A DAG runs end to end on both backends: order, XCom, retries, failure cascade, bad DAG files."""

from __future__ import annotations

from tests.support.stack import Stack

DIAMOND = """
    from weir import dag, task

    @dag
    def diamond():
        @task
        def a() -> int:
            print("a ran")
            return 2

        @task
        def b(x: int) -> int:
            return x + 1

        @task
        async def c(x: int) -> int:
            return x * 10

        @task
        def d(left: int, right: int) -> list[int]:
            return [left, right]

        top = a()
        d(b(top), c(top))

    diamond()
"""


async def test_diamond_runs_in_order_and_passes_return_values(stack: Stack) -> None:
    stack.write_dag("diamond.py", DIAMOND)
    await stack.wait_for_dag("diamond")
    run_id = await stack.trigger("diamond")
    assert await stack.wait_for_run("diamond", run_id) == "success"
    tis = await stack.task_instances("diamond", run_id)
    assert {t: ti["state"] for t, ti in tis.items()} == dict.fromkeys("abcd", "success")
    assert tis["a"]["end_date"] <= tis["b"]["start_date"]
    assert tis["a"]["end_date"] <= tis["c"]["start_date"]
    assert max(tis["b"]["end_date"], tis["c"]["end_date"]) <= tis["d"]["start_date"]
    xcom = await stack.client.get(f"/api/v1/dags/diamond/runs/{run_id}/tasks/d")
    assert xcom.status_code == 200
    assert "a ran" in await stack.logs("diamond", run_id, "a")


RETRIES = """
    from pathlib import Path
    from weir import dag, task

    MARKS = Path(__file__).parent.parent / "marks"

    @dag
    def flaky():
        @task(retries=2, retry_delay=0)
        def third_time_lucky() -> str:
            MARKS.mkdir(exist_ok=True)
            tries = len(list(MARKS.iterdir())) + 1
            (MARKS / str(tries)).touch()
            if tries < 3:
                raise RuntimeError(f"failing on try {tries}")
            return "ok"

        @task(retries=1, retry_delay=0)
        def always_fails() -> None:
            raise ValueError("this task always fails")

        @task
        def after_failure(_: None) -> None:
            pass

        @task
        def after_that(_: None) -> None:
            pass

        third_time_lucky()
        after_that(after_failure(always_fails()))

    flaky()
"""


async def test_retries_then_success_and_failure_cascades(stack: Stack) -> None:
    stack.write_dag("flaky.py", RETRIES)
    await stack.wait_for_dag("flaky")
    run_id = await stack.trigger("flaky")
    assert await stack.wait_for_run("flaky", run_id) == "failed"
    tis = await stack.task_instances("flaky", run_id)
    assert tis["third_time_lucky"]["state"] == "success"
    assert tis["third_time_lucky"]["attempt"] == 3
    assert tis["always_fails"]["state"] == "failed"
    assert tis["always_fails"]["attempt"] == 2
    assert tis["after_failure"]["state"] == "upstream_failed"
    assert tis["after_that"]["state"] == "upstream_failed"
    assert "failing on try 1" in await stack.logs("flaky", run_id, "third_time_lucky", attempt=1)
    assert len(list((stack.dags_folder.parent / "marks").iterdir())) == 3


async def test_broken_dag_file_is_an_import_error_and_others_still_run(stack: Stack) -> None:
    stack.write_dag("diamond.py", DIAMOND)
    broken = stack.write_dag("broken.py", "from weir import dag\n\ndef oops(:\n")
    await stack.wait_for_dag("diamond")
    from sqlalchemy import select

    from app.db.models import ImportError_
    from tests.support.stack import wait_until

    async def import_errors() -> list[str]:
        async with stack.database.sessions() as session:
            rows = await session.scalars(select(ImportError_))
            return [f"{r.fileloc}: {r.error}" for r in rows]

    errors = await wait_until(import_errors)
    assert "broken.py" in errors[0] and "SyntaxError" in errors[0]
    run_id = await stack.trigger("diamond")
    assert await stack.wait_for_run("diamond", run_id) == "success"

    mended = DIAMOND.replace("def diamond", "def mended").replace("diamond()", "mended()")
    stack.write_dag(broken.name, mended)
    await stack.wait_for_dag("mended")

    async def no_errors() -> bool:
        return not await import_errors()

    await wait_until(no_errors)
