"""Trigger rules, skip propagation and branching, end to end on both backends, read back through
the REST API. Few stacks: each test runs several small DAGs where the rules matter."""

from __future__ import annotations

from pathlib import Path

from tests.support.stack import Stack

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "dags" / "branching.py"

AFTER_A_FAILURE = """
    from weir import dag, task

    @task
    def step() -> str:
        return "done"

    @dag
    def after_failure():
        @task
        def boom() -> None:
            raise RuntimeError("boom")

        ok = step.override(task_id="ok")()
        broken = boom()
        both = [ok, broken]
        both >> step.override(task_id="cleanup", trigger_rule="all_done")()
        both >> step.override(task_id="alert", trigger_rule="one_failed")()
        ok >> step.override(task_id="no_alert", trigger_rule="one_failed")()
        broken >> step.override(task_id="on_all_failed", trigger_rule="all_failed")()
        both >> step.override(task_id="not_all_failed", trigger_rule="all_failed")()
        both >> step.override(task_id="some_success", trigger_rule="one_success")()
        broken >> step.override(task_id="no_success", trigger_rule="one_success")()
        both >> step.override(task_id="no_failure", trigger_rule="none_failed")()
        both >> step.override(task_id="no_skip", trigger_rule="none_skipped")()
        broken >> step.override(task_id="regardless", trigger_rule="always")()
        broken >> step.override(task_id="after_boom")() >> step.override(task_id="later")()

    after_failure()
"""

AFTER_A_FAILURE_STATES = {
    "ok": "success",
    "boom": "failed",
    "cleanup": "success",
    "alert": "success",
    "no_alert": "skipped",
    "on_all_failed": "success",
    "not_all_failed": "skipped",
    "some_success": "success",
    "no_success": "upstream_failed",
    "no_failure": "upstream_failed",
    "no_skip": "success",
    "regardless": "success",
    "after_boom": "upstream_failed",
    "later": "upstream_failed",
}

ALL_SUCCEED = """
    from weir import dag, task

    @task
    def step() -> str:
        return "done"

    @dag
    def all_succeed():
        first = step.override(task_id="first")()
        second = step.override(task_id="second")()
        [first, second] >> step.override(task_id="alert", trigger_rule="one_failed")()
        [first, second] >> step.override(task_id="on_failure", trigger_rule="all_failed")()
        first >> step.override(task_id="finish", trigger_rule="none_failed")()

    all_succeed()
"""


async def _states(stack: Stack, dag_id: str, run_id: str) -> dict[str, str]:
    return {t: ti["state"] for t, ti in (await stack.task_instances(dag_id, run_id)).items()}


async def test_rules_after_a_failure_and_when_nothing_fails(stack: Stack) -> None:
    stack.write_dag("after_failure.py", AFTER_A_FAILURE)
    stack.write_dag("all_succeed.py", ALL_SUCCEED)
    await stack.wait_for_dag("after_failure")
    await stack.wait_for_dag("all_succeed")
    failing = await stack.trigger("after_failure")
    passing = await stack.trigger("all_succeed")

    # A cleanup or an alert that ran does not hide the failure: the run fails.
    assert await stack.wait_for_run("after_failure", failing) == "failed"
    assert await _states(stack, "after_failure", failing) == AFTER_A_FAILURE_STATES

    # Alerts that find nothing to report are skipped, and a skipped task fails no run.
    assert await stack.wait_for_run("all_succeed", passing) == "success"
    assert await _states(stack, "all_succeed", passing) == {
        "first": "success",
        "second": "success",
        "alert": "skipped",
        "on_failure": "skipped",
        "finish": "success",
    }


BRANCHING = """
    from weir import dag, task

    @task
    def step() -> str:
        return "done"

    @dag
    def branching():
        @task.branch
        def pick() -> str:
            return "left"

        @task.branch
        def pick_many() -> list[str]:
            return ["one", "two"]

        @task.branch
        def pick_join() -> str:
            return "shortcut_join"

        chooser = pick()
        left = step.override(task_id="left")()
        right = step.override(task_id="right")()
        chooser >> [left, right]
        right >> step.override(task_id="after_right")() >> step.override(task_id="end_right")()
        [left, right] >> step.override(task_id="join", trigger_rule="none_failed")()
        [left, right] >> step.override(task_id="strict_join")()
        [left, right] >> step.override(task_id="any_join", trigger_rule="one_success")()
        [left, right] >> step.override(task_id="unskipped_join", trigger_rule="none_skipped")()
        right >> step.override(task_id="cleanup_right", trigger_rule="all_done")()

        several = pick_many()
        several >> [step.override(task_id=name)() for name in ("one", "two", "three")]

        # The "empty branch": choosing the join skips the work, and the join still runs.
        shortcut = pick_join()
        work = step.override(task_id="work")()
        join = step.override(task_id="shortcut_join", trigger_rule="none_failed")()
        shortcut >> [work, join]
        work >> join

    branching()
"""

BRANCHING_STATES = {
    "pick": "success",
    "left": "success",
    "right": "skipped",
    "after_right": "skipped",
    "end_right": "skipped",
    "join": "success",
    "strict_join": "skipped",
    "any_join": "success",
    "unskipped_join": "skipped",
    "cleanup_right": "success",
    "pick_many": "success",
    "one": "success",
    "two": "success",
    "three": "skipped",
    "pick_join": "success",
    "work": "skipped",
    "shortcut_join": "success",
}

