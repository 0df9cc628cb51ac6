"""Workers that die, stall or run hostile tasks. DESIGN.md invariant 2: a killed worker's attempt
lapses and runs again within 10 s without using the task's retries; its task processes die with
it, so no side effect happens twice; a stalled worker's late report is refused; a task that keeps
killing its workers is failed, naming itself. And a shell task ends when its shell does.

Workers run with the shipped lease defaults (2 s heartbeats, an 8 s lease): the promise is
about what an operator gets, not about a tuned test setting.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import time
import uuid
from datetime import datetime
from typing import Any

import pytest

from tests.chaos.cluster import Cluster, is_alive, pids_of_children
from tests.chaos.dags import (
    LOAD_TASKS,
    long_tasks_dag,
    one_task_dag,
    orphaning_shell_dag,
    poison_dag,
)
from tests.chaos.load import DAG_ID, start_load
from tests.chaos.verdict import expected_keys, judge
from tests.support.ledger import Entry, TaskKey
from tests.support.processes import WeirProcess
from tests.support.stack import wait_until

pytestmark = pytest.mark.chaos

RERUN_WITHIN = 10.0
"""DESIGN.md: a killed worker's task runs again within 10 s."""
KILLS = 5
"""Workers SIGKILLed in the killed-worker test, each while running one task of each kind."""
LONG_TASKS = ("long_async", "long_sync", "long_shell")
_REFUSED = re.compile(r"attempt=1: .*(report|heartbeat) refused")


async def _started(cluster: Cluster, keys: list[TaskKey], attempt: int) -> dict[TaskKey, Entry]:
    """Until each of ``keys`` has a ``start`` of ``attempt``: those entries."""

    async def all_started() -> dict[TaskKey, Entry] | None:
        found = {e.key: e for e in cluster.ledger.started() if e.attempt == attempt}
        return found if all(key in found for key in keys) else None

    result: dict[TaskKey, Entry] = await wait_until(all_started, timeout=60, interval=0.05)
    return result


@pytest.mark.timeout(300)
async def test_a_killed_workers_tasks_die_with_it_and_run_again_elsewhere_within_10_s(
    cluster: Cluster, figures: dict[str, Any]
) -> None:
    cluster.write_dag("chaos_long.py", long_tasks_dag(cluster.ledger.path, seconds=8.0))
    await cluster.start_apis(1)
    busy = cluster.start_worker(concurrency=4)
    await cluster.wait_for_dag("chaos_long")
    await cluster.wait_for_consumers(1)
    reruns: list[float] = []
    run_ids: list[str] = []
    spare: WeirProcess | None = None
    for _ in range(KILLS):
        [run_id] = await cluster.trigger("chaos_long", 1)
        run_ids.append(run_id)
        keys = expected_keys("chaos_long", [run_id], LONG_TASKS)
        await _started(cluster, keys, attempt=1)  # all three on ``busy``, the only worker
        # The other worker: a new one, or the one killed last time, restarted (Restart=always).
        spare = (
            cluster.start_worker(concurrency=4) if spare is None else cluster.restart_worker(spare)
        )
        await cluster.wait_for_consumers(2)  # ``busy`` (one slot free) and ``spare``
        doomed = [busy.pid, *pids_of_children(busy.pid)]
        killed_at = time.time()
        cluster.kill(busy)
        again = await _started(cluster, keys, attempt=2)
        reruns.append(max(entry.at for entry in again.values()) - killed_at)
        survivors = [pid for pid in doomed if is_alive(pid)]
        assert not survivors, f"the killed worker's task processes outlived it: {survivors}"
        await cluster.wait_for_runs("chaos_long", [run_id], timeout=60)
        busy, spare = spare, busy

    figures.update(await judge(cluster, "chaos_long", run_ids, LONG_TASKS))
    figures.update(kills=KILLS, seconds_from_kill_to_rerun=[round(s, 2) for s in reruns])
    assert figures["abandoned_attempts"] == KILLS * len(LONG_TASKS), figures
    assert max(reruns) < RERUN_WITHIN, figures


