"""``weir backfill`` as its users meet it: a real subprocess talking REST to a stack, queueing the
runs of a past range and drawing their progress until the backfill completes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.support.processes import cli_env, run_cli
from tests.support.stack import Stack

DAG = """
    from datetime import datetime
    from weir import dag, task

    @dag(dag_id="daily", schedule="@daily", start_date=datetime.fromisoformat({start!r}))
    def daily():
        @task
        def work() -> None:
            print("working")

        work()

    daily()
"""


async def weir(stack: Stack, *args: str, timeout: float = 90) -> tuple[int, str]:
    """Run ``python -m weir ARGS`` against the stack's API, with its token."""
    env = cli_env(api_url=stack.settings.api_url, token=stack.token)
    code, output = await run_cli(*args, env=env, timeout=timeout)
    return code, " ".join(output.split())


def days_ago(days: int) -> str:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return (today - timedelta(days=days)).date().isoformat()


async def test_backfill_waits_with_a_progress_bar_until_done(stack: Stack) -> None:
    stack.write_dag("daily.py", DAG.format(start=days_ago(30)))
    await stack.wait_for_dag("daily")
    code, output = await weir(
        stack, "backfill", "daily", "--start", days_ago(6), "--end", days_ago(4),
        "--max-active-runs", "2",
    )  # fmt: skip
    assert code == 0, output
    assert "queued 3 run(s); 0 interval(s) already had one" in output
    assert "3/3" in output  # the bar's last frame
    assert "completed: 3 succeeded, 0 failed" in output

    code, output = await weir(
        stack, "backfill", "daily", "--start", days_ago(5), "--end", days_ago(3), "--no-wait"
    )
    assert code == 0, output
    assert "queued 1 run(s); 2 interval(s) already had one" in output


async def test_backfill_refusals_name_the_problem(stack: Stack) -> None:
    stack.write_dag("daily.py", DAG.format(start=days_ago(30)))
    await stack.wait_for_dag("daily")
    code, output = await weir(stack, "backfill", "daily", "--start", "x", "--end", days_ago(1))
    assert code == 1 and "422" in output and "Traceback" not in output, output
    code, output = await weir(
        stack, "backfill", "nope", "--start", "2024-01-01", "--end", "2024-01-02"
    )
    assert code == 1 and "404" in output and "does not exist" in output, output
    code, output = await weir(stack, "backfill", "daily", "--start", "2024-01-01")
    assert code == 2 and "--end" in output, output