BAD_BRANCH = """
    from weir import dag, task

    @task
    def step() -> str:
        return "done"

    @dag
    def bad_branch():
        @task.branch
        def pick() -> str:
            return "nowhere"

        chooser = pick()
        chooser >> [step.override(task_id="left")(), step.override(task_id="right")()]
        chooser >> step.override(task_id="alert", trigger_rule="one_failed")()

    bad_branch()
"""


async def test_branching_skips_the_paths_not_taken_and_joins(stack: Stack) -> None:
    stack.write_dag("branching.py", BRANCHING)
    stack.write_dag("bad_branch.py", BAD_BRANCH)
    stack.write_dag("example_branching.py", EXAMPLE.read_text().replace("branching", "example"))
    await stack.wait_for_dag("branching")
    await stack.wait_for_dag("bad_branch")
    await stack.wait_for_dag("example")
    good = await stack.trigger("branching")
    bad = await stack.trigger("bad_branch")
    example = await stack.trigger("example")

    assert await stack.wait_for_run("branching", good) == "success"
    assert await _states(stack, "branching", good) == BRANCHING_STATES

    # A choice that is not a direct downstream task fails the branch task, saying why.
    assert await stack.wait_for_run("bad_branch", bad) == "failed"
    assert await _states(stack, "bad_branch", bad) == {
        "pick": "failed",
        "left": "upstream_failed",
        "right": "upstream_failed",
        "alert": "success",  # one_failed: the branch task's failure is what it reports
    }
    log = await stack.logs("bad_branch", bad, "pick")
    assert "Branch task 'pick' chose ['nowhere'], not among its direct downstream tasks" in log

    # The example DAG: one load runs, the other is skipped, the join and the cleanup run.
    assert await stack.wait_for_run("example", example) == "success"
    states = await _states(stack, "example", example)
    loads = {states.pop("full_reload"), states.pop("incremental_load")}
    assert loads == {"success", "skipped"}
    assert states == dict.fromkeys(("choose_load", "report", "cleanup"), "success")


# Joins over more upstreams than a report reads row by row (``frontier.FEW_UPSTREAMS``): their
# rules are decided from the states present among the upstreams, found by index probes.
WIDE_JOINS = """
    import asyncio

    from weir import dag, task

    @task
    def step() -> str:
        return "done"

    @task
    async def slow() -> str:
        await asyncio.sleep(1.5)
        return "done"

    @task
    async def boom() -> None:
        await asyncio.sleep(1.5)
        raise RuntimeError("boom")

    @dag
    def {dag_id}():
        start = step.override(task_id="start")()
        parts = [slow.override(task_id="part_0")()]
        parts += [step.override(task_id=f"part_{{i}}")() for i in range(1, 24)]
        {failing}
        start >> parts
        parts >> step.override(task_id="join")() >> step.override(task_id="after_join")()
        parts >> step.override(task_id="alert", trigger_rule="one_failed")()
        parts >> step.override(task_id="cleanup", trigger_rule="all_done")()
        parts >> step.override(task_id="any_success", trigger_rule="one_success")()
        parts >> step.override(task_id="no_failure", trigger_rule="none_failed")()

    {dag_id}()
"""


async def test_joins_over_many_upstreams_follow_their_rules(stack: Stack) -> None:
    stack.write_dag("wide_ok.py", WIDE_JOINS.format(dag_id="wide_ok", failing=""))
    failing = 'start >> boom.override(task_id="broken")() >> parts[0]'
    stack.write_dag("wide_failing.py", WIDE_JOINS.format(dag_id="wide_failing", failing=failing))
    await stack.wait_for_dag("wide_ok")
    await stack.wait_for_dag("wide_failing")
    ok = await stack.trigger("wide_ok")
    failed = await stack.trigger("wide_failing")

    assert await stack.wait_for_run("wide_ok", ok) == "success"
    states = await _states(stack, "wide_ok", ok)
    assert {t: s for t, s in states.items() if not t.startswith("part_")} == {
        "start": "success",
        "join": "success",
        "after_join": "success",
        "alert": "skipped",
        "cleanup": "success",
        "any_success": "success",
        "no_failure": "success",
    }
    assert {states[f"part_{i}"] for i in range(24)} == {"success"}
    # part_0 ends last (it sleeps): the other parts' reports must leave the join waiting.
    instances = await stack.task_instances("wide_ok", ok)
    last_part_end = max(instances[f"part_{i}"]["end_date"] for i in range(24))
    assert instances["join"]["start_date"] >= last_part_end, instances["join"]

    # part_0 waits on a task that fails after the other parts succeeded: the join, waiting until
    # then, fails upstream and its own downstream with it; the alert and the cleanup run, and
    # one success among 23 is enough for any_success.
    assert await stack.wait_for_run("wide_failing", failed) == "failed"
    states = await _states(stack, "wide_failing", failed)
    assert {t: s for t, s in states.items() if not t.startswith("part_")} == {
        "start": "success",
        "broken": "failed",
        "join": "upstream_failed",
        "after_join": "upstream_failed",
        "alert": "success",
        "cleanup": "success",
        "any_success": "success",
        "no_failure": "upstream_failed",
    }
    assert states["part_0"] == "upstream_failed"
    assert {states[f"part_{i}"] for i in range(1, 24)} == {"success"}