@pytest.mark.timeout(180)
async def test_a_killed_workers_task_with_no_retries_still_succeeds(
    cluster: Cluster, figures: dict[str, Any]
) -> None:
    cluster.write_dag("chaos_one.py", one_task_dag(cluster.ledger.path, seconds=4.0))
    await cluster.start_apis(1)
    victim = cluster.start_worker(concurrency=1)
    await cluster.wait_for_dag("chaos_one")
    await cluster.wait_for_consumers(1)
    [run_id] = await cluster.trigger("chaos_one", 1)
    keys = expected_keys("chaos_one", [run_id], ["only"])
    await _started(cluster, keys, attempt=1)
    healthy = cluster.start_worker(concurrency=1)
    await cluster.wait_for_consumers(1)
    killed_at = time.time()
    cluster.kill(victim)
    again = await _started(cluster, keys, attempt=2)
    await cluster.wait_for_runs("chaos_one", [run_id], timeout=60)

    figures.update(await judge(cluster, "chaos_one", [run_id], ["only"]))
    detail = await cluster.task_detail("chaos_one", run_id, "only")
    figures.update(seconds_from_kill_to_rerun=round(again[keys[0]].at - killed_at, 2))
    assert (detail["state"], detail["attempt"]) == ("success", 2), detail
    assert again[keys[0]].pid == healthy.pid


@pytest.mark.timeout(180)
async def test_a_worker_stopped_past_its_lease_loses_the_attempt_and_its_late_report(
    cluster: Cluster, figures: dict[str, Any]
) -> None:
    cluster.write_dag("chaos_one.py", one_task_dag(cluster.ledger.path, seconds=4.0))
    await cluster.start_apis(1)
    stalled = cluster.start_worker(concurrency=1)
    await cluster.wait_for_dag("chaos_one")
    await cluster.wait_for_consumers(1)
    [run_id] = await cluster.trigger("chaos_one", 1)
    keys = expected_keys("chaos_one", [run_id], ["only"])
    first = (await _started(cluster, keys, attempt=1))[keys[0]]
    assert first.pid == stalled.pid
    healthy = cluster.start_worker(concurrency=1)
    await cluster.wait_for_consumers(1)
    stopped_at = time.time()
    cluster.pause(stalled)
    again = (await _started(cluster, keys, attempt=2))[keys[0]]
    await cluster.wait_for_runs("chaos_one", [run_id], timeout=60)
    # The fault itself, not a wait for a condition: the worker stays stopped 20 s in all.
    await asyncio.sleep(max(0.0, stopped_at + 20 - time.time()))
    cluster.resume(stalled)

    # Woken, the stalled worker either finishes the task and reports (refused: 409) or beats
    # first (refused: the attempt is cancelled and reports nothing). Either way it is told no.
    async def refused() -> bool:
        return bool(_REFUSED.search(stalled.output())) or stalled.process.poll() is not None

    await wait_until(refused, timeout=30)
    detail = await cluster.task_detail("chaos_one", run_id, "only")
    attempts = {a["attempt"]: a for a in detail["attempts"]}
    stale_ends = [e for e in cluster.ledger.ended() if e.attempt == 1]
    figures.update(
        seconds_from_stop_to_rerun=round(again.at - stopped_at, 2),
        attempts={n: a["state"] for n, a in attempts.items()},
        stalled_attempt_finished_its_side_effect=bool(stale_ends),
    )
    assert again.pid == healthy.pid, "the attempt went back to the stalled worker"
    assert (detail["state"], detail["attempt"]) == ("success", 2), detail
    assert attempts[1]["state"] != "success", detail
    assert attempts[2]["worker"].endswith(f":{healthy.pid}"), detail
    assert _REFUSED.search(stalled.output()), stalled.output()[-3000:]
    assert again.at - stopped_at < RERUN_WITHIN, figures


@pytest.mark.timeout(120)
async def test_a_shell_task_ends_when_its_shell_exits_and_stops_what_it_left_behind(
    cluster: Cluster, figures: dict[str, Any]
) -> None:
    marker = f"45.{uuid.uuid4().int % 10**6:06d}"  # `sleep 45.123456`: findable, and only ours
    cluster.write_dag("chaos_orphan.py", orphaning_shell_dag(marker))
    await cluster.start_apis(1)
    cluster.start_worker(concurrency=1)
    await cluster.wait_for_dag("chaos_orphan")
    await cluster.wait_for_consumers(1)
    [run_id] = await cluster.trigger("chaos_orphan", 1)
    try:
        await cluster.wait_for_runs("chaos_orphan", [run_id], timeout=30)
        detail = await cluster.task_detail("chaos_orphan", run_id, "orphaning")
        log = await cluster.task_log("chaos_orphan", run_id, "orphaning")
        seconds = _seconds_between(detail["start_date"], detail["end_date"])
        figures.update(task_seconds=round(seconds, 2))
        assert detail["state"] == "success", (detail, log)
        # The shell exits at once; the 45 s its leftover sleeps would have held the task are the
        # failure. 2 s was too tight for a loaded CI machine (1.95 s, then 2.1 s were measured).
        assert seconds < 5.0, f"the task ran {seconds:.1f} s, not until its shell exited:\n{log}"
        assert re.search(r"left .*running.*stopping", log, re.IGNORECASE | re.DOTALL), log

        async def orphan_gone() -> bool:
            return not _pids_running(f"sleep {marker}")

        await wait_until(orphan_gone, timeout=10)
    finally:
        for pid in _pids_running(f"sleep {marker}"):
            os.kill(pid, 9)


