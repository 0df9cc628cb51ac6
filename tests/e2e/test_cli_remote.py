"""``weir dags show``, ``runs list``, ``tasks clear`` and ``tasks logs --follow`` as their users
meet them: real subprocesses talking REST to a stack with its token."""

from __future__ import annotations

import asyncio
import sys

from tests.support.processes import cli_env, run_cli
from tests.support.stack import Stack

DAG = """
    import asyncio
    from pathlib import Path
    from weir import dag, get_current_context, task

    GO = Path(__file__).with_name("go.txt")

    @dag(tags=["cli"], description="Talks slowly.")
    def talker():
        @task(retries=1, retry_delay=0)
        async def talk() -> None:
            attempt = get_current_context().attempt
            while not GO.exists():
                await asyncio.sleep(0.05)
            for i in range(3):
                print(f"line {i} of attempt {attempt} ✓")
                await asyncio.sleep(0.3)
            if attempt == 1:
                raise RuntimeError("once more")

        talk()

    talker()
"""


async def _start(stack: Stack, *args: str) -> asyncio.subprocess.Process:
    env = cli_env(api_url=stack.settings.api_url, token=stack.token)
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "weir", *args,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip


async def weir(stack: Stack, *args: str, timeout: float = 90) -> tuple[int, str]:
    env = cli_env(api_url=stack.settings.api_url, token=stack.token)
    return await run_cli(*args, env=env, timeout=timeout)


async def test_follow_prints_each_attempt_as_it_comes(stack: Stack) -> None:
    stack.write_dag("talker.py", DAG)
    await stack.wait_for_dag("talker")
    run_id = await stack.trigger("talker")
    child = await _start(stack, "tasks", "logs", "talker", run_id, "talk", "-f", "--poll", "0.1")
    assert child.stdout is not None
    # The worker's first line ("running on worker") shows the follower is on attempt 1 already.
    first = await asyncio.wait_for(child.stdout.readline(), 60)
    (stack.dags_folder / "go.txt").write_text("go")
    rest = await asyncio.wait_for(child.stdout.read(), 60)
    code = await child.wait()
    output = (first + rest).decode()
    assert code == 0, output
    expected = [f"line {i} of attempt {a} ✓" for a in (1, 2) for i in range(3)]
    printed = [line for line in output.splitlines() if line.startswith("line ")]
    assert printed == expected, output
    assert "--- attempt 2 ---" in output
    assert await stack.wait_for_run("talker", run_id) == "success"

    code, output = await weir(stack, "tasks", "logs", "talker", run_id, "talk", "--attempt", "1")
    assert code == 0 and "line 2 of attempt 1 ✓" in output and "attempt 2" not in output


async def test_show_list_and_clear(stack: Stack) -> None:
    stack.write_dag("talker.py", DAG)
    (stack.dags_folder / "go.txt").write_text("go")
    await stack.wait_for_dag("talker")
    run_id = await stack.trigger("talker")
    assert await stack.wait_for_run("talker", run_id) == "success"

    code, output = await weir(stack, "dags", "show", "talker")
    assert code == 0, output
    assert "talker (unpaused)" in output and "Talks slowly." in output and "cli" in output
    assert run_id in output and "1 run(s)" in output

    code, output = await weir(stack, "runs", "list", "talker", "--state", "failed")
    assert code == 0 and "0 of 0 run(s)" in output, output
    code, output = await weir(stack, "runs", "list", "talker", "--state", "success")
    assert code == 0 and run_id in output and "1 of 1 run(s)" in output, output

    code, output = await weir(stack, "tasks", "clear", "talker", run_id, "talk", "--downstream")
    assert code == 0, output
    assert "cleared talk (was success)" in output
    assert await stack.wait_for_run("talker", run_id) == "success"
    talk = (await stack.task_instances("talker", run_id))["talk"]
    assert talk["attempt"] == 3  # attempts 1 and 2, then the cleared run's

    code, output = await weir(stack, "tasks", "clear", "talker", run_id, "nope")
    assert code == 1 and "404" in output and "Traceback" not in output, output
