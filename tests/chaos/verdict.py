"""The verdict on a chaos pass: by the API (every run and task instance succeeded) and by the
ledger (nothing lost, nothing doubled, nothing stuck). Returns the figures a test records."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from tests.chaos.cluster import Cluster
from tests.support.ledger import TaskKey

__all__ = ["expected_keys", "judge"]


def expected_keys(dag_id: str, run_ids: Sequence[str], tasks: Sequence[str]) -> list[TaskKey]:
    return [(dag_id, run_id, task_id) for run_id in run_ids for task_id in tasks]


async def judge(
    cluster: Cluster, dag_id: str, run_ids: Sequence[str], tasks: Sequence[str]
) -> dict[str, Any]:
    """Assert that every run succeeded and the ledger is clean; the figures of the pass."""
    tally = cluster.ledger.tally(expected_keys(dag_id, run_ids, tasks))
    states = await cluster.run_states(dag_id)
    run_states = Counter(states.get(run_id, "missing") for run_id in run_ids)
    attempts: Counter[int] = Counter()
    bad: list[tuple[str, str, str]] = []
    for run_id in run_ids:
        if states.get(run_id) == "success":
            continue
        for ti in await cluster.task_instances(dag_id, run_id):
            if ti["state"] != "success":
                bad.append((run_id, ti["task_id"], ti["state"]))
    if run_states != {"success": len(run_ids)}:
        raise AssertionError(f"runs {dict(run_states)}; unsuccessful tasks {bad[:5]}; {tally}")
    assert tally.is_clean, str(tally)
    for run_id in run_ids[:: max(1, len(run_ids) // 10)]:  # a sample: attempts cost a call each
        attempts.update(ti["attempt"] for ti in await cluster.task_instances(dag_id, run_id))
    return {**tally.figures(), "runs": len(run_ids), "sampled_attempts": dict(attempts)}