@pytest.mark.timeout(240)
async def test_a_task_that_kills_its_workers_is_failed_naming_itself_while_others_succeed(
    cluster: Cluster, figures: dict[str, Any]
) -> None:
    cluster.write_dag("chaos_poison.py", poison_dag(cluster.ledger.path))
    run_ids = await start_load(cluster, runs=10)
    await cluster.wait_for_dag("chaos_poison")
    [poison_run] = await cluster.trigger("chaos_poison", 1)
    deaths = 0

    async def poison_ended() -> bool:
        nonlocal deaths
        for worker in list(cluster.workers):
            if worker.process.poll() is not None:  # what systemd's Restart=always does
                deaths += 1
                cluster.restart_worker(worker)
        states = await cluster.run_states("chaos_poison")
        return states.get(poison_run) in ("success", "failed")

    await wait_until(poison_ended, timeout=150, interval=0.2)
    await cluster.wait_for_runs(DAG_ID, run_ids, timeout=120)

    detail = await cluster.task_detail("chaos_poison", poison_run, "poison")
    last_error = detail["attempts"][-1]["error"] or ""
    figures.update(await judge(cluster, DAG_ID, run_ids, LOAD_TASKS))
    figures.update(worker_deaths=deaths, poison_attempts=detail["attempt"])
    assert detail["state"] == "failed", detail
    assert "poison" in last_error, detail
    assert 1 < detail["attempt"] <= 5, detail
    assert deaths == detail["attempt"], figures


def _seconds_between(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def _pids_running(command_line: str) -> list[int]:
    found = subprocess.run(["pgrep", "-f", "-x", command_line], capture_output=True, text=True)
    return [int(pid) for pid in found.stdout.split()]


def _cpu_fanout_dag(width: int, seconds: float) -> str:
    return f"""
import time

from weir import dag, task


@dag
def chaos_cpu():
    @task
    def burn(i: int) -> int:
        deadline = time.monotonic() + {seconds}
        while time.monotonic() < deadline:
            pass
        return i

    for i in range({width}):
        burn.override(task_id=f"burn_{{i}}")(i)


chaos_cpu()
"""


CPU_WIDTH = 8
CPU_SECONDS = 20.0
"""Eight CPU-bound tasks on two cores for more than two leases (8 s each)."""


@pytest.mark.timeout(240)
async def test_a_full_cpu_fan_out_loses_no_lease(cluster: Cluster, figures: dict[str, Any]) -> None:
    """Every core busy with tasks for longer than a lease: the worker's heartbeats still get
    through, so no attempt is judged lost (a false lapse would run a task twice)."""
    cluster.write_dag("chaos_cpu.py", _cpu_fanout_dag(CPU_WIDTH, CPU_SECONDS))
    await cluster.start_apis(1)
    cluster.start_worker(concurrency=CPU_WIDTH)
    await cluster.wait_for_dag("chaos_cpu")
    await cluster.wait_for_consumers(1)
    [run_id] = await cluster.trigger("chaos_cpu", 1)
    seconds = await cluster.wait_for_runs("chaos_cpu", [run_id], timeout=180)

    instances = await cluster.task_instances("chaos_cpu", run_id)
    attempts = {ti["task_id"]: (ti["state"], ti["attempt"]) for ti in instances}
    figures.update(tasks=CPU_WIDTH, task_seconds=CPU_SECONDS, run_seconds=round(seconds, 1))
    assert attempts == {f"burn_{i}": ("success", 1) for i in range(CPU_WIDTH)}, attempts
